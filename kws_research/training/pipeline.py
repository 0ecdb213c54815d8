"""tf.data input pipelines straight from the cached int16 arrays.

Batches are gathered from the memory-mapped cache by index (no WAV decoding,
no copy of the whole split into the graph), scaled to float32 as ``/ 2**15``,
augmented in the same NumPy step for training, and prefetched. The training pipeline
is one seeded reshuffled pass per epoch (the last batch of a pass may be smaller),
repeated; Keras ``fit`` gets ``steps_per_epoch`` = the batches of one pass, so an
epoch sees every training clip exactly once. A pipeline draws from :class:`Examples`:
a split's clips, or clips mixed with windows of streams (:mod:`.stream_windows`).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Protocol

import numpy as np
import tensorflow as tf

from kws_research.contract import CLIP_SAMPLES, INT16_SCALE
from kws_research.data.cache import SplitArrays
from kws_research.training.augment import WaveformAugmenter


class Examples(Protocol):
    """What a training pipeline draws from: a number of examples per epoch, and their int16
    rows and labels (which may change from epoch to epoch, e.g. stream windows)."""

    def __len__(self) -> int: ...

    def rows(self, index: np.ndarray, epoch: int) -> tuple[np.ndarray, np.ndarray]: ...


@dataclass
class ClipExamples:
    """The clips of a split, the same every epoch."""

    split: SplitArrays

    def __len__(self) -> int:
        return len(self.split)

    def rows(self, index: np.ndarray, epoch: int) -> tuple[np.ndarray, np.ndarray]:
        order = np.argsort(index)
        rows = np.empty((index.shape[0], CLIP_SAMPLES), dtype=self.split.audio.dtype)
        rows[order] = self.split.audio[index[order]]  # sorted reads are kinder to the page cache
        return rows, self.split.labels[index]


def examples_of(source: SplitArrays | Examples) -> Examples:
    return ClipExamples(source) if isinstance(source, SplitArrays) else source


def _loader(examples: Examples, steps: int, augmenter: WaveformAugmenter | None = None):
    """A tf.data map function: (step, indices) -> (float32 audio, labels), augmented;
    ``steps`` batches make an epoch."""

    def load(step: np.int64, index: np.ndarray):
        audio, labels = examples.rows(index, int(step) // steps)
        rows = audio.astype(np.float32) * np.float32(1 / INT16_SCALE)
        if augmenter is not None:
            rows = augmenter(rows, int(step))
        return rows, labels.astype(np.int32)

    def fn(step, index):
        rows, y = tf.numpy_function(load, [step, index], [tf.float32, tf.int32], stateful=False)
        rows.set_shape([None, CLIP_SAMPLES])
        y.set_shape([None])
        return rows, y

    return fn


def steps_per_epoch(source: SplitArrays | Examples, batch_size: int) -> int:
    return max(1, math.ceil(len(source) / batch_size))


def training_dataset(
    source: SplitArrays | Examples,
    num_classes: int,
    batch_size: int,
    seed: int,
    augmenter: WaveformAugmenter | None = None,
    first_epoch: int = 0,
) -> tf.data.Dataset:
    """Infinite, reshuffled each epoch, augmented batches of (float32 audio, one-hot);
    each run of :func:`steps_per_epoch` batches is one pass over the examples
    (``first_epoch``: a later ``fit`` of the same run goes on where the last one ended)."""
    examples = examples_of(source)
    count, steps = len(examples), steps_per_epoch(source, batch_size)
    ds = tf.data.Dataset.range(count).shuffle(count, seed=seed + first_epoch, reshuffle_each_iteration=True)
    ds = ds.batch(batch_size).repeat().enumerate(start=first_epoch * steps)
    ds = ds.map(_loader(examples, steps, augmenter), num_parallel_calls=tf.data.AUTOTUNE)
    return ds.map(lambda audio, y: (audio, tf.one_hot(y, num_classes))).prefetch(tf.data.AUTOTUNE)


def evaluation_dataset(split: SplitArrays, num_classes: int, batch_size: int) -> tf.data.Dataset:
    """One pass in order, no augmentation."""
    ds = tf.data.Dataset.range(len(split)).batch(batch_size).enumerate()
    ds = ds.map(_loader(ClipExamples(split), steps_per_epoch(split, batch_size)), num_parallel_calls=tf.data.AUTOTUNE)
    return ds.map(lambda audio, y: (audio, tf.one_hot(y, num_classes))).prefetch(tf.data.AUTOTUNE)
