"""Waveform augmentation of training batches inside the tf.data pipeline.

Random time shift, speed perturbation by resampling, reverberation through a
simulated room (``reverb``: the share of clips, ``rooms``: see
:mod:`kws_research.data.rooms`) and background-noise mixing (as in the TensorFlow
speech_commands example), in that order: the room shapes the talker, the noise is
at the microphone. Every draw is keyed by
(seed, step), so a run is reproducible and each epoch still sees new
augmentations. SpecAugment lives in the model (it needs the spectrogram) and
is configured from the same ``augment`` group.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

import numpy as np

from kws_research.contract import CLIP_SAMPLES, INT16_SCALE, SAMPLE_RATE
from kws_research.data.rooms import Rooms, RoomSettings, reverberate
from kws_research.errors import ConfigError


@dataclass(frozen=True)
class AugmentSettings:
    time_shift_ms: float = 0.0
    noise_probability: float = 0.0
    noise_volume: float = 0.0
    speed_range: tuple[float, float] | None = None
    reverb: float = 0.0
    rooms: RoomSettings = RoomSettings()

    @property
    def active(self) -> bool:
        return bool(
            self.time_shift_ms or (self.noise_probability and self.noise_volume) or self.speed_range or self.reverb
        )

    @classmethod
    def from_config(cls, cfg: Mapping) -> AugmentSettings:
        speed = cfg.get("speed_range")
        settings = cls(
            time_shift_ms=float(cfg.get("time_shift_ms") or 0.0),
            noise_probability=float(cfg.get("noise_probability") or 0.0),
            noise_volume=float(cfg.get("noise_volume") or 0.0),
            speed_range=(float(speed[0]), float(speed[1])) if speed else None,
            reverb=float(cfg.get("reverb") or 0.0),
            rooms=RoomSettings.from_config(cfg.get("rooms"), "augment.rooms"),
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
        if not 0 <= self.reverb <= 1:
            raise ConfigError("augment.reverb", f"{self.reverb} is not a share of clips in [0, 1]")
        if self.speed_range and not 0.5 <= self.speed_range[0] <= self.speed_range[1] <= 2.0:
            raise ConfigError("augment.speed_range", f"{list(self.speed_range)} must be [low, high] within [0.5, 2.0]")


class WaveformAugmenter:
    """Applies :class:`AugmentSettings` to float32 batches ``[B, CLIP_SAMPLES]`` in NumPy.

    It runs inside the tf.data pipeline's batch loader (``tf.numpy_function``):
    per-row slices and copies cost a fraction of the equivalent TensorFlow
    gathers. Every draw comes from a generator keyed by (seed, step), so batches
    are reproducible whatever the pipeline's parallelism.
    """

    def __init__(
        self,
        settings: AugmentSettings,
        noise: np.ndarray,
        segments: list[tuple[int, int]],
        seed: int,
        rooms: Rooms | None = None,
    ):
        if settings.reverb and rooms is None:
            raise ValueError("augment.reverb needs the rooms (data.rooms.rooms_for)")
        self.settings = settings
        self.rooms = rooms
        self.seed = int(seed)
        self.noise = np.asarray(noise)
        self.segments = [(a, b) for a, b in segments if b - a > CLIP_SAMPLES]
        self.use_noise = bool(self.segments) and settings.noise_probability > 0 and settings.noise_volume > 0

    def __call__(self, audio: np.ndarray, step: int) -> np.ndarray:
        rng = np.random.default_rng([self.seed, int(step)])
        audio = np.asarray(audio, dtype=np.float32)
        if self.settings.speed_range:
            audio = self._speed(audio, rng)
        if self.settings.time_shift_ms:
            audio = self._shift(audio, rng)
        if self.settings.reverb:
            audio = self._reverb(audio, rng)
        if self.use_noise:
            audio = self._noise(audio, rng)
        return np.clip(audio, -1.0, 1.0, out=audio)

    def _shift(self, audio: np.ndarray, rng: np.random.Generator) -> np.ndarray:
        limit = int(self.settings.time_shift_ms * SAMPLE_RATE / 1000)
        out = np.zeros_like(audio)
        for row, shift in enumerate(rng.integers(-limit, limit + 1, size=audio.shape[0])):
            if shift >= 0:
                out[row, shift:] = audio[row, : CLIP_SAMPLES - shift]
            else:
                out[row, :shift] = audio[row, -shift:]
        return out

    def _speed(self, audio: np.ndarray, rng: np.random.Generator) -> np.ndarray:
        """Resample each clip about its centre (faster = shorter and higher), zero outside."""
        low, high = self.settings.speed_range
        grid = np.arange(CLIP_SAMPLES, dtype=np.float32)
        centre = (CLIP_SAMPLES - 1) / 2.0
        out = np.empty_like(audio)
        for row, factor in enumerate(rng.uniform(low, high, size=audio.shape[0])):
            out[row] = np.interp((grid - centre) * factor + centre, grid, audio[row], left=0.0, right=0.0)
        return out

    def _reverb(self, audio: np.ndarray, rng: np.random.Generator) -> np.ndarray:
        """A share of the clips, each through one of the rooms (same length and RMS)."""
        for row in np.flatnonzero(rng.random(audio.shape[0]) < self.settings.reverb):
            audio[row] = reverberate(audio[row], self.rooms.pick(rng))
        return audio

    def _noise(self, audio: np.ndarray, rng: np.random.Generator) -> np.ndarray:
        batch = audio.shape[0]
        which = rng.integers(len(self.segments), size=batch)
        offsets = rng.random(batch)
        volume = rng.uniform(0.0, self.settings.noise_volume, size=batch).astype(np.float32) / INT16_SCALE
        used = rng.random(batch) < self.settings.noise_probability
        for row in np.nonzero(used)[0]:
            start, stop = self.segments[which[row]]
            begin = start + int(offsets[row] * (stop - start - CLIP_SAMPLES))
            audio[row] += self.noise[begin : begin + CLIP_SAMPLES] * volume[row]
        return audio
