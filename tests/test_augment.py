"""Waveform augmentation and the input pipelines."""

from __future__ import annotations

import numpy as np
import pytest

from kws_research.contract import CLIP_SAMPLES, INT16_SCALE, SAMPLE_RATE, to_float
from kws_research.data.cache import SplitArrays
from kws_research.errors import ConfigError
from kws_research.training import pipeline
from kws_research.training.augment import AugmentSettings, WaveformAugmenter


def augment(settings: AugmentSettings, audio: np.ndarray, step: int, noise=None, seed: int = 7) -> np.ndarray:
    noise = np.zeros(0, np.int16) if noise is None else noise
    augmenter = WaveformAugmenter(settings, noise, [(0, noise.size)], seed)
    return augmenter(audio.copy(), step)


def test_time_shift_moves_the_signal_within_the_limit_and_is_seeded():
    audio = np.zeros((32, CLIP_SAMPLES), "float32")
    audio[:, 8000] = 1.0
    settings = AugmentSettings(time_shift_ms=100)
    shifted = augment(settings, audio, step=0)
    positions = shifted.argmax(axis=1)
    assert (np.abs(positions - 8000) <= 1600).all() and len(set(positions)) > 5
    assert np.array_equal(shifted, augment(settings, audio, step=0))
    assert not np.array_equal(shifted, augment(settings, audio, step=1))
    assert not np.array_equal(shifted, augment(settings, audio, step=0, seed=8))


def test_noise_mixing_follows_probability_and_volume():
    rng = np.random.default_rng(0)
    noise = (rng.normal(0, 0.3, 5 * SAMPLE_RATE) * INT16_SCALE).clip(-32768, 32767).astype(np.int16)
    silent = np.zeros((256, CLIP_SAMPLES), "float32")
    mixed = augment(AugmentSettings(noise_probability=0.8, noise_volume=0.1), silent, step=3, noise=noise)
    noisy = np.abs(mixed).max(axis=1) > 0
    assert 0.65 < noisy.mean() < 0.95
    assert np.abs(mixed).max() <= 0.1 * np.abs(to_float(noise)).max() + 1e-6
    never = augment(AugmentSettings(noise_probability=0.0, noise_volume=0.1), silent, step=3, noise=noise)
    assert not never.any()


def test_speed_perturbation_resamples():
    t = np.arange(CLIP_SAMPLES) / SAMPLE_RATE
    tone = np.tile((0.5 * np.sin(2 * np.pi * 1000 * t)).astype("float32"), (2, 1))
    faster = augment(AugmentSettings(speed_range=(1.2, 1.2)), tone, step=0)
    middle = faster[0, 4000:12000]
    peak_hz = np.argmax(np.abs(np.fft.rfft(middle))) * SAMPLE_RATE / middle.size
    assert abs(peak_hz - 1200) < 10


def test_bad_settings_name_the_key():
    with pytest.raises(ConfigError, match="augment.noise_probability"):
        AugmentSettings.from_config({"noise_probability": 1.5})
    with pytest.raises(ConfigError, match="augment.speed_range"):
        AugmentSettings.from_config({"speed_range": [1.2, 0.8]})


def _split(n: int = 20) -> SplitArrays:
    rng = np.random.default_rng(1)
    audio = rng.integers(-3000, 3000, (n, CLIP_SAMPLES)).astype(np.int16)
    return SplitArrays(audio=audio, labels=np.arange(n) % 3, sources=[str(i) for i in range(n)])


def test_evaluation_pipeline_is_exact_and_in_order():
    split = _split()
    batches = list(pipeline.evaluation_dataset(split, 3, batch_size=8))
    audio = np.concatenate([b[0].numpy() for b in batches])
    labels = np.concatenate([b[1].numpy() for b in batches]).argmax(axis=1)
    assert np.array_equal(audio, to_float(split.audio))
    assert np.array_equal(labels, split.labels)


def test_training_pipeline_augments_with_the_step_as_seed():
    split = _split()
    settings = AugmentSettings(time_shift_ms=100)
    augmenter = WaveformAugmenter(settings, np.zeros(0, np.int16), [], seed=3)
    batches = iter(pipeline.training_dataset(split, 3, batch_size=20, seed=5, augmenter=augmenter))
    first = next(batches)[0].numpy()
    plain = next(iter(pipeline.training_dataset(split, 3, batch_size=20, seed=5)))[0].numpy()
    assert not np.array_equal(first, plain)
    assert np.array_equal(first, augmenter(plain.copy(), 0))  # batch 0 of the run is augmented with step 0


def test_training_pipeline_reshuffles_every_epoch_deterministically():
    split = _split()

    def epochs(seed):
        ds = pipeline.training_dataset(split, 3, batch_size=20, seed=seed)
        it = iter(ds)
        return [next(it)[0].numpy() for _ in range(2)]

    first, second = epochs(5)
    assert sorted(map(bytes, first)) == sorted(map(bytes, second))  # same clips
    assert not np.array_equal(first, second)  # other order
    again = epochs(5)
    assert np.array_equal(first, again[0]) and np.array_equal(second, again[1])
