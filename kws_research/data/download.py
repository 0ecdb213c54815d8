"""Fetching and unpacking the official Speech Commands archives.

Downloads resume from a ``.part`` file with an HTTP Range request, are checked
against the published size and SHA-256, and are extracted with tarfile's
``data`` filter (no absolute paths, no ``..``, no links leaving the target).
"""

from __future__ import annotations

import hashlib
import http.client
import logging
import os
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

from kws_research import ownership
from kws_research.errors import KwsError, one_line
from kws_research.processes import remove_dead_temporaries

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

    A finished ``dest`` that already verifies is reused without network access; one that
    does not is replaced only if this harness wrote it (:mod:`kws_research.ownership`).
    """
    dest = Path(dest)
    if dest.is_file() and _verified(dest, sha256, size):
        return dest
    part = dest.with_name(dest.name + ".part")
    hint = "move it away or set dataset.root=<another folder>"
    ownership.check_replaceable(dest, "dataset.url", hint)
    ownership.check_replaceable(part, "dataset.url", hint)
    dest.parent.mkdir(parents=True, exist_ok=True)
    start = part.stat().st_size if part.is_file() else 0
    if size is not None and start > size:
        ownership.remove(part, "dataset.url", hint)
        start = 0
    total = size
    try:
        if size is None or start < size:
            start, total = _fetch(url, part, start, size, timeout, progress)
    except urllib.error.HTTPError as exc:  # the server answered: no such file (404), no access (403), ...
        if part.is_file() and part.stat().st_size == 0:
            ownership.remove(part, "dataset.url", hint)
        raise KwsError(
            f"download of {url} failed: the server answered HTTP {exc.code} ({exc.reason}); check dataset.url, "
            "or download it yourself and set dataset.root"
        ) from exc
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
        ownership.remove(part, "dataset.url", hint)
        raise KwsError(
            f"{dest.name}: size or SHA-256 does not match the published value; the partial file "
            "was deleted, rerun to download it again"
        )
    part.replace(dest)
    ownership.unrecord(part)
    return ownership.record(dest)


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
            ownership.record(part, growing=True)
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


class NotAnArchive(KwsError):
    """The downloaded file is not a tar archive (a wrong URL, an error page)."""


class UnsafeArchive(KwsError):
    """The archive has a member that would land outside the target (traversal, links, devices)."""


def archive_name(url: str) -> str:
    """The file name an archive URL ends in; other schemes and folder URLs are refused."""
    scheme, _, rest = url.partition("://")
    if scheme.lower() not in ("http", "https"):
        raise KwsError(
            f"dataset.url: {url!r} is not an http:// or https:// URL; for an archive on this machine, "
            "extract it yourself and set dataset.root=<the extracted folder> with dataset.download=false"
        )
    name = rest.split("?", 1)[0].split("#", 1)[0].rpartition("/")[2]
    if not name or "/" not in rest:
        raise KwsError(f"dataset.url: {url} does not end in an archive file name (like .../x.tar.gz)")
    return name


def _job(archive_file: str) -> str:
    return f"download of {archive_file}"


def check_target(target: Path, archive_file: str) -> None:
    """Extract only into a missing or empty folder, or one an earlier, interrupted
    extraction of the same archive left (it carries the mark written before extraction)."""
    target = Path(target)
    if not target.exists() or ownership.marked_as(target) == _job(archive_file):
        return
    if not target.is_dir():
        raise KwsError(f"dataset.root: {target} is a file, not a folder; set dataset.root=<a new folder>")
    if any(target.iterdir()):
        raise KwsError(
            f"dataset.root: {target} already holds files and no finished download of {archive_file}; "
            "kws-research extracts archives only into a missing or empty folder and never deletes yours: "
            "set dataset.root=<a new folder>, or dataset.download=false to use the files as they are"
        )


def safe_extract(archive: Path, target: Path) -> Path:
    """Extract a tar archive into ``target`` without letting any member escape it, and
    without touching anything already in ``target`` (see :func:`check_target`)."""
    target = Path(target)
    if (target / EXTRACTED_MARKER).is_file():
        return target
    if not hasattr(tarfile, "data_filter"):
        raise KwsError("safe extraction needs tarfile's data filter: use Python >= 3.10.12 or >= 3.11.4")
    check_target(target, archive.name)
    remove_dead_temporaries(target.parent)
    tmp = ownership.new_folder(target.with_name(f".{target.name}.{os.getpid()}.tmp"), _job(archive.name))
    try:
        with tarfile.open(archive) as tar:
            tar.extractall(tmp, filter="data")
    except tarfile.FilterError as exc:
        ownership.discard(tmp)
        raise UnsafeArchive(
            f"{archive}: member {exc.tarinfo.name!r} would be written outside the target "
            "folder; refusing to extract this archive"
        ) from exc
    except (tarfile.TarError, EOFError, OSError) as exc:
        ownership.discard(tmp)
        raise NotAnArchive(f"{archive}: not a readable tar archive ({one_line(exc, 200)})") from exc
    except BaseException:
        ownership.discard(tmp)
        raise
    (tmp / EXTRACTED_MARKER).write_text(archive.name + "\n")
    _move_into_place(tmp, target, archive.name)
    return target


def _move_into_place(tmp: Path, target: Path, archive_file: str) -> None:
    check_target(target, archive_file)  # again: the folder may have changed while extracting
    ownership.replace(tmp, target, "dataset.root", "set dataset.root=<a new folder>")  # empty, or our interrupted one


def ensure_downloaded(url: str, root: Path, sha256: str | None, size: int | None) -> Path:
    """The extracted archive at ``root``: downloaded and unpacked on first use.

    The archive is kept beside the root (listed as the harness's in that folder's
    manifest) so a later extraction needs no network; an archive that cannot be
    extracted is deleted again, so a failed attempt leaves nothing behind."""
    root = Path(root)
    if (root / EXTRACTED_MARKER).is_file():
        return root
    name = archive_name(url)
    check_target(root, name)
    archive = root.with_name(name)
    log.info("downloading %s to %s", url, archive)
    download(url, archive, sha256=sha256, size=size)
    log.info("extracting %s to %s", archive, root)
    try:
        return safe_extract(archive, root)
    except (NotAnArchive, UnsafeArchive) as exc:  # a download of ours that cannot be used is not kept
        if not ownership.is_ours(archive):
            raise
        ownership.remove(archive, "dataset.url", "")
        what = f"is not a tar archive ({one_line(exc.__cause__, 200)})" if isinstance(exc, NotAnArchive) else f"{exc}"
        raise type(exc)(
            f"dataset.url: {url} {what}; the downloaded file was deleted, nothing was kept; check dataset.url"
        ) from None
