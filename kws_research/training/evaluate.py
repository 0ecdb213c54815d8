"""Predictions and the classification metrics every run reports."""

from __future__ import annotations

import numpy as np
from sklearn.metrics import classification_report, confusion_matrix


def predict(model, dataset) -> np.ndarray:
    """Class probabilities for a whole evaluation dataset, in order."""
    return np.asarray(model.predict(dataset, verbose=0), dtype=np.float32)


def classification(labels: np.ndarray, probabilities: np.ndarray, classes: list[str]) -> dict:
    """Accuracy, per-class precision/recall/F1 (scikit-learn) and the confusion matrix."""
    labels = np.asarray(labels, dtype=np.int64)
    predicted = probabilities.argmax(axis=1)
    indices = list(range(len(classes)))
    report = classification_report(labels, predicted, labels=indices, target_names=classes,
                                   output_dict=True, zero_division=0)
    return {
        "accuracy": float((predicted == labels).mean()) if labels.size else float("nan"),
        "report": report,
        "per_class_accuracy": {c: float(report[c]["recall"]) for c in classes},
        "confusion": confusion_matrix(labels, predicted, labels=indices),
    }


def cross_entropy(labels: np.ndarray, probabilities: np.ndarray) -> float:
    """Mean categorical cross-entropy of predicted probabilities (no label smoothing)."""
    picked = probabilities[np.arange(labels.shape[0]), np.asarray(labels, dtype=np.int64)]
    return float(-np.log(np.clip(picked, 1e-7, 1.0)).mean())


def command_accuracy(labels: np.ndarray, probabilities: np.ndarray, classes: list[str]) -> float:
    """Accuracy on the clips of command words only (not silence, not unknown)."""
    from kws_research.data.task import SILENCE, UNKNOWN

    labels = np.asarray(labels, dtype=np.int64)
    commands = ~np.isin(labels, [classes.index(SILENCE), classes.index(UNKNOWN)])
    if not commands.any():
        return float("nan")
    return float((probabilities[commands].argmax(axis=1) == labels[commands]).mean())


def open_set(probabilities: np.ndarray, classes: list[str]) -> dict[str, float]:
    """On clips of words the model never heard: the share called ``unknown``
    (``unseen_unknown_recall``) and the share called a command (``false_command_rate``)."""
    from kws_research.data.task import SILENCE, UNKNOWN

    predicted = probabilities.argmax(axis=1)
    unknown, silence = classes.index(UNKNOWN), classes.index(SILENCE)
    return {
        "unseen_unknown_recall": float((predicted == unknown).mean()),
        "false_command_rate": float(((predicted != unknown) & (predicted != silence)).mean()),
        "heldout_clips": int(predicted.size),
    }
