"""The open-set rule of a run: calibrated on validation, measured on test and held-out words."""

from __future__ import annotations

import logging

from kws_research.models import gate
from kws_research.training import evaluate

log = logging.getLogger(__name__)


def gate_metrics(
    data, probs: dict, classes: list[str], rule: str, max_drop: float, confidence: float | None
) -> tuple[dict, dict]:
    """Calibrate the open-set rule on validation and measure it (export folds it in);
    returns the metrics and the gated model's per-class test accuracy."""
    validation = data.splits["validation"].labels
    value = gate.calibrate(validation, probs["validation"], classes, max_drop, rule, confidence)
    lost, clips = gate.lost_commands(validation, probs["validation"], value, classes, rule)
    needed = gate.clips_needed(max_drop, confidence)
    if needed is not None and clips < needed:
        log.warning(
            "openset: %d validation command clips cannot bound the rule's cost within %g at confidence %g "
            "(that takes %d); the %s stays neutral: add validation clips, raise openset.max_command_drop, "
            "or set openset.confidence=null",
            clips,
            max_drop,
            confidence,
            needed,
            gate.LABEL[rule],
        )
    out = {gate.METRIC[rule]: value}
    out.update(zip(gate.COST_METRICS, (gate.command_cost(lost, clips, c) for c in (None, confidence))))
    gated_val = gate.apply(probs["validation"], value, classes, rule)
    out["gated_val_accuracy"] = evaluate.classification(validation, gated_val, classes)["accuracy"]
    per_class = {}
    if "test" in probs:
        adjusted = gate.apply(probs["test"], value, classes, rule)
        result = evaluate.classification(data.splits["test"].labels, adjusted, classes)
        out["gated_test_accuracy"] = result["accuracy"]
        per_class = result["per_class_accuracy"]
        out["gated_command_accuracy"] = evaluate.command_accuracy(data.splits["test"].labels, adjusted, classes)
    if "heldout" in probs:
        for key, metric in evaluate.open_set(gate.apply(probs["heldout"], value, classes, rule), classes).items():
            if key != "heldout_clips":
                out[f"gated_{key}"] = metric
    return out, per_class
