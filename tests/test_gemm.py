"""The GEMM engine (cpu/gemm.h) and Linear: against a float64 oracle over shape grids that
hit 1, primes and tile sizes +/- 1, transposes, leading dimensions, alpha/beta, the fused
epilogues, provided B, packed A, float64, zero sizes, layouts, bad inputs and every ISA path.

Error bound for one dot product of length K (float32 FMA chains, any summation order):
|ours - exact| <= (K + 2) * eps * (|op(a)| @ |op(b)|) (+ |beta*c| and bias terms)."""

from __future__ import annotations

import threading

import numpy as np
import pytest
from helpers import assert_error_gate, layouts, run_python

import pycnnrnn
from pycnnrnn import _C
from pycnnrnn import functional as F

# Tile sizes of every ISA path: MR 6 (avx512/avx2) / 4 (scalar); NR 64/16/8 (float),
# 32/8/8 (double); KC 256. The grid sits around them.
MS = (1, 2, 5, 6, 7, 8, 9, 13)  # <= 8: the small-M path, > 8: the packed path
NS = (1, 8, 15, 16, 17, 63, 64, 65, 129)
KS = (1, 7, 255, 256, 257)


def _op(x, t):
    return x.T if t else x


def _rand(rng, shape, dtype):
    return rng.uniform(-1, 1, size=shape).astype(dtype)


def _check(c, a, b, ta, tb, *, alpha=1.0, beta=0.0, c0=None, bias=None, bias_kind=0, relu=False, what=""):
    """Compare c with the float64 oracle under the rigorous dot-product error bound."""
    a64, b64 = _op(a.astype(np.float64), ta), _op(b.astype(np.float64), tb)
    ref = alpha * (a64 @ b64)
    mag = abs(alpha) * (np.abs(a64) @ np.abs(b64))
    if beta != 0:
        ref = ref + beta * c0.astype(np.float64)
        mag = mag + np.abs(beta * c0.astype(np.float64))
    if bias_kind == 1:
        ref = ref + bias.astype(np.float64)[:, None]
        mag = mag + np.abs(bias.astype(np.float64))[:, None]
    elif bias_kind == 2:
        ref = ref + bias.astype(np.float64)[None, :]
        mag = mag + np.abs(bias.astype(np.float64))[None, :]
    if relu:
        ref = np.maximum(ref, 0)
    k = a64.shape[1]
    eps = np.finfo(c.dtype).eps
    bound = (k + 4) * eps * mag + np.finfo(c.dtype).tiny
    assert c.shape == ref.shape
    assert not np.isnan(c).any(), f"{what}: NaN in output (unwritten element)"
    err = np.abs(c.astype(np.float64) - ref)
    bad = err > bound
    assert not bad.any(), f"{what}: {bad.sum()} elements over the bound, max err {err.max():.3e}"


def _operands(rng, m, n, k, ta, tb, dtype):
    a = _rand(rng, (k, m) if ta else (m, k), dtype)
    b = _rand(rng, (n, k) if tb else (k, n), dtype)
    return a, b


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("ta,tb", [(False, False), (False, True), (True, False), (True, True)])
def test_grid_against_float64_oracle(rng, dtype, ta, tb):
    for m in MS:
        for n in NS:
            for k in KS:
                a, b = _operands(rng, m, n, k, ta, tb, dtype)
                c = np.full((m, n), np.nan, dtype)
                _C.gemm(a, b, c, ta, tb)
                _check(c, a, b, ta, tb, what=f"m={m} n={n} k={k} ta={ta} tb={tb}")


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_naive_oracle_matches_numpy(rng, dtype):
    a, b = _operands(rng, 7, 13, 11, True, False, dtype)
    c = np.full((7, 13), np.nan, dtype)
    _C.gemm_naive(a, b, c, True, False)
    _check(c, a, b, True, False, what="naive")


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_multi_block_shapes_both_thread_splits(rng, dtype):
    # several KC blocks, several NC blocks per thread, several MC blocks; split N and split M
    # (30, 700, 600), (48, 130, 260): few rows, B packed panel by panel across KC blocks
    for m, n, k in [
        (300, 1100, 600),
        (1000, 70, 520),
        (145, 2100, 257),
        (3, 17000, 37),
        (8, 300, 2100),
        (30, 700, 600),
        (48, 130, 260),
    ]:
        for ta, tb in [(False, False), (True, True)]:
            a, b = _operands(rng, m, n, k, ta, tb, dtype)
            for nt in (1, 2):
                c = np.full((m, n), np.nan, dtype)
                _C.gemm(a, b, c, ta, tb, nthreads=nt)
                _check(c, a, b, ta, tb, what=f"{m}x{n}x{k} nt={nt}")


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_alpha_beta_and_epilogues(rng, dtype):
    for m, n, k in [(7, 65, 257), (13, 17, 3), (64, 129, 520)]:
        for alpha in (1.0, -0.75):
            for beta in (0.0, 1.0, 0.3):
                for bias_kind in (0, 1, 2):
                    for relu in (False, True):
                        a, b = _operands(rng, m, n, k, False, True, dtype)
                        c0 = _rand(rng, (m, n), dtype)
                        bias = _rand(rng, (m if bias_kind == 1 else n,), dtype) if bias_kind else None
                        c = np.full((m, n), np.nan, dtype) if beta == 0 else c0.copy()
                        _C.gemm(a, b, c, False, True, alpha, beta, bias, bias_kind, relu)
                        _check(
                            c,
                            a,
                            b,
                            False,
                            True,
                            alpha=alpha,
                            beta=beta,
                            c0=c0,
                            bias=bias,
                            bias_kind=bias_kind,
                            relu=relu,
                            what=f"{m}x{n}x{k} alpha={alpha} beta={beta} bias={bias_kind} relu={relu}",
                        )
                        if relu:
                            assert (c >= 0).all()


def test_random_problems(rng):
    # random sizes, transposes, scalars, epilogues and thread counts, every entry point
    for _ in range(60):
        m, n, k = (int(v) for v in rng.integers(1, 300, size=3))
        if rng.random() < 0.3:
            m = int(rng.integers(1, 9))
        dtype = np.float32 if rng.random() < 0.7 else np.float64
        ta, tb, relu = (bool(v) for v in rng.integers(0, 2, size=3))
        alpha = float(rng.choice([1.0, -1.5, 0.25]))
        beta = float(rng.choice([0.0, 1.0, -0.5]))
        bias_kind = int(rng.integers(0, 3))
        nt = int(rng.integers(0, 4))
        a, b = _operands(rng, m, n, k, ta, tb, dtype)
        c0 = _rand(rng, (m, n), dtype)
        bias = _rand(rng, (m if bias_kind == 1 else n,), dtype) if bias_kind else None
        entry = int(rng.integers(0, 4))
        c = c0.copy() if beta != 0 else np.full((m, n), np.nan, dtype)
        args = (alpha, beta, bias, bias_kind, relu, nt)
        if entry == 0:
            _C.gemm(a, b, c, ta, tb, *args)
        elif entry == 1:
            _C.gemm_provided_b(a, b, c, ta, tb, *args)
        elif entry == 2:
            _C.gemm_packed_a(_C.pack_a(a, ta), b, c, tb, *args, bool(rng.integers(0, 2)))
        else:
            _C.gemm_packed_b(a, _C.pack_b(b, tb), c, ta, *args)
        _check(
            c,
            a,
            b,
            ta,
            tb,
            alpha=alpha,
            beta=beta,
            c0=c0,
            bias=bias,
            bias_kind=bias_kind,
            relu=relu,
            what=f"entry={entry} {m}x{n}x{k} {np.dtype(dtype).name} ta={ta} tb={tb} a={alpha} b={beta} "
            f"bias={bias_kind} relu={relu} nt={nt}",
        )


def test_leading_dimensions_and_untouched_neighbours(rng):
    m, n, k = 13, 70, 300
    for ta, tb in [(False, False), (True, True), (True, False)]:
        abig = _rand(rng, (k + 3, m + 9) if ta else (m + 3, k + 9), np.float32)
        bbig = _rand(rng, (n + 3, k + 5) if tb else (k + 3, n + 5), np.float32)
        a = abig[1 : 1 + (k if ta else m), 2 : 2 + (m if ta else k)]
        b = bbig[2 : 2 + (n if tb else k), 1 : 1 + (k if tb else n)]
        cbig = np.full((m + 2, n + 7), -7.0, np.float32)
        c = cbig[1 : 1 + m, 3 : 3 + n]
        a0, b0 = abig.copy(), bbig.copy()
        _C.gemm(a, b, c, ta, tb)
        _check(c, a, b, ta, tb, what=f"ld ta={ta} tb={tb}")
        mask = np.ones(cbig.shape, bool)
        mask[1 : 1 + m, 3 : 3 + n] = False
        assert (cbig[mask] == -7.0).all(), "wrote outside C"
        assert np.array_equal(abig, a0) and np.array_equal(bbig, b0), "modified an input"


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_provided_b_matches_memory_b(rng, dtype):
    for m, n, k in [(1, 1, 1), (7, 65, 257), (50, 1100, 600), (300, 40, 100)]:
        for ta, tb in [(False, False), (True, True)]:
            a, b = _operands(rng, m, n, k, ta, tb, dtype)
            bias = _rand(rng, (m,), dtype)
            for nt in (1, 2):
                c = np.full((m, n), np.nan, dtype)
                _C.gemm_provided_b(a, b, c, ta, tb, 1.0, 0.0, bias, 1, True, nt)
                _check(
                    c, a, b, ta, tb, bias=bias, bias_kind=1, relu=True, what=f"provided {m}x{n}x{k} nt={nt}"
                )
                c2 = np.full((m, n), np.nan, dtype)
                _C.gemm(a, b, c2, ta, tb, 1.0, 0.0, bias, 1, True, nt)
                if m > 8:  # M <= 8 takes the unpacked small-M path (another summation order)
                    assert np.array_equal(c, c2), "provided B differs from B in memory"


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_packed_a_reused_across_calls(rng, dtype):
    for m, k, ta in [(1, 1, False), (13, 257, False), (70, 600, True), (6, 512, True)]:
        a = _rand(rng, (k, m) if ta else (m, k), dtype)
        a0 = a.copy()
        pa = _C.pack_a(a, ta)
        assert (pa.M, pa.K, pa.dtype) == (m, k, np.dtype(dtype).name)
        assert pa.nbytes >= m * k * np.dtype(dtype).itemsize
        for n, tb, provided in [(1, False, False), (65, True, False), (1100, False, True), (17, True, True)]:
            b = _rand(rng, (n, k) if tb else (k, n), dtype)
            c0 = _rand(rng, (m, n), dtype)
            bias = _rand(rng, (n,), dtype)
            c = c0.copy()
            _C.gemm_packed_a(pa, b, c, tb, 0.5, 2.0, bias, 2, False, 0, provided)
            _check(
                c,
                a,
                b,
                ta,
                tb,
                alpha=0.5,
                beta=2.0,
                c0=c0,
                bias=bias,
                bias_kind=2,
                what=f"packed {m}x{n}x{k} ta={ta} tb={tb} provided={provided}",
            )
            c2 = c0.copy()
            _C.gemm(a, b, c2, ta, tb, 0.5, 2.0, bias, 2, False)
            if m > 8:  # M <= 8 takes the unpacked small-M path (another summation order)
                assert np.array_equal(c, c2), "packed A differs from A in memory"
        assert np.array_equal(a, a0)


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_packed_b_reused_across_calls(rng, dtype):
    for k, n, tb in [(1, 1, False), (257, 13, True), (600, 1100, True), (300, 65, False)]:
        b = _rand(rng, (n, k) if tb else (k, n), dtype)
        b0 = b.copy()
        pb = _C.pack_b(b, tb)
        assert (pb.K, pb.N, pb.dtype) == (k, n, np.dtype(dtype).name)
        for m, ta in [(1, False), (7, True), (70, False), (300, True)]:
            a = _rand(rng, (k, m) if ta else (m, k), dtype)
            bias = _rand(rng, (m,), dtype)
            for nt in (1, 2):
                c = np.full((m, n), np.nan, dtype)
                _C.gemm_packed_b(a, pb, c, ta, 1.0, 0.0, bias, 1, True, nt)
                _check(
                    c,
                    a,
                    b,
                    ta,
                    tb,
                    bias=bias,
                    bias_kind=1,
                    relu=True,
                    what=f"packed B {m}x{n}x{k} ta={ta} tb={tb} nt={nt}",
                )
                if m > 8:  # M <= 8: gemm() takes the small-M path (another summation order)
                    c2 = np.full((m, n), np.nan, dtype)
                    _C.gemm(a, b, c2, ta, tb, 1.0, 0.0, bias, 1, True, nt)
                    assert np.array_equal(c, c2), "packed B differs from B in memory"
        assert np.array_equal(b, b0)
    with pytest.raises(ValueError, match="a must have 13 columns in op"):
        _C.gemm_packed_b(np.ones((2, 5), dtype), _C.pack_b(np.ones((13, 4), dtype)), np.zeros((2, 4), dtype))


def _check_epilogues_against_packed_b(rng, a, b, tb, what):
    """C = op(a) op(b) into a NaN-filled view of a larger array, with no bias, a row bias and relu,
    a column bias, alpha 1 / 0.5 / -1.5 and 1 or 2 threads: the oracle's bound, nothing written
    outside the view, and the same bits as the pre-packed B path."""
    m, n = a.shape[0], (b.shape[0] if tb else b.shape[1])
    dtype = a.dtype
    pb = _C.pack_b(b, tb)
    for bias_kind, relu, alpha, nt in [(0, False, 1.0, 2), (1, True, 0.5, 1), (2, False, -1.5, 2)]:
        bias = _rand(rng, (m,) if bias_kind == 1 else (n,), dtype) if bias_kind else None
        cbig = np.full((m + 2, n + 5), np.nan, dtype)
        c = cbig[1 : 1 + m, 2 : 2 + n]
        _C.gemm(a, b, c, False, tb, alpha, 0.0, bias, bias_kind, relu, nt)
        _check(c, a, b, False, tb, alpha=alpha, bias=bias, bias_kind=bias_kind, relu=relu,
               what=f"{what} bias {bias_kind}")  # fmt: skip
        mask = np.ones(cbig.shape, bool)
        mask[1 : 1 + m, 2 : 2 + n] = False
        assert np.isnan(cbig[mask]).all(), "wrote outside C"
        c2 = np.full((m, n), np.nan, dtype)
        _C.gemm_packed_b(a, pb, c2, False, alpha, 0.0, bias, bias_kind, relu, nt)
        assert np.array_equal(c, c2), "differs from the pre-packed B path"


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_few_rows_wide_transposed_b(rng, dtype):
    """9-48 rows against a transposed B of 256+ columns (Linear at batch 9-48, an RNN's input
    projection) compute C^T = B A^T and transpose it: every element written once inside C's
    view, the oracle's bound, and the same bits as the pre-packed B path (which never swaps),
    whatever the bias side, a partial last column group, the K blocks and the threads."""
    for m, n, k in [(9, 256, 7), (13, 257, 300), (30, 1000, 513), (48, 300, 1030)]:
        a = _rand(rng, (m, k), dtype)
        bbig = _rand(rng, (n + 2, k + 3), dtype)
        b = bbig[1 : 1 + n, 2 : 2 + k]  # B^T [N][K] with a row stride of its own
        _check_epilogues_against_packed_b(rng, a, b, True, f"{m}x{n}x{k}")


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_row_major_b_a_page_apart(rng, dtype):
    """A row-major B whose rows lie 4 KiB or more apart: read in place with rows fetched ahead
    (past the last row of the last K block too) at up to two row panels (9 rows), from three
    (13-48 rows, and 64-100 on the wide-block path) its full panels packed by the first row
    panel as it reads them, a partial last panel by the packer. The oracle's bound, writes only
    inside C's view, and the same bits as the pre-packed B path, with bias either side, relu,
    alpha and 1 or 2 threads."""
    item = np.dtype(dtype).itemsize
    for m, n, k, ld in [(9, 500, 300, 4096 // item), (30, 2048, 77, 2048), (48, 640, 513, 1100),
                        (13, 130, 1030, 8192 // item), (64, 500, 300, 4096 // item),
                        (100, 250, 600, 8192 // item)]:  # fmt: skip
        a = _rand(rng, (m, k), dtype)
        b = _rand(rng, (k, ld), dtype)[:, ld - n :]  # the view ends where the buffer does
        _check_epilogues_against_packed_b(rng, a, b, False, f"{m}x{n}x{k} ld {ld}")


def test_results_do_not_depend_on_thread_count(rng):
    # ta: weight-gradient shapes (dY^T X) whose A is packed per call, split over M on 2 threads
    for m, n, k, ta in [(300, 700, 300, False), (1000, 40, 300, False), (3, 3000, 500, False),
                        (2048, 300, 30, True), (700, 512, 600, True)]:  # fmt: skip
        a, b = _operands(rng, m, n, k, ta, False, np.float32)
        outs = []
        for nt in (1, 2, 3, 0):
            c = np.full((m, n), np.nan, np.float32)
            _C.gemm(a, b, c, ta, False, nthreads=nt)
            outs.append(c)
        _check(outs[0], a, b, ta, False, what=f"{m}x{n}x{k}")
        for c in outs[1:]:
            assert np.array_equal(c, outs[0])


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("tb", [False, True])
def test_small_m_wide_rows_cross_column_chunks(rng, dtype, tb):
    # The small-M kernels sum a column chunk at a time (e.g. 512 floats at M = 8, 4096 at
    # M = 1) and the driver splits columns across threads: N spans several chunks with a
    # ragged tail, and K leaves a remainder after the unrolled k groups.
    for m in range(1, 9):
        for n, k in [(4096 + 8 * 3 + 5, 7), (1361, 258), (2 * 520 + 3, 1)]:
            a, b = _operands(rng, m, n, k, False, tb, dtype)
            c = np.full((m, n), np.nan, dtype)
            _C.gemm(a, b, c, False, tb)
            _check(c, a, b, False, tb, what=f"m={m} n={n} k={k} tb={tb}")


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("tb", [False, True])
def test_small_m_from_memory(rng, dtype, tb):
    # A B of 32 MiB or more (beyond the caches) makes the small-M kernels fetch it ahead in
    # software from 3 rows (gemm.cpp smallm_far_b); 1 and 2 rows stream without. Same sums.
    k, n = 4099, 2053  # 33.7 MB in float32; ragged k groups, vectors and threads' column ranges
    b = _rand(rng, (n, k) if tb else (k, n), dtype)
    for m in (1, 3, 8):
        a = _rand(rng, (m, k), dtype)
        c = np.full((m, n), np.nan, dtype)
        _C.gemm(a, b, c, False, tb)
        _check(c, a, b, False, tb, what=f"m={m} tb={tb}")


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_zero_sizes(rng, dtype):
    # M or N == 0: nothing written; K == 0: C = beta*C (+ bias, relu)
    for m, n in [(0, 5), (5, 0), (0, 0)]:
        c = np.zeros((m, n), dtype)
        _C.gemm(np.zeros((m, 3), dtype), np.zeros((3, n), dtype), c)
    c0 = _rand(rng, (4, 5), dtype)
    bias = _rand(rng, (5,), dtype)
    c = c0.copy()
    _C.gemm(np.zeros((4, 0), dtype), np.zeros((0, 5), dtype), c, False, False, 1.0, 0.5, bias, 2, True)
    np.testing.assert_allclose(c, np.maximum(0.5 * c0 + bias, 0), rtol=1e-6)
    c = np.full((4, 5), np.nan, dtype)
    _C.gemm(np.zeros((4, 0), dtype), np.zeros((0, 5), dtype), c)
    assert (c == 0).all()
    assert F.matmul(np.zeros((0, 3), dtype), np.zeros((3, 4), dtype)).shape == (0, 4)
    assert (F.matmul(np.zeros((2, 0), dtype), np.zeros((0, 4), dtype)) == 0).all()
    assert F.matmul(np.zeros((0, 2, 3), dtype), np.zeros((0, 3, 4), dtype)).shape == (0, 2, 4)
    assert F.linear(np.zeros((0, 3), dtype), np.ones((4, 3), dtype)).shape == (0, 4)
    gx, gw, gb = F.linear_backward(np.zeros((0, 4), dtype), np.zeros((0, 3), dtype), np.ones((4, 3), dtype))
    assert gx.shape == (0, 3) and (gw == 0).all() and (gb == 0).all()


def test_nan_and_inf_propagate(rng):
    a, b = _operands(rng, 13, 70, 300, False, False, np.float32)
    a[3, 5] = np.nan
    b[7, 40] = np.inf
    c = np.zeros((13, 70), np.float32)
    _C.gemm(a, b, c, False, False, 1.0, 0.0, None, 0, True)  # relu keeps NaN (torch.relu)
    ref = a.astype(np.float64) @ b.astype(np.float64)
    ref = np.where(ref < 0, 0, ref)
    np.testing.assert_array_equal(np.isnan(c), np.isnan(ref))
    np.testing.assert_array_equal(np.isinf(c), np.isinf(ref))


# ---- public API: matmul, linear, linear_backward --------------------------------------


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_matmul_2d_3d_and_broadcast(rng, dtype):
    cases = [
        ((5, 7), (7, 3)),
        ((3, 5, 7), (3, 7, 65)),
        ((4, 5, 7), (7, 3)),
        ((5, 7), (2, 7, 3)),
        ((1, 5, 7), (3, 7, 3)),
        ((64, 6, 40), (64, 40, 17)),
        ((2, 300, 257), (2, 257, 129)),
    ]
    for sa, sb in cases:
        a, b = _rand(rng, sa, dtype), _rand(rng, sb, dtype)
        out = F.matmul(a, b)
        ref = a.astype(np.float64) @ b.astype(np.float64)
        assert out.dtype == dtype and out.shape == ref.shape
        np.testing.assert_allclose(out, ref, rtol=0, atol=(sa[-1] + 4) * np.finfo(dtype).eps * sa[-1])


def test_matmul_layouts_give_the_same_answer(rng):
    a, b = _rand(rng, (13, 70), np.float32), _rand(rng, (70, 33), np.float32)
    ref = F.matmul(a, b)
    for name_a, va in layouts(a):
        for name_b, vb in layouts(b):
            before_a, before_b = np.array(va, copy=True), np.array(vb, copy=True)
            out = F.matmul(va, vb)
            assert np.array_equal(out, ref), f"{name_a} @ {name_b}"
            assert np.array_equal(va, before_a) and np.array_equal(vb, before_b)
    a3 = _rand(rng, (3, 13, 70), np.float32)
    np.testing.assert_array_equal(
        F.matmul(a3[:, ::-1, :], b), F.matmul(np.ascontiguousarray(a3[:, ::-1, :]), b)
    )


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_long_k_blocks_sum_in_the_same_chains_for_every_a_layout(rng, dtype):
    """Above 2 kc, A read in place takes K blocks of 2 kc summed in register chains of kc (its
    micro-panel only has to sit in L1), a transposed A packed per call blocks of kc: the same
    float sums, so the same bits (and the same as pre-packed A and B)."""
    for m, k, n in [(13, 513, 70), (70, 1100, 130), (20, 2100, 200)]:
        a, b = _rand(rng, (m, k), dtype), _rand(rng, (k, n), dtype)
        in_place = F.matmul(a, b)
        _check(in_place, a, b, False, False, what=f"{m}x{n}x{k}")
        assert np.array_equal(in_place, F.matmul(np.asfortranarray(a), b)), f"A^T packed {m}x{n}x{k}"
        c = np.full((m, n), np.nan, dtype)
        _C.gemm_packed_a(_C.pack_a(a, False), b, c, False, 1.0, 0.0, None, 0, False, 0, False)
        assert np.array_equal(in_place, c), f"pre-packed A {m}x{n}x{k}"


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("m", [2, 8, 9, 13, 70])
@pytest.mark.parametrize("k", [67, 300, 600])
def test_matmul_reads_transposed_and_sliced_views_in_place(rng, m, k, dtype):
    """a.T, Fortran order and column slices go to the engine as they lie (no copy) and give the
    contiguous copies' answer bit for bit, on the small-M path (m <= 8) and the packed one. At
    m <= 8 a B^T view runs as C^T = B^T A^T on the packed path, whose chains over K (of 256) are
    the small-M path's for the contiguous B."""
    n = 130
    base_a, base_b = _rand(rng, (k, m + 3), dtype), _rand(rng, (n + 5, k), dtype)
    a_views = {
        "a.T": base_a.T[:m],
        "slice": _rand(rng, (m, k + 4), dtype)[:, 2 : k + 2],
        "fortran": np.asfortranarray(base_a.T[:m]),
    }
    b_views = {
        "b.T": base_b.T[:, :n],
        "slice": np.ascontiguousarray(base_b.T)[:, 2 : n + 2],
        "fortran": np.asfortranarray(base_b.T[:, :n]),
    }
    for na, va in a_views.items():
        for nb, vb in b_views.items():
            before_a, before_b = va.copy(), vb.copy()
            out = F.matmul(va, vb)
            ref = F.matmul(np.ascontiguousarray(va), np.ascontiguousarray(vb))
            assert np.array_equal(out, ref), f"{na} @ {nb}"
            _check(out, np.ascontiguousarray(va), np.ascontiguousarray(vb), False, False, what=f"{na} @ {nb}")
            assert np.array_equal(va, before_a) and np.array_equal(vb, before_b)


def test_matmul_binding_refuses_views_without_a_unit_stride(rng):
    a = _rand(rng, (8, 12), np.float32)
    with pytest.raises(ValueError, match=r"a must have unit column stride, got 8 bytes"):
        _C.matmul(a[::2, ::2], a[:6, :4].copy())


@pytest.mark.torch
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_linear_matches_torch(rng, dtype):
    import torch

    for xs, out_f, has_bias in [
        ((7,), 5, True),
        ((30, 300), 2048, True),
        ((2, 3, 64), 65, False),
        ((1, 1, 1, 17), 1, True),
    ]:
        x = _rand(rng, xs, dtype)
        w = _rand(rng, (out_f, xs[-1]), dtype)
        bias = _rand(rng, (out_f,), dtype) if has_bias else None
        out = F.linear(x, w, bias)
        tb = torch.from_numpy(bias) if has_bias else None
        ref_t = torch.nn.functional.linear(torch.from_numpy(x), torch.from_numpy(w), tb).numpy()
        ref64 = x.astype(np.float64) @ w.T.astype(np.float64) + (bias.astype(np.float64) if has_bias else 0)
        assert out.shape == ref_t.shape and out.dtype == dtype
        assert_error_gate(
            out, ref64, ref_t, floor=4 * np.finfo(dtype).eps * xs[-1], what=f"linear {xs}->{out_f}"
        )


@pytest.mark.torch
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_linear_backward_matches_torch_autograd(rng, dtype):
    import torch

    for xs, out_f in [((7,), 5), ((4, 9, 33), 65), ((300, 70), 129)]:
        x, w = _rand(rng, xs, dtype), _rand(rng, (out_f, xs[-1]), dtype)
        bias, g = _rand(rng, (out_f,), dtype), _rand(rng, (*xs[:-1], out_f), dtype)
        tx, tw, tbias = (torch.from_numpy(v.copy()).requires_grad_() for v in (x, w, bias))
        torch.nn.functional.linear(tx, tw, tbias).backward(torch.from_numpy(g))
        gx, gw, gb = F.linear_backward(g, x, w)
        g64, x64, w64 = g.astype(np.float64), x.astype(np.float64), w.astype(np.float64)
        g2, x2 = g64.reshape(-1, out_f), x64.reshape(-1, xs[-1])
        floor = 8 * np.finfo(dtype).eps * max(xs[0], out_f)
        assert_error_gate(gx, g64 @ w64, tx.grad.numpy(), floor=floor, what="grad_input")
        assert_error_gate(gw, g2.T @ x2, tw.grad.numpy(), floor=floor, what="grad_weight")
        assert_error_gate(gb, g2.sum(0), tbias.grad.numpy(), floor=floor, what="grad_bias")
        assert gx.shape == x.shape and gw.shape == w.shape and gb.shape == bias.shape
        none_x, only_w, none_b = F.linear_backward(g, x, w, output_mask=(False, True, False))
        assert none_x is None and none_b is None and np.array_equal(only_w, gw)


@pytest.mark.torch
def test_k_of_a_few_hundred_within_twice_torch():
    # K = 512 fits one K block; summed there in one chain it came to 1.9-2.6x torch's error
    import torch

    for seed, (m, k, n) in enumerate([(512, 512, 512), (300, 500, 260), (8, 512, 2048)]):
        rng = np.random.default_rng(seed)
        a = rng.uniform(-1, 1, (m, k)).astype(np.float32)
        b = rng.uniform(-1, 1, (k, n)).astype(np.float32)
        ref64 = a.astype(np.float64) @ b.astype(np.float64)
        ref_t = (torch.from_numpy(a) @ torch.from_numpy(b)).numpy()
        assert_error_gate(F.matmul(a, b), ref64, ref_t, floor=1e-7, what=f"{m}x{k}x{n}")


@pytest.mark.torch
def test_long_k_accuracy_within_twice_torch(rng):
    # long dot products (VGG fc6 has K = 25088): blocked partial sums keep the error near torch's
    import torch

    for m, tb in [(1, False), (3, True), (8, False), (8, True), (13, False)]:
        k, n = 30000, 70
        a = _rand(rng, (m, k), np.float32)
        b = _rand(rng, (n, k) if tb else (k, n), np.float32)
        c = np.full((m, n), np.nan, np.float32)
        _C.gemm(a, b, c, False, tb)
        ref64 = a.astype(np.float64) @ _op(b.astype(np.float64), tb)
        ref_t = (torch.from_numpy(a) @ _op(torch.from_numpy(b), tb)).numpy()
        assert_error_gate(c, ref64, ref_t, floor=1e-7, what=f"m={m} tb={tb} k={k}")


def test_linear_layouts(rng):
    x, w, bias = (
        _rand(rng, (6, 40), np.float32),
        _rand(rng, (70, 40), np.float32),
        _rand(rng, (70,), np.float32),
    )
    ref = F.linear(x, w, bias)
    for name, v in layouts(x):
        assert np.array_equal(F.linear(v, w, bias), ref), name
    for name, v in layouts(w):
        assert np.array_equal(F.linear(x, v, bias), ref), name


def test_concurrent_python_threads_match_serial(rng):
    a, b = _rand(rng, (200, 300), np.float32), _rand(rng, (300, 500), np.float32)
    ref = F.matmul(a, b)
    errors = []

    def work():
        for _ in range(10):
            if not np.array_equal(F.matmul(a, b), ref):
                errors.append("mismatch")

    threads = [threading.Thread(target=work) for _ in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert not errors


# ---- bad input ------------------------------------------------------------------------


def test_bad_inputs_raise_before_touching_memory():
    a, b = np.ones((3, 4), np.float32), np.ones((4, 5), np.float32)
    with pytest.raises(ValueError, match=r"a.shape\[-1\] must equal b.shape\[-2\].*4 != 5"):
        F.matmul(a, np.ones((5, 4), np.float32))
    with pytest.raises(ValueError, match=r"a must be 2-D or 3-D, got 1-D"):
        F.matmul(np.ones(4, np.float32), b)
    with pytest.raises(ValueError, match=r"b must be 2-D or 3-D, got 4-D"):
        F.matmul(a, np.ones((1, 1, 4, 5), np.float32))
    with pytest.raises(ValueError, match="batch dimensions 2 and 3"):
        F.matmul(np.ones((2, 3, 4)), np.ones((3, 4, 5)))
    with pytest.raises(TypeError, match="b must have dtype float32"):
        F.matmul(a, b.astype(np.float64))
    with pytest.raises(TypeError, match="a must have dtype float32 or float64, got int64"):
        F.matmul(np.ones((3, 4), np.int64), b)
    with pytest.raises(TypeError, match="a must be a numpy array, got list"):
        F.matmul([[1.0]], b)
    w = np.ones((6, 4), np.float32)
    with pytest.raises(ValueError, match=r"input.shape\[-1\] must equal weight.shape\[1\] \(in_features=4\)"):
        F.linear(np.ones((2, 5), np.float32), w)
    with pytest.raises(ValueError, match=r"weight must be 2-D"):
        F.linear(a, np.ones(4, np.float32))
    with pytest.raises(ValueError, match=r"bias must have shape \(6,\)"):
        F.linear(a, w, np.ones(5, np.float32))
    with pytest.raises(TypeError, match="bias must have dtype float32"):
        F.linear(a, w, np.ones(6, np.float64))
    with pytest.raises(ValueError, match=r"grad_output must have shape \(3, 6\)"):
        F.linear_backward(np.ones((3, 5), np.float32), a, w)
    with pytest.raises(ValueError, match="output_mask must have 3 entries"):
        F.linear_backward(np.ones((3, 6), np.float32), a, w, output_mask=(True,))
    # the engine's own checks (second line of defence): C untouched on error
    c = np.full((3, 5), 7.0, np.float32)
    with pytest.raises(ValueError, match=r"c must have shape \(3, 6\)"):
        _C.gemm(a, np.ones((4, 6), np.float32), c)
    with pytest.raises(ValueError, match=r"b must have 4 rows"):
        _C.gemm(a, np.ones((5, 5), np.float32), c)
    with pytest.raises(ValueError, match=r"bias must have shape \(5,\)"):
        _C.gemm(a, b, c, bias=np.ones(3, np.float32), bias_kind=2)
    with pytest.raises(ValueError, match="bias_kind must be 0"):
        _C.gemm(a, b, c, bias=np.ones(5, np.float32), bias_kind=7)
    with pytest.raises(ValueError, match="unit column stride"):
        _C.gemm(a, b, np.zeros((5, 3), np.float32).T)
    with pytest.raises(TypeError, match="b must be a float32 array"):
        _C.gemm(a, b.astype(np.float64), c)
    ro = c.copy()
    ro.flags.writeable = False
    with pytest.raises(ValueError, match="c must be writeable"):
        _C.gemm(a, b, ro)
    assert (c == 7.0).all()
    pa = _C.pack_a(a)
    with pytest.raises(ValueError, match="b must have 4 rows"):
        _C.gemm_packed_a(pa, np.ones((3, 5), np.float32), c)
    assert (c == 7.0).all()


# ---- every ISA path in the default run --------------------------------------------------

_ISA_CHILD = r"""
import numpy as np, pycnnrnn
from pycnnrnn import _C
print(pycnnrnn.cpu_isa())
rng = np.random.default_rng(5)
worst = 0.0
for dt in (np.float32, np.float64):
    for m, n, k, ta, tb in [(1, 1, 1, 0, 0), (7, 17, 257, 0, 1), (13, 65, 31, 1, 0), (64, 129, 300, 1, 1),
                            (300, 100, 520, 0, 0)]:
        a = rng.uniform(-1, 1, (k, m) if ta else (m, k)).astype(dt)
        b = rng.uniform(-1, 1, (n, k) if tb else (k, n)).astype(dt)
        c0 = rng.uniform(-1, 1, (m, n)).astype(dt)
        bias = rng.uniform(-1, 1, n).astype(dt)
        ref = np.maximum(0.5 * ((a.T if ta else a).astype(np.float64) @ (b.T if tb else b).astype(np.float64))
                         + 0.25 * c0 + bias, 0)
        outs = []
        for fn in ("gemm", "gemm_provided_b", "packed"):
            c = c0.copy()
            if fn == "packed":
                _C.gemm_packed_a(_C.pack_a(a, bool(ta)), b, c, bool(tb), 0.5, 0.25, bias, 2, True)
            else:
                getattr(_C, fn)(a, b, c, bool(ta), bool(tb), 0.5, 0.25, bias, 2, True)
            outs.append(c)
            scale = (k + 4) * np.finfo(dt).eps * (np.abs(a).sum() + 1)
            worst = max(worst, float(np.abs(c - ref).max() / scale))
        if m > 8:  # M <= 8: gemm takes the small-M path (another summation order)
            assert all(np.array_equal(o, outs[0]) for o in outs), (dt, m, n, k)
print(worst)
"""


@pytest.mark.parametrize("isa", ["avx2", "scalar"])
def test_lower_isa_paths_in_subprocess(isa):
    best = _C.detected_isa()
    order = ["scalar", "avx2", "avx512"]
    expect = isa if order.index(isa) <= order.index(best) else best
    out = run_python(_ISA_CHILD, PYCNNRNN_ISA=isa).stdout.split()
    assert out[0] == expect
    assert float(out[1]) < 1.0, f"error over the bound on the {isa} path"


def test_cpu_isa_is_reported():
    assert pycnnrnn.cpu_isa() in ("avx512", "avx2", "scalar")
