"""Where the shipped configuration lives, in a source checkout and in an installed package.

A checkout (and an editable install) reads the repository's ``conf/`` and
``sweeps/``; a wheel carries copies inside the package (``kws_research/conf``,
``kws_research/sweeps``, see pyproject.toml), so the stages run from any folder.
"""

from __future__ import annotations

import os
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
