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


def portable_training_report(names: list[str], folder: str) -> dict:
    """For each model config: one training step, evaluation, and a safe-mode save/reload.

    Run it in a subprocess with ``TF_ENABLE_ONEDNN_OPTS=0`` (TensorFlow's portable CPU
    kernels, what CPUs without AVX-512 and Apple silicon run): a layer that only oneDNN
    implements fails here on any machine."""
    import keras
    import tensorflow as tf

    from kws_research.config import compose
    from kws_research.models import build_model, load_model

    rng = np.random.default_rng(0)
    x = rng.normal(0, 0.1, (4, RATE)).astype("float32")
    y = keras.utils.to_categorical([0, 1, 2, 3], 5)
    report = {}
    for name in names:
        cfg = compose("train", [f"model={name}"])
        model = build_model(cfg.model, 5, cfg.augment.get("spec_augment"))
        optimizer = keras.optimizers.Adam(1e-3)
        with tf.GradientTape() as tape:  # eager: the same kernels as fit, without tracing a graph
            loss = keras.losses.categorical_crossentropy(y, model(x, training=True))
        optimizer.apply_gradients(zip(tape.gradient(loss, model.trainable_weights), model.trainable_weights))
        probs = np.asarray(model(x, training=False))
        path = Path(folder) / f"{name}.keras"
        model.save(path)
        again = np.asarray(load_model(path)(x, training=False))
        report[name] = {"loss": float(np.mean(loss)), "prob_sum_error": float(np.abs(probs.sum(1) - 1).max()),
                        "reload_diff": float(np.abs(probs - again).max())}
        keras.backend.clear_session()
    return report


def small_filesystem_command(command: list[str], mount: Path, cwd: Path, size_kb: int,
                             read_only: bool = False) -> list[str] | None:
    """``command`` run with a fresh tmpfs of ``size_kb`` KB (read-only if asked) mounted on
    ``mount``, in a private user and mount namespace (``unshare``, no root needed where
    user namespaces are allowed). After the command, ``*.tmp`` paths left in the mount are
    printed as ``LEFT <path>``. None where this machine cannot do it."""
    import shutil

    if shutil.which("unshare") is None:
        return None
    mount.mkdir(parents=True, exist_ok=True)
    probe = subprocess.run(["unshare", "-rm", "sh", "-c", f'mount -t tmpfs -o size=16k tmpfs "{mount}"'],
                           capture_output=True)
    if probe.returncode != 0:
        return None
    options = f"size={size_kb}k" + (",ro" if read_only else "")
    script = ('mount -t tmpfs -o "$0" tmpfs "$1" || exit 99; cd "$2"; shift 3; "$@"; rc=$?; '
              'find "$MOUNT" -name "*.tmp" -printf "LEFT %p\\n"; exit $rc')
    return ["env", f"MOUNT={mount}", "unshare", "-rm", "sh", "-c", script, options, str(mount), str(cwd), "--",
            *command]
