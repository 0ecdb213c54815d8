"""Waveform augmentation as batched TensorFlow ops inside the tf.data pipeline.

Random time shift, speed perturbation by resampling, and background-noise
mixing (as in the TensorFlow speech_commands example). Every draw is
stateless and keyed by (seed, step), so a run is reproducible and each epoch
still sees new augmentations. SpecAugment lives in the model (it needs the
spectrogram) and is configured from the same ``augment`` group.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

import numpy as np
import tensorflow as tf

from kws_research.errors import ConfigError

SAMPLE_RATE = 16000


@dataclass(frozen=True)
class AugmentSettings:
    time_shift_ms: float = 0.0
    noise_probability: float = 0.0
    noise_volume: float = 0.0
    speed_range: tuple[float, float] | None = None

    @property
    def active(self) -> bool:
        return bool(self.time_shift_ms or (self.noise_probability and self.noise_volume) or self.speed_range)

    @classmethod
    def from_config(cls, cfg: Mapping) -> AugmentSettings:
        speed = cfg.get("speed_range")
        settings = cls(
            time_shift_ms=float(cfg.get("time_shift_ms") or 0.0),
            noise_probability=float(cfg.get("noise_probability") or 0.0),
            noise_volume=float(cfg.get("noise_volume") or 0.0),
            speed_range=(float(speed[0]), float(speed[1])) if speed else None,
        )
        settings.validate()
        return settings

    def validate(self) -> None:
        if not 0 <= self.time_shift_ms <= 500:
            raise ConfigError("augment.time_shift_ms", f"{self.time_shift_ms} is outside [0, 500]")
        if not 0 <= self.noise_probability <= 1:
            raise ConfigError("augment.noise_probability", f"{self.noise_probability} is not a probability")
        if not 0 <= self.noise_volume <= 1:
            raise ConfigError("augment.noise_volume", f"{self.noise_volume} is outside [0, 1]")
        if self.speed_range and not 0.5 <= self.speed_range[0] <= self.speed_range[1] <= 2.0:
            raise ConfigError("augment.speed_range", f"{list(self.speed_range)} must be [low, high] within [0.5, 2.0]")


class WaveformAugmenter:
    """Applies :class:`AugmentSettings` to float32 batches ``[B, 16000]``."""

    def __init__(self, settings: AugmentSettings, noise: np.ndarray, segments: list[tuple[int, int]], seed: int):
        self.settings = settings
        self.seed = int(seed)
        usable = [(a, b) for a, b in segments if b - a > SAMPLE_RATE]
        self.use_noise = bool(usable) and settings.noise_probability > 0 and settings.noise_volume > 0
        if self.use_noise:
            self.noise = tf.constant(np.asarray(noise, dtype=np.int16))
            self.seg_start = tf.constant([a for a, _ in usable], dtype=tf.int64)
            self.seg_span = tf.constant([b - a - SAMPLE_RATE for a, b in usable], dtype=tf.int64)

    def _seed(self, step, salt: int):
        return tf.stack([tf.cast(self.seed * 1000 + salt, tf.int64), tf.cast(step, tf.int64)])

    def __call__(self, audio: tf.Tensor, step: tf.Tensor) -> tf.Tensor:
        batch = tf.shape(audio)[0]
        if self.settings.speed_range:
            audio = self._speed(audio, batch, step)
        if self.settings.time_shift_ms:
            audio = self._shift(audio, batch, step)
        if self.use_noise:
            audio = self._noise(audio, batch, step)
        return tf.clip_by_value(audio, -1.0, 1.0)

    def _shift(self, audio, batch, step):
        limit = int(self.settings.time_shift_ms * SAMPLE_RATE / 1000)
        shift = tf.random.stateless_uniform([batch], self._seed(step, 1), -limit, limit + 1, dtype=tf.int32)
        padded = tf.pad(audio, [[0, 0], [limit, limit]])
        index = tf.range(SAMPLE_RATE)[None, :] + (limit - shift)[:, None]
        return tf.gather(padded, index, batch_dims=1)

    def _speed(self, audio, batch, step):
        low, high = self.settings.speed_range
        factor = tf.random.stateless_uniform([batch], self._seed(step, 2), low, high)
        centre = (SAMPLE_RATE - 1) / 2.0
        pos = (tf.range(SAMPLE_RATE, dtype=tf.float32)[None, :] - centre) * factor[:, None] + centre
        valid = tf.cast((pos >= 0) & (pos <= SAMPLE_RATE - 1), tf.float32)
        pos = tf.clip_by_value(pos, 0.0, SAMPLE_RATE - 1.0)
        left = tf.cast(tf.floor(pos), tf.int32)
        right = tf.minimum(left + 1, SAMPLE_RATE - 1)
        frac = pos - tf.cast(left, tf.float32)
        a = tf.gather(audio, left, batch_dims=1)
        b = tf.gather(audio, right, batch_dims=1)
        return (a + (b - a) * frac) * valid

    def _noise(self, audio, batch, step):
        n_seg = tf.shape(self.seg_start, out_type=tf.int64)[0]
        which = tf.random.stateless_uniform([batch], self._seed(step, 3), 0, n_seg, dtype=tf.int64)
        span = tf.gather(self.seg_span, which)
        offset = tf.cast(tf.random.stateless_uniform([batch], self._seed(step, 4)) * tf.cast(span + 1, tf.float32),
                         tf.int64)
        start = tf.gather(self.seg_start, which) + tf.minimum(offset, span)
        index = start[:, None] + tf.range(SAMPLE_RATE, dtype=tf.int64)[None, :]
        noise = tf.cast(tf.gather(self.noise, index), tf.float32) / 32768.0
        volume = tf.random.stateless_uniform([batch], self._seed(step, 5), 0.0, self.settings.noise_volume)
        use = tf.cast(tf.random.stateless_uniform([batch], self._seed(step, 6)) < self.settings.noise_probability,
                      tf.float32)
        return audio + noise * (volume * use)[:, None]
