from __future__ import annotations

import os
import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).parent))
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")

from helpers import write_tone_root  # noqa: E402


@pytest.fixture(scope="session")
def tone_root(tmp_path_factory) -> Path:
    """A small Speech Commands-layout folder of tone 'words' (read-only by convention)."""
    return write_tone_root(tmp_path_factory.mktemp("tones") / "root")


@pytest.fixture(scope="session")
def tiny_synthetic(tmp_path_factory) -> Path:
    """The espeak-ng generator at its smallest useful size (6 speakers, 1 repetition)."""
    from kws_research.data.synthetic import GeneratorSettings, ensure_generated

    target = tmp_path_factory.mktemp("synthetic") / "root"
    return ensure_generated(target, GeneratorSettings(speakers=6, repetitions=1, noise_seconds=12.0))


def tone_dataset_cfg(root: Path, cache: Path, **extra) -> dict:
    """A dataset config (as the Hydra group would give it) over a tone root."""
    cfg = {
        "name": "tones", "root": str(root), "commands": ["yes", "no", "up"],
        "unknown_percentage": 50.0, "silence_percentage": 50.0, "seed": 1,
        "cache_dir": str(cache),
    }
    cfg.update(extra)
    return cfg


@pytest.fixture
def tone_cfg(tone_root, tmp_path) -> dict:
    return tone_dataset_cfg(tone_root, tmp_path / "cache")
