"""Fetching and unpacking the official Speech Commands archives.

Downloads resume from a ``.part`` file with an HTTP Range request, are checked
against the published size and SHA-256, and are extracted with tarfile's
``data`` filter (no absolute paths, no ``..``, no links leaving the target).
"""

from __future__ import annotations

import hashlib
import http.client
import logging
import shutil
import tarfile
import urllib.error
import urllib.request
from pathlib import Path

from rich.progress import (
    BarColumn,
    DownloadColumn,
    Progress,
    TimeRemainingColumn,
    TransferSpeedColumn,
)

from kws_research.errors import KwsError

log = logging.getLogger(__name__)

CHUNK = 1 << 20
EXTRACTED_MARKER = ".extracted"


def sha256_of(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for block in iter(lambda: handle.read(CHUNK), b""):
            digest.update(block)
    return digest.hexdigest()


def _open(url: str, start: int, timeout: float):
    request = urllib.request.Request(url, headers={"User-Agent": "kws-research"})
    if start:
        request.add_header("Range", f"bytes={start}-")
    return urllib.request.urlopen(request, timeout=timeout)


def download(
    url: str,
    dest: Path,
    sha256: str | None = None,
    size: int | None = None,
    timeout: float = 60.0,
    progress: bool = True,
) -> Path:
    """Download ``url`` to ``dest``, resuming ``dest.part`` and verifying size/checksum.

    A finished ``dest`` that already verifies is reused without network access.
    """
    dest = Path(dest)
    if dest.is_file() and _verified(dest, sha256, size):
        return dest
    dest.parent.mkdir(parents=True, exist_ok=True)
    part = dest.with_name(dest.name + ".part")
    start = part.stat().st_size if part.is_file() else 0
    if size is not None and start > size:
        part.unlink()
        start = 0
    total = size
    try:
        if size is None or start < size:
            start, total = _fetch(url, part, start, size, timeout, progress)
    except (urllib.error.URLError, http.client.HTTPException, OSError) as exc:
        start = part.stat().st_size if part.is_file() else 0
        reason = getattr(exc, "reason", None) or exc
        raise KwsError(
            f"download of {url} failed ({reason}); {start} bytes kept in {part}; "
            "rerun to resume, or download it yourself and set dataset.root"
        ) from exc
    if total is not None and start < total:
        raise KwsError(f"download of {url} stopped at {start} of {total} bytes (kept in {part}); rerun to resume")
    if not _verified(part, sha256, size, complain=True):
        part.unlink()
        raise KwsError(
            f"{dest.name}: size or SHA-256 does not match the published value; the partial file "
            "was deleted, rerun to download it again"
        )
    part.rename(dest)
    return dest


def _fetch(
    url: str, part: Path, start: int, size: int | None, timeout: float, progress: bool
) -> tuple[int, int | None]:
    """Append the rest of ``url`` to ``part``; returns (bytes now in part, expected total)."""
    try:
        response = _open(url, start, timeout)
    except urllib.error.HTTPError as exc:
        if exc.code == 416 and start:  # range beyond the end: the part file is complete
            return start, size
        raise
    with response:
        if start and response.status != 206:
            log.warning("server ignored the resume request for %s; downloading from the start", url)
            start = 0
        length = response.headers.get("Content-Length")
        total = size if size is not None else (start + int(length) if length else None)
        mode = "ab" if start else "wb"
        columns = (BarColumn(), DownloadColumn(), TransferSpeedColumn(), TimeRemainingColumn())
        with open(part, mode) as handle, Progress(*columns, disable=not progress) as bar:
            task = bar.add_task(part.name, total=total, completed=start)
            for block in iter(lambda: response.read(CHUNK), b""):
                handle.write(block)
                start += len(block)
                bar.update(task, completed=start)
    return start, total


def _verified(path: Path, sha256: str | None, size: int | None, complain: bool = False) -> bool:
    actual_size = path.stat().st_size
    if size is not None and actual_size != size:
        if complain:
            log.error("%s: %d bytes, expected %d", path, actual_size, size)
        return False
    if sha256:
        actual = sha256_of(path)
        if actual != sha256.lower():
            if complain:
                log.error("%s: SHA-256 %s, expected %s", path, actual, sha256)
            return False
    return True


def safe_extract(archive: Path, target: Path) -> Path:
    """Extract a tar archive into ``target`` without letting any member escape it."""
    target = Path(target)
    if (target / EXTRACTED_MARKER).is_file():
        return target
    if not hasattr(tarfile, "data_filter"):
        raise KwsError("safe extraction needs tarfile's data filter: use Python >= 3.10.12 or >= 3.11.4")
    tmp = target.with_name(f".{target.name}.extracting")
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir(parents=True)
    try:
        with tarfile.open(archive) as tar:
            try:
                tar.extractall(tmp, filter="data")
            except tarfile.FilterError as exc:
                raise KwsError(
                    f"{archive}: member {exc.tarinfo.name!r} would be written outside the target "
                    "folder; refusing to extract this archive"
                ) from exc
    except tarfile.TarError as exc:
        shutil.rmtree(tmp, ignore_errors=True)
        raise KwsError(f"{archive}: not a readable tar archive ({exc}); delete it and download again") from exc
    except KwsError:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    (tmp / EXTRACTED_MARKER).write_text(archive.name + "\n")
    if target.exists():
        shutil.rmtree(target)
    tmp.rename(target)
    return target


def ensure_downloaded(url: str, root: Path, sha256: str | None, size: int | None) -> Path:
    """The extracted archive at ``root``: downloaded and unpacked on first use."""
    if (root / EXTRACTED_MARKER).is_file():
        return root
    archive = root.with_name(url.rsplit("/", 1)[-1])
    log.info("downloading %s to %s", url, archive)
    download(url, archive, sha256=sha256, size=size)
    log.info("extracting %s to %s", archive, root)
    return safe_extract(archive, root)
