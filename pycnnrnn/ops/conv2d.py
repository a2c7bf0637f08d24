"""conv2d ops (numpy in/out): forward and backward with torch.nn.Conv2d semantics.

``conv2d(input, weight, bias=None, stride=1, padding=0, dilation=1, groups=1,
padding_mode="zeros", algorithm="auto")``

- input (N, C, H, W) or unbatched (C, H, W); weight (C_out, C/groups, kH, kW); bias (C_out,)
  or None; float32 or float64 (all arrays the same dtype).
- stride, dilation: int or (h, w) >= 1; padding: int or (h, w) >= 0, or "valid" (0) or
  "same" (torch's split: total = dilation*(k-1), left = total // 2, the extra one on the
  bottom/right; stride must be 1).
- padding_mode "zeros", "reflect" (padding < input size), "replicate", "circular"
  (padding <= input size): applied inside the kernel's packing, no padded copy.
- algorithm: "auto", "gemm" (implicit GEMM, im2col fused into the GEMM's packing; 1x1 stride-1
  unpadded runs as a plain GEMM), "depthwise" (direct kernel, groups == C only) or "winograd"
  (F(2x2, 3x3): 3x3 kernel, stride 1, groups 1, any dilation: a dilated layer runs as
  dilation_h * dilation_w dense layers on interleaved sub-grids; 2.25x fewer multiplies). Every
  convolution GEMM sums in short float chains, which keeps both within torch's float32 error
  on long reductions (measured 0.7-1.2x torch's on VGG layers). "direct" (float32; stride 1,
  a kernel larger than 1x1, output rows of at least 8): register tiles summed
  straight from a padded copy of the image, no im2col (AVX-512 and AVX2 tiles; a portable one
  on other CPUs). "auto" takes
  depthwise when groups == C, Winograd for 3x3/stride-1 layers with C_in, C_out >= 32 on maps
  of at least 20x20 outputs (>= 64 channels from 12x12; never below: there the transforms cost
  more than they save; a dilated layer counts the outputs of one sub-grid; weights of more than
  4 MiB that are not prepared need at least 14x14 outputs in the batch on AVX-512, 300
  elsewhere, or the per-call weight transform costs more than it saves), direct for batches
  split over threads with C_out <= 32 on rows of at most 32 (AVX-512: of at least 12; AVX2 also
  C_out <= 128 on rows 8, 16, 24 or 32 wide), direct on AVX-512 for forward calls with rows of
  at least 112 outputs, C_out >= 16 and 144 to 1600 reduction steps (C_in * KH * KW) where
  Winograd does not apply (e.g. 5x5 64->64@112: 1.16x the GEMM), else gemm.

``prepare_conv2d_weight(weight)`` -> PreparedConv2dWeight, accepted wherever ``weight`` is: a
read-only snapshot of the weights plus what the kernels derive from them (the Winograd
matrices), built on the first forward call that needs them and reused by every later one.

``conv2d_backward(grad_output, input, weight, ...)`` returns (grad_input, grad_weight,
grad_bias), None for entries switched off by output_mask. grad_weight sums the batch in a
fixed order (deterministic for a given thread count).
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from .. import _C
from ._prepared import PreparedWeight
from ._validate import as_float_array, check_int, check_ndim, check_numel, pair

__all__ = ["PreparedConv2dWeight", "conv2d", "conv2d_backward", "conv2d_relu", "prepare_conv2d_weight"]

_MODES = {"zeros": 0, "reflect": 1, "replicate": 2, "circular": 3}
_SIZE_LIMIT = 1 << 40  # spatial extents beyond this cannot index a real array and would overflow int64 maths
_ALGOS = {"auto": 0, "gemm": 1, "depthwise": 2, "winograd": 3, "direct": 4}


class PreparedConv2dWeight(PreparedWeight):
    """A conv2d weight prepared once for many forward calls (inference): ``weight`` is a
    read-only copy of the array it was made from, and the transforms a forward call would
    otherwise redo every time (Winograd's 16 matrices U = G g G^T, 16/9 of the weight's memory)
    are built on the first call that takes that path and kept. Changes to the original array
    are not seen (like torch.jit.freeze or an onnxruntime session's initializers): prepare
    again after changing weights. Results are bit-identical to passing the plain array."""

    __slots__ = ()
    NDIM = 4
    SHAPE_NAMES = "(out_channels, in_channels/groups, kH, kW)"
    C_TYPE = _C.Conv2dPrepared


def prepare_conv2d_weight(weight) -> PreparedConv2dWeight:
    """``PreparedConv2dWeight(weight)``: pass the result as conv2d's ``weight``."""
    return PreparedConv2dWeight(weight)


def _unwrap(weight):
    """(weight array, its Conv2dPrepared or None)."""
    if isinstance(weight, PreparedConv2dWeight):
        return weight.weight, weight._c
    return weight, None


class _Conv:
    """Validated, normalised arguments of one conv2d call (batched view of the input)."""

    def __init__(self, input, weight, stride, padding, dilation, groups, padding_mode):
        x = as_float_array(input, "input")
        w = as_float_array(weight, "weight", dtype=x.dtype)
        check_ndim(x, "input", (3, 4), " (C, H, W) or (N, C, H, W)")
        check_ndim(w, "weight", (4,), " (out_channels, in_channels/groups, kH, kW)")
        groups = check_int(groups, "groups")
        if groups <= 0:
            raise ValueError(f"groups must be a positive integer, got {groups}")
        sh, sw = pair(stride, "stride")
        if sh <= 0 or sw <= 0:
            raise ValueError(
                f"stride must be positive (non-positive stride is not supported), got {(sh, sw)}"
            )
        dh, dw = pair(dilation, "dilation")
        if dh <= 0 or dw <= 0:
            raise ValueError(f"dilation must be positive, got {(dh, dw)}")
        if not isinstance(padding_mode, str):
            raise TypeError(f"padding_mode must be a str, got {type(padding_mode).__name__}")
        if padding_mode not in _MODES:
            raise ValueError(f"padding_mode must be one of {sorted(_MODES)}, got {padding_mode!r}")
        self.batched = x.ndim == 4
        x4 = x if self.batched else x[None]
        n, c, h, wd = x4.shape
        co, cig, kh, kw = w.shape
        if c == 0 or h == 0 or wd == 0:
            raise ValueError(f"input must have non-zero channels, height and width, got shape {x.shape}")
        if co == 0 or cig == 0 or kh == 0 or kw == 0:
            raise ValueError(f"weight must have non-zero sizes, got shape {w.shape}")
        if co % groups:
            raise ValueError(f"out_channels (weight.shape[0] = {co}) must be divisible by groups ({groups})")
        if cig * groups != c:
            raise ValueError(
                f"input has {c} channels, expected weight.shape[1] * groups = {cig} * {groups} = {cig * groups} "
                f"(weight shape {w.shape})"
            )
        if isinstance(padding, str):
            if padding == "valid":
                pads = (0, 0, 0, 0)
            elif padding == "same":
                if (sh, sw) != (1, 1):
                    raise ValueError(
                        f"padding='same' is not supported for strided convolutions, got stride {(sh, sw)}"
                    )
                th, tw = dh * (kh - 1), dw * (kw - 1)
                pads = (th // 2, th - th // 2, tw // 2, tw - tw // 2)
            else:
                raise ValueError(
                    f"padding must be 'valid', 'same', an int or a tuple of 2 ints, got {padding!r}"
                )
        else:
            ph, pw = pair(padding, "padding")
            if ph < 0 or pw < 0:
                raise ValueError(f"padding must be non-negative, got {(ph, pw)}")
            pads = (ph, ph, pw, pw)
        pt, pb, pl, pr = pads
        if padding_mode == "reflect" and (max(pt, pb) >= h or max(pl, pr) >= wd):
            raise ValueError(
                f"padding_mode='reflect': padding (top, bottom, left, right) = {pads} must be < the input size "
                f"(H, W) = {(h, wd)}"
            )
        if padding_mode == "circular" and (max(pt, pb) > h or max(pl, pr) > wd):
            raise ValueError(
                f"padding_mode='circular': padding (top, bottom, left, right) = {pads} must be <= the input size "
                f"(H, W) = {(h, wd)} (padding may not wrap around more than once)"
            )
        eh, ew = dh * (kh - 1) + 1, dw * (kw - 1) + 1
        if max(h + pt + pb, wd + pl + pr, eh, ew) > _SIZE_LIMIT:
            raise OverflowError(
                f"padded input ({h + pt + pb} x {wd + pl + pr}) or dilated kernel ({eh} x {ew}) is too large "
                f"(limit {_SIZE_LIMIT}) for int64 index arithmetic"
            )
        if h + pt + pb < eh or wd + pl + pr < ew:
            raise ValueError(
                f"padded input size per channel ({h + pt + pb} x {wd + pl + pr}) is smaller than the (dilated) "
                f"kernel size ({eh} x {ew}); kernel size can't be greater than actual input size"
            )
        oh = _C.conv_output_size(h, kh, sh, pt, pb, dh)
        ow = _C.conv_output_size(wd, kw, sw, pl, pr, dw)
        check_numel((n, co, oh, ow), "conv2d output")
        self.x, self.w, self.x4 = x, w, x4
        self.stride, self.dilation, self.pads, self.groups = (sh, sw), (dh, dw), pads, groups
        self.mode = _MODES[padding_mode]
        self.out_shape4 = (n, co, oh, ow)

    @property
    def out_shape(self):
        return self.out_shape4 if self.batched else self.out_shape4[1:]

    def args(self):
        return self.stride, self.pads, self.dilation, self.groups, self.mode


def conv2d(
    input,
    weight,
    bias=None,
    stride=1,
    padding=0,
    dilation=1,
    groups=1,
    padding_mode="zeros",
    algorithm="auto",
):
    """2-D convolution, torch.nn.functional.conv2d semantics plus nn.Conv2d's padding_mode."""
    return _conv2d(
        input, weight, bias, stride, padding, dilation, groups, padding_mode, algorithm, relu=False
    )


def conv2d_relu(input, weight, bias=None, stride=1, padding=0, dilation=1, groups=1, padding_mode="zeros"):
    """max(conv2d(...), 0) with the ReLU fused into the convolution's output stage (NaN kept,
    bit-identical to applying it afterwards); nn.Sequential uses it for Conv2d -> ReLU."""
    return _conv2d(input, weight, bias, stride, padding, dilation, groups, padding_mode, "auto", relu=True)


def _conv2d_relu_max_pool2x2(input, weight, bias, stride, padding, dilation, groups, padding_mode):
    """max_pool2d(conv2d_relu(...), 2) in one call, bit-identical to the two (nn.Sequential's
    Conv2d -> ReLU -> MaxPool2d(2)): where the convolution runs on Winograd without dilation the
    pool is taken from each tile row's output rows while they are in cache and the full output
    is never written. None when the convolution's output is smaller than the 2x2 window (the
    caller then runs the layers one by one, so max_pool2d reports it)."""
    return _conv2d(
        input,
        weight,
        bias,
        stride,
        padding,
        dilation,
        groups,
        padding_mode,
        "auto",
        relu=True,
        max_pool2x2=True,
    )


def _conv2d(
    input, weight, bias, stride, padding, dilation, groups, padding_mode, algorithm, relu, max_pool2x2=False
):
    weight, prepared = _unwrap(weight)
    cv = _Conv(input, weight, stride, padding, dilation, groups, padding_mode)
    if not isinstance(algorithm, str) or algorithm not in _ALGOS:
        raise ValueError(f"algorithm must be one of {sorted(_ALGOS)}, got {algorithm!r}")
    co = cv.w.shape[0]
    if algorithm == "depthwise" and cv.groups != cv.x4.shape[1]:
        raise ValueError(
            f"algorithm='depthwise' needs groups == in_channels, got groups={cv.groups}, in_channels={cv.x4.shape[1]}"
        )
    b = None
    if bias is not None:
        b = as_float_array(bias, "bias", dtype=cv.x.dtype)
        if b.shape != (co,):
            raise ValueError(f"bias must have shape ({co},) (out_channels), got {b.shape}")
    out_shape4 = cv.out_shape4
    if max_pool2x2:
        n, co, oh, ow = out_shape4
        if oh < 2 or ow < 2:
            return None
        out_shape4 = (n, co, oh // 2, ow // 2)
    if out_shape4[0] == 0:
        return np.empty(out_shape4 if cv.batched else out_shape4[1:], dtype=cv.x.dtype)
    y = _C.conv2d_forward(cv.x4, cv.w, b, *cv.args(), _ALGOS[algorithm], relu, prepared, max_pool2x2)
    return y if cv.batched else y[0]


def conv2d_backward(
    grad_output,
    input,
    weight,
    stride=1,
    padding=0,
    dilation=1,
    groups=1,
    padding_mode="zeros",
    output_mask=(True, True, True),
):
    """Gradients of conv2d: (grad_input, grad_weight, grad_bias); None where output_mask is False."""
    cv = _Conv(input, _unwrap(weight)[0], stride, padding, dilation, groups, padding_mode)
    gy = as_float_array(grad_output, "grad_output", dtype=cv.x.dtype)
    if gy.shape != cv.out_shape:
        raise ValueError(f"grad_output must have the output's shape {cv.out_shape}, got {gy.shape}")
    if not isinstance(output_mask, Sequence) or len(output_mask) != 3:
        raise ValueError(f"output_mask must be a sequence of 3 bools, got {output_mask!r}")
    mask = [bool(m) for m in output_mask]
    gy4 = gy if cv.batched else gy[None]
    gx, gw, gb = _C.conv2d_backward(gy4, cv.x4, cv.w, *cv.args(), mask)
    if gx is not None and not cv.batched:
        gx = gx[0]
    return gx, gw, gb
