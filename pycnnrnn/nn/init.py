"""Parameter initialisation with torch.nn.init's distributions, drawn from a numpy Generator.

The values differ from torch's (different generators) but the distributions are the same.
``manual_seed(seed)`` makes module construction (and Dropout masks) reproducible."""

from __future__ import annotations

import contextlib
import math

import numpy as np

__all__ = [
    "calculate_gain",
    "constant_",
    "generator",
    "kaiming_normal_",
    "kaiming_uniform_",
    "manual_seed",
    "skip_default_init",
    "normal_",
    "uniform_",
    "zeros_",
]

_rng = np.random.default_rng()


def manual_seed(seed: int) -> np.random.Generator:
    """Reseed the generator used by every initialiser and Dropout; returns it."""
    global _rng
    _rng = np.random.default_rng(seed)
    return _rng


def generator() -> np.random.Generator:
    return _rng


_defaults_enabled = True


@contextlib.contextmanager
def skip_default_init():
    """Inside this block layers skip their default reset_parameters() (the caller initialises
    them itself, e.g. VGG): saves drawing ~10^8 random numbers twice."""
    global _defaults_enabled
    previous, _defaults_enabled = _defaults_enabled, False
    try:
        yield
    finally:
        _defaults_enabled = previous


def defaults_enabled() -> bool:
    return _defaults_enabled


def _fill(a: np.ndarray, values: np.ndarray) -> np.ndarray:
    np.copyto(a, values, casting="unsafe")
    return a


def _direct(a: np.ndarray) -> bool:
    # The generator can write straight into contiguous float32/float64 arrays (no temporary).
    return a.dtype in (np.float32, np.float64) and a.flags.c_contiguous and a.flags.writeable


def uniform_(a: np.ndarray, low: float = 0.0, high: float = 1.0) -> np.ndarray:
    if not _direct(a):
        return _fill(a, _rng.uniform(low, high, size=a.shape))
    _rng.random(dtype=a.dtype, out=a)
    a *= a.dtype.type(high - low)
    a += a.dtype.type(low)
    return a


def normal_(a: np.ndarray, mean: float = 0.0, std: float = 1.0) -> np.ndarray:
    if not _direct(a):
        return _fill(a, _rng.normal(mean, std, size=a.shape))
    _rng.standard_normal(dtype=a.dtype, out=a)
    a *= a.dtype.type(std)
    a += a.dtype.type(mean)
    return a


def constant_(a: np.ndarray, value: float) -> np.ndarray:
    a[...] = value
    return a


def zeros_(a: np.ndarray) -> np.ndarray:
    return constant_(a, 0.0)


def calculate_gain(nonlinearity: str, param: float | None = None) -> float:
    if nonlinearity in ("linear", "conv2d", "sigmoid"):
        return 1.0
    if nonlinearity == "tanh":
        return 5.0 / 3
    if nonlinearity == "relu":
        return math.sqrt(2.0)
    if nonlinearity == "leaky_relu":
        slope = 0.01 if param is None else param
        return math.sqrt(2.0 / (1 + slope**2))
    raise ValueError(f"calculate_gain: unsupported nonlinearity {nonlinearity!r}")


def fan_in_and_fan_out(a: np.ndarray) -> tuple[int, int]:
    if a.ndim < 2:
        raise ValueError(f"fan in and fan out need an array with at least 2 dimensions, got shape {a.shape}")
    receptive = int(np.prod(a.shape[2:])) if a.ndim > 2 else 1
    return a.shape[1] * receptive, a.shape[0] * receptive


def _kaiming_std(a: np.ndarray, slope: float, mode: str, nonlinearity: str) -> float:
    if mode not in ("fan_in", "fan_out"):
        raise ValueError(f"mode must be 'fan_in' or 'fan_out', got {mode!r}")
    fan_in, fan_out = fan_in_and_fan_out(a)
    fan = fan_in if mode == "fan_in" else fan_out
    return calculate_gain(nonlinearity, slope) / math.sqrt(fan)


def kaiming_uniform_(
    a: np.ndarray, slope: float = 0.0, mode: str = "fan_in", nonlinearity: str = "leaky_relu"
):
    bound = math.sqrt(3.0) * _kaiming_std(a, slope, mode, nonlinearity)
    return uniform_(a, -bound, bound)


def kaiming_normal_(
    a: np.ndarray, slope: float = 0.0, mode: str = "fan_in", nonlinearity: str = "leaky_relu"
):
    return normal_(a, 0.0, _kaiming_std(a, slope, mode, nonlinearity))
