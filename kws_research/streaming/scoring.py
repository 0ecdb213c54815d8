"""Every window of a stream through a model, in batches.

The window ending at sample ``16000 + i * hop`` is scored; its time is its end
(what the app knows when the result arrives). The front end is in the graph, so
the model takes raw windows: a view into the stream (no copy) is cut into batches
converted to float on the fly.
"""

from __future__ import annotations

import time
from collections.abc import Callable

import numpy as np

from kws_research.contract import CLIP_SAMPLES, SAMPLE_RATE, to_float

Predict = Callable[[np.ndarray], np.ndarray]


def windows(audio: np.ndarray, hop_samples: int) -> np.ndarray:
    """[N, 16000] view of the windows of an int16 stream, one every ``hop_samples``."""
    if audio.shape[0] < CLIP_SAMPLES:
        return np.zeros((0, CLIP_SAMPLES), audio.dtype)
    return np.lib.stride_tricks.sliding_window_view(audio, CLIP_SAMPLES)[::hop_samples]


def window_times_ms(count: int, hop_samples: int) -> np.ndarray:
    return (CLIP_SAMPLES + np.arange(count) * hop_samples) * 1000.0 / SAMPLE_RATE


def score(
    predict: Predict, audio: np.ndarray, hop_ms: float, batch_size: int = 256
) -> tuple[np.ndarray, np.ndarray, float]:
    """(window end times in ms, probabilities [N, C], seconds of audio per second of scoring)."""
    hop = int(round(hop_ms * SAMPLE_RATE / 1000))
    view = windows(audio, hop)
    started = time.perf_counter()
    parts = [
        np.asarray(predict(to_float(view[i : i + batch_size])), np.float32) for i in range(0, len(view), batch_size)
    ]
    elapsed = time.perf_counter() - started
    scores = np.concatenate(parts) if parts else np.zeros((0, 0), np.float32)
    speed = audio.shape[0] / SAMPLE_RATE / elapsed if elapsed > 0 else float("inf")
    return window_times_ms(len(view), hop), scores, speed


def keras_predict(model) -> Predict:
    """A Keras model's probabilities for a float batch, without ``predict``'s per-call set-up."""
    return lambda batch: model.predict_on_batch(batch)
