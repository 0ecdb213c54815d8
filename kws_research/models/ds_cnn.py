"""DS-CNN (Zhang et al., "Hello Edge", 2017): depthwise-separable CNN on log-mel features.

    features [T, F] -> [T, F, 1] -> Conv2D (filters, 10x4, stride 2x2) -> BN -> ReLU
    -> blocks x (DepthwiseConv2D 3x3 -> BN -> ReLU -> Conv2D 1x1 -> BN -> ReLU)
    -> global average pooling -> dropout -> softmax

Presets (conf/model/ds_cnn.yaml = S, ds_cnn_m.yaml, ds_cnn_l.yaml) follow the paper's S/M/L widths.
"""

from __future__ import annotations

import keras

from kws_research.models.blocks import classifier, conv_bn_relu
from kws_research.models.frontend import FrontendSettings, features
from kws_research.models.registry import waveform_input

L = keras.layers


def build(
    num_classes: int,
    filters: int = 64,
    blocks: int = 4,
    first_kernel: list[int] = (10, 4),
    first_strides: list[int] = (2, 2),
    kernel_size: int = 3,
    dropout: float = 0.2,
    frontend: dict | None = None,
    spec_augment: dict | None = None,
) -> keras.Model:
    settings = FrontendSettings.from_config(frontend)
    inputs = waveform_input()
    x = features(inputs, frontend, spec_augment)
    x = L.Reshape((settings.frames, settings.features, 1), name="to_image")(x)
    x = conv_bn_relu(
        x,
        L.Conv2D(
            filters, tuple(first_kernel), strides=tuple(first_strides), padding="same", use_bias=False, name="conv0"
        ),
        "conv0",
    )
    for i in range(1, blocks + 1):
        x = conv_bn_relu(x, L.DepthwiseConv2D(kernel_size, padding="same", use_bias=False, name=f"dw{i}"), f"dw{i}")
        x = conv_bn_relu(x, L.Conv2D(filters, 1, use_bias=False, name=f"pw{i}"), f"pw{i}")
    x = L.GlobalAveragePooling2D(name="pool")(x)
    return keras.Model(inputs, classifier(x, num_classes, dropout), name="ds_cnn")
