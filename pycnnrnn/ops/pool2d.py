"""pool2d ops (numpy in/out): max_pool2d, max_pool2d_backward, max_unpool2d.

Semantics are torch's (shared/reference/semantics.md §2): implicit -inf padding, ties to the
first maximum in row-major window order, NaN wins (the last NaN's index is kept), int64
indices flat within each (n, c) plane, ceil_mode's last-window rule. Inputs are (N, C, H, W)
or unbatched (C, H, W); N may be 0, C/H/W may not. Errors are ValueError/TypeError with
torch's wording where torch has one, raised before anything is computed.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from .. import _C
from ._validate import as_float_array, as_index_array, check_int, check_numel

__all__ = ["max_pool2d", "max_pool2d_backward", "max_unpool2d"]

_MAX_PARAM = (1 << 31) - 1


def _pair_param(v, name: str) -> tuple[int, int]:
    """int or 2-sequence of ints (a 1-sequence is broadcast like torch's _pair)."""
    if isinstance(v, np.ndarray):
        v = v.tolist()
    if type(v) in (tuple, list) or (isinstance(v, Sequence) and not isinstance(v, str)):
        v = tuple(v)
        if len(v) == 1:
            v = (v[0], v[0])
        if len(v) != 2:
            raise ValueError(f"{name} must be an int or a tuple of 2 ints, got {v!r}")
        a, b = (check_int(e, name) for e in v)
    else:
        a = b = check_int(v, name)
    for e in (a, b):
        if abs(e) > _MAX_PARAM:
            raise ValueError(f"{name} must be smaller than 2**31 in magnitude, got {(a, b)}")
    return a, b


def _pool_params(kernel_size, stride, padding, dilation):
    kh, kw = _pair_param(kernel_size, "kernel_size")
    if stride is None or (isinstance(stride, Sequence) and not isinstance(stride, str) and len(stride) == 0):
        sh, sw = kh, kw
    else:
        sh, sw = _pair_param(stride, "stride")
    ph, pw = _pair_param(padding, "padding")
    dh, dw = _pair_param(dilation, "dilation")
    # torch's pool2d_shape_check order and wording
    if kh <= 0 or kw <= 0:
        raise ValueError(f"kernel_size should be greater than zero, but got kH: {kh} kW: {kw}")
    if sh == 0 or sw == 0:
        raise ValueError("stride should not be zero")
    if sh < 0 or sw < 0:
        raise ValueError(f"stride should be greater than zero, but got dH: {sh} dW: {sw}")
    if dh <= 0 or dw <= 0:
        raise ValueError(f"dilation should be greater than zero, but got dilationH: {dh} dilationW: {dw}")
    if ph < 0 or pw < 0:
        raise ValueError(f"pad must be non-negative, but got pad: {(ph, pw)}")
    if ph > kh // 2 or pw > kw // 2:
        raise ValueError(
            "padding: pad should be at most half of kernel size (kernel_size // 2 on the un-dilated kernel), "
            f"but got pad=({ph}, {pw}), kernel_size=({kh}, {kw}) and dilation=({dh}, {dw})"
        )
    return kh, kw, sh, sw, ph, pw, dh, dw


def _check_input(x: np.ndarray, name: str = "input") -> None:
    if x.ndim not in (3, 4) or any(d == 0 for d in x.shape[-3:]):
        raise ValueError(
            f"{name}: expected 3D (C, H, W) or 4D (N, C, H, W) array with non-zero C, H, W "
            f"(only the batch dimension may be 0), but got shape {x.shape}"
        )


def _out_hw(H, W, kh, kw, sh, sw, ph, pw, dh, dw, ceil_mode):
    oh = _C.pool_output_size(H, kh, sh, ph, dh, ceil_mode)
    ow = _C.pool_output_size(W, kw, sw, pw, dw, ceil_mode)
    if oh < 1 or ow < 1:
        raise ValueError(
            f"Given input size: ({H}x{W}). Calculated output size: ({oh}x{ow}). Output size is too small "
            f"(kernel_size=({kh}, {kw}), stride=({sh}, {sw}), padding=({ph}, {pw}), dilation=({dh}, {dw}), "
            f"ceil_mode={ceil_mode})"
        )
    return oh, ow


def _check_bool(v, name: str) -> bool:
    if not isinstance(v, (bool, np.bool_)):
        raise TypeError(f"{name} must be a bool, got {type(v).__name__} ({v!r})")
    return bool(v)


def max_pool2d(input, kernel_size, stride=None, padding=0, dilation=1, ceil_mode=False, return_indices=False):
    """Max pooling over (N, C, H, W) or (C, H, W), like torch.nn.functional.max_pool2d.

    Returns the pooled array, or (pooled, int64 indices) with return_indices=True; indices are
    flat within each (H, W) plane (ih * W + iw)."""
    x = as_float_array(input, "input")
    ceil_mode = _check_bool(ceil_mode, "ceil_mode")
    return_indices = _check_bool(return_indices, "return_indices")
    _check_input(x)
    kh, kw, sh, sw, ph, pw, dh, dw = _pool_params(kernel_size, stride, padding, dilation)
    H, W = x.shape[-2:]
    oh, ow = _out_hw(H, W, kh, kw, sh, sw, ph, pw, dh, dw, ceil_mode)
    lead = x.shape[:-2]
    planes = check_numel(lead, "input")
    check_numel((planes, oh, ow), "output")
    if planes == 0:
        y = np.empty((*lead, oh, ow), dtype=x.dtype)
        return (y, np.empty(y.shape, dtype=np.int64)) if return_indices else y
    y, idx = _C.max_pool2d_forward(
        x.reshape(planes, H, W), kh, kw, sh, sw, ph, pw, dh, dw, ceil_mode, return_indices
    )
    y = y.reshape(*lead, oh, ow)
    if return_indices:
        return y, idx.reshape(*lead, oh, ow)
    return y


def max_pool2d_backward(
    grad_output, input, indices, kernel_size, stride=None, padding=0, dilation=1, ceil_mode=False
):
    """Gradient of max_pool2d with respect to its input: grad_input[idx] += grad_output per
    (n, c) plane in output order (torch's order, so overlapping windows accumulate
    bit-identically). `input` gives the shape and dtype; `indices` are max_pool2d's indices.
    Like torch, an index outside its plane contributes nothing (max_pool2d gives such indices
    to windows that lie entirely in the padding). Returns grad_input with input's shape."""
    x_ref = input
    if not isinstance(x_ref, np.ndarray):
        raise TypeError(f"input must be a numpy array, got {type(x_ref).__name__}")
    xdt = x_ref.dtype
    if xdt.kind != "f" or xdt.itemsize not in (4, 8):
        raise TypeError(f"input must have dtype float32 or float64, got {xdt}")
    gy = as_float_array(grad_output, "grad_output", dtype=xdt.newbyteorder("="))
    ceil_mode = _check_bool(ceil_mode, "ceil_mode")
    _check_input(x_ref)
    kh, kw, sh, sw, ph, pw, dh, dw = _pool_params(kernel_size, stride, padding, dilation)
    H, W = x_ref.shape[-2:]
    oh, ow = _out_hw(H, W, kh, kw, sh, sw, ph, pw, dh, dw, ceil_mode)
    lead = x_ref.shape[:-2]
    want = (*lead, oh, ow)
    if gy.shape != want:
        raise ValueError(
            f"grad_output must have shape {want} (the pooled shape of input {x_ref.shape}), got {gy.shape}"
        )
    idx = as_index_array(indices, "indices")
    if idx.shape != want:
        raise ValueError(
            f"indices must have shape {want} (the pooled shape of input {x_ref.shape}), got {idx.shape}"
        )
    planes = check_numel(lead, "input")
    if planes == 0:
        return np.zeros(x_ref.shape, dtype=gy.dtype)
    gx = _C.max_pool2d_backward(
        gy.reshape(planes, oh, ow),
        idx.reshape(planes, oh, ow),
        H,
        W,
        kh,
        kw,
        sh,
        sw,
        ph,
        pw,
        dh,
        dw,
        ceil_mode,
    )
    return gx.reshape(x_ref.shape)


def max_unpool2d(input, indices, kernel_size, stride=None, padding=0, output_size=None):
    """Partial inverse of max_pool2d, like torch.nn.functional.max_unpool2d: zeros except
    out[idx] = input (per (n, c) plane). output_size: (H, W) or (N, C, H, W), within one stride
    of the default (H_in - 1) * stride - 2 * padding + kernel_size."""
    x = as_float_array(input, "input")
    if not isinstance(indices, np.ndarray):
        raise TypeError(f"indices must be a numpy array, got {type(indices).__name__}")
    if indices.dtype != np.int64 and not (indices.dtype.kind == "i" and indices.dtype.itemsize == 8):
        raise TypeError(f"indices: elements in indices should be type int64 but got: {indices.dtype}")
    idx = as_index_array(indices, "indices")
    _check_input(x)
    if idx.shape != x.shape:
        raise ValueError(
            f"Expected shape of indices to be same as that of the input tensor ({x.shape}) "
            f"but got indices tensor with shape: {idx.shape}"
        )
    kh, kw = _pair_param(kernel_size, "kernel_size")
    if stride is None or (isinstance(stride, Sequence) and not isinstance(stride, str) and len(stride) == 0):
        sh, sw = kh, kw
    else:
        sh, sw = _pair_param(stride, "stride")
    ph, pw = _pair_param(padding, "padding")
    H, W = x.shape[-2:]
    default = ((H - 1) * sh + kh - 2 * ph, (W - 1) * sw + kw - 2 * pw)
    if output_size is None:
        out = default
    else:
        if isinstance(output_size, np.ndarray):
            output_size = output_size.tolist()
        if not isinstance(output_size, Sequence) or isinstance(output_size, str):
            raise TypeError(f"output_size must be a sequence of ints, got {type(output_size).__name__}")
        os_ = tuple(output_size)
        if len(os_) == 4:
            os_ = os_[2:]
        if len(os_) != 2:
            raise ValueError(
                "output_size should be a sequence containing 2 or 4 elements, "
                f"but it has a length of '{len(output_size)}'"
            )
        os_ = tuple(check_int(v, "output_size") for v in os_)
        for d in range(2):
            lo, hi = default[d] - (sh, sw)[d], default[d] + (sh, sw)[d]
            if not (lo < os_[d] < hi):
                raise ValueError(
                    f'invalid output_size "{tuple(output_size)}" (dim {d} must be between {lo} and {hi})'
                )
        out = os_
    for d in range(2):
        if out[d] < 0:
            raise ValueError(
                f"max_unpooling: output_size must contain non-negative spatial dimensions, but got output_size[{d}]={out[d]}"
            )
    lead = x.shape[:-2]
    planes = check_numel(lead, "input")
    check_numel((planes, *out), "output")
    if planes == 0 or H * W == 0:
        return np.zeros((*lead, *out), dtype=x.dtype)
    if out[0] * out[1] == 0:
        raise ValueError(
            f"indices: found an invalid max index (output volumes are of size {out[0]}x{out[1]})"
        )
    y = _C.max_unpool2d(x.reshape(planes, H, W), idx.reshape(planes, H, W), out[0], out[1])
    return y.reshape(*lead, *out)
