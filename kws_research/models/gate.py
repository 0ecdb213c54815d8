"""Rules, calibrated on validation, that send more unseen words to ``unknown``.

Appended to a trained model at export, so the app needs no code. Two rules:

* ``threshold`` (a confidence gate): when the most likely command's probability
  is below the threshold, the probability mass of all commands moves to
  ``unknown``; the step is a steep sigmoid (ops every Core ML format has).
* ``prior`` (logit adjustment): ``unknown``'s probability is multiplied by a
  weight and the probabilities renormalised, i.e. ``log(weight)`` is added to
  its logit, as if unknown words were that much more common than in training.

Either is calibrated as the strongest setting that costs at most
``openset.max_command_drop`` of the accuracy on command clips: by default with 95%
confidence on clips like the validation ones (``openset.confidence``), not just on the
validation clips themselves.
"""

from __future__ import annotations

import keras
import numpy as np
from keras import ops
from scipy.stats import beta

from kws_research.labels import UNKNOWN, is_command
from kws_research.serialization import register

RULES = ("threshold", "prior")
METRIC = {"threshold": "gate_threshold", "prior": "gate_unknown_weight"}
LABEL = {"threshold": "confidence gate", "prior": "unknown prior"}
# the share of validation command clips the calibrated rule costs, and its bound (openset.confidence)
COST_METRICS = ("gate_command_cost", "gate_command_cost_bound")


def _indices(classes: list[str]) -> tuple[int, list[int]]:
    return classes.index(UNKNOWN), [i for i, c in enumerate(classes) if is_command(c)]


SHARPNESS = 2000.0  # of the confidence gate's sigmoid: 0.5 % of probability either side of the threshold
STEP_WIDTH = 10.0 / SHARPNESS  # beyond it the sigmoid is within 5e-5 of 0 or 1


@register
class ConfidenceGate(keras.layers.Layer):
    def __init__(
        self, threshold: float, unknown_index: int, command_indices: list[int], sharpness: float = SHARPNESS, **kwargs
    ):
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
        return {
            **super().get_config(),
            "threshold": self.threshold,
            "unknown_index": self.unknown_index,
            "command_indices": self.command_indices,
            "sharpness": self.sharpness,
        }


@register
class UnknownPrior(keras.layers.Layer):
    def __init__(self, weight: float, unknown_index: int, **kwargs):
        super().__init__(**kwargs)
        self.weight, self.unknown_index = float(weight), int(unknown_index)

    def build(self, input_shape):
        scale = np.ones(int(input_shape[-1]), np.float32)
        scale[self.unknown_index] = self.weight
        self.scale = ops.convert_to_tensor(scale)

    def call(self, probabilities):
        scaled = probabilities * self.scale
        return scaled / ops.sum(scaled, axis=-1, keepdims=True)

    def get_config(self):
        return {**super().get_config(), "weight": self.weight, "unknown_index": self.unknown_index}


def calibrated_rule(metrics: dict) -> tuple[str, float] | None:
    """The rule and value a run calibrated, read from its metrics (``gate_threshold`` or
    ``gate_unknown_weight``); None when it calibrated none."""
    return next(((rule, float(metrics[key])) for rule, key in METRIC.items() if key in metrics), None)


def gated(model: keras.Model, rule: str, value: float, classes: list[str]) -> keras.Model:
    """``model`` followed by the calibrated rule (same input, adjusted probabilities)."""
    unknown, commands = _indices(classes)
    layer = (
        ConfidenceGate(value, unknown, commands, name="confidence_gate")
        if rule == "threshold"
        else UnknownPrior(value, unknown, name="unknown_prior")
    )
    return keras.Model(model.input, layer(model.output), name=f"{model.name}_gated")


def apply(probabilities: np.ndarray, value: float, classes: list[str], rule: str = "threshold") -> np.ndarray:
    """The rule's decision in NumPy (for calibration and metrics)."""
    unknown, commands = _indices(classes)
    out = probabilities.copy()
    if rule == "prior":
        out[:, unknown] *= value
        return out / out.sum(axis=1, keepdims=True)
    low = probabilities[:, commands].max(axis=1) < value
    out[low] = partly_gated(probabilities[low], 1.0, classes)
    return out


def partly_gated(probabilities: np.ndarray, share: float, classes: list[str]) -> np.ndarray:
    """The confidence gate part-way through its step: ``share`` of the command mass moved to
    ``unknown`` (0: not gated, 1: gated)."""
    unknown, commands = _indices(classes)
    out = probabilities.astype(np.float64)
    moved = out[:, commands] * share
    out[:, commands] -= moved
    out[:, unknown] += moved.sum(axis=1)
    return out


def near_step(probabilities: np.ndarray, threshold: float, classes: list[str], precision: float) -> np.ndarray:
    """Rows whose top command probability lies within ``precision`` of the confidence gate's
    step: round-off of that size may put them anywhere on it."""
    _, commands = _indices(classes)
    return np.abs(probabilities[:, commands].max(axis=1) - threshold) <= precision + STEP_WIDTH


CANDIDATES = {
    "threshold": np.unique(np.round(np.linspace(0.3, 0.99, 70), 4)),
    "prior": np.unique(np.round(np.geomspace(1.0, 1e4, 161), 4)),
}
NEUTRAL = {"threshold": 0.0, "prior": 1.0}


def lost_commands(
    labels: np.ndarray, probabilities: np.ndarray, value: float, classes: list[str], rule: str
) -> tuple[int, int]:
    """How many command clips the rule turns from right to wrong, of how many command clips
    (neither rule ever turns a wrong answer right: it only moves mass to ``unknown``)."""
    labels = np.asarray(labels, dtype=np.int64)
    commands = np.isin(labels, _indices(classes)[1])
    right = probabilities.argmax(axis=1) == labels
    still_right = apply(probabilities, value, classes, rule).argmax(axis=1) == labels
    return int((commands & right & ~still_right).sum()), int(commands.sum())


def command_cost(lost: int, clips: int, confidence: float | None) -> float:
    """The share of command clips a rule costs: the share it lost on validation, or with
    ``confidence`` the one-sided Clopper-Pearson upper bound of that share on unseen clips
    like them. The strongest setting whose validation cost just fits sits where chance
    flattered it, and costs more on new speakers (measured: 1 point on validation, 2 on test)."""
    if clips == 0:
        return 0.0
    if confidence is None or lost >= clips:
        return lost / clips
    return float(beta.ppf(confidence, lost + 1, clips - lost))


def clips_needed(max_drop: float, confidence: float | None) -> int | None:
    """The fewest command clips on which losing none bounds the cost within ``max_drop``:
    with fewer, no rule can be shown cheap and calibration leaves it neutral (None: no count
    applies, without a confidence or with a budget of 0 or 1)."""
    if confidence is None or not 0.0 < max_drop < 1.0:
        return None
    return int(np.ceil(np.log1p(-confidence) / np.log1p(-max_drop)))


def calibrate(
    labels: np.ndarray,
    probabilities: np.ndarray,
    classes: list[str],
    max_drop: float,
    rule: str = "threshold",
    confidence: float | None = None,
) -> float:
    """The strongest setting of ``rule`` that costs at most ``max_drop`` of the accuracy on
    command clips (``command_cost``; it trades commands it is unsure of for unseen-word
    rejection)."""
    best = NEUTRAL[rule]
    for value in CANDIDATES[rule]:
        if command_cost(*lost_commands(labels, probabilities, value, classes, rule), confidence) <= max_drop + 1e-12:
            best = float(value)
    return best
