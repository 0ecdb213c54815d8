"""What Keras computes for the model as shipped, and how close a saved model must come to it.

Within the precision's tolerance everywhere, except on the confidence gate's step: where a
window's top command probability lies within the precision of the gate's threshold, round-off
the tolerance allows moves it anywhere on the step (the sigmoid moves up to the whole command
mass to ``unknown`` within 0.5 % of probability). There the saved model must match the model
with the gate applied to some share of that mass, not the share Keras' own round-off chose;
everywhere else, an error in the gate itself still fails the check.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
from scipy.optimize import minimize_scalar

from kws_research.models import gate
from kws_research.streaming.calibration import tempered

SHARES = np.linspace(0.0, 1.0, 101)


@dataclass
class KerasReference:
    shipped: np.ndarray  # the shipped Keras model's probabilities, a row per clip or window
    before_gate: np.ndarray | None  # the confidence gate's input (None: the model has no step)
    threshold: float
    temperature: float
    labels: list[str]

    def on_step(self, row: int, share: float) -> np.ndarray:
        out = gate.partly_gated(self.before_gate[row : row + 1], share, self.labels)
        return (tempered(out, self.temperature) if self.temperature != 1.0 else out)[0]

    def differences(self, probabilities: np.ndarray, precision: float) -> np.ndarray:
        """Per row, the largest |probability difference| from Keras; on rows at the gate's
        step (within ``precision``), from the nearest point of the step."""
        diff = np.abs(probabilities - self.shipped).max(axis=1)
        if self.before_gate is None:
            return diff
        for row in np.flatnonzero(gate.near_step(self.before_gate, self.threshold, self.labels, precision)):

            def gap(share: float, row=row) -> float:
                return float(np.abs(probabilities[row] - self.on_step(row, share)).max())

            gaps = [gap(share) for share in SHARES]
            start = SHARES[int(np.argmin(gaps))]
            best = minimize_scalar(gap, bounds=(max(0.0, start - 0.01), min(1.0, start + 0.01)), method="bounded")
            diff[row] = min(diff[row], min(gaps), float(best.fun))
        return diff


def keras_reference(
    before_gate, rule: tuple[str, float] | None, temperature: float, labels, shipped: np.ndarray, scores_of: Callable
) -> KerasReference:
    """``shipped``: the shipped Keras model's probabilities on the clips or windows checked;
    ``scores_of(model)``: another Keras model's there. The gate's input (``before_gate``, the
    model without its rule) is scored only for the confidence gate (the prior has no step)."""
    step = before_gate is not None and rule is not None and rule[0] == "threshold"
    return KerasReference(
        np.asarray(shipped, np.float32),
        np.asarray(scores_of(before_gate), np.float32) if step else None,
        float(rule[1]) if step else 0.0,
        float(temperature),
        list(labels),
    )
