"""Choosing what ships with the model: a temperature for the probabilities and the
detector settings for a target false-accept rate, both on validation data only.

* Temperature scaling (Guo et al., 2017) on the validation clips: probabilities
  become ``softmax(log(p + eps) / T)``, with ``T`` minimising the negative
  log-likelihood; the expected calibration error (ECE, 15 bins) before and after.
* Detector: over a grid of averaging windows, suppressions and thresholds, the
  setting with the highest hit rate on the validation mixed stream whose false
  accepts on the validation negatives-only stream certify ``target_fa_per_hour``
  (their one-sided 95% upper bound, from the stream's distinct recordings, is within
  it); without one, the setting with the lowest bound (the fewest false accepts). With
  ``command_thresholds``, each command's threshold is then lowered as far as the whole
  detector still certifies the target: one threshold is held back by the talk's most
  command-like moment, which resembles one command, not all of them.
"""

from __future__ import annotations

from dataclasses import dataclass, replace

import numpy as np
from scipy.optimize import minimize_scalar

from kws_research.contract import PROBABILITY_EPSILON
from kws_research.labels import is_command
from kws_research.streaming import detector
from kws_research.streaming.detector import DetectorSettings
from kws_research.streaming.matching import match

ECE_BINS = 15
PASSES = 3  # per-command thresholds: rounds over the commands (a second one seldom moves any)
# what a calibration point carries of the negatives' certificate (streaming/matching.py)
CERTIFICATE = (
    "fa_per_hour_upper95",
    "fa_per_hour_upper95_by_hours",
    "distinct_false_accepts",
    "distinct_hours",
    "repeats",
    "certifiable_fa_per_hour",
)


def tempered(probabilities: np.ndarray, temperature: float) -> np.ndarray:
    logits = np.log(np.asarray(probabilities, np.float64) + PROBABILITY_EPSILON) / temperature
    logits -= logits.max(axis=-1, keepdims=True)
    out = np.exp(logits)
    return (out / out.sum(axis=-1, keepdims=True)).astype(np.float32)


def fit_temperature(probabilities: np.ndarray, labels: np.ndarray) -> float:
    """The temperature that minimises the validation negative log-likelihood."""
    labels = np.asarray(labels, dtype=np.int64)

    def nll(log_t: float) -> float:
        p = tempered(probabilities, float(np.exp(log_t)))
        return float(-np.mean(np.log(p[np.arange(labels.size), labels] + 1e-12)))

    return float(np.exp(minimize_scalar(nll, bounds=(-3.0, 3.0), method="bounded").x))


def reliability(probabilities: np.ndarray, labels: np.ndarray, bins: int = ECE_BINS) -> dict:
    """ECE and the per-bin confidence/accuracy/count of a reliability diagram."""
    confidence = probabilities.max(axis=1)
    correct = probabilities.argmax(axis=1) == np.asarray(labels)
    edges = np.linspace(0, 1, bins + 1)
    which = np.clip(np.digitize(confidence, edges[1:-1]), 0, bins - 1)
    count = np.bincount(which, minlength=bins)
    conf = np.bincount(which, confidence, minlength=bins) / np.maximum(count, 1)
    acc = np.bincount(which, correct.astype(float), minlength=bins) / np.maximum(count, 1)
    ece = float(np.sum(count * np.abs(acc - conf)) / max(1, count.sum()))
    return {"ece": ece, "confidence": conf.tolist(), "accuracy": acc.tolist(), "count": count.tolist()}


@dataclass
class Scored:
    """A stream's scores and ground truth, ready for the detector."""

    times_ms: np.ndarray
    scores: np.ndarray
    events: list[dict]
    hours: float


def evaluate(scored: Scored, labels: list[str], settings: DetectorSettings, tolerance_ms: float) -> dict:
    found = detector.detections(scored.times_ms, scored.scores, labels, settings)
    return match(found, scored.events, scored.hours, tolerance_ms)


def _averaged(mixed: Scored, negatives: Scored, base: DetectorSettings) -> dict:
    return {
        name: (detector.average(s.times_ms, s.scores, base.window_ms, base.min_count), s)
        for name, s in (("mixed", mixed), ("negatives", negatives))
    }


def _point(averaged: dict, labels, threshold: float | np.ndarray, suppression_ms: float, tolerance_ms: float) -> dict:
    """Hit rate on the mixed stream and the negatives' false accepts with their certificate."""
    on = {
        name: match(detector.detect(a, labels, threshold, suppression_ms), s.events, s.hours, tolerance_ms)
        for name, (a, s) in averaged.items()
    }
    return {
        "hit_rate": on["mixed"]["hit_rate"],
        "miss_rate": on["mixed"]["miss_rate"],
        "fa_per_hour": on["negatives"]["fa_per_hour"],
        **{key: on["negatives"][key] for key in CERTIFICATE},
    }


def _points(averaged: dict, labels, suppression_ms: float, thresholds, tolerance_ms: float) -> list[dict]:
    return [
        {"threshold": float(t), **_point(averaged, labels, float(t), suppression_ms, tolerance_ms)} for t in thresholds
    ]


def sweep_thresholds(
    mixed: Scored, negatives: Scored, labels, base: DetectorSettings, thresholds, tolerance_ms: float
) -> list[dict]:
    """Hit/miss rate on ``mixed`` and FA/h on ``negatives`` at each threshold (the DET curve:
    one threshold for every command)."""
    return _points(_averaged(mixed, negatives, base), labels, base.suppression_ms, thresholds, tolerance_ms)


def _per_command(averaged: dict, labels, start: dict, stream, tolerance_ms: float) -> dict:
    """``start`` (a certified point of one window and suppression) with each command's
    threshold lowered to the lowest of ``stream.thresholds`` at which the whole detector still
    certifies the target: commands in label order, each found by bisection (fewer thresholds,
    more false accepts), passes until none moves. The talk's most command-like moment then
    holds back only the command it resembles."""
    grid = np.array(sorted(set(stream.thresholds)))
    limit = np.full(len(labels), start["threshold"])
    suppression = start["suppression_ms"]

    def certified(trial: np.ndarray) -> bool:
        point = _point(averaged, labels, trial, suppression, tolerance_ms)
        return point["fa_per_hour_upper95"] <= stream.target_fa_per_hour

    for _ in range(PASSES):
        moved = False
        for command in (i for i, label in enumerate(labels) if is_command(label)):
            low, high = 0, int(np.searchsorted(grid, limit[command]))
            current = high
            while low < high:
                middle = (low + high) // 2
                trial = limit.copy()
                trial[command] = grid[middle]
                low, high = (low, middle) if certified(trial) else (middle + 1, high)
            if low < current:
                limit[command], moved = grid[low], True
        if not moved:
            break
    own = {label: float(limit[i]) for i, label in enumerate(labels) if is_command(label)}
    return {**start, **_point(averaged, labels, limit, suppression, tolerance_ms), "command_thresholds": own}


def _rank(point: dict) -> tuple[float, float]:
    """The better calibration point: more commands heard, then the higher threshold."""
    return point["hit_rate"], point["threshold"]


def choose(
    mixed: Scored, negatives: Scored, labels, stream, tolerance_ms: float
) -> tuple[DetectorSettings, dict, list[dict]]:
    """The calibrated detector, its validation point, and every point tried (one threshold;
    with ``stream.command_thresholds``, the best certified point of each window and
    suppression is then refined per command, and the best refinement ships)."""
    tried, averaged = [], {}
    for window in stream.window_ms:
        averaged[window] = _averaged(mixed, negatives, DetectorSettings(window_ms=window, min_count=stream.min_count))
        for suppression in stream.suppression_ms:
            for point in _points(averaged[window], labels, suppression, stream.thresholds, tolerance_ms):
                tried.append({**point, "window_ms": window, "suppression_ms": suppression})
    feasible = [p for p in tried if p["fa_per_hour_upper95"] <= stream.target_fa_per_hour]
    fewest = min(q["fa_per_hour_upper95"] for q in tried)
    pool = feasible or [p for p in tried if p["fa_per_hour_upper95"] == fewest]
    best = max(pool, key=_rank)
    if feasible and stream.command_thresholds:
        starts: dict[tuple, dict] = {}
        for p in feasible:
            key = (p["window_ms"], p["suppression_ms"])
            starts[key] = max(starts.get(key, p), p, key=_rank)
        refined = (_per_command(averaged[w], labels, p, stream, tolerance_ms) for (w, _), p in starts.items())
        best = max(refined, key=_rank)
    # every command's threshold, also when none was refined: the run's metrics then always hold
    # this evaluation's, never an earlier evaluation's per-command thresholds beside a new one
    own = best.get("command_thresholds") or {label: best["threshold"] for label in labels if is_command(label)}
    settings = replace(
        DetectorSettings(),
        threshold=best["threshold"],
        window_ms=best["window_ms"],
        suppression_ms=best["suppression_ms"],
        min_count=stream.min_count,
        hop_ms=stream.hop_ms,
        command_thresholds=tuple(own.items()),
    )
    return settings, {**best, "command_thresholds": own, "target_met": bool(feasible)}, tried


def miss_rate_at(points: list[dict], fa_per_hour: float) -> float:
    """Miss rate at the lowest threshold whose FA/h is within ``fa_per_hour`` (DET operating point)."""
    within = [p for p in points if p["fa_per_hour"] <= fa_per_hour]
    return min(p["miss_rate"] for p in within) if within else 1.0
