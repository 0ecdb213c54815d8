"""NumPy kernels shared by the two Core ML interpreters (channels-first layouts)."""

from __future__ import annotations

import math
import string

import numpy as np
from numpy.lib.stride_tricks import sliding_window_view


def same_padding(size: int, kernel: int, stride: int, dilation: int, lower: bool = False) -> tuple[int, int]:
    """TensorFlow/Core ML 'same': output ceil(size / stride); the extra pad goes last (or first)."""
    effective = (kernel - 1) * dilation + 1
    total = max((math.ceil(size / stride) - 1) * stride + effective - size, 0)
    small, large = total // 2, total - total // 2
    return (large, small) if lower else (small, large)


def _windows(x: np.ndarray, kernel: tuple[int, ...], strides: tuple[int, ...], dilations: tuple[int, ...]):
    """[N, C, *S] -> [N, C, *S_out, *K] views of every (dilated) kernel window."""
    spatial = len(kernel)
    axes = tuple(range(2, 2 + spatial))
    effective = tuple((k - 1) * d + 1 for k, d in zip(kernel, dilations))
    view = sliding_window_view(x, effective, axis=axes)
    out_index = (slice(None), slice(None)) + tuple(slice(None, None, s) for s in strides)
    kernel_index = tuple(slice(None, None, d) for d in dilations)
    return view[out_index + kernel_index]


def conv(
    x: np.ndarray, weight: np.ndarray, bias: np.ndarray | None, strides, pads, dilations, groups: int
) -> np.ndarray:
    """Grouped N-d convolution: x [N, Cin, *S], weight [Cout, Cin/groups, *K], pads [(begin, end)] per axis."""
    spatial = weight.ndim - 2
    x = np.pad(x, [(0, 0), (0, 0)] + [tuple(p) for p in pads])
    win = _windows(x, weight.shape[2:], tuple(strides), tuple(dilations))
    n, cin = win.shape[:2]
    out_shape = win.shape[2 : 2 + spatial]
    cout = weight.shape[0]
    win = win.reshape(n, groups, cin // groups, *out_shape, *weight.shape[2:])
    w = weight.reshape(groups, cout // groups, cin // groups, *weight.shape[2:])
    s = string.ascii_lowercase[:spatial]
    k = string.ascii_uppercase[:spatial]
    y = np.einsum(f"ngc{s}{k},goc{k}->ngo{s}", win, w, optimize=True)
    y = y.reshape(n, cout, *out_shape)
    if bias is not None:
        y = y + bias.reshape((1, cout) + (1,) * spatial)
    return y


def pool(x: np.ndarray, kernel, strides, pads, kind: str, exclude_padding: bool = True) -> np.ndarray:
    """Max or average pooling over the trailing ``len(kernel)`` axes of x [N, C, *S]."""
    lead = x.ndim - len(kernel)
    fill = -np.inf if kind == "max" else 0.0
    padded = np.pad(x, [(0, 0)] * lead + [tuple(p) for p in pads], constant_values=fill)
    axes = tuple(range(lead, x.ndim))
    view = sliding_window_view(padded, tuple(kernel), axis=axes)
    view = view[(slice(None),) * lead + tuple(slice(None, None, s) for s in strides)]
    reduce_axes = tuple(range(view.ndim - len(kernel), view.ndim))
    if kind == "max":
        return view.max(axis=reduce_axes)
    total = view.sum(axis=reduce_axes)
    if not exclude_padding or not any(any(p) for p in pads):
        return total / math.prod(kernel)
    ones = np.pad(np.ones(x.shape[lead:]), [tuple(p) for p in pads])
    counts = sliding_window_view(ones, tuple(kernel))[tuple(slice(None, None, s) for s in strides)]
    return total / counts.sum(axis=tuple(range(len(kernel), 2 * len(kernel))))


def softmax(x: np.ndarray, axis: int) -> np.ndarray:
    shifted = x - x.max(axis=axis, keepdims=True)
    e = np.exp(shifted)
    return e / e.sum(axis=axis, keepdims=True)


def sigmoid(x: np.ndarray) -> np.ndarray:
    return 1.0 / (1.0 + np.exp(-x))
