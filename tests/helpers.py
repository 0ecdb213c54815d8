"""Tiny data sets written on the fly, so no test needs the network or ../shared."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import soundfile as sf

RATE = 16000
REPO = Path(__file__).resolve().parents[1]


def word_clip(word_index: int, speaker: int, rep: int, seconds: float = 1.0) -> np.ndarray:
    """A learnable stand-in for a spoken word: a harmonic tone whose pitch encodes the
    word, with speaker-dependent timbre, random placement and a noise floor."""
    rng = np.random.default_rng([word_index, speaker, rep])
    n = int(seconds * RATE)
    t = np.arange(int(0.4 * RATE)) / RATE
    f0 = 180.0 * (1.35**word_index) * (1 + 0.03 * (speaker % 5))
    burst = sum(np.sin(2 * np.pi * f0 * k * t) / k for k in range(1, 4)) * np.hanning(t.size)
    clip = rng.normal(0, 0.003, n)
    start = int(rng.integers(0, n - t.size))
    clip[start : start + t.size] += 0.3 * burst / np.abs(burst).max()
    return (np.clip(clip, -1, 1) * 32767).astype(np.int16)


def write_tone_root(root: Path, words=("yes", "no", "up", "cat", "dog"), speakers: int = 6,
                    reps: int = 2, lists: bool = True, noise: bool = True) -> Path:
    """A Speech Commands-layout folder: ``speakers`` speakers, speaker 0 in validation,
    speaker 1 in test (when ``lists``), the rest in training."""
    root.mkdir(parents=True, exist_ok=True)
    val, test = [], []
    for w, word in enumerate(words):
        (root / word).mkdir(exist_ok=True)
        for s in range(speakers):
            for r in range(reps):
                rel = f"{word}/spk{s:04d}_nohash_{r}.wav"
                sf.write(root / rel, word_clip(w, s, r), RATE, subtype="PCM_16")
                (val if s == 0 else test if s == 1 else []).append(rel)
    if noise:
        (root / "_background_noise_").mkdir(exist_ok=True)
        rng = np.random.default_rng(0)
        for name in ("white_noise.wav", "pink_noise.wav"):
            sf.write(root / "_background_noise_" / name, (rng.normal(0, 0.1, 12 * RATE) * 32767).astype(np.int16),
                     RATE, subtype="PCM_16")
    if lists:
        (root / "validation_list.txt").write_text("\n".join(val) + "\n")
        (root / "testing_list.txt").write_text("\n".join(test) + "\n")
    return root


def run_stage(module: str, *overrides: str, cwd: Path, env: dict | None = None, timeout: int = 600):
    """Run ``python -m kws_research.<module>`` as a user would; returns the CompletedProcess."""
    import os

    full_env = dict(os.environ, TF_CPP_MIN_LOG_LEVEL="3", **(env or {}))
    return subprocess.run([sys.executable, "-m", f"kws_research.{module}", *overrides], cwd=cwd,
                          capture_output=True, text=True, env=full_env, timeout=timeout)


def last_json(stdout: str) -> dict:
    """The stage contract: the last stdout line is one JSON object."""
    return json.loads(stdout.strip().splitlines()[-1])


ZOO = ("seed_cnn1d", "cnn1d", "ds_cnn", "tc_resnet", "bc_resnet")


def small_random_weights(model, seed: int = 0, scale: float = 0.1):
    """Small non-zero weights everywhere but the fixed front end (a zero Dense bias makes
    the converter pick other layer types than trained models get)."""
    rng = np.random.default_rng(seed)
    for weight in model.weights:
        if "frontend" in weight.path:
            continue
        values = rng.uniform(-scale, scale, weight.shape).astype("float32")
        if "variance" in weight.path:
            values = np.abs(values) + 0.5
        weight.assign(values)
    return model


def zoo_model(name: str, num_classes: int = 5, *overrides: str):
    """A model of the zoo built from its YAML, with small random weights."""
    from kws_research.config import compose
    from kws_research.models import build_model

    cfg = compose("train", [f"model={name}", *overrides])
    return small_random_weights(build_model(cfg.model, num_classes, cfg.augment.get("spec_augment")))
