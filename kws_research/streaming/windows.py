"""What the detector should answer for a 1 s window of a stream, from the stream's word times.

A window is a command when that command is wholly, or almost wholly (``command_inside``
of its audible part), inside it: the app should fire there. It is ``unknown`` when it
holds any other speech: another word, or at most ``partial_below`` of a command (its
onset or its end, which the detector must not take for the command), or talk under the
stream. It is ``silence`` when it holds no speech. Between ``partial_below`` and
``command_inside`` of a command the answer is neither clearly right nor clearly wrong:
such windows are not used (:data:`NOT_USED`).
"""

from __future__ import annotations

import numpy as np

from kws_research.contract import CLIP_SAMPLES, SAMPLE_RATE
from kws_research.labels import SILENCE, UNKNOWN

NOT_USED = -1
WINDOW_SECONDS = CLIP_SAMPLES / SAMPLE_RATE
MIN_SPEECH_SECONDS = 0.05  # less of a word than this at a window's edge is not speech heard


def window_labels(
    starts: np.ndarray,
    events: list[dict],
    classes: list[str],
    command_inside: float = 0.9,
    partial_below: float = 0.5,
    talk_under: bool = False,
) -> np.ndarray:
    """The class index for the window starting at each of ``starts`` (seconds), or
    :data:`NOT_USED`; ``talk_under``: speech plays under the whole stream (no silence)."""
    starts = np.asarray(starts, np.float64)
    quiet = classes.index(UNKNOWN if talk_under else SILENCE)
    labels = np.full(starts.shape, quiet, np.int64)
    best = np.zeros(starts.shape)  # the largest share of a command inside each window so far
    speech = np.zeros(starts.shape, bool)
    ambiguous = np.zeros(starts.shape, bool)
    order = np.argsort(starts)
    ordered = starts[order]
    for event in events:
        begin, end = float(event["start"]), float(event["end"])
        lo = int(np.searchsorted(ordered, begin - WINDOW_SECONDS, side="right"))
        hi = int(np.searchsorted(ordered, end, side="left"))
        if hi <= lo:
            continue
        near = order[lo:hi]
        overlap = np.minimum(end, starts[near] + WINDOW_SECONDS) - np.maximum(begin, starts[near])
        share = np.round(overlap / max(end - begin, 1e-9), 6)  # half is half, whatever the float sums
        heard = overlap >= min(MIN_SPEECH_SECONDS, end - begin)
        if event["kind"] != "command":
            speech[near] |= heard
            continue
        whole = (share >= command_inside) & (share > best[near])
        labels[near[whole]] = classes.index(event["label"])
        best[near] = np.maximum(best[near], np.where(share >= command_inside, share, 0.0))
        ambiguous[near] |= (share > partial_below) & (share < command_inside)
        speech[near] |= heard & (share <= partial_below)
    command = best > 0
    labels[~command & speech] = classes.index(UNKNOWN)
    labels[~command & ambiguous] = NOT_USED
    return labels
