"""Where the shipped configuration lives, in a source checkout and in an installed package.

A checkout (and an editable install) reads the repository's ``conf/`` and
``sweeps/``; a wheel carries copies inside the package (``kws_research/conf``,
``kws_research/sweeps``, see pyproject.toml), so the stages run from any folder.
"""

from __future__ import annotations

import os
import tempfile
from pathlib import Path

PACKAGE_DIR = Path(__file__).resolve().parent


def _shipped(name: str) -> Path:
    installed = PACKAGE_DIR / name
    return installed if installed.is_dir() else PACKAGE_DIR.parent / name


CONF_DIR = _shipped("conf")
SWEEPS_DIR = _shipped("sweeps")


# The operating system's folders: never an output, cache or data root, nor anything inside
# them (a data root of / or /proc would walk the whole file system or a pseudo one).
SYSTEM_FOLDERS = tuple(
    Path(p)
    for p in (
        "/bin",
        "/boot",
        "/dev",
        "/etc",
        "/lib",
        "/lib32",
        "/lib64",
        "/libx32",
        "/proc",
        "/run",
        "/sbin",
        "/sys",
        "/usr",
        "/var/lib",
        "/var/log",
        "/var/run",
        "/System",
        "/Library",
        "/private/etc",
        "/Applications",
        os.environ.get("SystemRoot", "C:/Windows"),
    )
)


def system_folder(value: str) -> str | None:
    """Why ``value`` is no folder for the harness (the file-system root, or a system folder
    or inside one), or None. Symbolic links are followed (``/tmp/x -> /etc`` is ``/etc``)."""
    path = Path(value).expanduser()
    resolved = path.resolve()
    if resolved == Path(resolved.anchor):
        return "the file-system root"
    for folder in SYSTEM_FOLDERS:
        for candidate in {path.absolute(), resolved}:
            if candidate == folder or folder in candidate.parents:
                return f"the system folder {folder}" if candidate == folder else f"inside the system folder {folder}"
    return None


def existing_folder(path: Path) -> Path:
    """``path`` or the nearest of its parents that exists: where a folder yet to be made
    would be created, so what decides whether it can be."""
    path = Path(path).expanduser()
    return next(p for p in [path, *path.absolute().parents] if p.exists())


def write_probe(folder: Path) -> None:
    """Raise the OSError a new file in ``folder`` meets (full, read-only, not permitted, not a
    folder); the probe is a new file of its own, so nothing of the user's is touched."""
    if not Path(folder).is_dir():
        raise NotADirectoryError(f"{folder} is a file")
    with tempfile.NamedTemporaryFile(dir=folder, prefix=".kws-write-test-"):
        pass
