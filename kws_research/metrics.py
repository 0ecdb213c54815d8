"""Metrics on predicted probabilities (NumPy only): what training reports and the
open-set gate calibrates against, without either importing the other."""

from __future__ import annotations

import numpy as np

from kws_research.labels import SILENCE, UNKNOWN

# The names of the metrics a training run reports, declared once: the sweep refuses an
# objective no run produces, the registry tags versions with them, tests check the runs.
TRAINING_METRICS = (
    "best_val_accuracy",
    "best_epoch",
    "train_seconds",
    "epochs_run",
    "seconds_per_epoch",
    "params",
    "macs",
)
# Front-end models only: one call of the streaming model (models/streaming.py) every stream.hop_ms.
STREAMING_MODEL_METRICS = ("macs_per_hop",)
TEST_METRICS = ("test_accuracy", "test_loss", "command_accuracy")
# What a recipe is chosen by without looking at test: command accuracy on the validation split.
VALIDATION_METRICS = ("val_command_accuracy",)
OPEN_SET_METRICS = ("unseen_unknown_recall", "false_command_rate", "heldout_clips")
GATED_METRICS = ("gated_val_accuracy", "gated_test_accuracy", "gated_command_accuracy")


def cross_entropy(labels: np.ndarray, probabilities: np.ndarray) -> float:
    """Mean categorical cross-entropy of predicted probabilities (no label smoothing)."""
    picked = probabilities[np.arange(labels.shape[0]), np.asarray(labels, dtype=np.int64)]
    return float(-np.log(np.clip(picked, 1e-7, 1.0)).mean())


def command_accuracy(labels: np.ndarray, probabilities: np.ndarray, classes: list[str]) -> float:
    """Accuracy on the clips of command words only (not silence, not unknown)."""
    labels = np.asarray(labels, dtype=np.int64)
    commands = ~np.isin(labels, [classes.index(SILENCE), classes.index(UNKNOWN)])
    if not commands.any():
        return float("nan")
    return float((probabilities[commands].argmax(axis=1) == labels[commands]).mean())


def open_set(probabilities: np.ndarray, classes: list[str]) -> dict[str, float]:
    """On clips of words the model never heard: the share called ``unknown``
    (``unseen_unknown_recall``) and the share called a command (``false_command_rate``)."""
    predicted = probabilities.argmax(axis=1)
    unknown, silence = classes.index(UNKNOWN), classes.index(SILENCE)
    return {
        "unseen_unknown_recall": float((predicted == unknown).mean()),
        "false_command_rate": float(((predicted != unknown) & (predicted != silence)).mean()),
        "heldout_clips": int(predicted.size),
    }
