"""MaxPool2d, MaxUnpool2d (C++ kernels) and AdaptiveAvgPool2d (numpy, torch's bin formula)."""

from __future__ import annotations

import numpy as np

from .. import functional as F
from ..ops._validate import as_float_array, check_int, pair
from .module import Module

__all__ = ["AdaptiveAvgPool2d", "MaxPool2d", "MaxUnpool2d"]


class MaxPool2d(Module):
    """torch.nn.MaxPool2d: stride defaults to kernel_size; padding is -inf."""

    def __init__(
        self, kernel_size, stride=None, padding=0, dilation=1, return_indices=False, ceil_mode=False
    ):
        super().__init__()
        pair(kernel_size, "kernel_size", min_value=1)
        if stride is not None:
            pair(stride, "stride", min_value=1)
        pair(padding, "padding", min_value=0)
        pair(dilation, "dilation", min_value=1)
        self.kernel_size = kernel_size
        self.stride = stride if stride is not None else kernel_size
        self.padding = padding
        self.dilation = dilation
        self.return_indices = bool(return_indices)
        self.ceil_mode = bool(ceil_mode)

    def forward(self, input: np.ndarray):
        return F.max_pool2d(
            input,
            self.kernel_size,
            self.stride,
            self.padding,
            self.dilation,
            ceil_mode=self.ceil_mode,
            return_indices=self.return_indices,
        )

    def extra_repr(self) -> str:
        return (
            f"kernel_size={self.kernel_size}, stride={self.stride}, padding={self.padding}, "
            f"dilation={self.dilation}, ceil_mode={self.ceil_mode}"
        )


class MaxUnpool2d(Module):
    """torch.nn.MaxUnpool2d: scatter pooled values back to their argmax positions."""

    def __init__(self, kernel_size, stride=None, padding=0):
        super().__init__()
        self.kernel_size = pair(kernel_size, "kernel_size", min_value=1)
        self.stride = pair(stride if stride is not None else kernel_size, "stride", min_value=1)
        self.padding = pair(padding, "padding", min_value=0)

    def forward(self, input: np.ndarray, indices: np.ndarray, output_size=None) -> np.ndarray:
        return F.max_unpool2d(input, indices, self.kernel_size, self.stride, self.padding, output_size)

    def extra_repr(self) -> str:
        return f"kernel_size={self.kernel_size}, stride={self.stride}, padding={self.padding}"


def _bins(n_in: int, n_out: int) -> list[tuple[int, int]]:
    # torch: start = floor(i * in / out), end = ceil((i + 1) * in / out)
    return [((i * n_in) // n_out, -((-(i + 1) * n_in) // n_out)) for i in range(n_out)]


class AdaptiveAvgPool2d(Module):
    """Average over torch's adaptive bins; output_size int, (h, w) or None (keep that size)."""

    def __init__(self, output_size):
        super().__init__()
        if isinstance(output_size, (tuple, list)):
            if len(output_size) != 2:
                raise ValueError(f"output_size must be an int or a tuple of 2, got {tuple(output_size)!r}")
            output_size = tuple(
                None if s is None else check_int(s, "output_size", min_value=1) for s in output_size
            )
        elif output_size is not None:
            check_int(output_size, "output_size", min_value=1)
        self.output_size = output_size

    def forward(self, input: np.ndarray) -> np.ndarray:
        x = as_float_array(input, "input")
        if x.ndim not in (3, 4) or any(d == 0 for d in x.shape[-3:]):
            raise ValueError(
                f"input must be 3-D (C, H, W) or 4-D (N, C, H, W) with non-zero C, H, W, got shape {x.shape}"
            )
        h, w = x.shape[-2:]
        os_ = (
            self.output_size if isinstance(self.output_size, tuple) else (self.output_size, self.output_size)
        )
        oh = h if os_[0] is None else os_[0]
        ow = w if os_[1] is None else os_[1]
        if (oh, ow) == (h, w):
            return x.copy()
        if h % oh == 0 and w % ow == 0:
            return x.reshape(*x.shape[:-2], oh, h // oh, ow, w // ow).mean(axis=(-3, -1))
        out = np.empty(x.shape[:-2] + (oh, ow), dtype=x.dtype)
        for i, (hs, he) in enumerate(_bins(h, oh)):
            for j, (ws, we) in enumerate(_bins(w, ow)):
                out[..., i, j] = x[..., hs:he, ws:we].mean(axis=(-2, -1))
        return out

    def extra_repr(self) -> str:
        return f"output_size={self.output_size}"
