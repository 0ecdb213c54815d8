"""TC-ResNet (Choi et al., 2019): temporal convolutions over features as channels.

    features [T, F] (F as channels) -> Conv1D 3 -> residual blocks
    (Conv1D k, stride s -> BN -> ReLU -> Conv1D k -> BN, + shortcut
     [1x1 Conv1D stride s -> BN -> ReLU when the shape changes]) -> ReLU
    -> global average pooling -> dropout -> softmax

``channels`` are the first conv's channels followed by one entry per block,
already multiplied by the width; TC-ResNet8 = [16, 24, 32, 48], TC-ResNet14 =
[16, 24, 24, 32, 32, 48, 48] (conf/model/tc_resnet.yaml = TC-ResNet8, tc_resnet14.yaml, tc_resnet8_15.yaml).
"""

from __future__ import annotations

import keras

from kws_research.models.blocks import batch_norm, classifier
from kws_research.models.frontend import features
from kws_research.models.registry import waveform_input

L = keras.layers


def _block(x, channels: int, kernel: int, stride: int, name: str):
    shortcut = x
    y = L.Conv1D(channels, kernel, strides=stride, padding="same", use_bias=False, name=f"{name}_conv1")(x)
    y = batch_norm(f"{name}_bn1")(y)
    y = L.ReLU(name=f"{name}_relu1")(y)
    y = L.Conv1D(channels, kernel, padding="same", use_bias=False, name=f"{name}_conv2")(y)
    y = batch_norm(f"{name}_bn2")(y)
    if stride != 1 or x.shape[-1] != channels:
        shortcut = L.Conv1D(channels, 1, strides=stride, use_bias=False, name=f"{name}_proj")(x)
        shortcut = batch_norm(f"{name}_proj_bn")(shortcut)
        shortcut = L.ReLU(name=f"{name}_proj_relu")(shortcut)
    return L.ReLU(name=f"{name}_out")(L.Add(name=f"{name}_add")([y, shortcut]))


def build(
    num_classes: int,
    channels: list[int] = (16, 24, 32, 48),
    kernel_size: int = 9,
    first_kernel: int = 3,
    strides: list[int] | None = None,
    dropout: float = 0.1,
    frontend: dict | None = None,
    spec_augment: dict | None = None,
) -> keras.Model:
    """``strides`` per block (default: 2 for the first block of each new width, as in the paper)."""
    channels = list(channels)
    if len(channels) < 2:
        raise ValueError("channels needs the first conv's width and at least one block")
    if strides is None:
        strides = [2 if c != channels[i] else 1 for i, c in enumerate(channels[1:])]
    if len(strides) != len(channels) - 1:
        raise ValueError(f"strides has {len(strides)} entries for {len(channels) - 1} blocks")
    inputs = waveform_input()
    x = features(inputs, frontend, spec_augment)
    x = L.Conv1D(channels[0], first_kernel, padding="same", use_bias=False, name="conv0")(x)
    for i, (c, s) in enumerate(zip(channels[1:], strides), start=1):
        x = _block(x, c, kernel_size, s, f"block{i}")
    x = L.GlobalAveragePooling1D(name="pool")(x)
    return keras.Model(inputs, classifier(x, num_classes, dropout), name="tc_resnet")
