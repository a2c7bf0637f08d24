"""Element-wise layers in numpy: ReLU, Tanh, Sigmoid, Dropout."""

from __future__ import annotations

import numbers

import numpy as np

from ..ops._validate import as_float_array
from . import init
from .module import Module

__all__ = ["Dropout", "ReLU", "Sigmoid", "Tanh"]


def _writeable_float(x) -> bool:
    return isinstance(x, np.ndarray) and x.flags.writeable and x.dtype in (np.float32, np.float64)


class ReLU(Module):
    """max(x, 0) (NaN stays NaN); inplace=True overwrites a writeable float input."""

    def __init__(self, inplace: bool = False):
        super().__init__()
        self.inplace = bool(inplace)

    def forward(self, input: np.ndarray) -> np.ndarray:
        if self.inplace and _writeable_float(input):
            return np.maximum(input, 0, out=input)
        x = as_float_array(input, "input")
        return np.maximum(x, x.dtype.type(0))

    def extra_repr(self) -> str:
        return "inplace=True" if self.inplace else ""


class Tanh(Module):
    def forward(self, input: np.ndarray) -> np.ndarray:
        return np.tanh(as_float_array(input, "input"))


class Sigmoid(Module):
    def forward(self, input: np.ndarray) -> np.ndarray:
        x = as_float_array(input, "input")
        # 1 / (1 + e^-x) for x >= 0, e^x / (1 + e^x) below: never overflows.
        e = np.exp(-np.abs(x))
        return np.where(x >= 0, 1 / (1 + e), e / (1 + e)).astype(x.dtype, copy=False)


class Dropout(Module):
    """Zero each element with probability p and scale the rest by 1/(1-p), in training only."""

    def __init__(self, p: float = 0.5, inplace: bool = False):
        super().__init__()
        if isinstance(p, bool) or not isinstance(p, numbers.Real) or not 0 <= p <= 1:
            raise ValueError(f"dropout probability has to be between 0 and 1, but got {p}")
        self.p = p
        self.inplace = bool(inplace)

    def forward(self, input: np.ndarray) -> np.ndarray:
        x = as_float_array(input, "input")
        if not self.training or self.p == 0:
            return x if self.inplace else x.copy()
        if self.p == 1:
            return np.zeros_like(x)
        keep = init.generator().random(x.shape) >= self.p
        scale = x.dtype.type(1 / (1 - self.p))
        out = x if self.inplace and x is input and _writeable_float(x) else np.empty_like(x)
        np.multiply(x, keep * scale, out=out)
        return out

    def extra_repr(self) -> str:
        return f"p={self.p}, inplace={self.inplace}"
