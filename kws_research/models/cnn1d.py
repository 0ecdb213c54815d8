"""A parametrised raw-waveform CNN family (the tutorial's model, made searchable).

    waveform [16000, 1] -> blocks x (Conv1D -> [BN] -> ReLU -> [MaxPool] -> [Dropout])
    -> global average/max pooling or Flatten -> dense layers -> softmax

``seed_cnn1d`` is one point of this space (no BN/pooling, Flatten, dense 300/150).
"""

from __future__ import annotations

import keras

from kws_research.contract import CLIP_SAMPLES
from kws_research.models import blocks
from kws_research.models.registry import waveform_input

L = keras.layers
POOLINGS = ("avg", "max", "flatten")


def build(
    num_classes: int,
    filters: list[int] = (16, 32, 64, 64, 128),
    kernel_size: int = 9,
    strides: list[int] | int = (4, 2, 2, 2, 2),
    pool_size: int | None = 2,
    batch_norm: bool = True,
    dropout: float = 0.1,
    global_pooling: str = "avg",
    dense_units: list[int] = (64,),
) -> keras.Model:
    filters = list(filters)
    strides = [strides] * len(filters) if isinstance(strides, int) else list(strides)
    if len(strides) != len(filters):
        raise ValueError(f"strides has {len(strides)} entries for {len(filters)} conv layers")
    if global_pooling not in POOLINGS:
        raise ValueError(f"global_pooling {global_pooling!r} is not one of {POOLINGS}")
    inputs = waveform_input()
    x = L.Reshape((CLIP_SAMPLES, 1), name="reshape")(inputs)
    for i, (n, s) in enumerate(zip(filters, strides), start=1):
        x = L.Conv1D(n, kernel_size, strides=s, padding="same", use_bias=not batch_norm, name=f"conv{i}")(x)
        if batch_norm:
            x = blocks.batch_norm(f"bn{i}")(x)
        x = L.ReLU(name=f"relu{i}")(x)
        if pool_size and x.shape[1] >= 2 * pool_size:
            x = L.MaxPooling1D(pool_size, name=f"pool{i}")(x)
        if dropout:
            x = L.Dropout(dropout, name=f"dropout{i}")(x)
    if x.shape[1] < 1:
        raise ValueError(
            f"the convolutions reduce the {CLIP_SAMPLES} samples to nothing; use fewer layers or smaller strides"
        )
    if global_pooling == "avg":
        x = L.GlobalAveragePooling1D(name="global_pool")(x)
    elif global_pooling == "max":
        x = L.GlobalMaxPooling1D(name="global_pool")(x)
    else:
        x = L.Flatten(name="flatten")(x)
    for i, units in enumerate(dense_units, start=1):
        x = L.Dense(units, activation="relu", name=f"dense{i}")(x)
    return keras.Model(inputs, blocks.classifier(x, num_classes), name="cnn1d")
