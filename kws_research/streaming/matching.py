"""Detections against the ground truth: hits, misses, wrong commands, false accepts.

A detection at time ``t`` (the end of its window) belongs to the latest word with
``start <= t <= end + tolerance``. A command word is a **hit** when one of its
detections has its label, **wrong** when it only has other labels, a **miss** when
it has none. Every other detection is a **false accept**, by cause: ``unknown``
(it belongs to a non-command word), ``repeat`` (a second detection of a command
word) or ``noise`` (it belongs to no word). Latency is detection time minus the
end of the word. Every false-accept rate comes with its one-sided 95% upper bound
(a certificate: with that confidence the rate is no higher).

The bound is computed from independent material only. A stream plays each of its
recordings many times (``repeats``: words played / distinct recordings), and a recording
that fires tends to fire again when it comes back under new noise: repeats are not
independent Poisson trials. So the bound counts distinct recordings: ``distinct_hours`` =
hours / repeats, and ``distinct_false_accepts`` = the distinct recordings that fired, plus
the false accepts on no word divided by ``repeats`` (rounded up). Assumption: distinct
recordings are independent trials, a recording's repeats are one. The measured rate
(``fa_per_hour``) stays false accepts / hours; ``fa_per_hour_upper95_by_hours`` is the bound
that would treat every hour as new material (what the data cannot support when it repeats).
"""

from __future__ import annotations

import functools
import math
from collections import Counter

import numpy as np
from scipy.stats import chi2

from kws_research.streaming.detector import Detection

CAUSES = ("unknown", "noise", "repeat")
CONFIDENCE = 0.95


@functools.lru_cache(maxsize=1024)
def _poisson_upper(count: int, confidence: float) -> float:
    """``chi2.ppf(confidence, 2 * count + 2) / 2``: about 0.1 ms in SciPy, asked for every point
    of the calibration grid, where the same few counts come back thousands of times."""
    return float(chi2.ppf(confidence, 2 * count + 2)) / 2


def fa_upper_bound(count: int, hours: float, confidence: float = CONFIDENCE) -> float:
    """One-sided upper confidence bound of a Poisson rate per hour (Garwood's exact bound):
    ``chi2.ppf(confidence, 2 * count + 2) / (2 * hours)``; 0 false accepts in 1 h: 3.0 per hour."""
    return _poisson_upper(int(count), float(confidence)) / hours if hours > 0 else float("nan")


def hours_to_certify(rate: float, confidence: float = CONFIDENCE) -> float:
    """Hours of negatives in which no false accept bounds the rate below ``rate``."""
    return fa_upper_bound(0, 1.0, confidence) / rate


def recording(event: dict, index: int) -> tuple:
    """Which recording an event plays (its clip); an event without one is its own."""
    clip = event.get("clip")
    return (str(clip[0]), int(clip[1])) if clip else ("event", index)


def distinct_recordings(events: list[dict]) -> int:
    return len({recording(e, i) for i, e in enumerate(events)})


def repeats(events: list[dict]) -> float:
    """How many times a stream plays each of its recordings, on average (1: no repeats)."""
    return len(events) / distinct_recordings(events) if events else 1.0


def distinct_bound(fired: set, on_no_word: int, hours: float, repeat: float) -> dict:
    """The certificate from independent material (module docstring)."""
    count = len(fired) + math.ceil(on_no_word / repeat)
    distinct_hours = hours / repeat
    return {
        "distinct_false_accepts": count,
        "distinct_hours": distinct_hours,
        "repeats": repeat,
        "fa_per_hour_upper95": fa_upper_bound(count, distinct_hours),
        "certifiable_fa_per_hour": fa_upper_bound(0, distinct_hours),  # the least these recordings can certify
    }


def match(detections: list[Detection], events: list[dict], hours: float, tolerance_ms: float) -> dict:
    """Counts and rates of one stream at one detector setting."""
    starts = np.array([e["start"] for e in events]) * 1000.0
    ends = np.array([e["end"] for e in events]) * 1000.0 + tolerance_ms
    outcome: dict[int, str] = {}
    latencies, false = [], Counter()
    fired = set()
    for d in detections:
        i = int(np.searchsorted(starts, d.time_ms, side="right")) - 1
        if i < 0 or d.time_ms > ends[i]:  # words are in time order, so are their ends: no earlier word either
            false["noise"] += 1
            continue
        event = events[i]
        if event["kind"] != "command":
            false["unknown"] += 1
            fired.add(recording(event, i))
        elif outcome.get(i) == "hit":
            false["repeat"] += 1
            fired.add(recording(event, i))
        elif d.label == event["label"]:
            outcome[i] = "hit"
            latencies.append(d.time_ms - event["end"] * 1000.0)
        else:
            outcome[i] = "wrong"
    commands = [i for i, e in enumerate(events) if e["kind"] == "command"]
    hits = sum(outcome.get(i) == "hit" for i in commands)
    wrong = sum(outcome.get(i) == "wrong" for i in commands)
    per_command = _hit_rates(commands, outcome, [e["label"] for e in events])
    by_snr = _hit_rates(commands, outcome, [f"{float(e['snr_db']):g}" for e in events])
    n = max(1, len(commands))
    false_total = sum(false.values())
    return {
        "commands": len(commands),
        "hits": hits,
        "wrong": wrong,
        "misses": len(commands) - hits - wrong,
        "hit_rate": hits / n if commands else float("nan"),
        "miss_rate": 1 - hits / n if commands else float("nan"),
        "wrong_rate": wrong / n if commands else float("nan"),
        "false_accepts": false_total,
        "false_accepts_by_cause": {c: false[c] for c in CAUSES},
        "fa_per_hour": false_total / hours if hours > 0 else float("nan"),
        "fa_per_hour_upper95_by_hours": fa_upper_bound(false_total, hours),
        **distinct_bound(fired, false["noise"], hours, repeats(events)),
        "latency_ms": float(np.mean(latencies)) if latencies else float("nan"),
        "per_command_hit_rate": per_command,
        "hit_rate_by_snr": by_snr,
        "hours": hours,
    }


def _hit_rates(commands: list[int], outcome: dict[int, str], keys: list[str]) -> dict[str, float]:
    """Hit rate of the command words grouped by ``keys[i]`` (their label, their SNR)."""
    tally: dict[str, list[int]] = {}
    for i in commands:
        counts = tally.setdefault(keys[i], [0, 0])
        counts[0] += outcome.get(i) == "hit"
        counts[1] += 1
    return {k: h / t for k, (h, t) in sorted(tally.items())}
