"""Real servers on this machine for tests: an MLflow tracking server and PostgreSQL."""

from __future__ import annotations

import contextlib
import getpass
import glob
import os
import shutil
import socket
import subprocess
import sys
import tempfile
import time
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import pytest


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@contextlib.contextmanager
def mlflow_server(backend_uri: str, artifacts: Path) -> Iterator[str]:
    """``mlflow server`` on a free 127.0.0.1 port with proxied artifacts; yields its URL."""
    port = free_port()
    process = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "mlflow",
            "server",
            "--host",
            "127.0.0.1",
            "--port",
            str(port),
            "--workers",
            "1",
            "--backend-store-uri",
            backend_uri,
            "--artifacts-destination",
            str(artifacts),
        ],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        text=True,
    )
    url = f"http://127.0.0.1:{port}"
    deadline = time.time() + 120
    while time.time() < deadline:
        try:
            with urllib.request.urlopen(url + "/health", timeout=2) as response:
                if response.status == 200:
                    break
        except OSError:
            if process.poll() is not None:
                pytest.fail("mlflow server exited: " + process.stderr.read()[-2000:])
            time.sleep(0.5)
    else:
        process.kill()
        pytest.fail("mlflow server did not start within 120 s")
    try:
        yield url
    finally:
        process.terminate()
        try:
            process.wait(timeout=30)
        except subprocess.TimeoutExpired:
            process.kill()


def _os_postgres_bin() -> Path | None:
    found = shutil.which("pg_ctl")
    if found:
        return Path(found).parent
    candidates = sorted(glob.glob("/usr/lib/postgresql/*/bin/pg_ctl"))
    return Path(candidates[-1]).parent if candidates else None


def _start_pgserver(folder: str, databases: list[str]):
    """The ``pgserver`` wheel's PostgreSQL; returns (user, stop)."""
    import pgserver

    server = pgserver.get_server(folder, cleanup_mode="stop")
    for name in databases:
        server.psql(f"CREATE DATABASE {name};")
    return "postgres", server.cleanup


def _start_os_postgres(folder: str, databases: list[str]):
    """The OS package's PostgreSQL (initdb refuses to run as root); returns (user, stop)."""
    binaries = _os_postgres_bin()
    if binaries is None:
        raise RuntimeError("no pg_ctl on PATH or under /usr/lib/postgresql")
    if os.geteuid() == 0:
        raise RuntimeError("initdb does not run as root")
    data = Path(folder) / "data"
    subprocess.run([binaries / "initdb", "-D", data, "-A", "trust"], check=True, capture_output=True)
    options = f"-k {folder} -c listen_addresses=''"
    subprocess.run([binaries / "pg_ctl", "-D", data, "-o", options, "-w", "start"], check=True, capture_output=True)

    def stop():
        subprocess.run([binaries / "pg_ctl", "-D", data, "-m", "fast", "stop"], capture_output=True)

    for name in databases:
        subprocess.run([binaries / "createdb", "-h", folder, name], check=True, capture_output=True)
    return getpass.getuser(), stop


@contextlib.contextmanager
def postgres(databases: list[str]) -> Iterator[dict[str, str]]:
    """A PostgreSQL server on a Unix socket (the ``pgserver`` wheel, else the OS package),
    with ``databases`` created; yields their SQLAlchemy URLs. Skips, with both reasons,
    only when neither can start here."""
    folder = tempfile.mkdtemp(prefix="kwspg-", dir="/tmp")  # a socket path has to stay under 107 bytes
    reasons = []
    started = None
    for start in (_start_pgserver, _start_os_postgres):
        try:
            started = start(folder, databases)
            break
        except Exception as exc:
            reasons.append(f"{start.__name__.removeprefix('_start_')}: {exc}")
    if started is None:
        shutil.rmtree(folder, ignore_errors=True)
        pytest.skip("no PostgreSQL could start (" + "; ".join(reasons) + ")")
    user, stop = started
    try:
        yield {name: f"postgresql+psycopg2://{user}@/{name}?host={folder}" for name in databases}
    finally:
        stop()
        shutil.rmtree(folder, ignore_errors=True)


@contextlib.contextmanager
def impostor(kind: str) -> Iterator[int]:
    """A port on 127.0.0.1 that accepts connections and is no database server: ``silent``
    never answers, ``http`` answers every request as a web server does. Yields the port."""
    import http.server
    import threading

    if kind == "http":
        server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), http.server.BaseHTTPRequestHandler)
        thread = threading.Thread(target=server.serve_forever, daemon=True)
        thread.start()
        try:
            yield server.server_address[1]
        finally:
            server.shutdown()
            server.server_close()
        return
    listener = socket.socket()
    listener.bind(("127.0.0.1", 0))
    listener.listen(16)
    held: list[socket.socket] = []
    stop = threading.Event()

    def accept() -> None:
        listener.settimeout(0.2)
        while not stop.is_set():
            with contextlib.suppress(OSError):
                held.append(listener.accept()[0])  # kept open, never read, never answered

    thread = threading.Thread(target=accept, daemon=True)
    thread.start()
    try:
        yield listener.getsockname()[1]
    finally:
        stop.set()
        thread.join()
        for connection in held:
            connection.close()
        listener.close()
