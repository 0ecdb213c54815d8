"""Executes a saved NeuralNetwork model (.mlmodel) with NumPy, layer by layer from its spec.

Each layer is computed in float64 from the stored (float32) weights and its
output rounded to float32, as Core ML stores it.
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np

from kws_research.coreml.mil_runtime import UnsupportedOp
from kws_research.coreml.numerics import conv, pool, same_padding, sigmoid, softmax


def weights(params, shape=None) -> np.ndarray:
    """A WeightParams message as float64 (stored as float, float16 or 8-bit linear quantized)."""
    if len(params.floatValue):
        values = np.asarray(params.floatValue, dtype=np.float32).astype(np.float64)
    elif params.float16Value:
        values = np.frombuffer(params.float16Value, dtype=np.float16).astype(np.float64)
    elif (
        params.rawValue and params.quantization.numberOfBits == 8 and params.quantization.HasField("linearQuantization")
    ):
        q = np.frombuffer(params.rawValue, dtype=np.uint8).astype(np.float64)
        scale = np.asarray(params.quantization.linearQuantization.scale, dtype=np.float32).astype(np.float64)
        bias = np.asarray(params.quantization.linearQuantization.bias, dtype=np.float32).astype(np.float64)
        rows = scale.size if scale.size > 1 else 1
        q = q.reshape(rows, -1)
        values = (q * scale.reshape(-1, 1) + bias.reshape(-1, 1)).reshape(-1)
    elif params.rawValue:
        values = np.frombuffer(params.rawValue, dtype=np.float32).astype(np.float64)
    else:
        values = np.zeros(0, dtype=np.float64)
    return values.reshape(shape) if shape is not None else values


def _border_pads(padding_amounts) -> list[tuple[int, int]]:
    amounts = list(padding_amounts.borderAmounts)
    return [(a.startEdgeSize, a.endEdgeSize) for a in amounts] if amounts else [(0, 0), (0, 0)]


def _spatial_pads(p, x, kernel, stride, dilation) -> list[tuple[int, int]]:
    kind = (
        p.WhichOneof("ConvolutionPaddingType") if hasattr(p, "outputChannels") else p.WhichOneof("PoolingPaddingType")
    )
    if kind == "valid":
        return _border_pads(p.valid.paddingAmounts)
    if kind == "same":
        lower = p.same.asymmetryMode == 1  # TOP_LEFT_HEAVY
        return [same_padding(s, k, st, d, lower) for s, k, st, d in zip(x.shape[-2:], kernel, stride, dilation)]
    raise UnsupportedOp(f"padding type {kind!r}")


def _convolution(layer, inputs):
    p = layer.convolution
    if p.isDeconvolution:
        raise UnsupportedOp("deconvolution")
    x = inputs[0]
    kernel = tuple(p.kernelSize) or (3, 3)
    stride = tuple(p.stride) or (1, 1)
    dilation = tuple(p.dilationFactor) or (1, 1)
    groups = max(1, p.nGroups)
    w = weights(p.weights, (p.outputChannels, p.kernelChannels, *kernel))
    b = weights(p.bias) if p.hasBias else None
    lead = x.shape[:-3]
    x4 = x.reshape((-1,) + x.shape[-3:])
    y = conv(x4, w, b, stride, _spatial_pads(p, x4, kernel, stride, dilation), dilation, groups)
    return y.reshape(lead + y.shape[1:])


def _pooling(layer, inputs):
    p = layer.pooling
    x = inputs[0]
    kinds = {0: "max", 1: "avg"}
    if p.type not in kinds:
        raise UnsupportedOp(f"pooling type {p.type}")
    if p.globalPooling:
        axis = (-2, -1)
        return x.max(axis=axis, keepdims=True) if p.type == 0 else x.mean(axis=axis, keepdims=True)
    kernel, stride = tuple(p.kernelSize), tuple(p.stride)
    if p.WhichOneof("PoolingPaddingType") == "includeLastPixel":
        raise UnsupportedOp("pooling with includeLastPixel padding")
    pads = _spatial_pads(p, x, kernel, stride, (1, 1))
    return pool(x, kernel, stride, pads, kinds[p.type], p.avgPoolExcludePadding)


def _activation(layer, inputs):
    p = layer.activation
    kind = p.WhichOneof("NonlinearityType")
    x = inputs[0]
    if kind == "ReLU":
        return np.maximum(x, 0)
    if kind == "sigmoid":
        return sigmoid(x)
    if kind == "tanh":
        return np.tanh(x)
    if kind == "linear":
        return p.linear.alpha * x + p.linear.beta
    if kind == "leakyReLU":
        return np.where(x > 0, x, p.leakyReLU.alpha * x)
    raise UnsupportedOp(f"activation {kind}")


def _unary(layer, inputs):
    p = layer.unary
    x = p.scale * inputs[0] + p.shift
    functions = {
        0: lambda v: np.sqrt(v),
        1: lambda v: 1.0 / np.sqrt(v + p.epsilon),
        2: lambda v: 1.0 / (v + p.epsilon),
        3: lambda v: np.power(v, p.alpha),
        4: np.exp,
        5: lambda v: np.log(v + p.epsilon),
        6: np.abs,
        7: lambda v: np.maximum(v, p.alpha),
    }
    if p.type not in functions:
        raise UnsupportedOp(f"unary type {p.type}")
    return functions[p.type](x)


def _inner_product(layer, inputs):
    p = layer.innerProduct
    w = weights(p.weights, (p.outputChannels, p.inputChannels))
    y = inputs[0] @ w.T
    return y + weights(p.bias) if p.hasBias else y


def _batched_matmul(layer, inputs):
    p = layer.batchedMatmul
    if len(inputs) == 2:
        a, b = inputs
        if p.transposeA:
            a = np.swapaxes(a, -1, -2)
        if p.transposeB:
            b = np.swapaxes(b, -1, -2)
        return np.matmul(a, b)
    a = np.swapaxes(inputs[0], -1, -2) if p.transposeA else inputs[0]
    w = weights(p.weights, (p.weightMatrixSecondDimension, p.weightMatrixFirstDimension)).T
    y = a @ w
    return y + weights(p.bias) if p.hasBias else y


def _padding(layer, inputs):
    p = layer.padding
    if p.WhichOneof("PaddingType") != "constant":
        raise UnsupportedOp("non-constant padding")
    x = inputs[0]
    pads = [(0, 0)] * (x.ndim - 2) + _border_pads(p.paddingAmounts)
    return np.pad(x, pads, constant_values=p.constant.value)


def _reduce(kind: str, function):
    def run(layer, inputs):
        p = getattr(layer, kind)
        axes = None if p.reduceAll else tuple(p.axes)
        return function(inputs[0], axis=axes, keepdims=p.keepDims)

    return run


def _batchnorm(layer, inputs):
    p = layer.batchnorm
    if p.computeMeanVar or p.instanceNormalization:
        raise UnsupportedOp("batchnorm computing its own statistics")
    x = inputs[0]
    shape = (-1, 1, 1)
    mean, var = weights(p.mean).reshape(shape), weights(p.variance).reshape(shape)
    return (x - mean) / np.sqrt(var + p.epsilon) * weights(p.gamma).reshape(shape) + weights(p.beta).reshape(shape)


def _expand_dims(layer, inputs):
    x = inputs[0]
    axes = list(layer.expandDims.axes)
    rank = x.ndim + len(axes)
    for axis in sorted(a % rank for a in axes):
        x = np.expand_dims(x, axis)
    return x


def _slice_static(layer, inputs):
    p = layer.sliceStatic
    x = inputs[0]
    index = []
    for axis in range(x.ndim):
        begin = None if p.beginMasks[axis] else p.beginIds[axis]
        end = None if p.endMasks[axis] else p.endIds[axis]
        index.append(slice(begin, end, p.strides[axis] or 1))
    y = x[tuple(index)]
    squeeze = tuple(i for i, s in enumerate(p.squeezeMasks) if s)
    return np.squeeze(y, axis=squeeze) if squeeze else y


def _slice(layer, inputs):
    """The rank-agnostic slice of one axis: channel, height or width = the third, second or last axis."""
    p = layer.slice
    if p.endIndex <= 0 or p.startIndex < 0:
        raise UnsupportedOp(f"slice with start {p.startIndex}, end {p.endIndex}")
    x = inputs[0]
    index = [slice(None)] * x.ndim
    index[x.ndim - 3 + int(p.axis)] = slice(p.startIndex, p.endIndex, p.stride or 1)
    return x[tuple(index)]


def _sum(values):
    total = values[0]
    for v in values[1:]:
        total = total + v
    return total


def _product(values):
    total = values[0]
    for v in values[1:]:
        total = total * v
    return total


LAYERS: dict[str, Callable] = {
    "convolution": _convolution,
    "pooling": _pooling,
    "activation": _activation,
    "unary": _unary,
    "innerProduct": _inner_product,
    "batchedMatmul": _batched_matmul,
    "padding": _padding,
    "reduceMean": _reduce("reduceMean", np.mean),
    "reduceMax": _reduce("reduceMax", np.max),
    "reduceSum": _reduce("reduceSum", np.sum),
    "batchnorm": _batchnorm,
    "expandDims": _expand_dims,
    "reshapeStatic": lambda layer, i: i[0].reshape(tuple(layer.reshapeStatic.targetShape)),
    "transpose": lambda layer, i: np.transpose(i[0], tuple(layer.transpose.axes)),
    "squeeze": lambda layer, i: (
        np.squeeze(i[0]) if layer.squeeze.squeezeAll else np.squeeze(i[0], axis=tuple(layer.squeeze.axes))
    ),
    "softmaxND": lambda layer, i: softmax(i[0], layer.softmaxND.axis),
    "softmax": lambda layer, i: softmax(i[0], -3 if i[0].ndim >= 3 else -1),
    "add": lambda layer, i: _sum(i) + (layer.add.alpha if len(i) == 1 else 0.0),
    "multiply": lambda layer, i: _product(i) * (layer.multiply.alpha if len(i) == 1 else 1.0),
    "addBroadcastable": lambda layer, i: i[0] + i[1],
    "multiplyBroadcastable": lambda layer, i: i[0] * i[1],
    "subtractBroadcastable": lambda layer, i: i[0] - i[1],
    "divideBroadcastable": lambda layer, i: i[0] / i[1],
    "loadConstantND": lambda layer, i: weights(layer.loadConstantND.data, tuple(layer.loadConstantND.shape)),
    "concatND": lambda layer, i: np.concatenate(i, axis=layer.concatND.axis),
    "sliceStatic": _slice_static,
    "slice": _slice,
}


class NeuralNetwork:
    """The layers of a NeuralNetwork model, ready to run on one example at a time: a
    classifier (:meth:`run`) or any network of named inputs and outputs (:meth:`run_all`)."""

    def __init__(self, mlmodel) -> None:
        spec = mlmodel.get_spec()
        kind = spec.WhichOneof("Type")
        if kind not in ("neuralNetworkClassifier", "neuralNetwork"):
            raise UnsupportedOp(f"model type {kind}; export builds neuralNetwork(Classifier) models")
        network = getattr(spec, kind)
        self.layers = list(network.layers)
        self.shapes = {i.name: tuple(i.type.multiArrayType.shape) for i in spec.description.input}
        self.input_name = spec.description.input[0].name
        self.input_shape = self.shapes[self.input_name]
        self.outputs = [o.name for o in spec.description.output]
        self.labels: list[str] = []
        self.probabilities: str | None = None
        if kind == "neuralNetworkClassifier":
            self.labels = [str(s) for s in network.stringClassLabels.vector] or [
                str(i) for i in network.int64ClassLabels.vector
            ]
            self.probabilities = network.labelProbabilityLayerName
        for layer in self.layers:
            kind = layer.WhichOneof("layer")
            if kind not in LAYERS:
                raise UnsupportedOp(
                    f"Core ML layer type '{kind}' in layer '{layer.name}' has no reference "
                    "implementation in kws_research/coreml/nn_runtime.py"
                )

    def _execute(self, env: dict) -> dict:
        for layer in self.layers:
            values = [env[name].astype(np.float64) for name in layer.input]
            try:
                result = LAYERS[layer.WhichOneof("layer")](layer, values)
            except UnsupportedOp as exc:
                raise UnsupportedOp(f"{exc} in layer '{layer.name}' is not supported by the reference runtime") from exc
            env[layer.output[0]] = np.asarray(result, dtype=np.float32)
        return env

    def run(self, audio: np.ndarray) -> np.ndarray:
        if self.probabilities is None:
            raise UnsupportedOp("the network is not a classifier; run it with run_all")
        env = self._execute({self.input_name: np.asarray(audio, dtype=np.float32).reshape(self.input_shape)})
        return env[self.probabilities].reshape(-1)

    def run_all(self, feeds: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        """Every output of the network for float32 inputs given by name."""
        env = {name: np.asarray(feeds[name], dtype=np.float32).reshape(shape) for name, shape in self.shapes.items()}
        env = self._execute(env)
        return {name: env[name] for name in self.outputs}
