from __future__ import annotations

import os
from pathlib import Path

import pytest
from helpers.data import tone_dataset_cfg, write_tone_root

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")


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


@pytest.fixture
def tone_cfg(tone_root, tmp_path) -> dict:
    return tone_dataset_cfg(tone_root, tmp_path / "cache")
