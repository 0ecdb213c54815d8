"""What a run trained on, in one line: the ``device`` tag (GPU name, else the CPU model).

Epoch times and kernel choices differ by machine (AVX-512 or not, Apple silicon,
GPU), so every run records where it ran.
"""

from __future__ import annotations

import platform
import subprocess
from pathlib import Path


def cpu_model() -> str:
    """The CPU's marketing name (Linux /proc/cpuinfo, macOS sysctl), else the architecture."""
    cpuinfo = Path("/proc/cpuinfo")
    if cpuinfo.exists():
        for line in cpuinfo.read_text(errors="replace").splitlines():
            if line.lower().startswith(("model name", "hardware", "cpu model")):
                return line.split(":", 1)[1].strip()
    if platform.system() == "Darwin":
        try:
            return subprocess.run(
                ["sysctl", "-n", "machdep.cpu.brand_string"], capture_output=True, text=True, timeout=5, check=True
            ).stdout.strip()
        except (OSError, subprocess.SubprocessError):
            pass
    return platform.processor() or platform.machine() or "unknown CPU"


def gpu_names() -> list[str]:
    """Names of the GPUs TensorFlow sees (empty on the CPU build)."""
    import tensorflow as tf

    names = []
    for gpu in tf.config.list_physical_devices("GPU"):
        details = tf.config.experimental.get_device_details(gpu)
        names.append(str(details.get("device_name") or gpu.name))
    return names


def device_label() -> str:
    """``GPU: <name>`` (``2x`` when several) or ``CPU: <model>``: the run's ``device`` tag."""
    gpus = gpu_names()
    if gpus:
        count = f"{len(gpus)}x " if len(gpus) > 1 else ""
        return f"GPU: {count}{gpus[0]}"
    return f"CPU: {cpu_model()}"
