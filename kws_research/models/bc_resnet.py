"""BC-ResNet (Kim et al., "Broadcasted Residual Learning for Efficient KWS", 2021).

Features are laid out as an image [T, F, C] (time first). A block:

    [transition: 1x1 conv -> BN -> ReLU]
    f2: frequency-wise depthwise conv (1x3) [-> keep every s-th bin] -> SubSpectralNorm = aux
    average over frequency -> f1: temporal depthwise conv (3x1, dilation d) -> BN
        -> swish -> 1x1 conv -> dropout                                          (T, 1, C)
    out = ReLU([x +] aux + broadcast(f1))

Network: conv 5x5 (frequency stride 2, 16w ch) -> 4 stages of blocks
(``blocks`` = 2,2,4,4; ``channels`` = 8,12,16,20 x w; frequency stride 2 at the
start of stages 2-3; dilations 1,2,4,8) -> depthwise 5x5 (frequency valid) ->
1x1 conv 32w -> average pooling -> softmax. ``width`` w: BC-ResNet-1 ... -8.

Every op converts to Core ML and runs on every CPU: TensorFlow's portable
(non-oneDNN) depthwise kernel supports only equal strides, so the frequency
stride is a stride-1 depthwise conv followed by a 1x1 pooling with stride
(1, s), which keeps every s-th bin. Frequency averaging is an AveragePooling2D, the
broadcast is an Add of [T, F, C] and [T, 1, C], and SubSpectralNorm becomes a
per-(frequency, channel) scale and shift at inference.
"""

from __future__ import annotations

import keras
from keras import ops

from kws_research.models.blocks import BN_MOMENTUM, batch_norm, classifier, conv_bn_relu
from kws_research.models.frontend import FrontendSettings, features
from kws_research.models.registry import waveform_input
from kws_research.serialization import register

L = keras.layers


@register
class SubSpectralNorm(keras.layers.Layer):
    """Batch norm with separate statistics per frequency sub-band (input [B, T, F, C]).

    When ``sub_bands`` does not divide the frequency bins (other mel counts), the
    largest number of bands below it that does is used."""

    def __init__(self, sub_bands: int = 5, momentum: float = BN_MOMENTUM, epsilon: float = 1e-3, **kwargs):
        super().__init__(**kwargs)
        self.sub_bands, self.momentum, self.epsilon = int(sub_bands), float(momentum), float(epsilon)

    def build(self, input_shape):
        freq, channels = int(input_shape[2]), int(input_shape[3])
        self.bands = max(d for d in range(1, self.sub_bands + 1) if freq % d == 0)
        shape = (self.bands, channels)
        self.gamma = self.add_weight(name="gamma", shape=shape, initializer="ones")
        self.beta = self.add_weight(name="beta", shape=shape, initializer="zeros")
        self.moving_mean = self.add_weight(name="moving_mean", shape=shape, initializer="zeros", trainable=False)
        self.moving_variance = self.add_weight(name="moving_variance", shape=shape, initializer="ones", trainable=False)
        self.repeat = freq // self.bands

    def call(self, x, training=False):
        if training:
            shape = ops.shape(x)
            grouped = ops.reshape(x, (shape[0], shape[1], self.bands, self.repeat, shape[3]))
            mean = ops.mean(grouped, axis=(0, 1, 3))
            variance = ops.var(grouped, axis=(0, 1, 3))
            self.moving_mean.assign(self.momentum * self.moving_mean + (1 - self.momentum) * mean)
            self.moving_variance.assign(self.momentum * self.moving_variance + (1 - self.momentum) * variance)
        else:
            mean, variance = self.moving_mean, self.moving_variance
        scale = self.gamma / ops.sqrt(variance + self.epsilon)
        shift = self.beta - mean * scale
        scale = ops.repeat(scale, self.repeat, axis=0)[None, None]
        shift = ops.repeat(shift, self.repeat, axis=0)[None, None]
        return x * scale + shift

    def get_config(self):
        return {**super().get_config(), "sub_bands": self.sub_bands, "momentum": self.momentum, "epsilon": self.epsilon}


def _block(x, channels: int, freq_stride: int, dilation: int, sub_bands: int, dropout: float, name: str):
    transition = x.shape[-1] != channels or freq_stride != 1
    if transition:
        x = conv_bn_relu(x, L.Conv2D(channels, 1, use_bias=False, name=f"{name}_expand"), f"{name}_expand")
    aux = L.DepthwiseConv2D((1, 3), padding="same", use_bias=False, name=f"{name}_freq_dw")(x)
    if freq_stride != 1:
        aux = L.MaxPooling2D((1, 1), strides=(1, freq_stride), name=f"{name}_freq_subsample")(aux)
    aux = SubSpectralNorm(sub_bands, name=f"{name}_ssn")(aux)
    y = L.AveragePooling2D((1, aux.shape[2]), name=f"{name}_freq_mean")(aux)
    y = L.DepthwiseConv2D((3, 1), dilation_rate=(dilation, 1), padding="same", use_bias=False, name=f"{name}_time_dw")(
        y
    )
    y = batch_norm(f"{name}_bn")(y)
    y = L.Activation("swish", name=f"{name}_swish")(y)
    y = L.Conv2D(channels, 1, use_bias=False, name=f"{name}_pw")(y)
    if dropout:
        y = L.SpatialDropout2D(dropout, name=f"{name}_dropout")(y)
    parts = [aux, y] if transition else [x, aux, y]
    return L.ReLU(name=f"{name}_out")(L.Add(name=f"{name}_add")(parts))


def build(
    num_classes: int,
    width: float = 1.0,
    blocks: list[int] = (2, 2, 4, 4),
    channels: list[int] = (8, 12, 16, 20),
    freq_strides: list[int] = (1, 2, 2, 1),
    dilations: list[int] = (1, 2, 4, 8),
    sub_bands: int = 5,
    dropout: float = 0.1,
    frontend: dict | None = None,
    spec_augment: dict | None = None,
) -> keras.Model:
    if not len(blocks) == len(channels) == len(freq_strides) == len(dilations):
        raise ValueError("blocks, channels, freq_strides and dilations need one entry per stage")
    settings = FrontendSettings.from_config(frontend)
    inputs = waveform_input()
    x = features(inputs, frontend, spec_augment)
    x = L.Reshape((settings.frames, settings.features, 1), name="to_image")(x)
    x = conv_bn_relu(
        x, L.Conv2D(int(16 * width), 5, strides=(1, 2), padding="same", use_bias=False, name="conv0"), "conv0"
    )
    for stage, (n, c, s, d) in enumerate(zip(blocks, channels, freq_strides, dilations), start=1):
        for i in range(n):
            x = _block(
                x, max(1, int(round(c * width))), s if i == 0 else 1, d, sub_bands, dropout, f"stage{stage}_{i + 1}"
            )
    freq = x.shape[2]
    x = L.ZeroPadding2D(((2, 2), (0, 0)), name="head_pad")(x)
    x = L.DepthwiseConv2D((5, freq), padding="valid", use_bias=False, name="head_dw")(x)
    x = conv_bn_relu(x, L.Conv2D(int(32 * width), 1, use_bias=False, name="head_pw"), "head_pw")
    x = L.GlobalAveragePooling2D(name="pool")(x)
    return keras.Model(inputs, classifier(x, num_classes), name="bc_resnet")
