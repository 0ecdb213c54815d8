"""Tiny data sets in the Speech Commands layout, and the configs that point at them."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import soundfile as sf

from kws_research.contract import SAMPLE_RATE


def word_clip(word_index: int, speaker: int, rep: int, seconds: float = 1.0) -> np.ndarray:
    """A learnable stand-in for a spoken word: a harmonic tone whose pitch encodes the
    word, with speaker-dependent timbre, random placement and a noise floor."""
    rng = np.random.default_rng([word_index, speaker, rep])
    n = int(seconds * SAMPLE_RATE)
    t = np.arange(int(0.4 * SAMPLE_RATE)) / SAMPLE_RATE
    f0 = 180.0 * (1.35**word_index) * (1 + 0.03 * (speaker % 5))
    burst = sum(np.sin(2 * np.pi * f0 * k * t) / k for k in range(1, 4)) * np.hanning(t.size)
    clip = rng.normal(0, 0.003, n)
    start = int(rng.integers(0, n - t.size))
    clip[start : start + t.size] += 0.3 * burst / np.abs(burst).max()
    return (np.clip(clip, -1, 1) * 32767).astype(np.int16)


def write_tone_root(
    root: Path,
    words=("yes", "no", "up", "cat", "dog"),
    speakers: int = 6,
    reps: int = 2,
    lists: bool = True,
    noise: bool = True,
) -> Path:
    """A Speech Commands-layout folder: ``speakers`` speakers, speaker 0 in validation,
    speaker 1 in test (when ``lists``), the rest in training."""
    root.mkdir(parents=True, exist_ok=True)
    val, test = [], []
    for w, word in enumerate(words):
        (root / word).mkdir(exist_ok=True)
        for s in range(speakers):
            for r in range(reps):
                rel = f"{word}/spk{s:04d}_nohash_{r}.wav"
                sf.write(root / rel, word_clip(w, s, r), SAMPLE_RATE, subtype="PCM_16")
                (val if s == 0 else test if s == 1 else []).append(rel)
    if noise:
        (root / "_background_noise_").mkdir(exist_ok=True)
        rng = np.random.default_rng(0)
        for name in ("white_noise.wav", "pink_noise.wav"):
            sf.write(
                root / "_background_noise_" / name,
                (rng.normal(0, 0.1, 12 * SAMPLE_RATE) * 32767).astype(np.int16),
                SAMPLE_RATE,
                subtype="PCM_16",
            )
    if lists:
        (root / "validation_list.txt").write_text("\n".join(val) + "\n")
        (root / "testing_list.txt").write_text("\n".join(test) + "\n")
    return root


def tone_dataset_cfg(root: Path, cache: Path, **extra) -> dict:
    """A dataset config (as the Hydra group would give it) over a tone root."""
    cfg = {
        "name": "tones",
        "root": str(root),
        "commands": ["yes", "no", "up"],
        "unknown_percentage": 50.0,
        "silence_percentage": 50.0,
        "seed": 1,
        "cache_dir": str(cache),
    }
    cfg.update(extra)
    return cfg


def tiny_overrides(tone_root, tmp_path, *extra: str) -> list[str]:
    return [
        "dataset=speech_commands",
        f"dataset.root={tone_root}",
        "dataset.commands=[yes,no,up]",
        "dataset.unknown_percentage=50",
        "dataset.silence_percentage=50",
        f"dataset.cache_dir={tmp_path}/cache",
        f"tracking.uri=sqlite:///{tmp_path}/mlruns.db",
        f"tracking.artifact_location={tmp_path}/mlartifacts",
        "model=seed_cnn1d",
        "augment=none",
        "trainer.epochs=2",
        "trainer.batch_size=16",
        "trainer.verbose=0",
        *extra,
    ]
