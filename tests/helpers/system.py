"""Running a command on a tiny file system of its own (full disk, read-only folder), and a
check on TensorFlow's portable kernels."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

TESTS = Path(__file__).resolve().parents[1]


def portable_report(module: str, function: str, *args: str) -> dict:
    """``helpers.<module>.<function>(*args)`` run in a subprocess with ``TF_ENABLE_ONEDNN_OPTS=0``:
    TensorFlow's portable CPU kernels, what CPUs without AVX-512 and Apple silicon run, on any
    machine (the variable is read when TensorFlow loads). Returns the JSON it printed."""
    code = (
        "import json, sys; sys.path.insert(0, sys.argv[1]); import importlib;"
        "f = getattr(importlib.import_module('helpers.' + sys.argv[2]), sys.argv[3]);"
        "print(json.dumps(f(*sys.argv[4:])))"
    )
    env = dict(os.environ, TF_ENABLE_ONEDNN_OPTS="0", TF_CPP_MIN_LOG_LEVEL="3")
    result = subprocess.run(
        [sys.executable, "-c", code, str(TESTS), module, function, *args],
        env=env,
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert result.returncode == 0, result.stderr[-3000:]
    return json.loads(result.stdout.strip().splitlines()[-1])


def small_filesystem_command(
    command: list[str], mount: Path, cwd: Path, size_kb: int, read_only: bool = False
) -> list[str] | None:
    """``command`` run with a fresh tmpfs of ``size_kb`` KB (read-only if asked) mounted on
    ``mount``, in a private user and mount namespace (``unshare``, no root needed where
    user namespaces are allowed). After the command, ``*.tmp`` paths left in the mount are
    printed as ``LEFT <path>`` and every file as ``FILE <path> <bytes>``. None where this
    machine cannot do it."""
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
        'find "$MOUNT" -name "*.tmp" -printf "LEFT %p\\n"; find "$MOUNT" -type f -printf "FILE %p %s\\n"; exit $rc'
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


def freed_filesystem_command(
    command: list[str], mount: Path, cwd: Path, size_kb: int, free_kb: int
) -> list[str] | None:
    """``command`` twice on a fresh tmpfs of ``size_kb`` KB on ``mount``: first with a file of
    the user's (``ballast``) leaving ``free_kb`` KB free, then, the ballast deleted, again.
    Prints ``RC1=<rc>``, ``FREED`` (also on stderr, between the two runs' messages), ``RC2=<rc>``,
    ``BALLAST <bytes>`` just before it is deleted, and ``LEFT``/``FILE`` lines as
    :func:`small_filesystem_command` does. None where this machine cannot do it."""
    if small_filesystem_command(["true"], mount, cwd, 16) is None:
        return None
    script = (
        'mount -t tmpfs -o "size=$0k" tmpfs "$1" || exit 99; cd "$2"; shift 3; '
        'head -c $(( ($SIZE_KB - $FREE_KB) * 1024 )) /dev/zero > "$MOUNT/ballast"; '
        '"$@"; echo "RC1=$?"; echo "BALLAST $(stat -c %s "$MOUNT/ballast")"; rm "$MOUNT/ballast"; '
        'echo FREED; echo FREED >&2; "$@"; rc=$?; echo "RC2=$rc"; '
        'find "$MOUNT" -name "*.tmp" -printf "LEFT %p\\n"; find "$MOUNT" -type f -printf "FILE %p %s\\n"; exit 0'
    )
    return [
        "env",
        f"MOUNT={mount}",
        f"SIZE_KB={size_kb}",
        f"FREE_KB={free_kb}",
        "unshare",
        "-rm",
        "sh",
        "-c",
        script,
        str(size_kb),
        str(mount),
        str(cwd),
        "--",
        *command,
    ]
