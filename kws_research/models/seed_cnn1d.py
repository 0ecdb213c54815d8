"""The tutorial's raw-waveform CNN (CoreMLSpeechDemo), the baseline of every comparison.

Input (16000,) -> Reshape (16000, 1)
-> Conv1D 2, 4, 8, 16, 32, 64 filters (kernel 4, stride 2, relu, valid)
-> Flatten -> Dense 300 relu -> Dense 150 relu -> Dense softmax
"""

from __future__ import annotations

import keras

from kws_research.contract import CLIP_SAMPLES
from kws_research.models.blocks import classifier
from kws_research.models.registry import waveform_input


def build(
    num_classes: int,
    filters: list[int] = (2, 4, 8, 16, 32, 64),
    kernel_size: int = 4,
    strides: int = 2,
    dense_units: list[int] = (300, 150),
) -> keras.Model:
    """Defaults are exactly the tutorial network (about 4.8 M parameters for 12 classes)."""
    inputs = waveform_input()
    x = keras.layers.Reshape((CLIP_SAMPLES, 1), name="reshape")(inputs)
    for i, n in enumerate(filters):
        x = keras.layers.Conv1D(
            n, kernel_size, strides=strides, padding="valid", activation="relu", name=f"conv{i + 1}"
        )(x)
    x = keras.layers.Flatten(name="flatten")(x)
    for i, units in enumerate(dense_units):
        x = keras.layers.Dense(units, activation="relu", name=f"dense{i + 1}")(x)
    outputs = classifier(x, num_classes)
    return keras.Model(inputs, outputs, name="seed_cnn1d")
