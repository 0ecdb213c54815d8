"""The real download code against a local HTTP server on 127.0.0.1 (Range-capable)."""

from __future__ import annotations

import hashlib
import io
import tarfile
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest
from helpers.data import tone_dataset_cfg, write_tone_root
from helpers.stages import run_stage

from kws_research import ownership
from kws_research.data.dataset import prepare
from kws_research.data.download import EXTRACTED_MARKER, download, ensure_downloaded, safe_extract
from kws_research.errors import KwsError


class ArchiveServer:
    """Serves named byte strings, honours ``Range: bytes=N-`` and records requests."""

    def __init__(self, files: dict[str, bytes], cut_first_response_at: int | None = None):
        self.files = files
        self.requests: list[tuple[str, str | None]] = []
        self.cut = cut_first_response_at
        server = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args):
                pass

            def do_GET(self):
                name = self.path.lstrip("/")
                rng = self.headers.get("Range")
                server.requests.append((name, rng))
                if name not in server.files:
                    self.send_error(404)
                    return
                body = server.files[name]
                start = int(rng.split("=")[1].split("-")[0]) if rng else 0
                if start >= len(body) and rng:
                    self.send_response(416)
                    self.end_headers()
                    return
                self.send_response(206 if rng else 200)
                if rng:
                    self.send_header("Content-Range", f"bytes {start}-{len(body) - 1}/{len(body)}")
                self.send_header("Content-Length", str(len(body) - start))
                self.end_headers()
                payload = body[start:]
                if server.cut is not None:
                    payload, server.cut = payload[: server.cut], None  # drop the connection early once
                self.wfile.write(payload)

        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.thread = threading.Thread(target=self.httpd.serve_forever, daemon=True)

    def url(self, name: str) -> str:
        return f"http://127.0.0.1:{self.httpd.server_address[1]}/{name}"

    def __enter__(self):
        self.thread.start()
        return self

    def __exit__(self, *exc):
        self.httpd.shutdown()
        self.httpd.server_close()


def _tar_of(folder: Path) -> bytes:
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w:gz") as tar:
        for path in sorted(folder.rglob("*")):
            tar.add(path, arcname="./" + path.relative_to(folder).as_posix(), recursive=False)
    return buffer.getvalue()


@pytest.fixture(scope="module")
def archive(tmp_path_factory) -> bytes:
    root = write_tone_root(tmp_path_factory.mktemp("arch") / "root", speakers=4, reps=1)
    return _tar_of(root)


def test_download_verifies_and_prepare_uses_the_extracted_archive(tmp_path, archive):
    sha = hashlib.sha256(archive).hexdigest()
    with ArchiveServer({"sc.tar.gz": archive}) as server:
        cfg = tone_dataset_cfg(
            tmp_path / "data" / "sc",
            tmp_path / "cache",
            download=True,
            url=server.url("sc.tar.gz"),
            archive_sha256=sha,
            archive_size=len(archive),
        )
        data = prepare(cfg)
        assert data.summary["counts"]["train"]["yes"] == 2
        assert (tmp_path / "data" / "sc.tar.gz").read_bytes() == archive
        requests_after_first = len(server.requests)
        prepare(cfg)  # extracted and cached: no second download
        assert len(server.requests) == requests_after_first == 1


def test_interrupted_download_resumes_with_a_range_request(tmp_path, archive):
    sha = hashlib.sha256(archive).hexdigest()
    cut = len(archive) // 3
    with ArchiveServer({"a.tgz": archive}, cut_first_response_at=cut) as server:
        dest = tmp_path / "a.tgz"
        with pytest.raises(KwsError, match="rerun to resume|does not match"):
            download(server.url("a.tgz"), dest, sha256=sha, size=len(archive), progress=False, timeout=5)
        part = tmp_path / "a.tgz.part"
        assert part.stat().st_size == cut
        download(server.url("a.tgz"), dest, sha256=sha, size=len(archive), progress=False)
        assert server.requests[-1] == ("a.tgz", f"bytes={cut}-")
        assert dest.read_bytes() == archive and not part.exists()


def test_checksum_mismatch_is_refused_and_the_part_deleted(tmp_path, archive):
    with ArchiveServer({"a.tgz": archive}) as server:
        with pytest.raises(KwsError, match="SHA-256 does not match"):
            download(server.url("a.tgz"), tmp_path / "a.tgz", sha256="0" * 64, progress=False)
    assert not (tmp_path / "a.tgz").exists() and not (tmp_path / "a.tgz.part").exists()


def test_unreachable_server_names_the_url(tmp_path):
    with ArchiveServer({}) as server:
        url = server.url("missing.tgz")
        with pytest.raises(KwsError, match="missing.tgz failed"):
            download(url, tmp_path / "m.tgz", progress=False)


def test_extraction_refuses_members_escaping_the_target(tmp_path):
    evil = tmp_path / "evil.tar"
    with tarfile.open(evil, "w") as tar:
        data = b"owned"
        info = tarfile.TarInfo("../outside.txt")
        info.size = len(data)
        tar.addfile(info, io.BytesIO(data))
    with pytest.raises(KwsError, match="outside the target"):
        safe_extract(evil, tmp_path / "target")
    assert not (tmp_path / "outside.txt").exists()
    assert not (tmp_path / "target").exists()
    with ArchiveServer({"evil.tar": evil.read_bytes()}) as server:  # downloaded: the archive is not kept
        with pytest.raises(KwsError, match="outside the target.*the downloaded file was deleted"):
            ensure_downloaded(server.url("evil.tar"), tmp_path / "data" / "sc", None, None)
    assert not (tmp_path / "data").exists() or not list((tmp_path / "data").iterdir())


def _snapshot(folder: Path) -> dict[str, bytes]:
    return {p.relative_to(folder).as_posix(): p.read_bytes() for p in sorted(folder.rglob("*")) if p.is_file()}


def _plant_user_files(root: Path) -> dict[str, bytes]:
    (root / "yes").mkdir(parents=True)
    (root / "notes.txt").write_text("my notes\n")
    (root / "yes" / "my_recording_nohash_0.wav").write_bytes(b"RIFF mine")
    return _snapshot(root)


def test_download_into_a_folder_with_user_files_is_refused_and_deletes_nothing(tmp_path, archive):
    root = tmp_path / "mydata"
    before = _plant_user_files(root)
    with ArchiveServer({"sc.tar.gz": archive}) as server:
        result = run_stage(
            "prepare",
            "dataset=speech_commands",
            f"dataset.root={root}",
            "dataset.download=true",
            f"dataset.url={server.url('sc.tar.gz')}",
            f"dataset.cache_dir={tmp_path}/cache",
            cwd=tmp_path,
        )
        assert not server.requests  # refused before any download
    assert result.returncode == 2, result.stderr
    lines = [line for line in result.stderr.strip().splitlines() if line.startswith("error:")]
    assert len(lines) == 1 and "Traceback" not in result.stderr
    assert f"dataset.root: {root} already holds files" in lines[0] and "dataset.root=<a new folder>" in lines[0]
    assert _snapshot(root) == before
    assert not (tmp_path / "sc.tar.gz").exists()


def test_download_into_an_empty_folder_or_after_an_interrupted_extraction(tmp_path, archive):
    with ArchiveServer({"sc.tar.gz": archive}) as server:
        empty = tmp_path / "empty"
        empty.mkdir()
        data = prepare(tone_dataset_cfg(empty, tmp_path / "cache", download=True, url=server.url("sc.tar.gz")))
        assert data.summary["counts"]["train"]["yes"] == 2 and (empty / EXTRACTED_MARKER).is_file()
        # an earlier extraction of the same archive that stopped while moving into place
        interrupted = tmp_path / "interrupted"
        ownership.new_folder(interrupted, "download of sc.tar.gz")
        (interrupted / "yes").mkdir()
        (interrupted / "yes" / "half.wav").write_bytes(b"partial")
        prepare(tone_dataset_cfg(interrupted, tmp_path / "cache2", download=True, url=server.url("sc.tar.gz")))
        assert not (interrupted / "yes" / "half.wav").exists() and (interrupted / EXTRACTED_MARKER).is_file()
        # the mark of another archive does not make the folder ours to replace
        other = tmp_path / "other"
        ownership.new_folder(other, "download of another.tar.gz")
        (other / "keep.txt").write_text("x")
        with pytest.raises(KwsError, match="already holds files"):
            prepare(tone_dataset_cfg(other, tmp_path / "cache3", download=True, url=server.url("sc.tar.gz")))
        assert (other / "keep.txt").read_text() == "x"


def test_a_user_file_where_the_archive_goes_is_not_overwritten(tmp_path, archive):
    mine = tmp_path / "sc.tar.gz"
    mine.write_bytes(b"my own file of that name")
    with ArchiveServer({"sc.tar.gz": archive}) as server:
        cfg = tone_dataset_cfg(
            tmp_path / "sc",
            tmp_path / "cache",
            download=True,
            url=server.url("sc.tar.gz"),
            archive_sha256=hashlib.sha256(archive).hexdigest(),
        )
        with pytest.raises(KwsError, match="was not created by kws-research"):
            prepare(cfg)
        assert not server.requests
    assert mine.read_bytes() == b"my own file of that name" and not (tmp_path / "sc").exists()


@pytest.mark.parametrize(
    "url, message",
    [
        ("{base}/", "does not end in an archive file name"),
        ("file:///etc/passwd", "is not an http:// or https:// URL"),
        ("{base}/garbage.tar.gz", "is not a tar archive"),
        ("{base}/passwd", "is not a tar archive"),
        ("{base}/missing.tar.gz", "the server answered HTTP 404 (Not Found); check dataset.url"),
    ],
)
def test_bad_archive_urls_are_one_line_and_leave_nothing_behind(tmp_path, url, message):
    with ArchiveServer({"garbage.tar.gz": b"\x1f\x8b not really gzip", "passwd": b"root:x:0:0::/root:/bin/sh\n"}) as s:
        base = s.url("").rstrip("/")
        result = run_stage(
            "prepare",
            "dataset=speech_commands",
            f"dataset.root={tmp_path / 'data' / 'sc'}",
            "dataset.download=true",
            f"dataset.url={url.format(base=base)}",
            f"dataset.cache_dir={tmp_path}/cache",
            cwd=tmp_path,
        )
    assert result.returncode == 2
    errors = [line for line in result.stderr.splitlines() if line.startswith("error:")]
    assert len(errors) == 1 and message in errors[0], result.stderr
    assert "Traceback" not in result.stderr
    assert not (tmp_path / "data").exists() or not list((tmp_path / "data").iterdir())
