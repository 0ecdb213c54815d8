"""An exclusive inter-process lock on a file (POSIX ``flock``; a no-op where it is missing)."""

from __future__ import annotations

from pathlib import Path

try:
    import fcntl
except ImportError:  # Windows: callers stay correct without it, only less strict
    fcntl = None


class FileLock:
    """``acquire``/``release`` (or ``with``) an exclusive lock held by this process."""

    def __init__(self, path: Path | str) -> None:
        self.path = Path(path)
        self._handle = None

    @property
    def held(self) -> bool:
        return self._handle is not None

    def acquire(self) -> None:
        if self._handle is not None:
            return
        self.path.parent.mkdir(parents=True, exist_ok=True)
        handle = open(self.path, "a+")
        if fcntl is not None:
            fcntl.flock(handle, fcntl.LOCK_EX)
        self._handle = handle

    def release(self) -> None:
        handle, self._handle = self._handle, None
        if handle is not None:
            if fcntl is not None:
                fcntl.flock(handle, fcntl.LOCK_UN)
            handle.close()

    def __enter__(self) -> FileLock:
        self.acquire()
        return self

    def __exit__(self, *exc) -> None:
        self.release()
