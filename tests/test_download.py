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

from kws_research.data.dataset import prepare
from kws_research.data.download import download, safe_extract
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
