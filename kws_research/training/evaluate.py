"""Predictions and the classification metrics every run reports (the NumPy-only ones
live in :mod:`kws_research.metrics`)."""

from __future__ import annotations

import numpy as np
from sklearn.metrics import classification_report, confusion_matrix

from kws_research.metrics import command_accuracy, cross_entropy, open_set

__all__ = ["classification", "command_accuracy", "cross_entropy", "open_set", "predict"]


def predict(model, dataset) -> np.ndarray:
    """Class probabilities for a whole evaluation dataset, in order."""
    return np.asarray(model.predict(dataset, verbose=0), dtype=np.float32)


def classification(labels: np.ndarray, probabilities: np.ndarray, classes: list[str]) -> dict:
    """Accuracy, per-class precision/recall/F1 (scikit-learn) and the confusion matrix."""
    labels = np.asarray(labels, dtype=np.int64)
    predicted = probabilities.argmax(axis=1)
    indices = list(range(len(classes)))
    report = classification_report(
        labels, predicted, labels=indices, target_names=classes, output_dict=True, zero_division=0
    )
    return {
        "accuracy": float((predicted == labels).mean()) if labels.size else float("nan"),
        "report": report,
        "per_class_accuracy": {c: float(report[c]["recall"]) for c in classes},
        "confusion": confusion_matrix(labels, predicted, labels=indices),
    }
