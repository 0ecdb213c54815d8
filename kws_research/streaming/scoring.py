"""Every window of a stream through a model.

The window ending at sample ``16000 + i * hop`` is scored; its time is its end
(what the app knows when the result arrives). Two ways, the same numbers:

* :class:`FeatureScorer` (Keras models with a front end): each frame of the stream
  is computed once, then the classifier runs on every window's frames, normalised
  per window as the model does (:mod:`kws_research.models.streaming`);
* :class:`WindowScorer` (any ``predict``, e.g. a Core ML file on the reference
  runtime, or the raw-waveform baseline): every window through the whole model, a
  view into the stream cut into batches converted to float on the fly. It is also
  the reference the feature path is tested against.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Protocol

import numpy as np
import tensorflow as tf

from kws_research.contract import CLIP_SAMPLES, SAMPLE_RATE, samples_of, to_float
from kws_research.models.streaming import FrontendSplit, split_frontend

Predict = Callable[[np.ndarray], np.ndarray]
Scores = tuple[np.ndarray, np.ndarray, float]  # window end times (ms), probabilities [N, C], speed
FRAME_BATCH = 16384  # frames featurised per call: about 30 MB of float32 audio
# Windows per classifier call on features (98 x 40 floats each: 16 MB at 1024); on 2 cores a
# batch of 1024 runs TC-ResNet8's classifier about twice as fast per window as one of 256.
FEATURE_BATCH = 1024


class Scorer(Protocol):
    def clips(self, batch: np.ndarray) -> np.ndarray:
        """Probabilities of float clips ``[N, 16000]``."""

    def stream(self, audio: np.ndarray, hop_ms: float, batch_size: int = 256) -> Scores:
        """Every window of an int16 stream: (end times in ms, probabilities, seconds of audio per second)."""


def windows(audio: np.ndarray, hop: int) -> np.ndarray:
    """[N, 16000] view of the windows of an int16 stream, one every ``hop`` samples."""
    if audio.shape[0] < CLIP_SAMPLES:
        return np.zeros((0, CLIP_SAMPLES), audio.dtype)
    return np.lib.stride_tricks.sliding_window_view(audio, CLIP_SAMPLES)[::hop]


def window_times_ms(count: int, hop: int) -> np.ndarray:
    return (CLIP_SAMPLES + np.arange(count) * hop) * 1000.0 / SAMPLE_RATE


def _speed(audio: np.ndarray, elapsed: float) -> float:
    return audio.shape[0] / SAMPLE_RATE / elapsed if elapsed > 0 else float("inf")


def _joined(parts: list[np.ndarray]) -> np.ndarray:
    return np.concatenate(parts) if parts else np.zeros((0, 0), np.float32)


def score(predict: Predict, audio: np.ndarray, hop_ms: float, batch_size: int = 256) -> Scores:
    """Window by window: each window through the whole model."""
    hop = samples_of(hop_ms)
    view = windows(audio, hop)
    started = time.perf_counter()
    parts = [
        np.asarray(predict(to_float(view[i : i + batch_size])), np.float32) for i in range(0, len(view), batch_size)
    ]
    return window_times_ms(len(view), hop), _joined(parts), _speed(audio, time.perf_counter() - started)


@dataclass
class WindowScorer:
    """Scores with ``predict`` on whole windows."""

    predict: Predict

    def clips(self, batch: np.ndarray) -> np.ndarray:
        return np.asarray(self.predict(batch), np.float32)

    def stream(self, audio: np.ndarray, hop_ms: float, batch_size: int = 256) -> Scores:
        return score(self.predict, audio, hop_ms, batch_size)


class FeatureScorer:
    """A Keras model's stream scores from each frame computed once."""

    def __init__(self, model, split: FrontendSplit) -> None:
        self.model, self.split = model, split
        frontend, classifier = split.frontend, split.classifier
        self._features = tf.function(lambda audio: frontend.frame_features(audio[None])[0], reduce_retracing=True)
        self._classify = tf.function(
            lambda features: classifier(frontend.normalise(features), training=False), reduce_retracing=True
        )

    def clips(self, batch: np.ndarray) -> np.ndarray:
        return np.asarray(self.model.predict_on_batch(batch), np.float32)

    def frame_features(self, audio: np.ndarray, count: int) -> np.ndarray:
        """Features ``[count, F]`` of the stream's first ``count`` frames (before normalisation),
        featurised FRAME_BATCH frames at a time from the audio they span."""
        s = self.split.frontend.settings
        parts = []
        for first in range(0, count, FRAME_BATCH):
            frames = min(FRAME_BATCH, count - first)
            chunk = audio[first * s.hop : (first + frames - 1) * s.hop + s.window]
            parts.append(np.asarray(self._features(to_float(chunk)), np.float32))
        return np.concatenate(parts) if parts else np.zeros((0, s.features), np.float32)

    def stream(self, audio: np.ndarray, hop_ms: float, batch_size: int = 256) -> Scores:
        hop = samples_of(hop_ms)
        step = self.split.frames_per_hop(hop)
        if step is None:  # windows that do not share frames
            return score(self.clips, audio, hop_ms, batch_size)
        count = len(windows(audio, hop))
        s = self.split.frontend.settings
        started = time.perf_counter()
        parts = []
        if count:
            features = self.frame_features(audio, (count - 1) * step + s.frames)
            per_window = np.lib.stride_tricks.sliding_window_view(features, s.frames, axis=0)[::step]
            batch_size = max(batch_size, FEATURE_BATCH)
            for i in range(0, count, batch_size):
                batch = np.ascontiguousarray(per_window[i : i + batch_size].transpose(0, 2, 1))
                parts.append(np.asarray(self._classify(batch), np.float32))
        return window_times_ms(count, hop), _joined(parts), _speed(audio, time.perf_counter() - started)


def keras_predict(model) -> Predict:
    """A Keras model's probabilities for a float batch, without ``predict``'s per-call set-up."""
    return lambda batch: model.predict_on_batch(batch)


def keras_scorer(model) -> Scorer:
    """The feature-stream scorer when the model has a separable front end, else window by window."""
    split = split_frontend(model)
    return FeatureScorer(model, split) if split is not None else WindowScorer(keras_predict(model))
