"""A confidence gate that sends low-confidence command predictions to ``unknown``.

Appended to a trained model at export, so the app needs no code: when the most
likely command's probability is below ``threshold``, the probability mass of all
commands moves to ``unknown``. The step is a steep sigmoid (ops every Core ML
format has); the threshold is calibrated on the validation split.
"""

from __future__ import annotations

import keras
import numpy as np
from keras import ops

from kws_research.models.layers import register


@register
class ConfidenceGate(keras.layers.Layer):
    def __init__(self, threshold: float, unknown_index: int, command_indices: list[int], sharpness: float = 2000.0,
                 **kwargs):
        super().__init__(**kwargs)
        self.threshold, self.sharpness = float(threshold), float(sharpness)
        self.unknown_index, self.command_indices = int(unknown_index), [int(i) for i in command_indices]

    def build(self, input_shape):
        classes = int(input_shape[-1])
        mask = np.zeros(classes, np.float32)
        mask[self.command_indices] = 1.0
        self.command_mask = ops.convert_to_tensor(mask)
        self.unknown_onehot = ops.convert_to_tensor(np.eye(classes, dtype=np.float32)[self.unknown_index])

    def call(self, probabilities):
        commands = probabilities * self.command_mask
        top = ops.max(commands, axis=-1, keepdims=True)
        gate = ops.sigmoid((self.threshold - top) * self.sharpness)
        moved = ops.sum(commands, axis=-1, keepdims=True) * gate
        return probabilities - commands * gate + moved * self.unknown_onehot

    def get_config(self):
        return {**super().get_config(), "threshold": self.threshold, "unknown_index": self.unknown_index,
                "command_indices": self.command_indices, "sharpness": self.sharpness}


def gated(model: keras.Model, threshold: float, classes: list[str]) -> keras.Model:
    """``model`` followed by the gate (same input, gated probabilities)."""
    from kws_research.data.task import SILENCE, UNKNOWN

    commands = [i for i, c in enumerate(classes) if c not in (SILENCE, UNKNOWN)]
    gate = ConfidenceGate(threshold, classes.index(UNKNOWN), commands, name="confidence_gate")
    return keras.Model(model.input, gate(model.output), name=f"{model.name}_gated")


def apply(probabilities: np.ndarray, threshold: float, classes: list[str]) -> np.ndarray:
    """The gate's hard decision in NumPy (for calibration and metrics)."""
    from kws_research.data.task import SILENCE, UNKNOWN

    commands = np.array([c not in (SILENCE, UNKNOWN) for c in classes])
    out = probabilities.copy()
    low = probabilities[:, commands].max(axis=1) < threshold
    out[np.ix_(low, commands)] = 0.0
    out[low, classes.index(UNKNOWN)] += probabilities[low][:, commands].sum(axis=1)
    return out


def calibrate(labels: np.ndarray, probabilities: np.ndarray, classes: list[str], max_drop: float) -> float:
    """The highest threshold that costs at most ``max_drop`` of the validation accuracy on
    command clips (the gate trades commands it is unsure of for unseen-word rejection)."""
    from kws_research.training.evaluate import command_accuracy

    base = command_accuracy(labels, probabilities, classes)
    candidates = np.unique(np.round(np.linspace(0.3, 0.99, 70), 4))
    best = 0.0
    for threshold in candidates:
        if command_accuracy(labels, apply(probabilities, threshold, classes), classes) >= base - max_drop - 1e-12:
            best = float(threshold)
    return best
