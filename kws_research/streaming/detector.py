"""The app's detector, as the reference the Swift side copies.

Equivalent to TensorFlow's ``RecognizeCommands`` (examples/speech_commands): every
``hop_ms`` the model scores the last second; the scores of the results no older than
``window_ms`` are averaged (at least ``min_count`` results spanning a quarter of the
window); the top label becomes a new detection when its average passes its threshold
(the command's own in ``command_thresholds``, else ``threshold``), differs from the
previous top label and ``suppression_ms`` has passed since it (a previous ``silence``
top label lifts the suppression). Every label takes part in that state, as in
TensorFlow; only command labels are reported, so an ``unknown`` or ``silence`` result
lets the same command fire again. One threshold per command is TensorFlow's with a
sensitivity per keyword: a command the talk never resembles need not wait for the one
that it does.

:class:`RecognizeCommands` is the step-by-step spec; :func:`detect` computes the same
detections for a whole scored stream at once (the calibration runs it thousands of
times).
"""

from __future__ import annotations

from collections import deque
from collections.abc import Mapping
from dataclasses import dataclass

import numpy as np

from kws_research.labels import SILENCE, UNKNOWN, is_command


def command_threshold_key(label: str) -> str:
    """The metric and Core ML metadata key of ``label``'s own threshold."""
    return f"detector_threshold_{label}"


@dataclass(frozen=True)
class DetectorSettings:
    threshold: float = 0.7
    window_ms: float = 750.0
    suppression_ms: float = 500.0
    min_count: int = 3
    hop_ms: float = 100.0
    command_thresholds: tuple[tuple[str, float], ...] = ()  # (command, threshold): those not ``threshold``

    def as_dict(self) -> dict:
        return {
            "detector_threshold": self.threshold,
            "detector_window_ms": self.window_ms,
            "detector_suppression_ms": self.suppression_ms,
            "detector_min_count": self.min_count,
            "detector_hop_ms": self.hop_ms,
            **{command_threshold_key(label): value for label, value in self.command_thresholds},
        }

    @classmethod
    def from_metrics(cls, metrics: Mapping[str, float], labels: list[str]) -> DetectorSettings:
        """The detector a streaming evaluation logged (``as_dict``'s keys); KeyError when none."""
        return cls(
            threshold=float(metrics["detector_threshold"]),
            window_ms=float(metrics["detector_window_ms"]),
            suppression_ms=float(metrics["detector_suppression_ms"]),
            min_count=int(metrics["detector_min_count"]),
            hop_ms=float(metrics["detector_hop_ms"]),
            command_thresholds=tuple(
                (label, float(metrics[command_threshold_key(label)]))
                for label in labels
                if command_threshold_key(label) in metrics
            ),
        )

    def thresholds(self, labels: list[str]) -> np.ndarray:
        """Each label's threshold, in the order of ``labels``."""
        own = dict(self.command_thresholds)
        return np.array([own.get(label, self.threshold) for label in labels], dtype=np.float64)


@dataclass(frozen=True)
class Detection:
    time_ms: float
    label: str
    score: float


class RecognizeCommands:
    """One result at a time, as the app runs it: :meth:`process` returns the new command
    or None."""

    def __init__(self, labels: list[str], settings: DetectorSettings) -> None:
        self.labels, self.settings = list(labels), settings
        self.thresholds = settings.thresholds(self.labels)
        self.results: deque[tuple[float, np.ndarray]] = deque()
        self.previous_label, self.previous_time = SILENCE, -np.inf

    def process(self, time_ms: float, scores: np.ndarray) -> Detection | None:
        scores = np.asarray(scores, dtype=np.float64)
        if scores.shape != (len(self.labels),):
            raise ValueError(f"expected {len(self.labels)} scores, got shape {scores.shape}")
        if self.results and time_ms < self.results[-1][0]:
            raise ValueError(f"results must come in time order: {time_ms} after {self.results[-1][0]}")
        self.results.append((time_ms, scores))
        while self.results[0][0] < time_ms - self.settings.window_ms:
            self.results.popleft()
        span = time_ms - self.results[0][0]
        if len(self.results) < self.settings.min_count or span < self.settings.window_ms / 4:
            return None
        average = np.mean([s for _, s in self.results], axis=0)
        top = int(np.argmax(average))
        label, score = self.labels[top], float(average[top])
        since = np.inf if self.previous_label == SILENCE else time_ms - self.previous_time
        if score > self.thresholds[top] and label != self.previous_label and since > self.settings.suppression_ms:
            self.previous_label, self.previous_time = label, time_ms
            return Detection(time_ms, label, score) if is_command(label) else None
        return None


@dataclass
class Averaged:
    """The detector's view of a scored stream for one averaging window: the top label
    and its averaged score at each result (score -1 where too few results)."""

    times_ms: np.ndarray
    top: np.ndarray
    score: np.ndarray


def average(times_ms: np.ndarray, scores: np.ndarray, window_ms: float, min_count: int) -> Averaged:
    """Windowed means of ``scores`` [N, C] at ``times_ms`` [N] (increasing), vectorised."""
    times_ms = np.asarray(times_ms, dtype=np.float64)
    cumulative = np.concatenate([np.zeros((1, scores.shape[1])), np.cumsum(scores, axis=0, dtype=np.float64)])
    first = np.searchsorted(times_ms, times_ms - window_ms, side="left")
    index = np.arange(times_ms.size)
    count = index - first + 1
    mean = (cumulative[index + 1] - cumulative[first]) / count[:, None]
    top = mean.argmax(axis=1)
    score = mean[index, top]
    enough = (count >= min_count) & (times_ms - times_ms[first] >= window_ms / 4)
    return Averaged(times_ms, top, np.where(enough, score, -1.0))


def detect(
    averaged: Averaged, labels: list[str], threshold: float | np.ndarray, suppression_ms: float
) -> list[Detection]:
    """:class:`RecognizeCommands` over a whole stream (``threshold``: one, or each label's).
    Only results above their threshold can change the state, and within a run of one top
    label only its first result past the suppression can fire, so the loop is over runs of
    labels, not results."""
    limit = np.asarray(threshold, dtype=np.float64)
    passing = np.flatnonzero(averaged.score > (limit[averaged.top] if limit.ndim else limit))
    if passing.size == 0:
        return []
    top = averaged.top[passing]
    starts = np.flatnonzero(np.concatenate([[True], top[1:] != top[:-1]]))
    ends = np.concatenate([starts[1:], [passing.size]])
    silence, unknown = labels.index(SILENCE), labels.index(UNKNOWN)
    times = averaged.times_ms[passing]
    previous, previous_time = silence, -np.inf
    found = []
    for lo, hi in zip(starts, ends):
        label = int(top[lo])
        if label == previous:
            continue
        if previous == silence:
            at = lo
        else:
            at = lo + int(np.searchsorted(times[lo:hi], previous_time + suppression_ms, side="right"))
            if at >= hi:
                continue
        previous, previous_time = label, times[at]
        if label not in (silence, unknown):
            found.append(Detection(float(times[at]), labels[label], float(averaged.score[passing[at]])))
    return found


def detections(times_ms, scores, labels: list[str], settings: DetectorSettings) -> list[Detection]:
    """All detections of a scored stream under ``settings``."""
    averaged = average(times_ms, scores, settings.window_ms, settings.min_count)
    return detect(averaged, labels, settings.thresholds(labels), settings.suppression_ms)
