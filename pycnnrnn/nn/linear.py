"""Linear (C++ GEMM), Identity and Flatten."""

from __future__ import annotations

import math

import numpy as np

from .. import functional as F
from ..ops._validate import as_float_array, check_int
from . import init
from .module import Module

__all__ = ["Flatten", "Identity", "Linear"]


class Linear(Module):
    """y = x W^T + b over the last axis; weight (out_features, in_features), torch's init."""

    def __init__(self, in_features: int, out_features: int, bias: bool = True, dtype=np.float32):
        super().__init__()
        self.in_features = check_int(in_features, "in_features", min_value=0)
        self.out_features = check_int(out_features, "out_features", min_value=0)
        if not isinstance(bias, (bool, np.bool_)):
            raise TypeError(f"bias must be a bool, got {type(bias).__name__}")
        dt = np.dtype(dtype)
        self.weight = np.empty((self.out_features, self.in_features), dtype=dt)
        if bias:
            self.bias = np.empty((self.out_features,), dtype=dt)
        else:
            self.register_parameter("bias", None)
        if init.defaults_enabled():
            self.reset_parameters()

    def reset_parameters(self) -> None:
        if self.weight.size:
            init.kaiming_uniform_(self.weight, slope=math.sqrt(5))
        if self.bias is not None:
            bound = 1 / math.sqrt(self.in_features) if self.in_features > 0 else 0.0
            init.uniform_(self.bias, -bound, bound)

    def forward(self, input: np.ndarray) -> np.ndarray:
        return F.linear(input, self.weight, self.bias)

    def extra_repr(self) -> str:
        return (
            f"in_features={self.in_features}, out_features={self.out_features}, bias={self.bias is not None}"
        )


class Identity(Module):
    def __init__(self, *args, **kwargs):
        super().__init__()

    def forward(self, input):
        return input


class Flatten(Module):
    """Merge dims start_dim..end_dim (negative counts from the end), like torch.flatten."""

    def __init__(self, start_dim: int = 1, end_dim: int = -1):
        super().__init__()
        self.start_dim = check_int(start_dim, "start_dim")
        self.end_dim = check_int(end_dim, "end_dim")

    def forward(self, input: np.ndarray) -> np.ndarray:
        x = input if isinstance(input, np.ndarray) else as_float_array(input, "input")
        nd = max(x.ndim, 1)
        s = self.start_dim + nd if self.start_dim < 0 else self.start_dim
        e = self.end_dim + nd if self.end_dim < 0 else self.end_dim
        if not (0 <= s < nd and 0 <= e < nd):
            raise ValueError(
                f"Flatten(start_dim={self.start_dim}, end_dim={self.end_dim}) is out of range for "
                f"a {x.ndim}-D input of shape {x.shape}"
            )
        if s > e:
            raise ValueError(
                f"Flatten: start_dim ({self.start_dim}) cannot come after end_dim ({self.end_dim})"
            )
        if x.ndim == 0:
            return x.reshape(1)
        return x.reshape(
            x.shape[:s] + (-1 if x.size else int(np.prod(x.shape[s : e + 1])),) + x.shape[e + 1 :]
        )

    def extra_repr(self) -> str:
        return f"start_dim={self.start_dim}, end_dim={self.end_dim}"
