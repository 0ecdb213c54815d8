"""Running the stages as a user does, and reading what they print."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
# Streams of half a minute per split for tests (conf/stream/default.yaml has minutes).
TINY_STREAMS = [
    "stream.validation.mixed_minutes=0.5",
    "stream.validation.negatives_minutes=0.5",
    "stream.test.mixed_minutes=0.5",
    "stream.test.negatives_minutes=0.5",
    "stream.verify_seconds=10",
]


def run_stage(module: str, *overrides: str, cwd: Path, env: dict | None = None, timeout: int = 600):
    """Run ``python -m kws_research.<module>`` as a user would; returns the CompletedProcess."""
    full_env = dict(os.environ, TF_CPP_MIN_LOG_LEVEL="3", **(env or {}))
    return subprocess.run(
        [sys.executable, "-m", f"kws_research.{module}", *overrides],
        cwd=cwd,
        capture_output=True,
        text=True,
        env=full_env,
        timeout=timeout,
    )


def last_json(stdout: str) -> dict:
    """The stage contract: the last stdout line is one JSON object."""
    return json.loads(stdout.strip().splitlines()[-1])
