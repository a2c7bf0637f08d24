"""conv2d forward and backward: torch semantics, float64 error gate, oracle, layouts, errors."""

from __future__ import annotations

import re

import numpy as np
import pytest
from helpers import assert_error_gate, layouts, run_python

import pycnnrnn
from pycnnrnn import _C
from pycnnrnn import functional as F

try:
    import torch
except ImportError:  # pragma: no cover
    torch = None

needs_torch = pytest.mark.skipif(torch is None, reason="needs torch")
_MODES = {"zeros": 0, "reflect": 1, "replicate": 2, "circular": 3}

# One case = input shape, weight shape and conv arguments. Every argument and edge appears.
#           name                 x shape          w shape        kwargs
CASES = [
    ("3x3_p1", (2, 5, 9, 11), (7, 5, 3, 3), {"padding": 1}),
    ("3x3_p0_nobias", (2, 4, 8, 7), (6, 4, 3, 3), {"bias": False}),
    ("stride2", (2, 3, 11, 10), (5, 3, 3, 3), {"stride": 2, "padding": 1}),
    ("stride_tuple", (1, 3, 13, 12), (4, 3, 3, 2), {"stride": (3, 2), "padding": (2, 1)}),
    ("dilation2", (2, 4, 12, 13), (3, 4, 3, 3), {"dilation": 2, "padding": 2}),
    (
        "dilation_tuple",
        (1, 2, 14, 9),
        (4, 2, 2, 3),
        {"dilation": (3, 1), "padding": (1, 0), "stride": (1, 2)},
    ),
    ("groups2", (2, 6, 9, 9), (4, 3, 3, 3), {"groups": 2, "padding": 1}),
    ("groups3_mult", (1, 6, 7, 8), (9, 2, 3, 1), {"groups": 3, "padding": (1, 0), "stride": (2, 1)}),
    ("depthwise", (2, 5, 9, 37), (5, 1, 3, 3), {"groups": 5, "padding": 1}),
    ("depthwise_mult2", (2, 3, 10, 70), (6, 1, 3, 3), {"groups": 3, "padding": 1}),
    (
        "depthwise_s2_d2",
        (1, 4, 15, 16),
        (8, 1, 3, 5),
        {"groups": 4, "padding": (2, 3), "stride": 2, "dilation": (2, 1)},
    ),
    # float32 at stride 1 along W: the plane kernel over a padded copy of each plane; rows of
    # several column chunks, dilation, stride along H, padding past every tap (bias-only columns)
    ("depthwise_wide_rows", (1, 4, 5, 150), (4, 1, 3, 3), {"groups": 4, "padding": 1}),
    ("depthwise_dilated", (1, 3, 9, 90), (6, 1, 3, 5), {"groups": 3, "padding": (2, 5), "dilation": (2, 3)}),
    ("depthwise_stride_h2", (1, 3, 11, 40), (3, 1, 3, 3), {"groups": 3, "padding": 1, "stride": (2, 1)}),
    ("depthwise_pad_past_taps", (2, 2, 4, 20), (2, 1, 3, 3), {"groups": 2, "padding": (1, 6)}),
    (
        "depthwise_5x5_reflect",
        (1, 3, 9, 40),
        (3, 1, 5, 5),
        {"groups": 3, "padding": 2, "padding_mode": "reflect"},
    ),
    ("pointwise", (2, 8, 7, 9), (5, 8, 1, 1), {}),
    ("pointwise_stride2", (2, 8, 7, 9), (5, 8, 1, 1), {"stride": 2}),
    ("pointwise_padded", (1, 4, 5, 6), (3, 4, 1, 1), {"padding": 1}),
    ("pointwise_groups", (2, 8, 5, 5), (6, 4, 1, 1), {"groups": 2}),
    ("kernel_eq_padded_input", (2, 3, 3, 4), (2, 3, 5, 6), {"padding": 1}),
    ("kernel_eq_input", (2, 3, 5, 4), (4, 3, 5, 4), {}),
    ("spatial_1x1", (3, 4, 1, 1), (5, 4, 3, 3), {"padding": 1}),
    ("spatial_1x1_k1", (3, 4, 1, 1), (5, 4, 1, 1), {}),
    ("stride_gt_input", (1, 2, 3, 3), (2, 2, 1, 1), {"stride": 5}),
    ("odd_7x7_s2_stem", (1, 3, 23, 19), (8, 3, 7, 7), {"stride": 2, "padding": 3}),
    ("wide_rows_s2", (2, 3, 5, 77), (4, 3, 7, 7), {"stride": 2, "padding": 3}),  # vector stride-2 copies
    ("rect_kernel", (2, 3, 8, 12), (4, 3, 2, 5), {"padding": (0, 2)}),
    ("same_odd", (2, 3, 8, 9), (4, 3, 3, 5), {"padding": "same"}),
    ("same_even_dilated", (1, 3, 9, 8), (4, 3, 4, 2), {"padding": "same", "dilation": (1, 3)}),
    ("valid", (1, 3, 8, 9), (4, 3, 3, 3), {"padding": "valid"}),
    ("reflect", (2, 3, 7, 8), (4, 3, 3, 3), {"padding": 2, "padding_mode": "reflect"}),
    ("reflect_max_pad", (1, 2, 4, 5), (3, 2, 3, 3), {"padding": (3, 4), "padding_mode": "reflect"}),
    (
        "reflect_stride_dil",
        (1, 3, 9, 10),
        (4, 3, 3, 3),
        {"padding": 2, "stride": 2, "dilation": 2, "padding_mode": "reflect"},
    ),
    ("replicate", (2, 3, 6, 7), (4, 3, 3, 3), {"padding": (2, 3), "padding_mode": "replicate"}),
    ("replicate_big_pad", (1, 2, 3, 3), (3, 2, 3, 3), {"padding": 5, "padding_mode": "replicate"}),
    ("circular", (2, 3, 6, 7), (4, 3, 3, 3), {"padding": 1, "padding_mode": "circular"}),
    ("circular_pad_eq_size", (1, 2, 3, 4), (3, 2, 3, 3), {"padding": (3, 4), "padding_mode": "circular"}),
    (
        "circular_groups_same",
        (1, 4, 6, 7),
        (4, 2, 4, 3),
        {"padding": "same", "groups": 2, "padding_mode": "circular"},
    ),
    (
        "replicate_depthwise",
        (1, 4, 6, 33),
        (4, 1, 3, 3),
        {"padding": 1, "groups": 4, "padding_mode": "replicate"},
    ),
    ("batch0", (0, 3, 6, 7), (4, 3, 3, 3), {"padding": 1}),
    ("unbatched", (3, 8, 9), (4, 3, 3, 3), {"padding": 1, "stride": 2}),
    ("unbatched_depthwise", (3, 8, 40), (3, 1, 3, 3), {"padding": 1, "groups": 3}),
    ("large_K", (1, 64, 10, 10), (16, 64, 3, 3), {"padding": 1}),
    ("auto_winograd_32ch", (2, 32, 22, 21), (32, 32, 3, 3), {"padding": 1}),
    ("small_map_32ch_gemm", (2, 32, 10, 9), (32, 32, 3, 3), {"padding": 1}),
    # dilated 3x3 where auto takes Winograd per phase (>= 32 channels, 20x20 outputs per phase)
    ("auto_winograd_dilated", (2, 32, 42, 41), (32, 32, 3, 3), {"padding": 2, "dilation": 2}),
    (
        "auto_winograd_dil23_reflect",
        (1, 40, 62, 45),
        (36, 40, 3, 3),
        {"padding": (2, 3), "dilation": (2, 3), "padding_mode": "reflect"},
    ),
    # grad_input through col2im (fewer input than output channels), odd widths, 'same' split,
    # row stride and dilation (the padded-copy im2col/col2im take any stride/dilation along H)
    ("col2im_3to16", (3, 3, 13, 19), (16, 3, 3, 3), {"padding": 1}),
    ("col2im_8to40_same_even", (2, 8, 9, 35), (40, 8, 2, 4), {"padding": "same"}),
    ("col2im_5to24_dil", (2, 5, 17, 12), (24, 5, 3, 3), {"padding": (2, 1), "dilation": (2, 1)}),
    ("col2im_4to24_sh2", (2, 4, 15, 11), (24, 4, 3, 3), {"padding": 1, "stride": (2, 1)}),
    ("col2im_16to64_wide", (2, 16, 6, 33), (64, 16, 3, 3), {"padding": 1, "bias": False}),
    (
        "winograd_same_replicate",
        (1, 40, 7, 6),
        (36, 40, 3, 3),
        {"padding": "same", "padding_mode": "replicate"},
    ),
]


def _ids(cases):
    return [c[0] for c in cases]


def make_inputs(rng, xs, ws, dtype=np.float32, bias=True, relu=False):
    x = rng.uniform(-1, 1, xs)
    if relu:
        x = np.maximum(x, 0) + 0.01
    fan_in = ws[1] * ws[2] * ws[3]
    w = rng.uniform(-1, 1, ws) * np.sqrt(3.0 / fan_in)
    b = rng.uniform(-0.5, 0.5, ws[0]) if bias else None

    def cast(a):
        return None if a is None else a.astype(dtype)

    return cast(x), cast(w), cast(b)


def split_kwargs(kw):
    kw = dict(kw)
    bias = kw.pop("bias", True)
    return bias, kw


def torch_conv(
    x, w, b, *, stride=1, padding=0, dilation=1, groups=1, padding_mode="zeros", dtype=None, grad_output=None
):
    """torch.nn.Conv2d semantics (F.pad + F.conv2d for non-zero modes, like nn.Conv2d) with
    autograd; returns (y, gx, gw, gb) as numpy in `dtype` (default: the inputs' dtype)."""
    tdt = {None: None, np.float32: torch.float32, np.float64: torch.float64}[dtype]
    xt = torch.tensor(x, dtype=tdt, requires_grad=True)
    wt = torch.tensor(w, dtype=tdt, requires_grad=True)
    bt = None if b is None else torch.tensor(b, dtype=tdt, requires_grad=True)
    m = torch.nn.Conv2d(
        w.shape[1] * groups,
        w.shape[0],
        w.shape[2:],
        stride=stride,
        padding=padding,
        dilation=dilation,
        groups=groups,
        bias=b is not None,
        padding_mode=padding_mode,
    )
    y = m._conv_forward(xt, wt, bt)
    if grad_output is None:
        return y.detach().numpy(), None, None, None
    y.backward(torch.tensor(grad_output, dtype=y.dtype))
    return (y.detach().numpy(), xt.grad.numpy(), wt.grad.numpy(), None if bt is None else bt.grad.numpy())


# ---------------------------------------------------------------- forward + backward vs torch
@needs_torch
@pytest.mark.torch
@pytest.mark.parametrize("case", CASES, ids=_ids(CASES))
def test_forward_backward_error_gate(case, rng):
    name, xs, ws, kw = case
    bias, kw = split_kwargs(kw)
    x, w, b = make_inputs(rng, xs, ws, bias=bias)
    y = F.conv2d(x, w, b, **kw)
    y64, *_ = torch_conv(x, w, b, dtype=np.float64, **kw)
    gy = rng.uniform(-1, 1, y64.shape).astype(np.float32)
    y32, gx32, gw32, gb32 = torch_conv(x, w, b, grad_output=gy, **kw)
    _, gx64, gw64, gb64 = torch_conv(x, w, b, dtype=np.float64, grad_output=gy, **kw)
    assert y.shape == y32.shape and y.dtype == np.float32
    assert_error_gate(y, y64, y32, what=f"{name} forward")
    algos = ["gemm"] + (["depthwise"] if kw.get("groups", 1) == xs[-3] and xs[-3] > 1 else [])
    if ws[2:] == (3, 3) and kw.get("stride", 1) == 1 and kw.get("groups", 1) == 1:
        algos.append("winograd")  # any dilation: one Winograd layer per phase
    for algo in algos:
        assert_error_gate(F.conv2d(x, w, b, algorithm=algo, **kw), y64, y32, what=f"{name} forward {algo}")
    gx, gw, gb = F.conv2d_backward(gy, x, w, **kw)
    assert gx.shape == x.shape and gw.shape == w.shape and gb.shape == (w.shape[0],)
    assert_error_gate(gx, gx64, gx32, what=f"{name} grad_input")
    assert_error_gate(gw, gw64, gw32, what=f"{name} grad_weight")
    if b is not None:
        assert_error_gate(gb, gb64, gb32, what=f"{name} grad_bias")
    else:
        np.testing.assert_allclose(
            gb, gy.astype(np.float64).sum(axis=(0, 2, 3) if gy.ndim == 4 else (1, 2)), rtol=1e-5, atol=1e-5
        )


@needs_torch
@pytest.mark.torch
@pytest.mark.parametrize("case", CASES[::3], ids=_ids(CASES[::3]))
def test_float64_matches_torch(case, rng):
    name, xs, ws, kw = case
    bias, kw = split_kwargs(kw)
    x, w, b = make_inputs(rng, xs, ws, dtype=np.float64, bias=bias)
    y64, *_ = torch_conv(x, w, b, **kw)
    gy = rng.uniform(-1, 1, y64.shape)
    _, gx64, gw64, gb64 = torch_conv(x, w, b, grad_output=gy, **kw)
    y = F.conv2d(x, w, b, **kw)
    assert y.dtype == np.float64
    np.testing.assert_allclose(y, y64, rtol=1e-12, atol=1e-12)
    gx, gw, gb = F.conv2d_backward(gy, x, w, **kw)
    np.testing.assert_allclose(gx, gx64, rtol=1e-12, atol=1e-12)
    np.testing.assert_allclose(gw, gw64, rtol=1e-11, atol=1e-11)
    if b is not None:
        np.testing.assert_allclose(gb, gb64, rtol=1e-12, atol=1e-12)


@needs_torch
@pytest.mark.torch
def test_random_float64_cases(rng):
    """Random argument draws in float64 (every mode, groups, stride, dilation, padding)."""
    for _ in range(25):
        groups = int(rng.choice([1, 2, 3]))
        cig, cog = int(rng.integers(1, 4)), int(rng.integers(1, 4))
        kh, kw = (int(v) for v in rng.integers(1, 5, 2))
        stride = tuple(int(v) for v in rng.integers(1, 4, 2))
        dil = tuple(int(v) for v in rng.integers(1, 3, 2))
        mode = str(rng.choice(list(_MODES)))
        h, wd = (int(v) for v in rng.integers(3, 12, 2))
        pad = (int(rng.integers(0, min(3, h))), int(rng.integers(0, min(3, wd))))
        if h + 2 * pad[0] < dil[0] * (kh - 1) + 1 or wd + 2 * pad[1] < dil[1] * (kw - 1) + 1:
            continue
        kwargs = {"stride": stride, "padding": pad, "dilation": dil, "groups": groups, "padding_mode": mode}
        x, w, b = make_inputs(rng, (2, cig * groups, h, wd), (cog * groups, cig, kh, kw), dtype=np.float64)
        y64, *_ = torch_conv(x, w, b, **kwargs)
        gy = rng.uniform(-1, 1, y64.shape)
        _, gx64, gw64, gb64 = torch_conv(x, w, b, grad_output=gy, **kwargs)
        np.testing.assert_allclose(
            F.conv2d(x, w, b, **kwargs), y64, rtol=1e-12, atol=1e-12, err_msg=str(kwargs)
        )
        gx, gw, gb = F.conv2d_backward(gy, x, w, **kwargs)
        np.testing.assert_allclose(gx, gx64, rtol=1e-12, atol=1e-12, err_msg=str(kwargs))
        np.testing.assert_allclose(gw, gw64, rtol=1e-11, atol=1e-11, err_msg=str(kwargs))
        np.testing.assert_allclose(gb, gb64, rtol=1e-12, atol=1e-12, err_msg=str(kwargs))


# ---------------------------------------------------------------- the float64 oracle
def _oracle_args(x4, w, kw):
    """The normalised binding arguments for simple cases (int padding only)."""
    kw = dict(kw)
    s = kw.get("stride", 1)
    d = kw.get("dilation", 1)
    p = kw.get("padding", 0)
    s = (s, s) if isinstance(s, int) else s
    d = (d, d) if isinstance(d, int) else d
    p = (p, p) if isinstance(p, int) else p
    return s, (p[0], p[0], p[1], p[1]), d, kw.get("groups", 1), _MODES[kw.get("padding_mode", "zeros")]


ORACLE_CASES = [c for c in CASES if not isinstance(c[3].get("padding", 0), str) and len(c[1]) == 4]


@pytest.mark.parametrize("case", ORACLE_CASES, ids=_ids(ORACLE_CASES))
def test_fast_float64_matches_naive_oracle(case, rng):
    """Fast float64 path against the naive loop kept at the top of conv2d.cpp (no torch)."""
    name, xs, ws, kw = case
    bias, kw = split_kwargs(kw)
    x, w, b = make_inputs(rng, xs, ws, dtype=np.float64, bias=bias)
    args = _oracle_args(x, w, kw)
    y_ref = _C.conv2d_forward_naive(x, w, b, *args)
    np.testing.assert_allclose(F.conv2d(x, w, b, **kw), y_ref, rtol=1e-12, atol=1e-12)
    gy = rng.uniform(-1, 1, y_ref.shape)
    gx_ref, gw_ref, gb_ref = _C.conv2d_backward_naive(gy, x, w, *args)
    gx, gw, gb = F.conv2d_backward(gy, x, w, **kw)
    np.testing.assert_allclose(gx, gx_ref, rtol=1e-12, atol=1e-12)
    np.testing.assert_allclose(gw, gw_ref, rtol=1e-11, atol=1e-11)
    np.testing.assert_allclose(gb, gb_ref, rtol=1e-12, atol=1e-12)


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_stride2_columns_match_naive_oracle(dtype, rng):
    """Stride 2 along W with zero padding: im2col copies every other element of each padded row
    (a permute on the vector ISAs). Output widths 1 to 37 give every partial-vector tail of 16,
    8 and 4 lanes, with an input width whose last element is read and one whose last is not (so
    a run's last read is the padded copy's last element); a 7x7 stem, a dilated 3x3 at stride
    (1, 2), 1x1 and 2x2 taps. Forward and the gradients against the naive float64 loop."""
    for k, p, d, sh in ((7, 3, 1, 2), (3, 1, 2, 1), (1, 0, 1, 2), (2, 0, 1, 2)):
        for ow in range(1, 38):
            for extra in (0, 1):
                W = 2 * (ow - 1) + d * (k - 1) + 1 - 2 * p + extra
                kw = {"stride": (sh, 2), "padding": p, "dilation": d}
                x, w, b = make_inputs(rng, (2, 3, 6, W), (4, 3, k, k), dtype=dtype)
                x64, w64, b64 = (a.astype(np.float64) for a in (x, w, b))
                args = _oracle_args(x, w, kw)
                ref = _C.conv2d_forward_naive(x64, w64, b64, *args)
                y = F.conv2d(x, w, b, **kw)
                assert y.shape == ref.shape and y.shape[-1] == ow and y.dtype == dtype
                tol = 1e-12 if dtype == np.float64 else 2e-5
                np.testing.assert_allclose(y, ref, rtol=tol, atol=tol, err_msg=f"k={k} ow={ow} W={W}")
                gy = rng.uniform(-1, 1, ref.shape).astype(dtype)
                refs = _C.conv2d_backward_naive(gy.astype(np.float64), x64, w64, *args)
                for got, want in zip(F.conv2d_backward(gy, x, w, **kw), refs):
                    np.testing.assert_allclose(
                        got, want, rtol=10 * tol, atol=10 * tol, err_msg=f"k={k} ow={ow}"
                    )


@needs_torch
@pytest.mark.torch
def test_oracle_matches_torch(rng):
    """The oracle itself is checked against torch once per padding mode."""
    for mode in _MODES:
        kw = {"stride": (2, 1), "padding": (2, 1), "dilation": (1, 2), "groups": 2, "padding_mode": mode}
        x, w, b = make_inputs(rng, (2, 4, 7, 8), (6, 2, 3, 2), dtype=np.float64)
        y64, *_ = torch_conv(x, w, b, **kw)
        gy = rng.uniform(-1, 1, y64.shape)
        _, gx64, gw64, gb64 = torch_conv(x, w, b, grad_output=gy, **kw)
        args = _oracle_args(x, w, kw)
        np.testing.assert_allclose(_C.conv2d_forward_naive(x, w, b, *args), y64, rtol=1e-12, atol=1e-12)
        for ours, ref in zip(_C.conv2d_backward_naive(gy, x, w, *args), (gx64, gw64, gb64)):
            np.testing.assert_allclose(ours, ref, rtol=1e-12, atol=1e-12)


# ---------------------------------------------------------------- VGG-like numerics
@needs_torch
@pytest.mark.torch
@pytest.mark.parametrize("cin,cout,hw", [(64, 64, 20), (256, 32, 10)])
def test_vgg_like_error_gate(cin, cout, hw, rng):
    """Post-ReLU inputs, He-scaled weights, long reductions (K = 9 * C_in)."""
    x, w, b = make_inputs(rng, (1, cin, hw, hw), (cout, cin, 3, 3), relu=True)
    y64, *_ = torch_conv(x, w, b, padding=1, dtype=np.float64)
    y32, *_ = torch_conv(x, w, b, padding=1)
    assert_error_gate(F.conv2d(x, w, b, padding=1), y64, y32, what="vgg-like")
    # Winograd, forced: within the gate (with the helpers' absolute floor) on every width
    assert_error_gate(F.conv2d(x, w, b, padding=1, algorithm="winograd"), y64, y32, what="vgg-like winograd")


@needs_torch
@pytest.mark.torch
@pytest.mark.parametrize("cin,hw", [(32, 24), (64, 40), (128, 28), (256, 28), (512, 14)])
@pytest.mark.parametrize("seed", [0, 1])
def test_auto_winograd_within_twice_torch_without_floor(cin, hw, seed):
    """Where auto picks Winograd (C_in, C_out >= 32 from 20x20 outputs, >= 64 from 12x12: every
    VGG layer, with prepared weights) its error is within 2x torch's with no absolute floor at
    all (post-ReLU input, He weights). Without prepared weights auto takes the GEMM where the
    per-call weight transform costs more than it saves (512 channels at 14x14, one image,
    except on AVX-512, whose transform is fast enough there)."""
    rng = np.random.default_rng(seed)
    x, w, b = make_inputs(rng, (1, cin, hw, hw), (cin, cin, 3, 3), relu=True)
    y64, *_ = torch_conv(x, w, b, padding=1, dtype=np.float64)
    y32, *_ = torch_conv(x, w, b, padding=1)
    y = F.conv2d(x, F.prepare_conv2d_weight(w), b, padding=1)
    np.testing.assert_array_equal(y, F.conv2d(x, w, b, padding=1, algorithm="winograd"))  # auto == winograd
    assert_error_gate(y, y64, y32, floor=0.0, what="auto winograd, no floor")
    unprepared = "gemm" if cin == 512 and pycnnrnn.cpu_isa() != "avx512" else "winograd"
    np.testing.assert_array_equal(
        F.conv2d(x, w, b, padding=1), F.conv2d(x, w, b, padding=1, algorithm=unprepared)
    )
    # and the implicit-GEMM path on the same layer, also without a floor
    assert_error_gate(
        F.conv2d(x, w, b, padding=1, algorithm="gemm"), y64, y32, floor=0.0, what="gemm, no floor"
    )


# ---------------------------------------------------------------- layouts, mutation, determinism
def test_layouts_give_the_contiguous_answer(rng):
    x, w, b = make_inputs(rng, (2, 4, 7, 9), (6, 2, 3, 3))
    kw = {"padding": 1, "groups": 2, "stride": (1, 2)}
    y0 = F.conv2d(x, w, b, **kw)
    gy = rng.uniform(-1, 1, y0.shape).astype(np.float32)
    g0 = F.conv2d_backward(gy, x, w, **kw)
    for name, xv in layouts(x):
        np.testing.assert_array_equal(F.conv2d(xv, w, b, **kw), y0, err_msg=f"input {name}")
    for name, wv in layouts(w):
        np.testing.assert_array_equal(F.conv2d(x, wv, b, **kw), y0, err_msg=f"weight {name}")
    for name, bv in layouts(b):
        np.testing.assert_array_equal(F.conv2d(x, w, bv, **kw), y0, err_msg=f"bias {name}")
    for name, gyv in layouts(gy):
        for a, ref in zip(F.conv2d_backward(gyv, x, w, **kw), g0):
            np.testing.assert_array_equal(a, ref, err_msg=f"grad_output {name}")
    for name, xv in layouts(x):
        for a, ref in zip(F.conv2d_backward(gy, xv, w, **kw), g0):
            np.testing.assert_array_equal(a, ref, err_msg=f"input {name} (backward)")
    # non-native byte order is normalised
    np.testing.assert_array_equal(F.conv2d(x.astype(">f4"), w, b, **kw), y0)


def test_inputs_not_modified_and_results_deterministic(rng):
    x, w, b = make_inputs(rng, (3, 4, 9, 9), (6, 4, 3, 3))
    gy = rng.uniform(-1, 1, (3, 6, 9, 9)).astype(np.float32)
    copies = [a.copy() for a in (x, w, b, gy)]
    y1 = F.conv2d(x, w, b, padding=1, padding_mode="reflect")
    g1 = F.conv2d_backward(gy, x, w, padding=1, padding_mode="reflect")
    y2 = F.conv2d(x, w, b, padding=1, padding_mode="reflect")
    g2 = F.conv2d_backward(gy, x, w, padding=1, padding_mode="reflect")
    for a, c in zip((x, w, b, gy), copies):
        np.testing.assert_array_equal(a, c)
    np.testing.assert_array_equal(y1, y2)
    for a, c in zip(g1, g2):
        np.testing.assert_array_equal(a, c)


def test_one_thread_matches_two(rng):
    """The engine-threaded and batch-split paths (and 1 thread) agree to rounding."""
    x, w, b = make_inputs(rng, (4, 6, 11, 10), (8, 6, 3, 3))
    gy = rng.uniform(-1, 1, (4, 8, 6, 5)).astype(np.float32)
    kw = {"padding": 1, "stride": 2}
    n0 = pycnnrnn.get_num_threads()
    try:
        pycnnrnn.set_num_threads(1)
        y1, g1 = F.conv2d(x, w, b, **kw), F.conv2d_backward(gy, x, w, **kw)
    finally:
        pycnnrnn.set_num_threads(n0)
    y2, g2 = F.conv2d(x, w, b, **kw), F.conv2d_backward(gy, x, w, **kw)
    np.testing.assert_allclose(y1, y2, rtol=1e-5, atol=1e-6)
    for a, c in zip(g1, g2):
        np.testing.assert_allclose(a, c, rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("mode", ["zeros", "reflect"])
def test_single_image_output_channel_split_shares_im2col(dtype, mode, rng):
    """One image, 96 output channels on a 14x14 map: the engine splits the output channels
    over two threads and both read one im2col the threads provided together. Bit-identical to
    one thread; float64 equals the naive oracle."""
    x, w, b = make_inputs(rng, (1, 32, 14, 14), (96, 32, 3, 3), dtype=dtype)
    kw = {"padding": 1, "padding_mode": mode, "algorithm": "gemm"}
    n0 = pycnnrnn.get_num_threads()
    try:
        pycnnrnn.set_num_threads(1)
        y1 = F.conv2d(x, w, b, **kw)
        pycnnrnn.set_num_threads(2)
        y2 = F.conv2d(x, w, b, **kw)
    finally:
        pycnnrnn.set_num_threads(n0)
    np.testing.assert_array_equal(y1, y2)
    if dtype == np.float64:
        args = _oracle_args(x, w, {"padding": 1, "padding_mode": mode})
        np.testing.assert_allclose(y2, _C.conv2d_forward_naive(x, w, b, *args), rtol=1e-12, atol=1e-12)


def test_output_mask_and_zero_batch(rng):
    x, w, _ = make_inputs(rng, (2, 3, 6, 6), (4, 3, 3, 3))
    gy = rng.uniform(-1, 1, (2, 4, 6, 6)).astype(np.float32)
    full = F.conv2d_backward(gy, x, w, padding=1)
    for mask in [(True, False, False), (False, True, False), (False, False, True), (False, False, False)]:
        part = F.conv2d_backward(gy, x, w, padding=1, output_mask=mask)
        for m, p, f in zip(mask, part, full):
            if m:
                np.testing.assert_array_equal(p, f)
            else:
                assert p is None
    x0 = np.empty((0, 3, 6, 6), np.float32)
    y0 = F.conv2d(x0, w, padding=1)
    assert y0.shape == (0, 4, 6, 6)
    gx, gw, gb = F.conv2d_backward(np.empty((0, 4, 6, 6), np.float32), x0, w, padding=1)
    assert gx.shape == (0, 3, 6, 6)
    np.testing.assert_array_equal(gw, np.zeros_like(w))
    np.testing.assert_array_equal(gb, np.zeros(4, np.float32))


# ---------------------------------------------------------------- bad input
def _bad_cases():
    x = np.ones((1, 4, 5, 5), np.float32)
    w = np.ones((6, 2, 3, 3), np.float32)
    ok = {"groups": 2}
    return [
        # (what, input, weight, kwargs, exception, regex)
        ("input ndim", x[0, 0], w, ok, ValueError, r"input must be 3-D or 4-D.*got 2-D"),
        ("weight ndim", x, w[0], ok, ValueError, r"weight must be 4-D.*got 3-D"),
        (
            "int dtype",
            x.astype(np.int32),
            w,
            ok,
            TypeError,
            r"input must have dtype float32 or float64, got int32",
        ),
        ("mixed dtype", x, w.astype(np.float64), ok, TypeError, r"weight must have dtype float32"),
        ("list input", x.tolist(), w, ok, TypeError, r"input must be a numpy array, got list"),
        ("channels", x, w, {"groups": 1}, ValueError, r"input has 4 channels, expected .* = 2"),
        ("out % groups", x, np.ones((5, 2, 3, 3), np.float32), ok, ValueError, r"divisible by groups \(2\)"),
        ("groups 0", x, w, {"groups": 0}, ValueError, r"groups must be a positive integer, got 0"),
        ("groups float", x, w, {"groups": 2.0}, TypeError, r"groups must be an int, got float"),
        ("stride 0", x, w, dict(ok, stride=0), ValueError, r"stride must be positive"),
        ("stride neg", x, w, dict(ok, stride=(1, -1)), ValueError, r"stride must be positive"),
        ("stride bool", x, w, dict(ok, stride=True), TypeError, r"stride must be an int"),
        (
            "stride 3-tuple",
            x,
            w,
            dict(ok, stride=(1, 1, 1)),
            ValueError,
            r"stride must be an int or a tuple of 2",
        ),
        ("dilation 0", x, w, dict(ok, dilation=0), ValueError, r"dilation must be positive"),
        ("padding neg", x, w, dict(ok, padding=-1), ValueError, r"padding must be non-negative"),
        ("padding str", x, w, dict(ok, padding="full"), ValueError, r"padding must be 'valid', 'same'"),
        (
            "same strided",
            x,
            w,
            dict(ok, padding="same", stride=2),
            ValueError,
            r"padding='same' is not supported for strided convolutions",
        ),
        ("mode", x, w, dict(ok, padding_mode="mirror"), ValueError, r"padding_mode must be one of"),
        ("mode type", x, w, dict(ok, padding_mode=0), TypeError, r"padding_mode must be a str"),
        (
            "reflect pad",
            x,
            w,
            dict(ok, padding=5, padding_mode="reflect"),
            ValueError,
            r"must be < the input size",
        ),
        (
            "circular pad",
            x,
            w,
            dict(ok, padding=6, padding_mode="circular"),
            ValueError,
            r"must be <= the input size",
        ),
        (
            "kernel > input",
            x,
            np.ones((6, 2, 7, 3), np.float32),
            ok,
            ValueError,
            r"padded input size per channel \(5 x 5\) is smaller than the \(dilated\) kernel size \(7 x 3\)",
        ),
        ("dilated kernel > input", x, w, dict(ok, dilation=3), ValueError, r"kernel size \(7 x 7\)"),
        (
            "zero channels",
            np.ones((1, 0, 5, 5), np.float32),
            np.ones((6, 0, 3, 3), np.float32),
            {},
            ValueError,
            r"non-zero channels",
        ),
        ("zero height", np.ones((1, 4, 0, 5), np.float32), w, ok, ValueError, r"non-zero channels, height"),
        ("huge padding", x, w, dict(ok, padding=2**62), OverflowError, r"too large"),
        (
            "huge dilation and padding",
            x,
            w,
            dict(ok, padding=2**61, dilation=2**61),
            OverflowError,
            r"too large",
        ),
        (
            "huge stride ok-type overflow",
            x,
            w,
            dict(ok, stride=2**70),
            OverflowError,
            r"does not fit in int64",
        ),
    ]


BAD = _bad_cases()


@pytest.mark.parametrize("what,x,w,kw,exc,regex", BAD, ids=[c[0] for c in BAD])
def test_bad_arguments_raise(what, x, w, kw, exc, regex):
    before = [np.array(a, copy=True) for a in (x, w)]
    with pytest.raises(exc, match=regex):
        F.conv2d(x, w, None, **kw)
    if (
        isinstance(x, np.ndarray)
        and x.ndim == 4
        and x.dtype == np.float32
        and w.ndim == 4
        and w.dtype == x.dtype
    ):
        with pytest.raises(exc, match=regex):
            F.conv2d_backward(np.ones((1, 6, 3, 3), np.float32), x, w, **kw)
    for a, c in zip((x, w), before):
        np.testing.assert_array_equal(np.asarray(a), c)


def test_bad_bias_grad_output_algorithm():
    x = np.ones((1, 4, 5, 5), np.float32)
    w = np.ones((6, 4, 3, 3), np.float32)
    with pytest.raises(ValueError, match=re.escape("bias must have shape (6,) (out_channels), got (5,)")):
        F.conv2d(x, w, np.ones(5, np.float32))
    with pytest.raises(TypeError, match="bias must have dtype float32"):
        F.conv2d(x, w, np.ones(6, np.float64))
    with pytest.raises(ValueError, match=re.escape("grad_output must have the output's shape (1, 6, 3, 3)")):
        F.conv2d_backward(np.ones((1, 6, 5, 5), np.float32), x, w)
    with pytest.raises(ValueError, match="algorithm must be one of"):
        F.conv2d(x, w, algorithm="fft")
    with pytest.raises(ValueError, match="algorithm='depthwise' needs groups == in_channels"):
        F.conv2d(x, w, algorithm="depthwise")
    with pytest.raises(
        ValueError, match=r"algorithm='winograd' needs a 3x3 kernel, stride 1.*stride \(2, 2\)"
    ):
        F.conv2d(x, w, stride=2, algorithm="winograd")
    with pytest.raises(ValueError, match="output_mask must be a sequence of 3 bools"):
        F.conv2d_backward(np.ones((1, 6, 3, 3), np.float32), x, w, output_mask=(True,))


def test_binding_rechecks_arguments():
    """The C++ second line of defence: non-contiguous or mismatched arrays never reach a kernel."""
    x = np.ones((1, 4, 5, 5), np.float32)
    w = np.ones((6, 4, 3, 3), np.float32)
    args = ((1, 1), (0, 0, 0, 0), (1, 1), 1, 0)
    with pytest.raises(ValueError, match="C-contiguous"):
        _C.conv2d_forward(x[:, :, :, ::-1], w, None, *args, 0)
    with pytest.raises(TypeError, match="float32"):
        _C.conv2d_forward(x, w.astype(np.float64), None, *args, 0)
    with pytest.raises(ValueError, match="weight must have shape"):
        _C.conv2d_forward(x, w[:, :3], None, *args, 0)
    with pytest.raises(ValueError, match="grad_output must have shape"):
        _C.conv2d_backward(np.ones((1, 6, 2, 3), np.float32), x, w, *args, (True, True, True))
    with pytest.raises(ValueError, match="padded input size"):
        _C.conv2d_forward(x, np.ones((6, 4, 7, 7), np.float32), None, *args, 0)


# ---------------------------------------------------------------- every ISA path
@needs_torch
@pytest.mark.torch
@pytest.mark.parametrize("isa", ["avx2", "scalar"])
def test_lower_isa_paths(isa):
    code = f"""
import numpy as np, torch, pycnnrnn
from pycnnrnn import functional as F
rng = np.random.default_rng(5)
assert pycnnrnn.cpu_isa() == "{isa}", pycnnrnn.cpu_isa()
for groups, ws, kw in [(1, (7, 6, 3, 3), dict(padding=1, stride=(1, 2))),
                       (1, (7, 6, 3, 3), dict(padding=1, padding_mode="circular")),
                       (6, (12, 1, 3, 3), dict(padding=1, padding_mode="reflect")),
                       (2, (4, 3, 1, 1), dict())]:
    x = rng.uniform(-1, 1, (2, 6, 11, 45)).astype(np.float32)
    w = rng.uniform(-0.3, 0.3, ws).astype(np.float32)
    b = rng.uniform(-1, 1, ws[0]).astype(np.float32)
    m = torch.nn.Conv2d(6, ws[0], ws[2:], groups=groups, **kw)
    y64 = m._conv_forward(torch.tensor(x, dtype=torch.float64), torch.tensor(w, dtype=torch.float64),
                          torch.tensor(b, dtype=torch.float64)).numpy()
    y32 = m._conv_forward(torch.tensor(x), torch.tensor(w), torch.tensor(b)).numpy()
    y = F.conv2d(x, w, b, groups=groups, **kw)
    e, et = np.abs(y - y64).max(), np.abs(y32 - y64).max()
    assert e <= 2 * et + 1e-6 * max(1, np.abs(y64).max()), (groups, e, et)
    gy = rng.uniform(-1, 1, y.shape).astype(np.float32)
    gx, gw, gb = F.conv2d_backward(gy, x, w, groups=groups, **kw)
    xt = torch.tensor(x, dtype=torch.float64, requires_grad=True)
    wt = torch.tensor(w, dtype=torch.float64, requires_grad=True)
    m._conv_forward(xt, wt, None).backward(torch.tensor(gy, dtype=torch.float64))
    assert np.abs(gx - xt.grad.numpy()).max() < 1e-4 and np.abs(gw - wt.grad.numpy()).max() < 1e-3
    if ws[2:] == (3, 3) and groups == 1 and kw.get("stride", 1) == 1:
        yw = F.conv2d(x, w, b, groups=groups, algorithm="winograd", **kw)
        assert np.abs(yw - y64).max() <= 2 * et + 1e-6 * max(1, np.abs(y64).max())
# the direct kernel's tile of this ISA (AVX2's, or the portable one): against float64, padding modes
for kw in [dict(padding=1), dict(padding=(2, 1), dilation=(2, 1), padding_mode="reflect")]:
    wd = rng.uniform(-0.3, 0.3, (7, 6, 3, 3)).astype(np.float32)
    bd = rng.uniform(-1, 1, 7).astype(np.float32)
    yd = F.conv2d(x, wd, bd, algorithm="direct", **kw)
    yd64 = F.conv2d(x.astype(np.float64), wd.astype(np.float64), bd.astype(np.float64), **kw)
    assert np.abs(yd - yd64).max() <= 1e-5 * max(1, np.abs(yd64).max()), kw
print("ok")
"""
    assert run_python(code, PYCNNRNN_ISA=isa).stdout.strip() == "ok"


def test_functional_exports():
    assert "conv2d" in F.__all__ and "conv2d_backward" in F.__all__
    assert pycnnrnn.F.conv2d is F.conv2d


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize(
    "xs,ws,kw",
    [
        ((2, 8, 9, 11), (6, 8, 3, 3), {"padding": 1, "stride": 2}),  # implicit GEMM
        ((1, 32, 10, 9), (32, 32, 3, 3), {"padding": 1}),  # Winograd (odd output width)
        ((2, 6, 7, 8), (12, 1, 3, 3), {"padding": 1, "groups": 6}),  # depthwise
        ((2, 8, 7, 7), (5, 8, 1, 1), {}),  # 1x1 as a plain GEMM
    ],
)
def test_conv2d_relu_is_relu_of_conv2d_bit_for_bit(xs, ws, kw, dtype, rng):
    x, w, b = make_inputs(rng, xs, ws, dtype=dtype)
    x[0, 0, 0, 0] = np.nan  # NaN stays NaN through the fused ReLU, like np.maximum
    ref = np.maximum(F.conv2d(x, w, b, **kw), 0)
    np.testing.assert_array_equal(F.conv2d_relu(x, w, b, **kw), ref)
    assert np.isnan(ref).any() and (ref == 0).any() and (ref > 0).any()


@needs_torch
@pytest.mark.torch
@pytest.mark.parametrize(
    "xs,co,kw",
    [
        ((2, 32, 17, 19), 40, {"padding": 1}),  # odd output: tiles cut at the bottom/right edge
        ((1, 64, 20, 19), 32, {"padding": 0}),
        ((3, 32, 16, 21), 32, {"padding": 1, "padding_mode": "reflect"}),
        ((1, 33, 16, 16), 35, {"padding": 1, "padding_mode": "circular"}),
        ((2, 32, 15, 15), 32, {"padding": 2, "padding_mode": "replicate"}),
        ((8, 64, 20, 20), 64, {"padding": 1}),  # long reduction: N * 400 positions
        ((2, 32, 38, 35), 32, {"padding": 2, "dilation": 2}),  # dilated: 4 phases, odd sizes
        ((1, 32, 50, 37), 40, {"padding": (1, 3), "dilation": (2, 3), "padding_mode": "reflect"}),
        ((1, 33, 52, 36), 32, {"padding": "same", "dilation": (3, 2), "padding_mode": "circular"}),
    ],
)
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_winograd_grad_weight_matches_torch(xs, co, kw, dtype, rng):
    """3x3 stride-1 layers with C_in, C_out >= 32 and >= 16x16 outputs take grad_weight through
    the Winograd transforms (conv2d_winograd.cpp): against torch's float64 gradient within the
    error gate (float32) or to 1e-12 (float64), every padding mode."""
    x, w, _ = make_inputs(rng, xs, (co, xs[1], 3, 3), dtype=dtype)
    y64, *_ = torch_conv(x, w, None, dtype=np.float64, **kw)
    gy = rng.standard_normal(y64.shape).astype(dtype)
    _, _, gw64, _ = torch_conv(x, w, None, dtype=np.float64, grad_output=gy, **kw)
    _, gw, _ = F.conv2d_backward(gy, x, w, **kw, output_mask=(False, True, False))
    if dtype == np.float64:
        np.testing.assert_allclose(gw, gw64, rtol=1e-12, atol=1e-12)
    else:
        _, _, gw32, _ = torch_conv(x, w, None, dtype=np.float32, grad_output=gy, **kw)
        assert_error_gate(gw, gw64, gw32, what=f"winograd grad_weight {xs} {kw}")


# ---------------------------------------------------------------- dilated Winograd (phases)
DILATED_GRID = [
    # (input shape, dilation, padding, padding_mode): odd sizes, phases of unequal size, fewer
    # output rows/columns than the dilation (empty phases), asymmetric 'same' splits
    ((2, 5, 13, 12), (2, 2), 2, "zeros"),
    ((1, 4, 11, 17), (2, 3), (1, 3), "zeros"),
    ((2, 3, 9, 8), (3, 1), "same", "reflect"),
    ((1, 6, 7, 10), (1, 2), (2, 1), "replicate"),
    ((1, 4, 9, 9), (4, 4), "same", "circular"),
    ((2, 3, 6, 14), (5, 2), (4, 2), "zeros"),
    ((1, 2, 12, 5), (2, 5), (1, 4), "circular"),
    # circular padding == input size with an odd output: the last tile row/column reaches one
    # past the padded input, which must read zeros (not wrap to index H / W)
    ((1, 2, 3, 4), (1, 1), (3, 4), "circular"),
]


@pytest.mark.parametrize("xs,dil,pad,mode", DILATED_GRID)
def test_dilated_winograd_matches_naive_oracle_float64(xs, dil, pad, mode, rng):
    """Forced Winograd on dilated layers (the layer split into dilation_h * dilation_w dense
    phases, conv2d_winograd.cpp) against the naive float64 loop, every padding mode (numpy
    only, so the ASan job runs it too)."""
    x, w, b = make_inputs(rng, xs, (4, xs[1], 3, 3), dtype=np.float64)
    kw = {"padding": pad, "dilation": dil, "padding_mode": mode}
    y = F.conv2d(x, w, b, algorithm="winograd", **kw)
    ref = F.conv2d(x, w, b, algorithm="gemm", **kw)
    if not isinstance(pad, str):
        ref_naive = _C.conv2d_forward_naive(x, w, b, *_oracle_args(x, w, kw))
        np.testing.assert_allclose(ref, ref_naive, rtol=1e-12, atol=1e-12)
    np.testing.assert_allclose(y, ref, rtol=1e-12, atol=1e-12)


@needs_torch
@pytest.mark.torch
@pytest.mark.parametrize("dil", [2, (2, 3), (3, 2)])
@pytest.mark.parametrize("seed", [0, 1])
def test_auto_dilated_winograd_within_twice_torch_without_floor(dil, seed):
    """The dilated benchmark layer's shape class (128 channels, dilation 2, 'same' padding):
    auto takes Winograd per phase, bit for bit the forced algorithm, and stays within 2x
    torch's float32 error with no absolute floor (forward and the Winograd grad_weight)."""
    rng = np.random.default_rng(seed)
    d = (dil, dil) if isinstance(dil, int) else dil
    x, w, b = make_inputs(rng, (2, 128, 45, 44), (128, 128, 3, 3), relu=True)
    kw = {"padding": d, "dilation": dil}
    y64, *_ = torch_conv(x, w, b, dtype=np.float64, **kw)
    gy = rng.standard_normal(y64.shape).astype(np.float32)
    y32, _, gw32, _ = torch_conv(x, w, b, grad_output=gy, **kw)
    _, _, gw64, _ = torch_conv(x, w, b, dtype=np.float64, grad_output=gy, **kw)
    y = F.conv2d(x, w, b, **kw)
    np.testing.assert_array_equal(y, F.conv2d(x, w, b, algorithm="winograd", **kw))
    assert_error_gate(y, y64, y32, floor=0.0, what=f"dilated auto winograd {dil}")
    _, gw, _ = F.conv2d_backward(gy, x, w, **kw, output_mask=(False, True, False))
    assert_error_gate(gw, gw64, gw32, what=f"dilated winograd grad_weight {dil}")


def test_small_maps_keep_structural_zeros_in_grad_weight(rng):
    """Below 16x16 outputs grad_weight stays on the zero-exact GEMM path: a tap whose products
    are all zero gives exactly 0 (Winograd's G^T M G leaves rounding residue there, which Adam
    would turn into a full step)."""
    x = rng.standard_normal((4, 32, 8, 8)).astype(np.float32)
    gy = np.zeros((4, 32, 8, 8), np.float32)
    gy[:, :, 0, :] = rng.standard_normal((4, 32, 8))  # gradient only in output row 0
    w = rng.standard_normal((32, 32, 3, 3)).astype(np.float32)
    _, gw, _ = F.conv2d_backward(gy, x, w, padding=1, output_mask=(False, True, False))
    assert np.array_equal(gw[:, :, 0, :], np.zeros_like(gw[:, :, 0, :]))  # row 0 reads only the padding
    assert (gw[:, :, 1:, :] != 0).all()


# ---------------------------------------------------------------- prepared weights
PREPARED_CASES = [
    # (input shape, weight shape, kwargs, algorithm)
    ((2, 32, 22, 21), (32, 32, 3, 3), {"padding": 1}, "auto"),  # auto -> Winograd
    ((1, 64, 14, 14), (48, 64, 3, 3), {"padding": 1}, "winograd"),
    ((2, 32, 42, 41), (32, 32, 3, 3), {"padding": 2, "dilation": 2}, "auto"),  # dilated Winograd
    ((1, 40, 7, 6), (36, 40, 3, 3), {"padding": "same", "padding_mode": "replicate"}, "winograd"),
    ((2, 8, 9, 11), (6, 8, 3, 3), {"padding": 1, "stride": 2}, "auto"),  # implicit GEMM
    ((2, 6, 7, 8), (12, 1, 3, 3), {"padding": 1, "groups": 6}, "auto"),  # depthwise
    ((2, 8, 7, 7), (5, 8, 1, 1), {}, "gemm"),  # 1x1
    ((32, 20, 19), (16, 32, 3, 3), {"padding": 1}, "winograd"),  # unbatched
]


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("xs,ws,kw,algo", PREPARED_CASES)
def test_prepared_weight_is_bit_identical_and_a_snapshot(xs, ws, kw, algo, dtype, rng):
    """prepare_conv2d_weight: every algorithm gives exactly the plain array's result, on the
    first call (which builds the derived weights) and after; the prepared weight is a read-only
    snapshot that later writes to the original array do not reach."""
    x, w, b = make_inputs(rng, xs, ws, dtype=dtype)
    ref = F.conv2d(x, w, b, algorithm=algo, **kw)
    pw = F.prepare_conv2d_weight(w)
    assert pw.shape == w.shape and pw.dtype == w.dtype and not pw.weight.flags.writeable
    for _ in range(2):
        np.testing.assert_array_equal(F.conv2d(x, pw, b, algorithm=algo, **kw), ref)
    np.testing.assert_array_equal(F.conv2d_relu(x, pw, b, **kw), F.conv2d_relu(x, w, b, **kw))
    gy = rng.uniform(-1, 1, ref.shape).astype(dtype)
    for got, want in zip(F.conv2d_backward(gy, x, pw, **kw), F.conv2d_backward(gy, x, w, **kw)):
        np.testing.assert_array_equal(got, want)
    w[...] = 0  # the snapshot keeps the values it was made from
    np.testing.assert_array_equal(F.conv2d(x, pw, b, algorithm=algo, **kw), ref)
    with pytest.raises(ValueError, match="read-only"):
        pw.weight[0, 0, 0, 0] = 1


def test_prepared_weight_errors_and_copies(rng):
    x, w, b = make_inputs(rng, (1, 32, 20, 20), (32, 32, 3, 3))
    pw = F.prepare_conv2d_weight(w)
    with pytest.raises(TypeError, match=r"weight must have dtype float64"):
        F.conv2d(x.astype(np.float64), pw, None, padding=1)
    with pytest.raises(ValueError, match=r"weight must be 4-D"):
        F.prepare_conv2d_weight(w[0])
    with pytest.raises(TypeError, match=r"weight must be a numpy array"):
        F.prepare_conv2d_weight([1.0])
    # the binding: a prepared object only goes with the array it was made for
    other = w.copy()
    with pytest.raises(ValueError, match="different weight array"):
        _C.conv2d_forward(x, other, None, (1, 1), (1, 1, 1, 1), (1, 1), 1, 0, 0, False, pw._c)
    same_memory = pw.weight.reshape(16, 64, 3, 3)  # same pointer and dtype, another shape
    x64 = np.ascontiguousarray(np.concatenate([x, x], axis=1))
    with pytest.raises(ValueError, match="different weight array"):
        _C.conv2d_forward(x64, same_memory, None, (1, 1), (1, 1, 1, 1), (1, 1), 1, 0, 3, False, pw._c)
    with pytest.raises(ValueError, match="read-only"):
        _C.Conv2dPrepared(w)  # a writable array could change under the derived weights
    ref = F.conv2d(x, w, b, padding=1)
    import copy
    import pickle

    for clone in (copy.deepcopy(pw), pickle.loads(pickle.dumps(pw))):
        assert clone.weight is not pw.weight and not clone.weight.flags.writeable
        np.testing.assert_array_equal(F.conv2d(x, clone, b, padding=1), ref)


def test_prepared_weight_first_calls_from_many_threads(rng):
    """The derived weights are built once even when several threads make the first call."""
    import threading

    x, w, b = make_inputs(rng, (1, 64, 28, 28), (64, 64, 3, 3))
    ref = F.conv2d(x, w, b, padding=1)
    pw = F.prepare_conv2d_weight(w)
    out = [None] * 6
    start = threading.Barrier(len(out))

    def run(i):
        start.wait()
        out[i] = F.conv2d(x, pw, b, padding=1)

    threads = [threading.Thread(target=run, args=(i,)) for i in range(len(out))]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    for y in out:
        np.testing.assert_array_equal(y, ref)


# ---------------------------------------------------------------- the direct kernel
#            x shape           w shape        kwargs (every padding mode, dilation, groups, partial vectors)
DIRECT_GRID = [
    ((3, 3, 32, 32), (16, 3, 3, 3), {"padding": 1}),  # 8x3 tiles, batch split
    ((4, 16, 16, 16), (32, 16, 3, 3), {"padding": 1}),
    ((2, 32, 16, 16), (13, 32, 3, 3), {"padding": 1}),  # 6x4 tiles, a partial panel
    ((1, 5, 13, 20), (7, 5, 3, 3), {"padding": 1, "padding_mode": "reflect"}),  # one image: panels split
    ((2, 4, 15, 33), (8, 4, 5, 5), {"padding": 2, "padding_mode": "circular", "bias": False}),
    (
        (2, 6, 14, 17),
        (6, 3, 3, 2),
        {"padding": (2, 1), "dilation": (2, 1), "groups": 2, "padding_mode": "replicate"},
    ),
    ((3, 70, 12, 12), (8, 70, 3, 3), {"padding": 1}),  # 630-step reduction: several summed chunks
    ((2, 2, 9, 14), (3, 2, 1, 3), {"padding": (0, 1)}),  # 1x3 kernel, no rows of padding
    # 8-lane row pieces (AVX2, portable): two rows per vector, an odd row count's half-empty
    # last vector, a 9-wide row's one-column piece, a vector that straddles rows of 24
    ((3, 32, 8, 8), (64, 32, 3, 3), {"padding": 1}),
    ((2, 5, 7, 9), (7, 5, 3, 3), {"padding": 1, "padding_mode": "reflect"}),
    ((2, 4, 5, 24), (6, 4, 3, 3), {"padding": 1}),
    ((1, 3, 9, 10), (8, 3, 3, 3), {"padding": 0}),  # 8x8 output of a 10x10 input, no padding
    # AVX2 / portable channel panels of 6 and 4: 11 = 6 + 6 (a padding row), 20 = 6 + 6 + 4 + 4
    ((2, 3, 10, 16), (11, 3, 3, 3), {"padding": 1}),
    ((2, 4, 8, 8), (20, 4, 3, 3), {"padding": 1}),
    # padded images past 64 KiB (auto keeps those on the GEMM; "direct" runs them): one image,
    # its channels padded by both threads; a batch in reflect mode
    ((1, 24, 40, 40), (16, 24, 3, 3), {"padding": 1}),
    ((3, 20, 36, 36), (13, 20, 3, 3), {"padding": 1, "padding_mode": "reflect"}),
]


@pytest.mark.parametrize("xs,ws,kw", DIRECT_GRID, ids=[f"{c[0]}-{c[1]}" for c in DIRECT_GRID])
def test_direct_matches_naive_oracle(xs, ws, kw, rng):
    """algorithm='direct' (conv2d_direct.h: the AVX-512 or AVX2 tiles, or the portable one) against the
    float64 loop and the im2col GEMM path on the same float32 inputs; numpy only (runs under the
    ASan job)."""
    bias, kw = split_kwargs(kw)
    x, w, b = make_inputs(rng, xs, ws, bias=bias)
    y = F.conv2d(x, w, b, algorithm="direct", **kw)
    ref = _C.conv2d_forward_naive(
        x.astype(np.float64),
        w.astype(np.float64),
        None if b is None else b.astype(np.float64),
        *_oracle_args(x, w, kw),
    )
    gemm = F.conv2d(x, w, b, algorithm="gemm", **kw)
    assert y.shape == ref.shape and np.isfinite(y).all()
    e_direct, e_gemm = np.abs(y - ref).max(), np.abs(gemm - ref).max()
    assert e_direct <= 2 * e_gemm + 1e-6 * max(1.0, np.abs(ref).max()), (e_direct, e_gemm)
    # fused ReLU: bit-identical to the ReLU of the plain output (auto picks direct for this batch)
    yr = F.conv2d_relu(x, w, b, **kw)
    if F.conv2d(x, w, b, **kw).tobytes() == y.tobytes():
        np.testing.assert_array_equal(yr, np.maximum(y, 0))


def test_direct_keeps_nan_and_auto_takes_it_on_vector_isas(rng):
    x, w, b = make_inputs(rng, (4, 16, 16, 16), (16, 16, 3, 3))
    x[1, 3, 5, 7] = np.nan
    y = F.conv2d(x, w, b, padding=1, algorithm="direct")
    y_auto = F.conv2d(x, w, b, padding=1)
    if pycnnrnn.cpu_isa() in ("avx512", "avx2"):  # auto's choice for this batch-split layer
        np.testing.assert_array_equal(y_auto, y)
    else:  # the im2col GEMM there: the same values to rounding, the same NaN
        np.testing.assert_allclose(y_auto, y, rtol=1e-5, atol=1e-5)
    nan = np.isnan(y)
    assert nan[1, :, 4:7, 6:9].all() and nan.sum() == 16 * 9  # exactly the outputs that read it
    yr = F.conv2d_relu(x, w, b, padding=1)  # (auto's algorithm, fused ReLU)
    assert np.isnan(yr).sum() == 16 * 9
    np.testing.assert_array_equal(np.nan_to_num(yr), np.maximum(np.nan_to_num(y_auto), 0))


def test_auto_takes_direct_for_8_wide_maps_on_avx2(rng):
    """AVX2's row pieces: auto runs an 8x8 map with 64 output channels (the training model's
    third layer) and its grad_input route on the direct kernel; elsewhere the same values."""
    x, w, b = make_inputs(rng, (4, 32, 8, 8), (64, 32, 3, 3))
    y_direct = F.conv2d(x, w, b, padding=1, algorithm="direct")
    y_auto = F.conv2d(x, w, b, padding=1)
    gy = rng.uniform(-1, 1, y_auto.shape).astype(np.float32)
    gx, _, _ = F.conv2d_backward(gy, x, w, padding=1, output_mask=(True, False, False))
    wt = np.ascontiguousarray(np.flip(w, (2, 3)).transpose(1, 0, 2, 3))  # the forward route's weights
    gx_direct = F.conv2d(gy, wt, None, padding=1, algorithm="direct")
    if pycnnrnn.cpu_isa() == "avx2":
        np.testing.assert_array_equal(y_auto, y_direct)
        np.testing.assert_array_equal(gx, gx_direct)
    else:
        np.testing.assert_allclose(y_auto, y_direct, rtol=1e-5, atol=1e-5)
        np.testing.assert_allclose(gx, gx_direct, rtol=1e-5, atol=1e-5)


def test_auto_takes_direct_for_long_rows_on_avx512(rng):
    """Rows of 112+ outputs, 144 to 1600 reduction steps, no Winograd (5x5 here): auto runs the
    direct kernel on AVX-512 (bit-identical to algorithm='direct', fused ReLU too), the im2col GEMM
    elsewhere; both within the float64 oracle's reach."""
    x, w, b = make_inputs(rng, (2, 8, 6, 120), (16, 8, 5, 5))
    y_auto = F.conv2d(x, w, b, padding=2)
    y_direct = F.conv2d(x, w, b, padding=2, algorithm="direct")
    y_gemm = F.conv2d(x, w, b, padding=2, algorithm="gemm")
    if pycnnrnn.cpu_isa() == "avx512":
        np.testing.assert_array_equal(y_auto, y_direct)
        np.testing.assert_array_equal(F.conv2d_relu(x, w, b, padding=2), np.maximum(y_direct, 0))
    else:
        np.testing.assert_array_equal(y_auto, y_gemm)
    ref = _C.conv2d_forward_naive(
        x.astype(np.float64), w.astype(np.float64), b.astype(np.float64), *_oracle_args(x, w, {"padding": 2})
    )
    e_auto, e_gemm = np.abs(y_auto - ref).max(), np.abs(y_gemm - ref).max()
    assert e_auto <= 2 * e_gemm + 1e-6 * max(1.0, np.abs(ref).max()), (e_auto, e_gemm)


@needs_torch
@pytest.mark.torch
@pytest.mark.parametrize(
    "xs,ws",
    [
        ((8, 3, 32, 32), (16, 3, 3, 3)),
        ((8, 16, 16, 16), (32, 16, 3, 3)),
        ((8, 32, 16, 16), (16, 32, 3, 3)),
        ((8, 32, 8, 8), (64, 32, 3, 3)),  # 8x8 maps: AVX2's two-row vectors (forward and grad_input)
        ((8, 64, 8, 8), (128, 64, 3, 3)),
    ],
)
def test_direct_error_gate_and_backward(xs, ws, rng):
    """The small layers auto sends to the direct kernel (also grad_input's forward route):
    forward and grad_input within twice torch's float32 error against float64."""
    x, w, b = make_inputs(rng, xs, ws)
    y = F.conv2d(x, w, b, padding=1, algorithm="direct")
    gy = rng.uniform(-1, 1, y.shape).astype(np.float32)
    y32, gx32, _, _ = torch_conv(x, w, b, padding=1, grad_output=gy)
    y64, gx64, _, _ = torch_conv(x, w, b, padding=1, grad_output=gy, dtype=np.float64)
    assert_error_gate(y, y64, y32, what="direct forward")
    gx, _, _ = F.conv2d_backward(gy, x, w, padding=1, output_mask=(True, False, False))
    assert_error_gate(gx, gx64, gx32, what="grad_input (direct forward route)")


def test_direct_refuses_what_it_does_not_serve(rng):
    x, w, _ = make_inputs(rng, (2, 3, 16, 16), (4, 3, 3, 3))
    with pytest.raises(ValueError, match=r"algorithm='direct' needs .*stride \(2, 2\)"):
        F.conv2d(x, w, stride=2, algorithm="direct")
    with pytest.raises(ValueError, match=r"algorithm='direct' needs .*output width 6"):
        F.conv2d(x[:, :, :8, :8], w, algorithm="direct")
    with pytest.raises(ValueError, match=r"algorithm='direct' needs .*float64"):
        F.conv2d(x.astype(np.float64), w.astype(np.float64), padding=1, algorithm="direct")


#                 x shape           w shape        kwargs: grad_weight through the direct kernel
DIRECT_GW_GRID = [
    ((4, 16, 16, 16), (32, 16, 3, 3), {"padding": 1}),  # 12 x 2 tiles, images split over threads
    ((4, 32, 8, 8), (64, 32, 3, 3), {"padding": 1}),  # 6 x 4 tiles, one 64-pixel chain per image
    ((1, 6, 21, 19), (10, 6, 3, 3), {"padding": 1, "padding_mode": "reflect"}),  # one image: rows split
    ((3, 4, 13, 30), (5, 4, 5, 5), {"padding": 2, "padding_mode": "circular"}),  # 12 x 1, chains of 64 + tail
    (
        (2, 6, 14, 9),
        (4, 3, 3, 2),
        {"padding": (2, 1), "dilation": (2, 1), "groups": 2, "padding_mode": "replicate"},
    ),
    ((2, 8, 7, 11), (40, 8, 2, 3), {}),  # no padding, 40 channels: a partial 64-wide block
    # maps of at most 128 outputs: images grouped into one GEMM (backward_weight_gemm)
    ((10, 6, 8, 8), (5, 6, 3, 3), {"padding": 1}),  # 4 at a time, 5 per thread: 4 + 1
    ((7, 3, 4, 4), (6, 3, 3, 3), {"padding": 1, "padding_mode": "reflect"}),  # one thread, 7 of 16
    ((9, 4, 6, 5), (3, 4, 3, 3), {}),  # 12 outputs a map, 4 and 5 images per thread
]


@pytest.mark.parametrize("xs,ws,kw", DIRECT_GW_GRID, ids=[f"{c[0]}-{c[1]}" for c in DIRECT_GW_GRID])
def test_small_grad_weight_matches_naive_oracle(xs, ws, kw, rng):
    """grad_weight of small float32 layers (36 to 320 reduction rows, <= 64 output channels:
    the direct kernel on AVX-512, conv2d_direct.h; the im2col GEMM elsewhere): against the
    float64 loop within float32 rounding of the largest partial sum; numpy only (the ASan job
    runs it)."""
    x, w, _ = make_inputs(rng, xs, ws)
    gy = rng.uniform(-1, 1, F.conv2d(x, w, **kw).shape).astype(np.float32)
    _, gw, _ = F.conv2d_backward(gy, x, w, output_mask=(False, True, False), **kw)
    x64, w64, gy64 = (a.astype(np.float64) for a in (x, w, gy))
    gw_ref = _C.conv2d_backward_naive(gy64, x64, w64, *_oracle_args(x, w, kw))[1]
    assert gw.shape == w.shape and gw.dtype == np.float32 and np.isfinite(gw).all()
    err = np.abs(gw - gw_ref).max()
    # float32 sums of N * OH * OW products: a few ulp of the largest partial sum
    scale = np.abs(gy64).sum(axis=(0, 2, 3)).max() * np.abs(x64).max()
    assert err <= 1e-6 * scale, (err, scale)
    # the float64 path (im2col GEMM) agrees with the oracle to rounding
    np.testing.assert_allclose(
        F.conv2d_backward(gy64, x64, w64, output_mask=(False, True, False), **kw)[1],
        gw_ref,
        rtol=1e-11,
        atol=1e-11,
    )


# Maps of fewer than 64 outputs go through the GEMM several images at a time (forward_gemm:
# columns of consecutive images side by side); every output keeps its k order, so a batch
# must equal its images run one at a time, bit for bit.
GROUPED_GRID = [
    ((10, 24, 7, 7), (40, 24, 3, 3), {"padding": 1}),  # 49 outputs: 5 images a GEMM
    ((33, 16, 4, 4), (20, 16, 3, 3), {"padding": 1}),  # 16 outputs, odd batch
    ((9, 8, 11, 9), (12, 8, 3, 3), {"stride": 2, "padding": 1, "bias": False}),
    ((7, 6, 6, 5), (5, 6, 2, 3), {"dilation": (2, 1), "padding": (1, 0), "padding_mode": "reflect"}),
    ((12, 5, 3, 3), (9, 5, 3, 3), {}),  # 1x1 output
    ((6, 4, 8, 8), (6, 4, 3, 3), {"padding": 1, "padding_mode": "circular"}),
]


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("xs,ws,kw", GROUPED_GRID, ids=[f"{c[0]}-{c[1]}" for c in GROUPED_GRID])
def test_small_maps_batch_equals_images_one_at_a_time(xs, ws, kw, dtype, rng):
    bias, kw = split_kwargs(kw)
    x, w, b = make_inputs(rng, xs, ws, dtype=dtype, bias=bias)
    for fn in (F.conv2d, F.conv2d_relu):  # (auto takes the im2col GEMM for these shapes)
        y = fn(x, w, b, **kw)
        ref = np.concatenate([fn(x[i : i + 1], w, b, **kw) for i in range(len(x))])
        np.testing.assert_array_equal(y, ref)
    np.testing.assert_array_equal(y, np.maximum(F.conv2d(x, w, b, algorithm="gemm", **kw), 0))
    y64 = _C.conv2d_forward_naive(
        x.astype(np.float64),
        w.astype(np.float64),
        None if b is None else b.astype(np.float64),
        *_oracle_args(x, w, kw),
    )
    tol = 1e-4 if dtype == np.float32 else 1e-12
    np.testing.assert_allclose(y, np.maximum(y64, 0), rtol=tol, atol=tol)  # y: the conv2d_relu output
    gy = rng.uniform(-1, 1, y.shape).astype(dtype)
    gx = F.conv2d_backward(gy, x, w, output_mask=(True, False, False), **kw)[0]
    gx_ref = np.concatenate(
        [
            F.conv2d_backward(gy[i : i + 1], x[i : i + 1], w, output_mask=(True, False, False), **kw)[0]
            for i in range(len(x))
        ]
    )
    np.testing.assert_array_equal(gx, gx_ref)


# Winograd runs the chunks of small maps through one set of 16 GEMMs (a 14x14 map is one chunk
# of 49 tiles; runs of up to 256 tiles): a batch must equal its images one at a time.
WINOGRAD_RUNS_GRID = [
    ((8, 24, 14, 14), (32, 24, 3, 3), {"padding": 1}),  # many-chunks branch, 4 images a run
    ((3, 16, 13, 11), (20, 16, 3, 3), {"padding": 1, "padding_mode": "reflect"}),  # few-chunks branch
    ((5, 8, 9, 10), (12, 8, 3, 3), {"padding": 2, "dilation": 2, "bias": False}),  # phases side by side
]


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("xs,ws,kw", WINOGRAD_RUNS_GRID, ids=[f"{c[0]}-{c[1]}" for c in WINOGRAD_RUNS_GRID])
def test_winograd_batch_equals_images_one_at_a_time(xs, ws, kw, dtype, rng):
    bias, kw = split_kwargs(kw)
    x, w, b = make_inputs(rng, xs, ws, dtype=dtype, bias=bias)
    y = F.conv2d(x, w, b, algorithm="winograd", **kw)
    ref = np.concatenate([F.conv2d(x[i : i + 1], w, b, algorithm="winograd", **kw) for i in range(len(x))])
    np.testing.assert_array_equal(y, ref)
    y64 = _C.conv2d_forward_naive(
        x.astype(np.float64),
        w.astype(np.float64),
        None if b is None else b.astype(np.float64),
        *_oracle_args(x, w, kw),
    )
    tol = 1e-4 if dtype == np.float32 else 1e-12
    np.testing.assert_allclose(y, y64, rtol=tol, atol=tol)


# Unprepared weights and all of a call's tiles in one run (float32, AVX-512): every thread
# transforms the weights for its own tile positions, block by block of output channels, and runs
# its GEMMs on them at once (conv2d_winograd.cpp, the fused path); the tiles' rows are padded to
# whole GEMM panels. Elsewhere these shapes take the whole-layer path.
WINOGRAD_FUSED_GRID = [
    ((1, 256, 14, 14), (480, 256, 3, 3), {"padding": 1}),  # 49 tiles: one panel-wide GEMM per block
    # two images, 2 x 42 tiles in one run: a whole panel plus a narrower one; C_out 485 in
    # blocks of 42 (48 would leave 5 rows for the small-M path)
    ((2, 256, 13, 12), (485, 256, 3, 3), {"padding": 1, "padding_mode": "reflect"}),
    # dilation 2: four phases side by side in the tile rows, 110 tiles
    ((1, 128, 18, 17), (1040, 128, 3, 3), {"padding": 2, "dilation": 2, "bias": False}),
    # one 28x27 image, 14 x 14 tiles: three whole panels and a narrower one
    ((1, 128, 28, 27), (960, 128, 3, 3), {"padding": 1}),
    # three 14x14 images, 147 tiles in one run
    ((3, 128, 14, 14), (1000, 128, 3, 3), {"padding": 1, "padding_mode": "circular"}),
    # small weights (0.6 MB); from 256 channels a 40x39 image's two chunks (260 + 140 tiles) are
    # one run
    ((1, 256, 40, 39), (64, 256, 3, 3), {"padding": 1}),
]


@pytest.mark.parametrize("xs,ws,kw", WINOGRAD_FUSED_GRID, ids=[f"{c[0]}-{c[1]}" for c in WINOGRAD_FUSED_GRID])
def test_winograd_fused_weight_transform_matches_prepared_and_oracle(xs, ws, kw, rng):
    """The same sums as with prepared weights (the whole layer's U, one GEMM per tile position
    over all output channels), bit for bit, fused ReLU too, and the float64 naive loop within
    float32 tolerance."""
    bias, kw = split_kwargs(kw)
    x, w, b = make_inputs(rng, xs, ws, bias=bias)
    y = F.conv2d(x, w, b, algorithm="winograd", **kw)
    np.testing.assert_array_equal(y, F.conv2d(x, F.prepare_conv2d_weight(w), b, algorithm="winograd", **kw))
    y64 = _C.conv2d_forward_naive(
        x.astype(np.float64),
        w.astype(np.float64),
        None if b is None else b.astype(np.float64),
        *_oracle_args(x, w, kw),
    )
    np.testing.assert_allclose(y, y64, rtol=2e-4, atol=2e-4)
    if "dilation" not in kw:  # auto: Winograd (the dilated case's phases are 9x9), except where
        # unprepared weights over 4 MiB with under 300 outputs take the GEMM (below AVX-512)
        gemm_first = pycnnrnn.cpu_isa() != "avx512" and xs[0] * xs[2] * xs[3] < 300
        ref = F.conv2d(x, w, b, algorithm="gemm", **kw) if gemm_first else y
        np.testing.assert_array_equal(F.conv2d_relu(x, w, b, **kw), np.maximum(ref, 0))


# nn.Sequential(Conv2d, ReLU, MaxPool2d(2)) in one call (ops/conv2d.py _conv2d_relu_max_pool2x2):
# on Winograd without dilation each tile row's two output rows are pooled in L1 (the full output
# is never written); on every other algorithm the full output is pooled afterwards. Either way
# the array max_pool2d(conv2d_relu(...), 2) gives, bit for bit.
CONV_RELU_POOL_GRID = [
    ((2, 16, 15, 13), (24, 16, 3, 3), {"padding": 1}),  # Winograd, odd rows and columns dropped
    ((1, 64, 56, 56), (64, 64, 3, 3), {"padding": 1}),  # Winograd, many chunks
    ((3, 32, 14, 14), (48, 32, 3, 3), {"padding": 1, "padding_mode": "reflect"}),  # one run, fused transform
    ((1, 256, 40, 39), (64, 256, 3, 3), {"padding": 1}),  # runs of 1024 tiles
    ((2, 8, 2, 3), (4, 8, 3, 3), {"padding": 1, "bias": False}),  # a 2x3 output: one pooled row
    ((1, 8, 12, 11), (8, 8, 3, 3), {"padding": 2, "dilation": 2}),  # dilated: pooled afterwards
    ((2, 6, 13, 12), (10, 6, 5, 5), {"padding": 2, "padding_mode": "circular"}),  # 5x5: GEMM or direct
    ((1, 4, 17, 17), (8, 4, 3, 3), {"stride": 2}),  # strided: pooled afterwards
]


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("xs,ws,kw", CONV_RELU_POOL_GRID, ids=[f"{c[0]}-{c[1]}" for c in CONV_RELU_POOL_GRID])
def test_conv_relu_max_pool2x2_matches_the_three_steps(xs, ws, kw, dtype, rng):
    from pycnnrnn.ops.conv2d import _conv2d_relu_max_pool2x2

    bias, kw = split_kwargs(kw)
    x, w, b = make_inputs(rng, xs, ws, dtype=dtype, bias=bias)
    x[0, 0, 1, 1] = np.nan  # NaN wins its window, as in max_pool2d
    args = (
        kw.get("stride", 1),
        kw.get("padding", 0),
        kw.get("dilation", 1),
        1,
        kw.get("padding_mode", "zeros"),
    )
    ref = F.max_pool2d(F.conv2d_relu(x, w, b, *args), 2)
    assert np.isnan(ref).any()
    np.testing.assert_array_equal(_conv2d_relu_max_pool2x2(x, w, b, *args), ref)
    ref0 = F.max_pool2d(F.conv2d_relu(x[0], w, b, *args), 2)  # unbatched (auto may pick otherwise at N=1)
    np.testing.assert_array_equal(_conv2d_relu_max_pool2x2(x[0], w, b, *args), ref0)
    prepared = F.prepare_conv2d_weight(w)
    np.testing.assert_array_equal(_conv2d_relu_max_pool2x2(x, prepared, b, *args), ref)
    assert _conv2d_relu_max_pool2x2(x[:0], w, b, *args).shape == (0,) + ref.shape[1:]


def test_conv_relu_max_pool2x2_small_output_and_errors(rng):
    from pycnnrnn.ops.conv2d import _conv2d_relu_max_pool2x2

    x, w, b = make_inputs(rng, (1, 4, 3, 8), (4, 4, 3, 3))
    assert _conv2d_relu_max_pool2x2(x, w, b, 1, 0, 1, 1, "zeros") is None  # a 1x6 output: no 2x2 window
    geometry = ((1, 1), (0, 0, 0, 0), (1, 1), 1, 0)
    with pytest.raises(ValueError, match="smaller than the 2x2 pool window"):
        _C.conv2d_forward(x, w, b, *geometry, 0, True, None, True)
    x, w, b = make_inputs(rng, (1, 4, 8, 8), (4, 4, 3, 3))
    with pytest.raises(ValueError, match="only with algorithm='auto'"):
        _C.conv2d_forward(x, w, b, *geometry, 1, True, None, True)
