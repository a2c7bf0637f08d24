"""max_pool2d / max_pool2d_backward / max_unpool2d: bit-for-bit against torch.

Values are compared as raw bits (so -0.0 vs +0.0 and NaN placement count), indices exactly.
Inputs hold small integers (many ties), -0.0/+0.0, NaN and +/-inf, never all zeros. Every
ISA path is covered: the in-process path (AVX-512 here) against torch and against the scalar
reference, and the AVX2/scalar paths through PYCNNRNN_ISA in subprocesses.
"""

from __future__ import annotations

import itertools
import textwrap

import numpy as np
import pytest
from helpers import layouts, run_python

import pycnnrnn
from pycnnrnn import _C

torch = pytest.importorskip("torch")
TF = torch.nn.functional
F = pycnnrnn.functional

DTYPES = [np.float32, np.float64]


# ---------------------------------------------------------------------------------------
# helpers
# ---------------------------------------------------------------------------------------
def bits(a: np.ndarray) -> np.ndarray:
    a = np.ascontiguousarray(a)
    return a.view(np.uint32 if a.dtype == np.float32 else np.uint64)


def assert_bits_equal(ours, ref, what=""):
    ours, ref = np.asarray(ours), np.asarray(ref)
    assert ours.shape == ref.shape, f"{what}: shape {ours.shape} != {ref.shape}"
    assert ours.dtype == ref.dtype, f"{what}: dtype {ours.dtype} != {ref.dtype}"
    if ours.dtype.kind == "f":
        diff = bits(ours) != bits(ref)
    else:
        diff = ours != ref
    if diff.any():
        pos = tuple(int(i[0]) for i in np.nonzero(diff))
        raise AssertionError(
            f"{what}: {int(diff.sum())} elements differ, first at {pos}: {ours[pos]!r} vs {ref[pos]!r}"
        )


def tricky_input(rng, shape, dtype, *, specials=True):
    """Small integers (ties everywhere), signed zeros, and optionally NaN / +-inf sprinkled in.
    Never all zeros."""
    x = rng.integers(-4, 5, size=shape).astype(dtype)
    x[x == 0] = np.where(rng.random(int((x == 0).sum())) < 0.5, -0.0, 0.0).astype(dtype)
    if specials and x.size:
        flat = x.reshape(-1)
        n = max(1, flat.size // 40)
        flat[rng.integers(0, flat.size, n)] = np.nan
        flat[rng.integers(0, flat.size, n)] = np.inf
        flat[rng.integers(0, flat.size, n)] = -np.inf
    x.reshape(-1)[0] = 3.0  # never all zeros
    return x


def torch_pool(x, k, s, p, d, c):
    y, i = TF.max_pool2d(torch.from_numpy(np.ascontiguousarray(x)), k, s, p, d, c, True)
    return y.numpy(), i.numpy()


def as_pair(v):
    return tuple(v) if isinstance(v, tuple) else (v, v)


def valid_params(x_hw, k, s, p, d, c):
    """True when torch accepts the combination (we then compare); False otherwise."""
    kh, kw = as_pair(k)
    ph, pw = as_pair(p)
    if ph > kh // 2 or pw > kw // 2:
        return False
    sh, sw = as_pair(s) if s is not None else (kh, kw)
    dh, dw = as_pair(d)
    oh = _C.pool_output_size(x_hw[0], kh, sh, ph, dh, c)
    ow = _C.pool_output_size(x_hw[1], kw, sw, pw, dw, c)
    return oh >= 1 and ow >= 1


# ---------------------------------------------------------------------------------------
# forward: the grid
# ---------------------------------------------------------------------------------------
KERNELS = [1, 2, 3, (2, 3), (3, 2), (4, 5), 5, (1, 4)]
STRIDES = [None, 1, 2, (3, 1), (2, 5)]


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("k", KERNELS, ids=str)
def test_forward_grid_matches_torch(rng, dtype, k):
    # odd sizes; W wide enough for full vectors plus tails at stride 1 and 2 (16/8 lanes)
    shape = (2, 3, 13, 71)
    x = tricky_input(rng, shape, dtype)
    x0 = x.copy()
    n = 0
    for s, p, d, c in itertools.product(STRIDES, [0, 1, 2], [1, 2, (1, 3)], [False, True]):
        if not valid_params(shape[-2:], k, s, p, d, c):
            continue
        ty, ti = torch_pool(x, k, s, p, d, c)
        what = f"k={k} s={s} p={p} d={d} ceil={c}"
        y, i = F.max_pool2d(x, k, s, p, d, c, return_indices=True)
        assert_bits_equal(y, ty, what + " values")
        assert_bits_equal(i, ti, what + " indices")
        y2 = F.max_pool2d(x, k, s, p, d, ceil_mode=c)
        assert_bits_equal(y2, ty, what + " values (no indices)")
        n += 1
    assert n >= 20
    assert_bits_equal(x, x0, "input modified")


@pytest.mark.parametrize("dtype", DTYPES)
def test_forward_random_shapes_match_reference_and_torch(rng, dtype):
    """Fast path vs the scalar oracle (bound as reference=True) vs torch on random shapes and
    parameters, including wide rows (many vectors) and 1-wide planes."""
    for _ in range(60):
        kh, kw = rng.integers(1, 6, 2)
        sh, sw = rng.integers(1, 4, 2)
        dh, dw = rng.integers(1, 3, 2)
        ph, pw = rng.integers(0, kh // 2 + 1), rng.integers(0, kw // 2 + 1)
        c = bool(rng.integers(0, 2))
        H, W = int(rng.integers(1, 20)), int(rng.integers(1, 140))
        if not valid_params((H, W), (kh, kw), (sh, sw), (ph, pw), (dh, dw), c):
            continue
        x = tricky_input(rng, (3, H, W), dtype, specials=bool(rng.integers(0, 2)))
        args = (int(kh), int(kw), int(sh), int(sw), int(ph), int(pw), int(dh), int(dw), c)
        ry, ri = _C.max_pool2d_forward(x, *args, True, reference=True)
        y, i = _C.max_pool2d_forward(x, *args, True)
        what = f"x{x.shape} {args}"
        assert_bits_equal(y, ry, what)
        assert_bits_equal(i, ri, what)
        ty, ti = torch_pool(x, (kh, kw), (sh, sw), (ph, pw), (dh, dw), c)
        assert_bits_equal(y, ty, what + " vs torch")
        assert_bits_equal(i, ti, what + " vs torch")


@pytest.mark.parametrize("dtype", DTYPES)
def test_row_runs_across_planes_and_threads(rng, dtype):
    """Small planes go to the row kernel several output rows per call (PoolRowArgs::rows): runs
    that start after padding rows, stop before ceil_mode's clipped row, and are cut where the
    two threads' row ranges meet mid-plane (odd plane counts, OH = 5 or 7), against the oracle."""
    cases = [
        ((135, 9, 9), (3, 3), (1, 1), (0, 0), False),  # OH = 7: a thread boundary mid-plane
        ((4095, 8, 8), (2, 2), (2, 2), (0, 0), False),  # 4x4 outputs
        ((185, 10, 8), (2, 2), (2, 2), (1, 1), False),  # padding rows at both ends
        ((231, 13, 13), (3, 3), (2, 2), (1, 1), True),  # ceil_mode
        ((99, 16, 16), (3, 2), (2, 2), (1, 0), False),
    ]
    for (planes, H, W), k, st, pad, ceil in cases:
        x = tricky_input(rng, (planes, H, W), dtype, specials=True)
        args = (*k, *st, *pad, 1, 1, ceil)
        ry, ri = _C.max_pool2d_forward(x, *args, True, reference=True)
        y, i = _C.max_pool2d_forward(x, *args, True)
        what = f"x{x.shape} {args}"
        assert_bits_equal(y, ry, what)
        assert_bits_equal(i, ri, what)
        y_only = _C.max_pool2d_forward(x, *args, False)
        assert_bits_equal(y_only[0] if isinstance(y_only, tuple) else y_only, ry, what + " values only")


@pytest.mark.parametrize("dtype", DTYPES)
def test_ties_nan_inf_rules(dtype):
    # window [1, nan, nan, 2] -> nan at index 2 (the last NaN); ties keep the first max;
    # all -inf -> -inf at the first element; -0.0 then +0.0 -> -0.0 (first).
    x = np.array(
        [
            [[1, np.nan, 5, 5, -np.inf, -np.inf, -0.0, 0.0], [np.nan, 2, 5, 5, -np.inf, -np.inf, 0.0, -0.0]],
        ],
        dtype=dtype,
    )
    y, i = F.max_pool2d(x, 2, return_indices=True)
    ty, ti = torch_pool(x, 2, 2, 0, 1, False)
    assert_bits_equal(y, ty)
    assert_bits_equal(i, ti)
    assert np.isnan(y[0, 0, 0]) and i[0, 0, 0] == 8  # last NaN (row 1, col 0)
    assert y[0, 0, 1] == 5 and i[0, 0, 1] == 2  # first of the tied 5s
    assert y[0, 0, 2] == -np.inf and i[0, 0, 2] == 4
    assert np.signbit(y[0, 0, 3]) and i[0, 0, 3] == 6


@pytest.mark.parametrize("dtype", DTYPES)
def test_simd_widths_and_specials_everywhere(rng, dtype):
    """NaN / inf / signed zeros in every lane position of long rows, the 2x2/2 and 3x3/2
    fast paths, with and without padding and ceil_mode."""
    x = tricky_input(rng, (4, 2, 9, 16 * 7 + 5), dtype)
    for k, s, p, c in [
        (2, 2, 0, False),
        (2, 2, 1, True),
        (3, 2, 0, False),
        (3, 2, 1, True),
        (3, 1, 1, False),
    ]:
        ty, ti = torch_pool(x, k, s, p, 1, c)
        y, i = F.max_pool2d(x, k, s, p, 1, c, True)
        assert_bits_equal(y, ty, f"k{k}s{s}p{p}c{c}")
        assert_bits_equal(i, ti, f"k{k}s{s}p{p}c{c}")


@pytest.mark.parametrize("dtype", DTYPES)
def test_every_row_width_and_its_last_vector(rng, dtype):
    """Rows of 1-40 inputs: the last full vector, whose paired stride-2 load stops one element
    short of the row's end (16- and 32-wide rows), and the half-vector rest of rows of 4-7
    outputs (8- and 14-wide rows), with NaN / inf / signed zeros in every position, values
    alone and with indices."""
    for w in range(1, 41):
        x = tricky_input(rng, (2, 3, 6, w), dtype)
        for k, s, p, c in [(2, 2, 0, False), (2, 2, 1, True), (3, 2, 0, False), (3, 2, 1, False)]:
            if w + 2 * p < k:
                continue
            ty, ti = torch_pool(x, k, s, p, 1, c)
            y, i = F.max_pool2d(x, k, s, p, 1, c, True)
            assert_bits_equal(y, ty, f"w{w} k{k}s{s}p{p}c{c}")
            assert_bits_equal(i, ti, f"w{w} k{k}s{s}p{p}c{c}")
            assert_bits_equal(F.max_pool2d(x, k, s, p, 1, c), ty, f"values only: w{w} k{k}s{s}p{p}c{c}")


def test_ceil_mode_last_window_rule():
    # in=5, k=2, s=2, p=1, ceil: out=4 would start at 6 >= 5+1 -> dropped to 3 (torch's rule)
    x = np.arange(1, 26, dtype=np.float32).reshape(1, 1, 5, 5)
    y, i = F.max_pool2d(x, 2, 2, 1, ceil_mode=True, return_indices=True)
    ty, ti = torch_pool(x, 2, 2, 1, 1, True)
    assert y.shape == ty.shape == (1, 1, 3, 3)
    assert_bits_equal(y, ty)
    assert_bits_equal(i, ti)
    # in=6, k=3, s=2, ceil: the last window starts at 4 inside the input -> kept, clipped
    x = np.arange(1, 37, dtype=np.float64).reshape(1, 6, 6)
    y, i = F.max_pool2d(x, 3, 2, ceil_mode=True, return_indices=True)
    ty, ti = torch_pool(x, 3, 2, 0, 1, True)
    assert y.shape == ty.shape == (1, 3, 3)
    assert_bits_equal(y, ty)
    assert_bits_equal(i, ti)


@pytest.mark.parametrize("dtype", DTYPES)
def test_unbatched_and_single_pixel(rng, dtype):
    x = tricky_input(rng, (5, 7, 9), dtype)
    for args in [(3, 2, 1, 1, True), (1, 1, 0, 1, False), (2, 9, 0, 1, False), (4, 3, 2, 2, True)]:
        ty, ti = torch_pool(x, *args)
        y, i = F.max_pool2d(x, *args, return_indices=True)
        assert y.shape == ty.shape
        assert_bits_equal(y, ty, str(args))
        assert_bits_equal(i, ti, str(args))
    x1 = np.full((1, 2, 1, 1), 7.0, dtype=dtype)
    y, i = F.max_pool2d(x1, 1, return_indices=True)
    assert y.shape == (1, 2, 1, 1) and (y == 7).all() and (i == 0).all()


def test_zero_batch():
    x = np.ones((0, 3, 8, 8), np.float32)
    y, i = F.max_pool2d(x, 2, return_indices=True)
    assert y.shape == i.shape == (0, 3, 4, 4) and i.dtype == np.int64
    gx = F.max_pool2d_backward(np.ones((0, 3, 4, 4), np.float32), x, i, 2)
    assert gx.shape == x.shape
    u = F.max_unpool2d(y, i, 2)
    assert u.shape == (0, 3, 8, 8)


@pytest.mark.parametrize("dtype", DTYPES)
def test_layouts_give_the_contiguous_answer(rng, dtype):
    x = tricky_input(rng, (2, 3, 11, 37), dtype)
    ref_y, ref_i = F.max_pool2d(x, 3, 2, 1, return_indices=True)
    for name, v in layouts(x):
        v0 = np.array(v, copy=True)
        y, i = F.max_pool2d(v, 3, 2, 1, return_indices=True)
        assert_bits_equal(y, ref_y, name)
        assert_bits_equal(i, ref_i, name)
        assert_bits_equal(np.asarray(v), v0, name + " input modified")
    # zero strides (broadcast, read-only)
    b = np.broadcast_to(x[:, :1], x.shape)
    assert_bits_equal(F.max_pool2d(b, 2), F.max_pool2d(np.ascontiguousarray(b), 2), "broadcast")
    # non-native byte order
    be = x.astype(np.dtype(dtype).newbyteorder(">"))
    assert_bits_equal(F.max_pool2d(be, 2), F.max_pool2d(x, 2), "big-endian")


def test_large_outputs_streamed(rng):
    """Outputs >= 16 MiB take the non-temporal-store paths (forward with and without indices,
    backward): same bits as torch."""
    x = tricky_input(rng, (1, 16, 512, 520), np.float32)  # 17 MB; 3x3/1 output as large
    tx = torch.from_numpy(x)
    ty, ti = TF.max_pool2d(tx, 3, 1, 1, return_indices=True)
    assert_bits_equal(F.max_pool2d(x, 3, 1, 1), ty.numpy(), "3x3/1 values")
    y, i = F.max_pool2d(x, 3, 1, 1, return_indices=True)
    assert_bits_equal(y, ty.numpy(), "3x3/1 values (indices)")
    assert_bits_equal(i, ti.numpy(), "3x3/1 indices")
    gy = rng.standard_normal(y.shape).astype(np.float32)
    tg = torch.ops.aten.max_pool2d_with_indices_backward(
        torch.from_numpy(gy), tx, [3, 3], [1, 1], [1, 1], [1, 1], False, ti
    ).numpy()
    assert_bits_equal(F.max_pool2d_backward(gy, x, i, 3, 1, 1), tg, "3x3/1 backward")
    x2 = x[..., :512]
    ty2, ti2 = torch_pool(x2, 2, 2, 0, 1, False)
    y2, i2 = F.max_pool2d(x2, 2, return_indices=True)
    assert_bits_equal(y2, ty2, "2x2/2 values")
    assert_bits_equal(i2, ti2, "2x2/2 indices")


# ---------------------------------------------------------------------------------------
# backward
# ---------------------------------------------------------------------------------------
@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize(
    "k,s,p,d,c",
    [
        (2, 2, 0, 1, False),
        (2, 2, 0, 1, True),  # odd H, W: clipped last windows
        (3, 2, 1, 1, True),  # overlapping windows: gradients accumulate
        (3, 2, 0, 1, False),  # the 3x3/2 plane kernel
        (3, 2, 0, 1, True),
        (3, 1, 1, 1, False),
        ((2, 3), (1, 2), (1, 0), (2, 1), True),
        (5, 3, 2, 2, False),
        (2, 3, 0, 1, True),  # kernel < stride: gaps stay zero
    ],
)
def test_backward_matches_torch(rng, dtype, k, s, p, d, c):
    x = tricky_input(rng, (2, 3, 13, 63), dtype, specials=False)  # ceil: OW = 32, last clipped
    if k == 3 and p == 0:
        x = tricky_input(rng, (2, 3, 11, 101), dtype, specials=False)  # 3 vectors + tail per row
    y, i = F.max_pool2d(x, k, s, p, d, c, return_indices=True)
    gy = rng.standard_normal(y.shape).astype(dtype)
    gy.reshape(-1)[::7] = -0.0
    gy0 = gy.copy()
    kh, kw = as_pair(k)
    sh, sw = as_pair(s)
    ph, pw = as_pair(p)
    dh, dw = as_pair(d)
    tg = torch.ops.aten.max_pool2d_with_indices_backward(
        torch.from_numpy(gy),
        torch.from_numpy(x),
        [kh, kw],
        [sh, sw],
        [ph, pw],
        [dh, dw],
        c,
        torch.from_numpy(i),
    ).numpy()
    gx = F.max_pool2d_backward(gy, x, i, k, s, p, d, c)
    assert_bits_equal(gx, tg)
    assert_bits_equal(gy, gy0, "grad_output modified")
    # and through torch autograd
    tx = torch.from_numpy(x.copy()).requires_grad_()
    TF.max_pool2d(tx, k, s, p, d, c).backward(torch.from_numpy(gy))
    assert_bits_equal(gx, tx.grad.numpy(), "autograd")


def test_backward_layouts_and_unbatched(rng):
    x = tricky_input(rng, (3, 10, 21), np.float32, specials=False)
    y, i = F.max_pool2d(x, 3, 2, 1, return_indices=True)
    gy = rng.standard_normal(y.shape).astype(np.float32)
    ref = F.max_pool2d_backward(gy, x, i, 3, 2, 1)
    assert ref.shape == x.shape
    for name, g in layouts(gy):
        assert_bits_equal(F.max_pool2d_backward(g, x, i, 3, 2, 1), ref, name)
    big = np.zeros(i.shape[:-1] + (2 * i.shape[-1],), np.int64)
    big[..., ::2] = i
    ro = i.copy()
    ro.flags.writeable = False
    for name, ii in [
        ("strided", big[..., ::2]),
        ("fortran", np.asfortranarray(i)),
        ("readonly", ro),
        ("reversed", np.flip(np.flip(i, -1).copy(), -1)),
        ("int32", i.astype(np.int32)),
    ]:
        assert_bits_equal(F.max_pool2d_backward(gy, x, ii, 3, 2, 1), ref, "indices " + name)


@pytest.mark.parametrize("k,s", [(2, 2), (3, 2), ((1, 2), (3, 2))])
@pytest.mark.parametrize("W", [10, 99])  # 10: whole small planes; 99: bands
def test_backward_foreign_indices_match_torch(rng, k, s, W):
    """Indices that are valid in the plane but not from the forward pass (outside their own
    window, duplicated): torch scatter-adds them all in output order; so must we (the banded
    fast path has to notice and fall back)."""
    x = tricky_input(rng, (2, 3, 12, W), np.float32, specials=False)
    y, i = F.max_pool2d(x, k, s, return_indices=True)
    gy = rng.standard_normal(y.shape).astype(np.float32)
    j = i.copy()
    j[0, 1] = rng.integers(0, 12 * W, size=j[0, 1].shape)  # plane (0, 1): anywhere
    j[1, 2, 0, 0] = 12 * W - 1  # plane (1, 2): one index in the last band
    j[1, 0, -1, -1] = 0  # plane (1, 0): one index in the first band
    kh, kw = as_pair(k)
    sh, sw = as_pair(s)
    tg = torch.ops.aten.max_pool2d_with_indices_backward(
        torch.from_numpy(gy),
        torch.from_numpy(x),
        [kh, kw],
        [sh, sw],
        [0, 0],
        [1, 1],
        False,
        torch.from_numpy(j),
    ).numpy()
    assert_bits_equal(F.max_pool2d_backward(gy, x, j, k, s), tg)


# W=200: k=2 takes the banded path, k=3 (stride 3) the banded path's redo; W=6: planes small
# enough to go whole (no bands)
@pytest.mark.parametrize("k", [2, 3])
@pytest.mark.parametrize("W", [6, 200])
def test_backward_out_of_plane_indices_contribute_nothing(rng, k, W):
    # torch's CPU kernel does not bounds-check here (it writes outside the plane, or crashes);
    # pycnnrnn drops such an index, which equals a zero gradient at that output
    x = tricky_input(rng, (1, 2, 6, W), np.float32, specials=False)
    y, i = F.max_pool2d(x, k, return_indices=True)
    gy = rng.standard_normal(y.shape).astype(np.float32)
    gy0 = gy.copy()
    gy0[0, 1, 1, 1] = 0
    want = F.max_pool2d_backward(gy0, x, i, k)
    for bad in (6 * W, -1, 1 << 40, -(1 << 62)):
        j = i.copy()
        j[0, 1, 1, 1] = bad
        assert_bits_equal(F.max_pool2d_backward(gy, x, j, k), want, f"index {bad}")


def test_backward_of_all_padding_window_is_zero():
    # the window (rows -1 and 1 of a 1x1 input) lies entirely in the padding: forward gives
    # -inf and the out-of-plane index 1 (as torch does), and backward must accept its own
    # forward's indices (torch's backward writes past the plane here)
    x = np.array([[[0.27392337]]], np.float32)
    kw = dict(kernel_size=(2, 1), padding=(1, 0), dilation=(2, 1))
    y, i = F.max_pool2d(x, return_indices=True, **kw)
    ty, ti = TF.max_pool2d(torch.from_numpy(x), return_indices=True, **kw)
    assert_bits_equal(y, ty.numpy())
    assert np.array_equal(i, ti.numpy()) and y[0, 0, 0] == -np.inf
    g = F.max_pool2d_backward(np.ones_like(y), x, i, **kw)
    assert g.shape == x.shape and g[0, 0, 0] == 0.0


def test_backward_bad_arguments_raise(rng):
    x = tricky_input(rng, (1, 2, 6, 6), np.float32)
    y, i = F.max_pool2d(x, 2, return_indices=True)
    gy = np.ones_like(y)
    with pytest.raises(ValueError, match="grad_output must have shape"):
        F.max_pool2d_backward(gy[..., :2], x, i, 2)
    with pytest.raises(ValueError, match="indices must have shape"):
        F.max_pool2d_backward(gy, x, i[..., :2], 2)
    with pytest.raises(TypeError, match="grad_output must have dtype float32"):
        F.max_pool2d_backward(gy.astype(np.float64), x, i, 2)


# ---------------------------------------------------------------------------------------
# unpool
# ---------------------------------------------------------------------------------------
@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize(
    "k,s,p,out",
    [
        (2, None, 0, None),
        (3, 2, 1, (8, 10)),  # overlapping windows (duplicate indices)
        (2, 2, 0, (9, 11)),
        (2, 2, 0, (1, 2, 8, 10)),
        ((3, 2), (2, 1), (1, 0), (8, 10)),
    ],
)
def test_unpool_matches_torch(rng, dtype, k, s, p, out):
    x = tricky_input(rng, (1, 2, 8, 10), dtype, specials=False)
    y, i = F.max_pool2d(x, k, s, p, return_indices=True)
    ty = torch.from_numpy(y)
    ti = torch.from_numpy(i)
    ref = TF.max_unpool2d(ty, ti, k, s, p, out).numpy()
    u = F.max_unpool2d(y, i, k, s, p, out)
    assert_bits_equal(u, ref)
    # unbatched
    ref3 = TF.max_unpool2d(ty[0], ti[0], k, s, p, out[-2:] if out else None).numpy()
    assert_bits_equal(F.max_unpool2d(y[0], i[0], k, s, p, out[-2:] if out else None), ref3, "unbatched")


def test_unpool_errors(rng):
    x = tricky_input(rng, (1, 1, 4, 4), np.float32)
    y, i = F.max_pool2d(x, 2, return_indices=True)
    with pytest.raises(ValueError, match="invalid max index"):
        F.max_unpool2d(y, i + 100, 2)
    with pytest.raises(ValueError, match="invalid max index"):
        F.max_unpool2d(y, i - 100, 2)
    with pytest.raises(ValueError, match="Expected shape of indices"):
        F.max_unpool2d(y, i[..., :1], 2)
    with pytest.raises(ValueError, match=r"invalid output_size .* \(dim 0 must be between 2 and 6\)"):
        F.max_unpool2d(y, i, 2, output_size=(7, 7))
    with pytest.raises(ValueError, match="2 or 4 elements"):
        F.max_unpool2d(y, i, 2, output_size=(4, 4, 4))
    with pytest.raises(TypeError, match="int64"):
        F.max_unpool2d(y, i.astype(np.int32), 2)
    with pytest.raises(TypeError, match="float32 or float64"):
        F.max_unpool2d(np.ones(y.shape, np.int32), i, 2)


# ---------------------------------------------------------------------------------------
# errors (torch's checks, pycnnrnn's exception types)
# ---------------------------------------------------------------------------------------
X4 = np.arange(1, 17, dtype=np.float32).reshape(1, 1, 4, 4)
ERRORS = [
    # (input, kwargs, our exception, our regex, torch raises too)
    (X4, dict(kernel_size=2, stride=0), ValueError, "stride should not be zero", True),
    (X4, dict(kernel_size=2, stride=-1), ValueError, "stride should be greater than zero", True),
    (X4, dict(kernel_size=0, stride=1), ValueError, "kernel_size should be greater than zero", True),
    (X4, dict(kernel_size=2, dilation=0), ValueError, "dilation should be greater than zero", True),
    (X4, dict(kernel_size=2, padding=-1), ValueError, "pad must be non-negative", True),
    (X4, dict(kernel_size=2, padding=2), ValueError, "pad should be at most half of kernel size", True),
    (X4, dict(kernel_size=2, padding=2, dilation=3), ValueError, "pad should be at most half", True),
    (X4, dict(kernel_size=(3, 2), padding=(1, 2)), ValueError, "pad should be at most half", True),
    (X4, dict(kernel_size=5), ValueError, "Output size is too small", True),
    (X4, dict(kernel_size=2, dilation=4), ValueError, "Output size is too small", True),
    (np.ones((1, 1, 4), np.float32), dict(kernel_size=2), ValueError, "Output size is too small", True),
    (np.ones((1, 0, 4, 4), np.float32), dict(kernel_size=2), ValueError, r"3D \(C, H, W\) or 4D", True),
    (np.ones((2, 1, 10, 0), np.float32), dict(kernel_size=2), ValueError, r"3D \(C, H, W\) or 4D", True),
    (np.ones((4, 4), np.float32), dict(kernel_size=2), ValueError, r"3D \(C, H, W\) or 4D", True),
    (np.ones((1, 1, 1, 4, 4), np.float32), dict(kernel_size=2), ValueError, r"3D \(C, H, W\) or 4D", True),
    (X4, dict(kernel_size=(2, 2, 2)), ValueError, "kernel_size must be an int or a tuple of 2", True),
    (X4, dict(kernel_size=2.0), TypeError, "kernel_size must be an int", True),
    (X4, dict(kernel_size=2, stride=1 << 40), ValueError, "stride must be smaller than 2..31", False),
    (X4, dict(kernel_size=2, ceil_mode=1), TypeError, "ceil_mode must be a bool", False),
    (X4.astype(np.int32), dict(kernel_size=2), TypeError, "input must have dtype float32 or float64", True),
    (
        X4.astype(np.float16),
        dict(kernel_size=2),
        TypeError,
        "input must have dtype float32 or float64",
        False,
    ),
    (
        X4.astype(np.complex64),
        dict(kernel_size=2),
        TypeError,
        "input must have dtype float32 or float64",
        True,
    ),
    (X4.tolist(), dict(kernel_size=2), TypeError, "input must be a numpy array", True),
]


@pytest.mark.parametrize(
    "x,kw,exc,regex,torch_raises", ERRORS, ids=[e[3][:30] + str(i) for i, e in enumerate(ERRORS)]
)
def test_errors(x, kw, exc, regex, torch_raises):
    x0 = np.array(x, copy=True) if isinstance(x, np.ndarray) else None
    with pytest.raises(exc, match=regex):
        F.max_pool2d(x, **kw)
    if isinstance(x, np.ndarray):
        assert_bits_equal(np.asarray(x), x0, "input modified") if x.dtype.kind == "f" else None
    if torch_raises and isinstance(x, np.ndarray) and x.dtype in (np.float32, np.float64):
        with pytest.raises((RuntimeError, ValueError, TypeError)):
            TF.max_pool2d(torch.from_numpy(x), **kw)


def test_torch_tensor_rejected():
    with pytest.raises(TypeError, match="torch.Tensor"):
        F.max_pool2d(torch.ones(1, 1, 4, 4), 2)


def test_huge_parameters_do_not_crash():
    # huge stride on a small input: still a clean answer or a clean error, never a crash
    x = np.arange(1, 17, dtype=np.float32).reshape(1, 1, 4, 4)
    y = F.max_pool2d(x, 2, stride=(1 << 31) - 1)
    ty = TF.max_pool2d(torch.from_numpy(x), 2, stride=(1 << 31) - 1).numpy()
    assert_bits_equal(y, ty)
    with pytest.raises(ValueError):
        F.max_pool2d(x, 3, dilation=(1 << 31) - 1, ceil_mode=True)
    # ceil_mode + huge stride: one window far larger than the input, clipped
    x = np.arange(1, 43, dtype=np.float32).reshape(1, 6, 7)
    for k, s, d in [(3, (1 << 31) - 1, 1), (2, 1 << 30, 1 << 30)]:
        y, i = F.max_pool2d(x, k, s, 0, d, True, True)
        ty, ti = torch_pool(x, k, s, 0, d, True)
        assert_bits_equal(y, ty, f"k={k} s={s} d={d}")
        assert_bits_equal(i, ti, f"k={k} s={s} d={d}")


# ---------------------------------------------------------------------------------------
# every ISA path in this process's siblings
# ---------------------------------------------------------------------------------------
_ISA_SCRIPT = textwrap.dedent(
    """
    import numpy as np, pycnnrnn
    from pycnnrnn import _C
    F = pycnnrnn.functional
    assert pycnnrnn.cpu_isa() == "{isa}", pycnnrnn.cpu_isa()
    rng = np.random.default_rng(5)
    def bits(a):
        return a.view(np.uint32 if a.dtype == np.float32 else np.uint64)
    n = 0
    for dt in (np.float32, np.float64):
        for k, s, p, d, c in [(2, 2, 0, 1, False), (3, 2, 1, 1, True), (3, 1, 1, 1, False), (2, 3, 1, 2, True),
                              ((4, 5), (3, 1), (2, 1), (1, 2), False), (1, 1, 0, 1, False)]:
            x = rng.integers(-3, 4, size=(3, 2, 11, 83)).astype(dt)
            x.reshape(-1)[rng.integers(0, x.size, 30)] = np.nan
            x.reshape(-1)[rng.integers(0, x.size, 30)] = -np.inf
            x.reshape(-1)[rng.integers(0, x.size, 30)] = -0.0
            kh, kw = k if isinstance(k, tuple) else (k, k)
            sh, sw = s if isinstance(s, tuple) else (s, s)
            ph, pw = p if isinstance(p, tuple) else (p, p)
            dh, dw = d if isinstance(d, tuple) else (d, d)
            y, i = F.max_pool2d(x, k, s, p, d, c, return_indices=True)
            y2 = F.max_pool2d(x, k, s, p, d, c)
            ry, ri = _C.max_pool2d_forward(x.reshape(6, 11, 83), kh, kw, sh, sw, ph, pw, dh, dw, c, True,
                                           reference=True)
            assert (bits(y.reshape(ry.shape)) == bits(ry)).all(), (dt, k, s, p, d, c)
            assert (bits(y2.reshape(ry.shape)) == bits(ry)).all(), (dt, k, s, p, d, c)
            assert (i.reshape(ri.shape) == ri).all(), (dt, k, s, p, d, c)
            n += 1
    print("ok", n)
    """
)


@pytest.mark.parametrize("isa", ["avx2", "scalar"])
def test_lower_isa_paths_in_subprocess(isa):
    if isa == "avx2" and _C.detected_isa() == "scalar":
        pytest.skip("CPU has no AVX2")
    r = run_python(_ISA_SCRIPT.format(isa=isa), timeout=120, PYCNNRNN_ISA=isa)
    assert "ok 12" in r.stdout


def test_threads_give_identical_results(rng):
    """Python threads calling concurrently, and 1 vs default kernel threads: same bits."""
    import threading

    x = tricky_input(rng, (3, 5, 40, 70), np.float32)
    ref_y, ref_i = F.max_pool2d(x, 3, 2, 1, return_indices=True)
    gy = rng.standard_normal(ref_y.shape).astype(np.float32)
    ref_g = F.max_pool2d_backward(gy, x, ref_i, 3, 2, 1)
    errors = []

    def work():
        try:
            for _ in range(10):
                y, i = F.max_pool2d(x, 3, 2, 1, return_indices=True)
                assert_bits_equal(y, ref_y)
                assert_bits_equal(i, ref_i)
                assert_bits_equal(F.max_pool2d_backward(gy, x, i, 3, 2, 1), ref_g)
        except Exception as e:  # noqa: BLE001
            errors.append(e)

    ts = [threading.Thread(target=work) for _ in range(4)]
    for t in ts:
        t.start()
    for t in ts:
        t.join()
    assert not errors, errors[0]
    n = pycnnrnn.get_num_threads()
    try:
        pycnnrnn.set_num_threads(1)
        y, i = F.max_pool2d(x, 3, 2, 1, return_indices=True)
        g = F.max_pool2d_backward(gy, x, i, 3, 2, 1)
    finally:
        pycnnrnn.set_num_threads(n)
    assert_bits_equal(y, ref_y)
    assert_bits_equal(i, ref_i)
    assert_bits_equal(g, ref_g)


def test_backward_beyond_32mib_streams_the_same_values():
    """A grad_input over 32 MiB is written with non-temporal stores (2x2/2 band kernel); it
    equals image-by-image calls (each under the threshold, plain stores) bit for bit, and no
    element is left unwritten (grad_input is not pre-filled: NaN would show)."""
    rng = np.random.default_rng(5)
    x = rng.standard_normal((3, 64, 224, 224), dtype=np.float32)  # grad_input 38.5 MB
    y, idx = F.max_pool2d(x, 2, 2, return_indices=True)
    gy = rng.standard_normal(y.shape, dtype=np.float32)
    gx = F.max_pool2d_backward(gy, x, idx, 2, 2)
    assert not np.isnan(gx).any()
    for n in range(3):
        np.testing.assert_array_equal(
            gx[n], F.max_pool2d_backward(gy[n : n + 1], x[n : n + 1], idx[n : n + 1], 2, 2)[0]
        )
    assert np.count_nonzero(gx) == np.count_nonzero(gy)


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_overlapping_backward_beyond_32mib_streams_the_same_values(dtype):
    """3x3/2 windows overlap, so the streamed path zeroes and scatters each plane in a cached
    buffer and streams it out (no read-for-ownership of grad_input); it equals image-by-image
    calls (each under the threshold, scattered in place) bit for bit, including the sums where
    windows share their maximum, and matches numpy's unbuffered scatter-add."""
    rng = np.random.default_rng(7)
    shape = (3, 64, 224, 224) if dtype == np.float32 else (2, 48, 224, 224)  # grad_input > 32 MiB
    x = rng.standard_normal(shape).astype(dtype)
    x[..., ::7, ::5] = 9.0  # shared maxima: the same input element wins several windows
    y, idx = F.max_pool2d(x, 3, 2, 1, return_indices=True)
    gy = rng.standard_normal(y.shape).astype(dtype)
    gx = F.max_pool2d_backward(gy, x, idx, 3, 2, 1)
    for n in range(shape[0]):
        one = F.max_pool2d_backward(gy[n : n + 1], x[n : n + 1], idx[n : n + 1], 3, 2, 1)[0]
        np.testing.assert_array_equal(gx[n], one)
    ref = np.zeros((shape[0] * shape[1], shape[2] * shape[3]), dtype)
    planes = np.arange(ref.shape[0])[:, None]
    np.add.at(ref, (np.broadcast_to(planes, (ref.shape[0], idx[0, 0].size)), idx.reshape(ref.shape[0], -1)),
              gy.reshape(ref.shape[0], -1))  # fmt: skip
    np.testing.assert_array_equal(gx.reshape(ref.shape), ref)


def test_relu_backward_helper():
    """_C.relu_backward (the fused Conv2d -> ReLU -> MaxPool2d's ReLU backward on the pooled
    gradient): grad where output > 0, else 0; a NaN output passes its gradient (torch's
    threshold_backward)."""
    rng = np.random.default_rng(3)
    for dt, shape in [(np.float32, (3, 5, 70, 7)), (np.float64, (3, 5, 70, 7)), (np.float32, (2, 9, 64, 61))]:
        g = rng.standard_normal(shape).astype(dt)  # (the last: split over threads, odd length)
        out = rng.standard_normal(g.shape).astype(dt)
        out[0, 0, 0, :3] = [np.nan, 0.0, -0.0]
        r = _C.relu_backward(g, out)
        want = np.where(out <= 0, 0, g)  # NaN <= 0 is False: the gradient passes
        assert r.dtype == dt and r.shape == g.shape
        np.testing.assert_array_equal(r, want)
        assert r[0, 0, 0, 0] == g[0, 0, 0, 0] and r[0, 0, 0, 1] == 0 and r[0, 0, 0, 2] == 0
    g, out = g.astype(np.float64), out.astype(np.float64)
    with pytest.raises(ValueError, match="output must have the shape of grad"):
        _C.relu_backward(g, out[:, :, :, :6].copy())
    with pytest.raises(TypeError, match="must be a float64 array"):
        _C.relu_backward(g, out.astype(np.float32))
