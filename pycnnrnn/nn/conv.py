"""Conv2d: torch.nn.Conv2d's constructor, parameters and repr on pycnnrnn.functional.conv2d."""

from __future__ import annotations

import math

import numpy as np

from .. import functional as F
from ..ops._validate import check_int, pair
from ..ops.conv2d import _conv2d_relu_max_pool2x2
from . import init
from .module import Module

__all__ = ["Conv2d"]

_PADDING_MODES = ("zeros", "reflect", "replicate", "circular")


class Conv2d(Module):
    """2-D convolution over (N, C, H, W) or unbatched (C, H, W) input.

    weight (out_channels, in_channels // groups, kH, kW) and bias (out_channels,) start
    U(-1/sqrt(fan_in), 1/sqrt(fan_in)) like torch's kaiming_uniform_(a=sqrt(5))."""

    def __init__(
        self,
        in_channels: int,
        out_channels: int,
        kernel_size,
        stride=1,
        padding=0,
        dilation=1,
        groups: int = 1,
        bias: bool = True,
        padding_mode: str = "zeros",
        dtype=np.float32,
    ):
        super().__init__()
        in_channels = check_int(in_channels, "in_channels", min_value=1)
        out_channels = check_int(out_channels, "out_channels", min_value=1)
        groups = check_int(groups, "groups")
        if groups <= 0:
            raise ValueError(f"groups must be a positive integer, got {groups}")
        if in_channels % groups:
            raise ValueError(
                f"in_channels must be divisible by groups, got in_channels={in_channels}, groups={groups}"
            )
        if out_channels % groups:
            raise ValueError(
                f"out_channels must be divisible by groups, got out_channels={out_channels}, groups={groups}"
            )
        self.kernel_size = pair(kernel_size, "kernel_size", min_value=1)
        self.stride = pair(stride, "stride", min_value=1)
        self.dilation = pair(dilation, "dilation", min_value=1)
        if isinstance(padding, str):
            if padding not in ("same", "valid"):
                raise ValueError(f"Invalid padding string {padding!r}, should be one of {{'valid', 'same'}}")
            if padding == "same" and self.stride != (1, 1):
                raise ValueError(
                    f"padding='same' is not supported for strided convolutions, got stride={stride}"
                )
            self.padding = padding
        else:
            self.padding = pair(padding, "padding", min_value=0)
        if padding_mode not in _PADDING_MODES:
            raise ValueError(f"padding_mode must be one of {_PADDING_MODES}, got {padding_mode!r}")
        if not isinstance(bias, (bool, np.bool_)):
            raise TypeError(f"bias must be a bool, got {type(bias).__name__}")
        self._prepared = None  # F.PreparedConv2dWeight of self.weight, set by Module.prepack()
        self.in_channels, self.out_channels, self.groups = in_channels, out_channels, groups
        self.padding_mode = padding_mode
        self.output_padding = (0, 0)
        self.transposed = False
        dt = np.dtype(dtype)
        self.weight = np.empty((out_channels, in_channels // groups, *self.kernel_size), dtype=dt)
        if bias:
            self.bias = np.empty((out_channels,), dtype=dt)
        else:
            self.register_parameter("bias", None)
        if init.defaults_enabled():
            self.reset_parameters()

    def reset_parameters(self) -> None:
        init.kaiming_uniform_(self.weight, slope=math.sqrt(5))
        if self.bias is not None:
            fan_in, _ = init.fan_in_and_fan_out(self.weight)
            bound = 1 / math.sqrt(fan_in) if fan_in > 0 else 0.0
            init.uniform_(self.bias, -bound, bound)

    def _prepack(self) -> None:
        self._prepared = F.prepare_conv2d_weight(self.weight)
        self.weight = self._prepared.weight  # the read-only snapshot is the parameter now

    def _weight_arg(self):
        """The prepared weight while it still is this layer's weight (prepack() and no new
        array assigned since), else the plain array."""
        p = getattr(self, "_prepared", None)
        return p if p is not None and p.weight is self.weight else self.weight

    def _args(self, input: np.ndarray) -> tuple:
        """The functional arguments: input, weight (prepared when prepack() made it), bias and
        the geometry, in conv2d's order."""
        return (
            input,
            self._weight_arg(),
            self.bias,
            self.stride,
            self.padding,
            self.dilation,
            self.groups,
            self.padding_mode,
        )

    def forward(self, input: np.ndarray) -> np.ndarray:
        return F.conv2d(*self._args(input))

    def forward_relu(self, input: np.ndarray) -> np.ndarray:
        """ReLU()(self(input)) in one pass: the ReLU fused into the convolution's output stage
        (nn.Sequential takes it for a Conv2d followed by a ReLU when neither has hooks)."""
        return F.conv2d_relu(*self._args(input))

    def _forward_relu_max_pool2x2(self, input: np.ndarray):
        """MaxPool2d(2)(ReLU()(self(input))) in one pass (nn.Sequential takes it for Conv2d, ReLU,
        MaxPool2d(2) without hooks), or None where this layer's output is smaller than 2x2."""
        return _conv2d_relu_max_pool2x2(*self._args(input))

    def extra_repr(self) -> str:
        s = f"{self.in_channels}, {self.out_channels}, kernel_size={self.kernel_size}, stride={self.stride}"
        if self.padding != (0, 0):
            s += f", padding={self.padding}"
        if self.dilation != (1, 1):
            s += f", dilation={self.dilation}"
        if self.groups != 1:
            s += f", groups={self.groups}"
        if self.bias is None:
            s += ", bias=False"
        if self.padding_mode != "zeros":
            s += f", padding_mode={self.padding_mode}"
        return s
