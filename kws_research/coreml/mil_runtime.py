"""Executes a saved ML Program (.mlpackage) with NumPy.

The program comes back through coremltools' own MIL proto loader (weights from
the package's weight file included). Every op is computed in float64 and its
result stored in the op's declared output type: an fp32 program rounds each
tensor to float32, an fp16 program to fp16, as Core ML stores them. Computing
each op exactly before rounding keeps the reference's own error below the
float32 noise of the Keras model it is compared with.
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np

from kws_research.coreml.numerics import conv, pool, same_padding, sigmoid, softmax
from kws_research.errors import KwsError

DTYPES = {
    "fp16": np.float16,
    "fp32": np.float32,
    "fp64": np.float64,
    "int8": np.int8,
    "uint8": np.uint8,
    "int16": np.int16,
    "int32": np.int32,
    "int64": np.int64,
    "bool": np.bool_,
}


class UnsupportedOp(KwsError):
    """The saved model uses an op the reference runtime cannot execute."""


def _pads(kind: str, pad, x_shape, kernel, strides, dilations) -> list[tuple[int, int]]:
    spatial = len(kernel)
    sizes = x_shape[-spatial:]
    if kind == "valid":
        return [(0, 0)] * spatial
    if kind in ("same", "same_lower"):
        return [
            same_padding(s, k, st, d, lower=kind == "same_lower")
            for s, k, st, d in zip(sizes, kernel, strides, dilations)
        ]
    if kind == "custom":
        pad = [int(p) for p in pad]
        return [(pad[2 * i], pad[2 * i + 1]) for i in range(spatial)]
    raise UnsupportedOp(f"pad_type {kind!r}")


def _conv(a):
    x, w = a["x"], a["weight"]
    spatial = w.ndim - 2
    strides = tuple(int(s) for s in a.get("strides", [1] * spatial))
    dilations = tuple(int(d) for d in a.get("dilations", [1] * spatial))
    pads = _pads(str(a.get("pad_type", "valid")), a.get("pad"), x.shape, w.shape[2:], strides, dilations)
    return conv(x, w, a.get("bias"), strides, pads, dilations, int(a.get("groups", 1)))


def _pool(kind: str):
    def run(a):
        x, kernel = a["x"], tuple(int(k) for k in a["kernel_sizes"])
        strides = tuple(int(s) for s in a.get("strides", kernel))
        if a.get("ceil_mode"):
            raise UnsupportedOp(f"{kind}_pool with ceil_mode=True")
        pads = _pads(str(a.get("pad_type", "valid")), a.get("pad"), x.shape, kernel, strides, (1,) * len(kernel))
        return pool(x, kernel, strides, pads, kind, bool(a.get("exclude_padding_from_average", True)))

    return run


def _axes(a, key="axes"):
    axes = a.get(key)
    return None if axes is None else tuple(int(v) for v in np.atleast_1d(axes))


def _expand_dims(a):
    x = a["x"]
    rank = x.ndim + len(_axes(a))
    for axis in sorted(ax % rank for ax in _axes(a)):
        x = np.expand_dims(x, axis)
    return x


def _reshape(a):
    x, shape = a["x"], [int(s) for s in a["shape"]]
    shape = [x.shape[i] if s == 0 else s for i, s in enumerate(shape)]
    return x.reshape(shape)


def _matmul(a):
    x, y = a["x"], a["y"]
    if a.get("transpose_x"):
        x = np.swapaxes(x, -1, -2)
    if a.get("transpose_y"):
        y = np.swapaxes(y, -1, -2)
    return np.matmul(x, y)


def _batch_norm(a):
    x = a["x"]
    shape = (1, -1) + (1,) * (x.ndim - 2)
    y = (x - a["mean"].reshape(shape)) / np.sqrt(a["variance"].reshape(shape) + float(a.get("epsilon", 1e-5)))
    if a.get("gamma") is not None:
        y = y * a["gamma"].reshape(shape)
    if a.get("beta") is not None:
        y = y + a["beta"].reshape(shape)
    return y


def _pad(a):
    x, pad = a["x"], [int(p) for p in a["pad"]]
    if str(a.get("mode", "constant")) != "constant":
        raise UnsupportedOp(f"pad mode {a.get('mode')!r}")
    pairs = [(pad[2 * i], pad[2 * i + 1]) for i in range(len(pad) // 2)]
    pairs = [(0, 0)] * (x.ndim - len(pairs)) + pairs
    return np.pad(x, pairs, constant_values=float(a.get("constant_val", 0.0)))


def _slice(a):
    x = a["x"]
    begin, end = [int(v) for v in a["begin"]], [int(v) for v in a["end"]]
    stride = [int(v) for v in a.get("stride", [1] * x.ndim)]
    bmask = list(a.get("begin_mask", [False] * x.ndim))
    emask = list(a.get("end_mask", [False] * x.ndim))
    squeeze = list(a.get("squeeze_mask", [False] * x.ndim))
    index = tuple(
        slice(None if bm else b, None if em else e, s) for b, e, s, bm, em in zip(begin, end, stride, bmask, emask)
    )
    y = x[index]
    return y.squeeze(axis=tuple(i for i, sq in enumerate(squeeze) if sq)) if any(squeeze) else y


def _affine_dequantize(a):
    q, zero, scale, axis = a["quantized_data"], a["zero_point"], a["scale"], int(a["axis"])
    shape = [1] * q.ndim
    shape[axis] = -1
    zero = np.reshape(zero, shape) if np.ndim(zero) else zero
    scale = np.reshape(scale, shape) if np.ndim(scale) else scale
    return (q.astype(np.float64) - zero) * scale


def _blockwise(a):
    data = a["data"].astype(np.float64)
    scale = np.asarray(a["scale"], dtype=np.float64)
    offset = a.get("offset")
    reps = [d // s for d, s in zip(data.shape, scale.shape)]
    if offset is not None:
        data = data - np.tile(np.asarray(offset, dtype=np.float64), reps)
    return data * np.tile(scale, reps)


KERNELS: dict[str, Callable] = {
    "cast": lambda a: a["x"].astype(DTYPES[str(a["dtype"])]),
    "reshape": _reshape,
    "transpose": lambda a: np.transpose(a["x"], [int(p) for p in a["perm"]]),
    "expand_dims": _expand_dims,
    "squeeze": lambda a: np.squeeze(a["x"], axis=_axes(a)),
    "conv": _conv,
    "linear": lambda a: a["x"] @ a["weight"].T + (a["bias"] if a.get("bias") is not None else 0.0),
    "matmul": _matmul,
    "relu": lambda a: np.maximum(a["x"], 0),
    "sigmoid": lambda a: sigmoid(a["x"]),
    "silu": lambda a: a["x"] * sigmoid(a["x"]),
    "softmax": lambda a: softmax(a["x"], int(a.get("axis", -1))),
    "add": lambda a: a["x"] + a["y"],
    "sub": lambda a: a["x"] - a["y"],
    "mul": lambda a: a["x"] * a["y"],
    "real_div": lambda a: a["x"] / a["y"],
    "square": lambda a: a["x"] * a["x"],
    "sqrt": lambda a: np.sqrt(a["x"]),
    "rsqrt": lambda a: 1.0 / np.sqrt(a["x"] + float(a.get("epsilon", 1e-12))),
    "log": lambda a: np.log(a["x"] + float(a.get("epsilon", 1e-45))),
    "reduce_mean": lambda a: np.mean(a["x"], axis=_axes(a), keepdims=bool(a.get("keep_dims", False))),
    "reduce_max": lambda a: np.max(a["x"], axis=_axes(a), keepdims=bool(a.get("keep_dims", False))),
    "reduce_sum": lambda a: np.sum(a["x"], axis=_axes(a), keepdims=bool(a.get("keep_dims", False))),
    "avg_pool": _pool("avg"),
    "max_pool": _pool("max"),
    "pad": _pad,
    "batch_norm": _batch_norm,
    "concat": lambda a: np.concatenate(a["values"], axis=int(a["axis"])),
    "slice_by_index": _slice,
    "constexpr_affine_dequantize": _affine_dequantize,
    "constexpr_blockwise_shift_scale": _blockwise,
}


class MilProgram:
    """The ``main`` function of a saved ML Program, ready to run on one example at a time:
    a classifier (:meth:`run`) or any program of named inputs and outputs (:meth:`run_all`)."""

    def __init__(self, mlmodel) -> None:
        from coremltools.converters.mil.frontend.milproto.load import load
        from coremltools.converters.mil.mil import types

        spec = mlmodel.get_spec()
        program = load(spec, spec.specificationVersion, mlmodel.weights_dir)
        function = program.functions["main"]
        self._dtype_name = types.builtin_to_string
        self.inputs = list(function.inputs)
        self.shapes = {name: tuple(int(d) for d in var.shape) for name, var in function.inputs.items()}
        self.input_name = self.inputs[0]
        self.outputs = [var.name for var in function.outputs]
        self.ops = list(function.operations)
        self.labels: list[str] = []
        self.probabilities: str | None = None
        for op in self.ops:
            if op.op_type == "classify":
                self.labels = [str(c) for c in op.inputs["classes"].val]
                self.probabilities = op.inputs["probabilities"].name
            elif op.op_type != "const" and op.op_type not in KERNELS:
                raise UnsupportedOp(
                    f"Core ML op '{op.op_type}' in layer '{op.name}' has no reference "
                    "implementation in kws_research/coreml/mil_runtime.py"
                )

    def _value(self, var, env):
        value = var.val if var.val is not None and var.name not in env else env[var.name]
        if isinstance(value, np.ndarray) and value.dtype in (np.float16, np.float32):
            return value.astype(np.float64)
        return value

    def _execute(self, env: dict, stop: str | None = None) -> dict:
        for op in self.ops:
            if op.op_type in ("const", "classify"):
                continue
            args = {}
            for key, var in op.inputs.items():
                args[key] = (
                    tuple(self._value(v, env) for v in var) if isinstance(var, (list, tuple)) else self._value(var, env)
                )
            try:
                result = KERNELS[op.op_type](args)
            except UnsupportedOp as exc:
                raise UnsupportedOp(f"{exc} in layer '{op.name}' is not supported by the reference runtime") from exc
            out = op.outputs[0]
            dtype = DTYPES.get(self._dtype_name(out.dtype))
            env[out.name] = np.asarray(result, dtype=dtype) if dtype is not None else np.asarray(result)
            if out.name == stop:
                break
        return env

    def run(self, audio: np.ndarray) -> np.ndarray:
        """Class probabilities for one clip (float32, shape (1, 16000))."""
        if self.probabilities is None:
            raise UnsupportedOp("the program has no classify op; run it with run_all")
        env = self._execute({self.input_name: np.asarray(audio, dtype=np.float32)}, self.probabilities)
        return env[self.probabilities].astype(np.float32).reshape(-1)

    def run_all(self, feeds: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        """Every output of the program for float32 inputs given by name."""
        env = self._execute({name: np.asarray(feeds[name], dtype=np.float32) for name in self.inputs})
        return {name: env[name].astype(np.float32) for name in self.outputs}
