"""Running a command on a tiny file system of its own (full disk, read-only folder)."""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path


def small_filesystem_command(
    command: list[str], mount: Path, cwd: Path, size_kb: int, read_only: bool = False
) -> list[str] | None:
    """``command`` run with a fresh tmpfs of ``size_kb`` KB (read-only if asked) mounted on
    ``mount``, in a private user and mount namespace (``unshare``, no root needed where
    user namespaces are allowed). After the command, ``*.tmp`` paths left in the mount are
    printed as ``LEFT <path>``. None where this machine cannot do it."""
    if shutil.which("unshare") is None:
        return None
    mount.mkdir(parents=True, exist_ok=True)
    probe = subprocess.run(
        ["unshare", "-rm", "sh", "-c", f'mount -t tmpfs -o size=16k tmpfs "{mount}"'], capture_output=True
    )
    if probe.returncode != 0:
        return None
    options = f"size={size_kb}k" + (",ro" if read_only else "")
    script = (
        'mount -t tmpfs -o "$0" tmpfs "$1" || exit 99; cd "$2"; shift 3; "$@"; rc=$?; '
        'find "$MOUNT" -name "*.tmp" -printf "LEFT %p\\n"; exit $rc'
    )
    return [
        "env",
        f"MOUNT={mount}",
        "unshare",
        "-rm",
        "sh",
        "-c",
        script,
        options,
        str(mount),
        str(cwd),
        "--",
        *command,
    ]
