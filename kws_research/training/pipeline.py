"""tf.data input pipelines straight from the cached int16 arrays.

Batches are gathered from the memory-mapped cache by index (no WAV decoding,
no copy of the whole split into the graph), scaled to float32 as ``/ 2**15``,
augmented in the same NumPy step for training, and prefetched. The training pipeline
is one seeded reshuffled pass per epoch (the last batch of a pass may be smaller),
repeated; Keras ``fit`` gets ``steps_per_epoch`` = the batches of one pass, so an
epoch sees every training clip exactly once.
"""

from __future__ import annotations

import math

import numpy as np
import tensorflow as tf

from kws_research.contract import CLIP_SAMPLES, INT16_SCALE
from kws_research.data.cache import SplitArrays
from kws_research.training.augment import WaveformAugmenter


def _loader(split: SplitArrays, augmenter: WaveformAugmenter | None = None):
    """A tf.data map function: (step, indices) -> (float32 audio, labels), augmented."""
    audio, labels = split.audio, split.labels.astype(np.int32)

    def load(step: np.int64, index: np.ndarray):
        order = np.argsort(index)
        rows = np.empty((index.shape[0], audio.shape[1]), dtype=np.float32)
        rows[order] = audio[index[order]]  # sorted reads are kinder to the page cache
        rows *= np.float32(1 / INT16_SCALE)
        if augmenter is not None:
            rows = augmenter(rows, int(step))
        return rows, labels[index]

    def fn(step, index):
        rows, y = tf.numpy_function(load, [step, index], [tf.float32, tf.int32], stateful=False)
        rows.set_shape([None, CLIP_SAMPLES])
        y.set_shape([None])
        return rows, y

    return fn


def steps_per_epoch(split: SplitArrays, batch_size: int) -> int:
    return max(1, math.ceil(len(split) / batch_size))


def training_dataset(
    split: SplitArrays, num_classes: int, batch_size: int, seed: int, augmenter: WaveformAugmenter | None = None
) -> tf.data.Dataset:
    """Infinite, reshuffled each epoch, augmented batches of (float32 audio, one-hot);
    each run of :func:`steps_per_epoch` batches is one pass over the split."""
    ds = tf.data.Dataset.range(len(split)).shuffle(len(split), seed=seed, reshuffle_each_iteration=True)
    ds = ds.batch(batch_size).repeat().enumerate()
    ds = ds.map(_loader(split, augmenter), num_parallel_calls=tf.data.AUTOTUNE)
    return ds.map(lambda audio, y: (audio, tf.one_hot(y, num_classes))).prefetch(tf.data.AUTOTUNE)


def evaluation_dataset(split: SplitArrays, num_classes: int, batch_size: int) -> tf.data.Dataset:
    """One pass in order, no augmentation."""
    ds = tf.data.Dataset.range(len(split)).batch(batch_size).enumerate()
    ds = ds.map(_loader(split), num_parallel_calls=tf.data.AUTOTUNE)
    return ds.map(lambda audio, y: (audio, tf.one_hot(y, num_classes))).prefetch(tf.data.AUTOTUNE)
