"""The boundary contract, in one place: every public op validates and normalises here.

- float32 and float64 are accepted; any other dtype (ints, bool, float16, complex, object,
  non-native byte order is normalised) raises TypeError naming the argument.
- wrong ndim/shape/values raise ValueError naming the argument, the expected and the actual.
- non-contiguous, negative-stride, Fortran-order, misaligned and read-only inputs are copied
  to C-contiguous aligned arrays (np.require copies only when needed); inputs are never
  written to.
- sizes are checked for int64 overflow before anything is allocated.
"""

from __future__ import annotations

import numbers
import operator
from collections.abc import Sequence

import numpy as np

_FLOAT_DTYPES = (np.dtype(np.float32), np.dtype(np.float64))
INT64_MAX = (1 << 63) - 1


def as_float_array(x, name: str, dtype: np.dtype | None = None) -> np.ndarray:
    """Return x as a C-contiguous, aligned float32/float64 ndarray (copying only if needed).

    dtype: when given, x must already have this dtype (ops never cast silently between
    float32 and float64)."""
    if not isinstance(x, np.ndarray):
        if hasattr(x, "__array__") and type(x).__module__.startswith("torch"):
            raise TypeError(
                f"{name} must be a numpy array, got a torch.Tensor; use pycnnrnn.torch for tensors "
                "or pass tensor.detach().cpu().numpy()"
            )
        raise TypeError(f"{name} must be a numpy array, got {type(x).__name__}")
    dt = x.dtype
    if dt.kind == "f" and dt.itemsize in (4, 8) and not dt.isnative:
        dt = dt.newbyteorder("=")
    if dt not in _FLOAT_DTYPES:
        raise TypeError(f"{name} must have dtype float32 or float64, got {x.dtype}")
    if dtype is not None and dt != dtype:
        raise TypeError(f"{name} must have dtype {np.dtype(dtype)} (like the other inputs), got {x.dtype}")
    flags = x.flags
    if flags.c_contiguous and flags.aligned and dt is x.dtype:  # the common case, without np.require
        return x
    return np.require(x, dtype=dt, requirements=["C_CONTIGUOUS", "ALIGNED"])


def as_index_array(x, name: str) -> np.ndarray:
    """int64 indices (e.g. max-pool argmax), C-contiguous and aligned."""
    if not isinstance(x, np.ndarray):
        raise TypeError(f"{name} must be a numpy array, got {type(x).__name__}")
    if x.dtype.kind not in "iu":
        raise TypeError(f"{name} must have an integer dtype (int64), got {x.dtype}")
    return np.require(x, dtype=np.int64, requirements=["C_CONTIGUOUS", "ALIGNED"])


def check_int(v, name: str, *, min_value: int | None = None) -> int:
    if type(v) is not int:  # plain ints skip the (slow) abstract-base-class checks
        if isinstance(v, bool) or not isinstance(v, numbers.Integral):
            raise TypeError(f"{name} must be an int, got {type(v).__name__} ({v!r})")
        v = operator.index(v)
    if v > INT64_MAX or v < -INT64_MAX:
        raise OverflowError(f"{name}={v} does not fit in int64")
    if min_value is not None and v < min_value:
        raise ValueError(f"{name} must be >= {min_value}, got {v}")
    return v


def pair(v, name: str, *, min_value: int | None = None) -> tuple[int, int]:
    """int or 2-sequence of ints -> (h, w), torch's _pair with type and range checks."""
    if type(v) in (tuple, list) or (isinstance(v, Sequence) and not isinstance(v, str)):
        if len(v) != 2:
            raise ValueError(f"{name} must be an int or a tuple of 2 ints, got {tuple(v)!r}")
        return (check_int(v[0], name, min_value=min_value), check_int(v[1], name, min_value=min_value))
    x = check_int(v, name, min_value=min_value)
    return (x, x)


def check_ndim(x: np.ndarray, name: str, allowed: tuple[int, ...], what: str = "") -> None:
    if x.ndim not in allowed:
        want = " or ".join(f"{d}-D" for d in allowed)
        raise ValueError(f"{name} must be {want}{what}, got {x.ndim}-D with shape {x.shape}")


def check_numel(shape: Sequence[int], name: str) -> int:
    n = 1
    for d in shape:
        n *= int(d)
        if n > INT64_MAX:
            raise OverflowError(f"{name}: shape {tuple(shape)} has more elements than int64 can count")
    return n


def check_same_dtype(name: str, x: np.ndarray, ref: np.ndarray, ref_name: str) -> None:
    if x.dtype != ref.dtype:
        raise TypeError(f"{name} must have the same dtype as {ref_name} ({ref.dtype}), got {x.dtype}")
