"""tf.data input pipelines straight from the cached int16 arrays.

Batches are gathered from the memory-mapped cache by index (no WAV decoding,
no copy of the whole split into the graph), cast to float32 as ``/ 2**15``,
augmented on the batch for training, and prefetched. The training pipeline
repeats forever with a seeded reshuffle per epoch; Keras ``fit`` gets
``steps_per_epoch``.
"""

from __future__ import annotations

import math

import numpy as np
import tensorflow as tf

from kws_research.data.cache import SplitArrays
from kws_research.training.augment import WaveformAugmenter

SAMPLES = 16000


def _gather(split: SplitArrays):
    audio, labels = split.audio, split.labels.astype(np.int32)

    def gather(index: np.ndarray):
        order = np.argsort(index)
        rows = np.empty((index.shape[0], audio.shape[1]), dtype=np.int16)
        rows[order] = audio[index[order]]  # sorted reads are kinder to the page cache
        return rows, labels[index]

    def fn(index):
        rows, y = tf.numpy_function(gather, [index], [tf.int16, tf.int32], stateful=False)
        rows.set_shape([None, SAMPLES])
        y.set_shape([None])
        return rows, y

    return fn


def steps_per_epoch(split: SplitArrays, batch_size: int) -> int:
    return max(1, math.ceil(len(split) / batch_size))


def training_dataset(split: SplitArrays, num_classes: int, batch_size: int, seed: int,
                     augmenter: WaveformAugmenter | None = None) -> tf.data.Dataset:
    """Infinite, reshuffled each epoch, augmented batches of (float32 audio, one-hot)."""
    gather = _gather(split)
    ds = tf.data.Dataset.range(len(split)).shuffle(len(split), seed=seed, reshuffle_each_iteration=True)
    ds = ds.repeat().batch(batch_size).map(gather, num_parallel_calls=tf.data.AUTOTUNE)
    ds = ds.enumerate()

    def to_float(step, batch):
        rows, y = batch
        audio = tf.cast(rows, tf.float32) / 32768.0
        if augmenter is not None:
            audio = augmenter(audio, step)
        return audio, tf.one_hot(y, num_classes)

    return ds.map(to_float, num_parallel_calls=tf.data.AUTOTUNE).prefetch(tf.data.AUTOTUNE)


def evaluation_dataset(split: SplitArrays, num_classes: int, batch_size: int) -> tf.data.Dataset:
    """One pass in order, no augmentation."""
    gather = _gather(split)
    ds = tf.data.Dataset.range(len(split)).batch(batch_size).map(gather, num_parallel_calls=tf.data.AUTOTUNE)
    ds = ds.map(lambda rows, y: (tf.cast(rows, tf.float32) / 32768.0, tf.one_hot(y, num_classes)),
                num_parallel_calls=tf.data.AUTOTUNE)
    return ds.prefetch(tf.data.AUTOTUNE)
