"""What the harness created, and may therefore remove or replace.

The rule: the harness never deletes or overwrites anything it did not create. A
folder it creates whole carries :data:`MARK` (a small JSON file written first); a
file or folder it writes into a folder that is not its own (export's
``output_dir``, the archive beside a data root) is listed, with its size, in that
folder's :data:`MANIFEST`. Only what carries one of these marks may be removed or
replaced; anything else is a :class:`KwsError` naming the path and the way out.
"""

from __future__ import annotations

import json
import os
import shutil
from pathlib import Path

from kws_research.errors import KwsError

MARK = ".kws-research"
MANIFEST = ".kws-research-files.json"


def mark(folder: Path, what: str) -> Path:
    """Write the mark into ``folder`` (which the harness just created) and return it."""
    (Path(folder) / MARK).write_text(json.dumps({"created_by": "kws-research", "what": what}) + "\n")
    return Path(folder)


def new_folder(path: Path, what: str) -> Path:
    """Create ``path`` (and its parents) as a marked folder; an existing one must be ours."""
    path = Path(path)
    if path.exists():
        remove(path, "folder", "move it away")
    path.mkdir(parents=True)
    return mark(path, what)


def marked_as(folder: Path) -> str | None:
    """What a marked folder was created for, or None for a folder the harness did not create."""
    try:
        return str(json.loads((Path(folder) / MARK).read_text()).get("what", ""))
    except (OSError, ValueError, AttributeError):
        return None


def is_marked(folder: Path) -> bool:
    return marked_as(folder) is not None


def _manifest(folder: Path) -> dict[str, int | None]:
    """Name -> size of each listed file (None: a folder, or a file still growing)."""
    try:
        entries = json.loads((folder / MANIFEST).read_text())
    except (OSError, ValueError):
        return {}
    return entries if isinstance(entries, dict) else {}


def _size(path: Path) -> int | None:
    return None if path.is_dir() else path.stat().st_size


def listed(path: Path) -> bool:
    """``path`` was written by the harness into a folder that is not its own, and is unchanged
    since (same kind and size)."""
    path = Path(path)
    entries = _manifest(path.parent)
    if path.name not in entries or not path.exists():
        return False
    return entries[path.name] is None or entries[path.name] == _size(path)


def _write_manifest(folder: Path, entries: dict) -> None:
    if not entries:
        (folder / MANIFEST).unlink(missing_ok=True)
        return
    tmp = folder / f"{MANIFEST}.{os.getpid()}.tmp"
    tmp.write_text(json.dumps(entries, indent=1, sort_keys=True) + "\n")
    tmp.replace(folder / MANIFEST)


def record(path: Path, growing: bool = False) -> Path:
    """List a file or folder the harness just wrote in its folder's manifest (``growing``:
    a file that is still being appended to, such as a partial download)."""
    path = Path(path)
    entries = _manifest(path.parent)
    entries[path.name] = None if growing else _size(path)
    _write_manifest(path.parent, entries)
    return path


def unrecord(path: Path) -> None:
    """Drop ``path`` from its folder's manifest (it was removed or renamed)."""
    path = Path(path)
    entries = _manifest(path.parent)
    if entries.pop(path.name, "absent") != "absent":
        _write_manifest(path.parent, entries)


def is_ours(path: Path) -> bool:
    """A marked folder, or a file/folder listed unchanged in its folder's manifest."""
    path = Path(path)
    return (path.is_dir() and not path.is_symlink() and is_marked(path)) or listed(path)


def _empty_folder(path: Path) -> bool:
    return path.is_dir() and not path.is_symlink() and not any(path.iterdir())


def check_replaceable(path: Path, key: str, hint: str) -> None:
    """Refuse, before any work, to write over something the harness did not create (an
    empty folder holds nothing to lose and may be replaced)."""
    path = Path(path)
    if (path.exists() or path.is_symlink()) and not (is_ours(path) or _empty_folder(path)):
        raise KwsError(f"{key}: {path} exists and was not created by kws-research; it is left untouched ({hint})")


def remove(path: Path, key: str, hint: str) -> None:
    """Delete ``path`` if the harness created it; nothing if it is missing; otherwise refuse."""
    path = Path(path)
    if not (path.exists() or path.is_symlink()):
        return
    check_replaceable(path, key, hint)
    if _empty_folder(path):
        path.rmdir()
    elif path.is_dir() and not path.is_symlink():
        shutil.rmtree(path)
    else:
        path.unlink()
    unrecord(path)


def replace(new: Path, target: Path, key: str, hint: str) -> Path:
    """Put the finished ``new`` (folder or file) at ``target`` in renames: the old one (if the
    harness made it) aside, the new one in, then the old one deleted. A process killed in
    between leaves ``target`` old or new, never half deleted; what it set aside is
    ``.<name>.old.<pid>.tmp``, which the next run removes when it is a marked folder
    (``remove_dead_temporaries``)."""
    check_replaceable(target, key, hint)
    aside = None
    if target.exists() or target.is_symlink():
        aside = target.with_name(f".{target.name}.old.{os.getpid()}.tmp")
        target.rename(aside)
        unrecord(target)
    new.rename(target)
    if aside is not None:  # checked to be ours above
        if aside.is_dir() and not aside.is_symlink():
            shutil.rmtree(aside, ignore_errors=True)
        else:
            aside.unlink(missing_ok=True)
    return target


def discard(path: Path) -> None:
    """Best-effort removal of a temporary the harness itself created and marked; a folder
    without the mark is left alone (it may be a user's folder of the same name)."""
    path = Path(path)
    if path.is_dir() and not path.is_symlink() and is_marked(path):
        shutil.rmtree(path, ignore_errors=True)
