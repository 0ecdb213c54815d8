"""Where the shipped configuration lives, in a source checkout and in an installed package.

A checkout (and an editable install) reads the repository's ``conf/`` and
``sweeps/``; a wheel carries copies inside the package (``kws_research/conf``,
``kws_research/sweeps``, see pyproject.toml), so the stages run from any folder.
"""

from __future__ import annotations

from pathlib import Path

PACKAGE_DIR = Path(__file__).resolve().parent


def _shipped(name: str) -> Path:
    installed = PACKAGE_DIR / name
    return installed if installed.is_dir() else PACKAGE_DIR.parent / name


CONF_DIR = _shipped("conf")
SWEEPS_DIR = _shipped("sweeps")
