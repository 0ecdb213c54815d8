"""Parameter count and multiply-accumulates (MACs) per 1 s clip, computed from the layers.

MACs count the multiplications of convolutions and dense layers (batch norm is
folded into them at deployment, pooling and activations are not MACs); custom
layers report their own through ``macs()``. The fixed front end (DFT and mel
weights) is counted separately from the learnable body.
"""

from __future__ import annotations

import math

import keras


def _prod(shape) -> int:
    return int(math.prod(int(d) for d in shape))


def layer_macs(layer: keras.layers.Layer) -> int:
    """MACs of one call of ``layer`` on one example."""
    if hasattr(layer, "macs"):
        return int(layer.macs())
    out_shape = layer.output.shape[1:]
    spatial = _prod(out_shape[:-1])
    if isinstance(layer, keras.layers.Dense):
        return spatial * _prod(layer.kernel.shape)
    if isinstance(layer, (keras.layers.SeparableConv1D, keras.layers.SeparableConv2D)):
        return spatial * (_prod(layer.depthwise_kernel.shape) + _prod(layer.pointwise_kernel.shape))
    if isinstance(layer, (keras.layers.DepthwiseConv1D, keras.layers.DepthwiseConv2D)):
        return spatial * _prod(layer.kernel.shape)
    if isinstance(layer, (keras.layers.Conv1D, keras.layers.Conv2D)):
        return spatial * _prod(layer.kernel.shape)
    return 0


def _layers(model: keras.Model):
    for layer in model.layers:
        if isinstance(layer, keras.Model):
            yield from _layers(layer)
        else:
            yield layer


def complexity(model: keras.Model) -> dict[str, int]:
    """``params`` (all weights but the fixed front end), ``trainable_params``,
    ``frontend_constants``, ``macs`` (whole model), ``frontend_macs``."""
    macs = frontend_macs = constants = 0
    for layer in _layers(model):
        n = layer_macs(layer)
        macs += n
        if getattr(layer, "is_frontend", False):
            frontend_macs += n
            constants += sum(_prod(w.shape) for w in layer.weights)
    total = sum(_prod(w.shape) for w in model.weights)
    trainable = sum(_prod(w.shape) for w in model.trainable_weights)
    return {
        "params": total - constants,
        "trainable_params": trainable,
        "frontend_constants": constants,
        "macs": macs,
        "frontend_macs": frontend_macs,
    }
