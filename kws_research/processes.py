"""Which process owns what, and how a process is told to stop.

Runs, trials and temporary folders record their ``host:pid`` owner so that a later
process can tell work in progress from work whose process was killed. Ctrl-C and
SIGTERM raise ``KeyboardInterrupt`` and are remembered: Python drops an exception
raised while a finaliser runs, so long loops also ask :func:`check_interrupted`.
"""

from __future__ import annotations

import os
import signal
import socket
import threading
from pathlib import Path

from kws_research import ownership

HOST = socket.gethostname()


def current_owner() -> str:
    """``host:pid`` of this process (after a fork, of the child)."""
    return f"{HOST}:{os.getpid()}"


def pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def owner_is_dead(owner: str | None) -> bool:
    """``host:pid`` of a process on this host that no longer exists."""
    if not owner or ":" not in owner:
        return False
    host, _, pid = owner.rpartition(":")
    return host == HOST and pid.isdigit() and not pid_alive(int(pid))


def remove_dead_temporaries(folder: Path) -> list[Path]:
    """Remove ``.<name>.<pid>.tmp`` folders (the cache's, the synthetic generator's, an
    extraction's) whose process is gone: a SIGKILL or a full disk leaves them behind for
    good otherwise. Only folders carrying the harness's mark are touched."""
    removed = []
    for tmp in folder.glob(".*.tmp") if folder.is_dir() else ():
        pid = tmp.name.rsplit(".", 2)[-2]
        if pid.isdigit() and not pid_alive(int(pid)) and ownership.is_marked(tmp):
            ownership.discard(tmp)
            removed.append(tmp)
    return removed


def quiet_native_logs() -> None:
    """Silence TensorFlow's C++ banner before it loads (set only if the user did not)."""
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    os.environ.setdefault("GIT_PYTHON_REFRESH", "quiet")


_interrupted = threading.Event()


def _interrupt(signum, frame) -> None:
    _interrupted.set()
    raise KeyboardInterrupt(f"signal {signum}")


def install_interrupt_handlers() -> None:
    """SIGINT and SIGTERM end a stage like Ctrl-C, so tracked runs end KILLED, not RUNNING."""
    signal.signal(signal.SIGTERM, _interrupt)
    signal.signal(signal.SIGINT, _interrupt)


def check_interrupted() -> None:
    """Raise ``KeyboardInterrupt`` again if an interrupt arrived (and was swallowed)."""
    if _interrupted.is_set():
        raise KeyboardInterrupt("interrupted")
