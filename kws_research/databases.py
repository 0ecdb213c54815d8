"""Database URLs that MLflow's and Optuna's stores share: the driver, whether the server
answers, and whether a sqlite file is a healthy database in a folder we can write.

Checked before a store is opened, so a wrong URL is one line in seconds rather than
SQLAlchemy's minutes of retries and a traceback.
"""

from __future__ import annotations

import importlib.util
import os
import socket
import sqlite3
import threading
from collections.abc import Callable
from pathlib import Path

from kws_research.errors import KwsError
from kws_research.paths import write_probe

DEFAULT_PORTS = {"postgresql": 5432, "mysql": 3306, "mssql": 1433}
# SQLAlchemy 2 maps a bare scheme to this driver module; the harness ships the second one.
BARE_DRIVERS = {"postgresql": ("psycopg", "psycopg2"), "mysql": ("MySQLdb", "pymysql")}
CONNECT_TIMEOUT_S = 5.0
# Every connection a store opens gives up after this many seconds (libpq's and PyMySQL's
# connect_timeout): a port that accepts and never answers would otherwise hold a stage in
# the driver's connect, deaf to SIGTERM and SIGINT, for as long as TCP keeps the socket.
DATABASE_CONNECT_TIMEOUT_S = 10
TIMEOUT_QUERY = {"postgresql": "connect_timeout", "mysql": "connect_timeout"}
# Tables that mark a SQLite file as a store the harness opens (MLflow's or Optuna's): any
# other database with tables of its own is the user's, and MLflow would add 40 tables to it.
STORE_TABLES = ({"experiments", "runs"}, {"studies", "trials"})
# What libpq says when the peer is no PostgreSQL server (silent, HTTP, garbage).
NOT_POSTGRES = ("timeout expired", "invalid response", "closed the connection unexpectedly", "expected", "lost")


def _installed(module: str) -> bool:
    return importlib.util.find_spec(module) is not None


def with_driver(url: str) -> str:
    """``postgresql://...`` names psycopg 3 in SQLAlchemy 2; where only psycopg2 (the
    ``postgres`` extra) is installed, say so in the URL instead of failing to import."""
    scheme, sep, rest = url.partition("://")
    if not sep or scheme not in BARE_DRIVERS:
        return url
    default, shipped = BARE_DRIVERS[scheme]
    if _installed(default) or not _installed(shipped):
        return url
    return f"{scheme}+{shipped.lower()}://{rest}"


def database_url(url: str) -> str:
    """The URL a store is opened with: the installed driver (:func:`with_driver`) and, for a
    server, a connect timeout unless the URL sets one."""
    from sqlalchemy.engine import make_url
    from sqlalchemy.exc import ArgumentError

    url = with_driver(url)
    try:
        parsed = make_url(url)
    except ArgumentError:
        return url  # check_server says what is wrong with it
    option = TIMEOUT_QUERY.get(parsed.get_backend_name())
    if option is None or option in parsed.query:
        return url
    return parsed.update_query_dict({option: str(DATABASE_CONNECT_TIMEOUT_S)}).render_as_string(hide_password=False)


def interruptible(call: Callable[[], object]) -> object:
    """``call()`` in a helper thread while the main thread waits in short steps: a driver's
    connect is C code that holds off Python's signal handlers until it returns (up to the
    connect timeout), so SIGINT/SIGTERM would wait for it; this way they end the stage at once."""
    outcome: dict[str, object] = {}

    def run() -> None:
        try:
            outcome["value"] = call()
        except BaseException as exc:  # handed to the waiting thread, raised there
            outcome["error"] = exc

    worker = threading.Thread(target=run, name="kws-connect", daemon=True)
    worker.start()
    while worker.is_alive():
        worker.join(0.1)
    if "error" in outcome:
        raise outcome["error"]
    return outcome.get("value")


def _handshake(parsed, key: str, where: str) -> None:
    """Open one real connection to ``parsed`` (the URL as :func:`database_url` opens it, with
    its connect timeout): a peer that accepts and never answers, or answers as something
    else, is one line within that timeout."""
    from sqlalchemy import create_engine
    from sqlalchemy.exc import DBAPIError
    from sqlalchemy.pool import NullPool

    engine = create_engine(parsed, poolclass=NullPool)
    try:
        interruptible(lambda: engine.connect().close())
    except DBAPIError as exc:
        said = str(exc.orig or exc).strip()
        reason = said.splitlines()[0] if said else type(exc).__name__
        backend = parsed.get_backend_name()
        if backend == "postgresql" and any(s in reason.lower() for s in NOT_POSTGRES):
            timeout = parsed.query[TIMEOUT_QUERY[backend]]
            raise KwsError(
                f"{key}: {where} did not answer as a PostgreSQL server within {timeout} s "
                f"({reason}); check the host and port of {key}"
            ) from None
        raise KwsError(f"{key}: the database server at {where} refused the connection ({reason}); fix {key}") from None
    finally:
        engine.dispose()


def check_server(url: str, key: str) -> None:
    """A database server URL whose host does not answer, or whose driver is missing: one line."""
    from sqlalchemy.engine import make_url
    from sqlalchemy.exc import ArgumentError

    try:
        parsed = make_url(url)
    except ArgumentError as exc:
        raise KwsError(f"{key}: {url!r} is not a database URL ({exc})") from None
    backend = parsed.get_backend_name()
    try:
        parsed.get_dialect().import_dbapi()
    except Exception as exc:  # NoSuchModuleError, or the driver's ImportError
        raise KwsError(
            f"{key}: no database driver for {url.split('://')[0]}:// URLs here ({exc}); install it "
            "(PostgreSQL: the postgres extra, pip install -e '.[postgres]', and postgresql+psycopg2://...)"
        ) from None
    if backend == "sqlite" or not parsed.host:
        return
    port = parsed.port or DEFAULT_PORTS.get(backend)
    if port is None:
        return
    try:
        socket.create_connection((parsed.host, port), timeout=CONNECT_TIMEOUT_S).close()
    except OSError as exc:
        raise KwsError(
            f"{key}: database server {parsed.host}:{port} of {parsed.render_as_string(hide_password=True)} is not "
            f"reachable ({exc.strerror or exc}); start it or point {key} at a reachable store"
        ) from None
    if backend in TIMEOUT_QUERY:
        _handshake(make_url(database_url(url)), key, f"{parsed.host}:{port}")


def check_sqlite_file(path: Path, url: str, key: str) -> None:
    """The folder of a sqlite store must take new files (sqlite writes its journal beside
    the database) and an existing database must read back as one."""
    folder = path.parent if str(path.parent) else Path(".")
    if path.is_dir():
        name = "optuna.db" if key == "storage" else "mlruns.db"
        raise KwsError(f"{key}: {path} is a folder, not a database file; set {key}=sqlite:///{path}/{name}")
    if not folder.is_dir():
        raise KwsError(f"{key}: folder {folder} of {url} does not exist; create it or change {key}")
    try:
        write_probe(folder)
    except OSError as exc:
        raise KwsError(
            f"{key}: cannot write in {folder.resolve()} ({exc.strerror or exc}), where {path.name} and its journal "
            f"live; run from a writable folder or set {key}=sqlite:////<writable folder>/{path.name}"
        ) from None
    if path.exists() and not os.access(path, os.W_OK):
        raise KwsError(f"{key}: {path} is not writable; fix its permissions or change {key}")
    if not path.exists() or path.stat().st_size == 0:
        return
    tables: set[str] = set()
    try:
        connection = sqlite3.connect(f"file:{path}?mode=ro", uri=True, timeout=10)
        try:
            verdict = connection.execute("PRAGMA quick_check(1)").fetchone()[0]
            tables = {row[0] for row in connection.execute("SELECT name FROM sqlite_master WHERE type = 'table'")}
        finally:
            connection.close()
    except sqlite3.OperationalError as exc:
        if "locked" in str(exc):  # another process is writing: busy, not broken
            return
        verdict = str(exc)
    except sqlite3.DatabaseError as exc:
        verdict = str(exc)
    if verdict != "ok":
        raise KwsError(
            f"{key}: {path} is not a readable database ({verdict}); it was left as it is: move it away "
            f"(or restore a backup) and rerun, or set {key} to another store"
        )
    if tables and not any(marker <= tables for marker in STORE_TABLES):
        shown = ", ".join(sorted(tables)[:3]) + (", ..." if len(tables) > 3 else "")
        raise KwsError(
            f"{key}: {path} is a SQLite database with tables of its own ({shown}), not an MLflow or Optuna "
            f"store; it was left as it is: set {key} to a new file, e.g. sqlite:///mlruns.db"
        )
