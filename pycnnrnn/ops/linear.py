"""Linear algebra ops on the GEMM engine (numpy in/out, float32/float64).

- ``matmul(a, b)``: numpy's ``a @ b`` for 2-D and batched 3-D operands ((B,M,K)@(B,K,N),
  a batch of 1 or a 2-D operand broadcasts against the other's batch).
- ``linear(input, weight, bias=None)``: ``torch.nn.functional.linear``: input (*, in),
  weight (out, in), bias (out,) -> (*, out).
- ``linear_backward(grad_output, input, weight, output_mask=(True, True, True))`` ->
  (grad_input, grad_weight, grad_bias), None where the mask says so.
"""

from __future__ import annotations

import numpy as np

from .. import _C
from ._validate import as_float_array, check_ndim, check_numel

__all__ = ["linear", "linear_backward", "matmul"]


def _engine_readable_2d(x, dtype=None) -> bool:
    """Whether x is a 2-D float array the engine reads where it lies (aligned, native order,
    unit stride along one axis: a column slice, a.T, Fortran order), so matmul needs no copy."""
    if not (isinstance(x, np.ndarray) and x.ndim == 2 and x.size > 0 and min(x.shape) > 1):
        return False
    if x.dtype not in (np.float32, np.float64) or not x.dtype.isnative or not x.flags.aligned:
        return False
    if dtype is not None and x.dtype != dtype:
        return False
    (r, c), (s0, s1), it = x.shape, x.strides, x.itemsize
    return (s1 == it and s0 % it == 0 and s0 >= c * it) or (s0 == it and s1 % it == 0 and s1 >= r * it)


def matmul(a, b) -> np.ndarray:
    """a @ b for 2-D or 3-D float32/float64 arrays (same dtype), numpy semantics. A 2-D operand
    with unit stride along one axis (a.T, a column slice) is read in place, not copied."""
    a = a if _engine_readable_2d(a) else as_float_array(a, "a")
    b = b if _engine_readable_2d(b, a.dtype) and a.ndim == 2 else as_float_array(b, "b", dtype=a.dtype)
    check_ndim(a, "a", (2, 3))
    check_ndim(b, "b", (2, 3))
    if a.shape[-1] != b.shape[-2]:
        raise ValueError(
            f"matmul: a.shape[-1] must equal b.shape[-2], got a {a.shape} and b {b.shape} ({a.shape[-1]} != {b.shape[-2]})"
        )
    m, k, n = a.shape[-2], a.shape[-1], b.shape[-1]
    if a.ndim == 2 and b.ndim == 2:
        check_numel((m, n), "matmul output")
        return _C.matmul(a, b)
    if b.ndim == 2:  # (B,M,K) @ (K,N): one GEMM over B*M rows
        check_numel((a.shape[0], m, n), "matmul output")
        return _C.matmul(a.reshape(a.shape[0] * m, k), b).reshape(a.shape[0], m, n)
    ba = a.shape[0] if a.ndim == 3 else 1
    bb = b.shape[0]
    if ba != bb and 1 not in (ba, bb):
        raise ValueError(
            f"matmul: batch dimensions {ba} and {bb} of a {a.shape} and b {b.shape} do not broadcast"
        )
    nb = max(ba, bb)
    check_numel((nb, m, n), "matmul output")
    a3 = np.ascontiguousarray(np.broadcast_to(a, (nb, m, k)))
    b3 = np.ascontiguousarray(np.broadcast_to(b, (nb, k, n)))
    return _C.matmul(a3, b3)


def _linear_args(input, weight, bias):
    x = as_float_array(input, "input")
    w = as_float_array(weight, "weight", dtype=x.dtype)
    check_ndim(w, "weight", (2,), " (out_features, in_features)")
    if x.ndim < 1:
        raise ValueError(f"input must have at least 1 dimension (*, in_features), got shape {x.shape}")
    if x.shape[-1] != w.shape[1]:
        raise ValueError(
            f"input.shape[-1] must equal weight.shape[1] (in_features={w.shape[1]}), got input shape {x.shape}"
        )
    b = None
    if bias is not None:
        b = as_float_array(bias, "bias", dtype=x.dtype)
        if b.shape != (w.shape[0],):
            raise ValueError(f"bias must have shape ({w.shape[0]},) (out_features), got {b.shape}")
    return x, w, b


def linear(input, weight, bias=None) -> np.ndarray:
    """input @ weight.T + bias with torch.nn.functional.linear semantics."""
    x, w, b = _linear_args(input, weight, bias)
    lead = x.shape[:-1]
    check_numel((*lead, w.shape[0]), "linear output")
    x2 = x.reshape(-1, x.shape[-1])
    return _C.linear(x2, w, b).reshape(*lead, w.shape[0])


def linear_backward(grad_output, input, weight, output_mask=(True, True, True)):
    """Gradients of linear: (grad_input, grad_weight, grad_bias); an entry is None when its
    output_mask flag is False. grad_bias is the sum of grad_output over all leading dims."""
    x, w, _ = _linear_args(input, weight, None)
    g = as_float_array(grad_output, "grad_output", dtype=x.dtype)
    want = (*x.shape[:-1], w.shape[0])
    if g.shape != want:
        raise ValueError(
            f"grad_output must have shape {want} (input.shape[:-1] + (out_features,)), got {g.shape}"
        )
    try:
        mask = tuple(bool(v) for v in output_mask)
    except TypeError:
        raise TypeError(f"output_mask must be a sequence of 3 bools, got {output_mask!r}") from None
    if len(mask) != 3:
        raise ValueError(f"output_mask must have 3 entries (input, weight, bias), got {len(mask)}")
    gx, gw, gb = _C.linear_backward(g.reshape(-1, w.shape[0]), x.reshape(-1, x.shape[-1]), w, *mask)
    if gx is not None:
        gx = gx.reshape(x.shape)
    return gx, gw, gb
