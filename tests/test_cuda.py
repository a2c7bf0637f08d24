"""CUDA backend: reference comparisons against torch (CPU and CUDA) and float64.

Every test is marked ``cuda``; conftest.py skips them where pycnnrnn.cuda_available() is False
(no GPU, no driver, or a CPU-only build). Outputs are checked for complete writes by poisoning
torch's caching allocator with NaN before each call (our outputs come from torch.empty)."""

from __future__ import annotations

import itertools

import numpy as np
import pytest

torch = pytest.importorskip("torch")
F = torch.nn.functional

import pycnnrnn  # noqa: E402
import pycnnrnn.cuda as pcc  # noqa: E402

pytestmark = pytest.mark.cuda

DEV = "cuda"


def poison(nbytes: int = 64 << 20):
    """Fill freed blocks of the caching allocator with NaN so torch.empty hands out NaN memory."""
    blocks = []
    for size in (nbytes, nbytes // 4, nbytes // 16, 1 << 20, 1 << 16, 4096, 512):
        n = max(size // 4, 1)
        blocks.append(torch.full((n,), float("nan"), device=DEV))
    del blocks


def rel_err(a, ref) -> float:
    a = a.detach().double().cpu()
    ref = ref.detach().double().cpu()
    assert a.shape == ref.shape, f"{tuple(a.shape)} != {tuple(ref.shape)}"
    assert not torch.isnan(a).any(), "NaN in output (unwritten element?)"
    den = ref.norm().item()
    return (a - ref).norm().item() / (den if den > 0 else 1.0)


def gate(ours, ref64, theirs=None, tol=1e-5, what=""):
    e = rel_err(ours, ref64)
    bound = tol
    if theirs is not None:
        bound = max(tol, 2.0 * rel_err(theirs, ref64))
    assert e <= bound, f"{what}: rel err {e:.3e} > {bound:.3e}"
    return e


def test_device_query():
    assert pycnnrnn.cuda_available()
    assert pycnnrnn._C.cuda_device_count() >= 1
    assert pycnnrnn._C.cuda_device_name(0)
    assert pcc.available()


# ------------------------------------------------------------------------------------------
# max_pool2d

POOL_CASES = [
    # shape, k, s, p, d, ceil
    ((2, 3, 8, 8), 2, 2, 0, 1, False),  # 2-outputs-per-thread float4 path
    ((2, 3, 8, 10), 2, 2, 0, 1, False),  # float2 path (W % 4 == 2)
    ((2, 3, 8, 12), 2, 2, 0, 1, True),
    ((2, 3, 9, 7), 2, 2, 0, 1, False),
    ((2, 3, 9, 7), 2, 2, 0, 1, True),
    ((1, 4, 13, 11), 3, 2, 1, 1, True),
    ((1, 4, 13, 11), 3, 1, 1, 1, False),
    ((2, 2, 17, 15), (3, 2), (2, 1), (1, 0), (2, 3), True),
    ((3, 5, 10, 12), 3, 3, 1, 2, False),
    ((1, 1, 5, 5), 5, 1, 2, 1, True),
    ((4, 6, 7), 2, 1, 1, 1, False),  # unbatched CHW
    ((1, 2, 6, 8), 4, 3, 2, 1, True),
]


def _pool_input(shape, dtype, rng, special):
    x = torch.from_numpy(rng.integers(-4, 5, size=shape).astype(np.float64)).to(dtype)  # many ties
    if special:
        flat = x.view(-1)
        n = flat.numel()
        pos = rng.choice(n, size=max(1, n // 17), replace=False)
        flat[pos[: len(pos) // 2]] = float("nan")
        flat[pos[len(pos) // 2 :]] = float("-inf")
    return x


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
@pytest.mark.parametrize("case", POOL_CASES)
@pytest.mark.parametrize("special", [False, True])
def test_max_pool2d_forward_exact(case, dtype, special):
    rng = np.random.default_rng(7)
    shape, k, s, p, d, ceil = case
    x = _pool_input(shape, dtype, rng, special)
    ref, ref_idx = F.max_pool2d(x, k, s, p, d, ceil_mode=ceil, return_indices=True)  # torch CPU semantics
    poison()
    y, idx = pcc.max_pool2d(x.to(DEV), k, s, p, d, ceil_mode=ceil, return_indices=True)
    torch.testing.assert_close(y.cpu(), ref, rtol=0, atol=0, equal_nan=True)
    assert torch.equal(idx.cpu(), ref_idx), "indices differ"
    y2 = pcc.max_pool2d(x.to(DEV), k, s, p, d, ceil_mode=ceil)
    torch.testing.assert_close(y2.cpu(), ref, rtol=0, atol=0, equal_nan=True)


def test_max_pool2d_forward_large_fastpath():
    x = torch.randn(4, 16, 64, 96, device=DEV)
    poison()
    y, idx = pcc.max_pool2d(x, 2, 2, return_indices=True)
    ry, ridx = F.max_pool2d(x.cpu(), 2, 2, return_indices=True)
    assert torch.equal(y.cpu(), ry) and torch.equal(idx.cpu(), ridx)


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
@pytest.mark.parametrize("case", POOL_CASES)
def test_max_pool2d_backward(case, dtype):
    rng = np.random.default_rng(11)
    shape, k, s, p, d, ceil = case
    x = _pool_input(shape, dtype, rng, False).requires_grad_(True)
    ref, ref_idx = F.max_pool2d(x, k, s, p, d, ceil_mode=ceil, return_indices=True)
    gy = torch.randn(ref.shape, dtype=dtype)
    (ref_gx,) = torch.autograd.grad(ref, x, gy)
    _, idx = pcc.max_pool2d(x.detach().to(DEV), k, s, p, d, ceil_mode=ceil, return_indices=True)
    poison()
    gx = pcc.max_pool2d_backward(gy.to(DEV), idx, tuple(x.shape), k, s, p, d, ceil_mode=ceil)
    torch.testing.assert_close(gx.cpu(), ref_gx, rtol=1e-6, atol=1e-6)
    gx2 = pcc.max_pool2d_backward(gy.to(DEV), idx, tuple(x.shape), k, s, p, d, ceil_mode=ceil)
    assert torch.equal(gx, gx2), "backward not deterministic"


def test_max_pool2d_errors():
    x = torch.randn(1, 1, 4, 4, device=DEV)
    with pytest.raises(ValueError):
        pcc.max_pool2d(x.cpu(), 2)
    with pytest.raises(TypeError):
        pcc.max_pool2d(x.half(), 2)
    with pytest.raises(ValueError):
        pcc.max_pool2d(x, 2, 2, padding=2)
    with pytest.raises(ValueError):
        pcc.max_pool2d(x, 0)


# ------------------------------------------------------------------------------------------
# GEMM


GEMM_SHAPES = [
    (1, 1, 1),
    (7, 5, 3),
    (128, 128, 8),
    (129, 130, 131),
    (64, 300, 17),
    (257, 64, 512),
    (33, 1000, 4),
    (512, 512, 512),
    (300, 2, 1000),
    (5, 7, 0),
]


@pytest.mark.parametrize("ta,tb", [(False, False), (False, True), (True, False), (True, True)])
@pytest.mark.parametrize("M,N,K", GEMM_SHAPES)
def test_gemm_float32(M, N, K, ta, tb):
    g = torch.Generator().manual_seed(M * 7919 + N * 31 + K)
    a = torch.randn((K, M) if ta else (M, K), generator=g)
    b = torch.randn((N, K) if tb else (K, N), generator=g)
    ref = (a.double().T if ta else a.double()) @ (b.double().T if tb else b.double())
    ad, bd = a.to(DEV), b.to(DEV)
    out = torch.full((M, N), float("nan"), device=DEV)
    pcc.gemm(ad, bd, ta, tb, out=out)  # beta == 0: NaN in out must not leak
    theirs = (ad.T if ta else ad) @ (bd.T if tb else bd)
    if K == 0:
        assert torch.equal(out.cpu(), torch.zeros(M, N))
        return
    gate(out, ref, theirs, tol=1e-5, what=f"gemm {M}x{N}x{K} ta={ta} tb={tb}")


def test_gemm_alpha_beta_and_views():
    a = torch.randn(100, 36, device=DEV)
    b = torch.randn(36, 70, device=DEV)
    c = torch.randn(100, 70, device=DEV)
    ref = 0.5 * (a.double() @ b.double()) - 2.0 * c.double()
    out = c.clone()
    pcc.gemm(a, b, alpha=0.5, beta=-2.0, out=out)
    gate(out, ref, tol=1e-5, what="alpha/beta")
    # misaligned (offset) and non-contiguous operands go through .contiguous() / the scalar path
    big = torch.randn(101 * 37 + 1, device=DEV)
    a2 = big[1:].view(101, 37)[:, :35]
    out2 = pcc.matmul(a2, b[:35])
    gate(out2, a2.double() @ b[:35].double(), tol=1e-5, what="views")


def test_gemm_float64():
    a = torch.randn(77, 45, dtype=torch.float64, device=DEV)
    b = torch.randn(60, 45, dtype=torch.float64, device=DEV)
    out = pcc.gemm(a, b, trans_b=True)
    assert rel_err(out, a @ b.T) < 1e-13


# ------------------------------------------------------------------------------------------
# LSTM


def _torch_lstm(I, H, dtype, device, seed):
    torch.manual_seed(seed)
    m = torch.nn.LSTM(I, H).to(dtype=dtype, device=device)
    return m


LSTM_CASES = [
    (1, 1, 8, 16),
    (5, 3, 10, 16),
    (17, 8, 32, 128),
    (4, 11, 7, 20),
    (3, 2, 5, 129),
    (3, 16, 12, 64),
    (4, 33, 9, 37),
    (2, 64, 16, 136),
]  # B >= 16 (70 too): the register-tiled step


@pytest.mark.parametrize("T,B,I,H", LSTM_CASES)
@pytest.mark.parametrize("with_state", [False, True])
def test_lstm_forward(T, B, I, H, with_state):
    m64 = _torch_lstm(I, H, torch.float64, "cpu", T * 100 + H)
    x = torch.randn(T, B, I, dtype=torch.float64)
    h0 = torch.randn(1, B, H, dtype=torch.float64) if with_state else None
    c0 = torch.randn(1, B, H, dtype=torch.float64) if with_state else None
    ref, (rh, rc) = m64(x, (h0, c0)) if with_state else m64(x)
    m32 = _torch_lstm(I, H, torch.float32, DEV, T * 100 + H)
    xd = x.float().to(DEV)
    h0d = h0[0].float().to(DEV) if with_state else None
    c0d = c0[0].float().to(DEV) if with_state else None
    with torch.no_grad():
        theirs, (th, tc) = m32(xd, (h0d[None], c0d[None])) if with_state else m32(xd)
    poison()
    y, hn, cn, saved = pcc.lstm_forward(
        xd, h0d, c0d, m32.weight_ih_l0, m32.weight_hh_l0, m32.bias_ih_l0, m32.bias_hh_l0, training=False
    )
    assert saved is None
    gate(y, ref, theirs, tol=1e-5, what="lstm y")
    gate(hn, rh[0], th[0], tol=1e-5, what="lstm h_n")
    gate(cn, rc[0], tc[0], tol=1e-5, what="lstm c_n")


@pytest.mark.parametrize("B", [4, 20])  # both step kernels
def test_lstm_forward_float64_no_bias(B):
    torch.manual_seed(3)
    m = torch.nn.LSTM(6, 24, bias=False).double()
    x = torch.randn(7, B, 6, dtype=torch.float64)
    ref, (rh, rc) = m(x)
    y, hn, cn, _ = pcc.lstm_forward(x.to(DEV), None, None, m.weight_ih_l0.to(DEV), m.weight_hh_l0.to(DEV))
    assert rel_err(y, ref) < 1e-12 and rel_err(cn, rc[0]) < 1e-12


@pytest.mark.parametrize("T,B,I,H", LSTM_CASES + [(2, 70, 6, 20)])  # B > 64: dh via the SGEMM
def test_lstm_backward(T, B, I, H):
    m64 = _torch_lstm(I, H, torch.float64, "cpu", T * 31 + B)
    x = torch.randn(T, B, I, dtype=torch.float64, requires_grad=True)
    h0 = torch.randn(1, B, H, dtype=torch.float64, requires_grad=True)
    c0 = torch.randn(1, B, H, dtype=torch.float64, requires_grad=True)
    y, (hn, cn) = m64(x, (h0, c0))
    gy, ghn, gcn = torch.randn_like(y), torch.randn_like(hn), torch.randn_like(cn)
    params = [m64.weight_ih_l0, m64.weight_hh_l0, m64.bias_ih_l0, m64.bias_hh_l0]
    refs = torch.autograd.grad((y, hn, cn), [x, h0, c0, *params], (gy, ghn, gcn))
    f = lambda t: t.detach().float().to(DEV)  # noqa: E731
    w = [f(p) for p in params]
    xd, h0d, c0d = f(x), f(h0[0]), f(c0[0])
    yd, _, _, saved = pcc.lstm_forward(xd, h0d, c0d, *w, training=True)
    gate(yd, y, tol=1e-5, what="lstm fwd (training)")
    poison()
    dx, dh0, dc0, dwih, dwhh, dbih, dbhh = pcc.lstm_backward(
        xd, h0d, c0d, w[0], w[1], yd, saved, f(gy), f(ghn[0]), f(gcn[0])
    )
    names = ["dx", "dh0", "dc0", "dW_ih", "dW_hh", "db_ih", "db_hh"]
    ours = [dx, dh0, dc0, dwih, dwhh, dbih, dbhh]
    ref_list = [refs[0], refs[1][0], refs[2][0], refs[3], refs[4], refs[5], refs[6]]
    for n, o, r in zip(names, ours, ref_list):
        gate(o, r, tol=2e-5, what=f"lstm {n}")
    again = pcc.lstm_backward(xd, h0d, c0d, w[0], w[1], yd, saved, f(gy), f(ghn[0]), f(gcn[0]))
    for o, o2 in zip(ours, again):
        assert torch.equal(o, o2), "lstm backward not deterministic"


GRU_CASES = [
    (1, 1, 8, 16),
    (5, 3, 10, 16),
    (9, 8, 32, 128),
    (4, 11, 7, 21),
    (2, 70, 6, 20),
    (3, 16, 12, 64),
    (4, 33, 9, 37),
    (2, 64, 16, 136),
]  # B >= 16 (70 too): the register-tiled step


@pytest.mark.parametrize("T,B,I,H", GRU_CASES)
def test_gru_forward_backward(T, B, I, H):
    torch.manual_seed(T * 100 + H)
    m64 = torch.nn.GRU(I, H).double()
    x = torch.randn(T, B, I, dtype=torch.float64, requires_grad=True)
    h0 = torch.randn(1, B, H, dtype=torch.float64, requires_grad=True)
    y, hn = m64(x, h0)
    gy, ghn = torch.randn_like(y), torch.randn_like(hn)
    params = [m64.weight_ih_l0, m64.weight_hh_l0, m64.bias_ih_l0, m64.bias_hh_l0]
    refs = torch.autograd.grad((y, hn), [x, h0, *params], (gy, ghn))
    m32 = torch.nn.GRU(I, H).to(DEV)
    with torch.no_grad():
        for p32, p64 in zip(m32.parameters(), params):
            p32.copy_(p64.float())
        theirs, _ = m32(x.detach().float().to(DEV), h0.detach().float().to(DEV))
    f = lambda t: t.detach().float().to(DEV)  # noqa: E731
    w = [f(p) for p in params]
    poison()
    yd, hnd, saved = pcc.gru_forward(f(x), f(h0[0]), *w, training=True)
    gate(yd, y, theirs, tol=1e-5, what="gru y")
    gate(hnd, hn[0], tol=1e-5, what="gru h_n")
    poison()
    grads = pcc.gru_backward(f(x), f(h0[0]), w[0], w[1], yd, saved, f(gy), f(ghn[0]))
    names = ["dx", "dh0", "dW_ih", "dW_hh", "db_ih", "db_hh"]
    ref_list = [refs[0], refs[1][0], refs[2], refs[3], refs[4], refs[5]]
    for n, o, r in zip(names, grads, ref_list):
        gate(o, r, tol=2e-5, what=f"gru {n}")
    again = pcc.gru_backward(f(x), f(h0[0]), w[0], w[1], yd, saved, f(gy), f(ghn[0]))
    for o, o2 in zip(grads, again):
        assert torch.equal(o, o2), "gru backward not deterministic"


@pytest.mark.parametrize("B,bias", [(3, True), (20, True), (20, False)])  # both step kernels
def test_gru_float64_no_state(B, bias):
    torch.manual_seed(4)
    m = torch.nn.GRU(5, 12, bias=bias).double()
    x = torch.randn(6, B, 5, dtype=torch.float64)
    ref, _ = m(x)
    w = [p.detach().to(DEV) for p in m.parameters()]
    y, _, _ = pcc.gru_forward(x.to(DEV), None, *w)
    assert rel_err(y, ref) < 1e-12


# ------------------------------------------------------------------------------------------
# conv2d


def _conv_cases():
    rng = np.random.default_rng(5)
    grid = list(
        itertools.product(
            [1, 3], [1, 3, 16, 64], [8, 64], [7, 13, 32], [1, 3, 5], [1, 2], [0, 1, 2], [1, 2], [True, False]
        )
    )
    picks = rng.choice(len(grid), size=40, replace=False)
    cases = [grid[i] + (1,) for i in picks]
    # groups / depthwise / asymmetric
    cases += [
        (2, 16, 32, 9, 3, 1, 1, 1, True, 4),
        (2, 8, 8, 12, 3, 2, 1, 1, False, 8),
        (1, 6, 9, 11, 3, 1, 2, 2, True, 3),
        (1, 1, 8, 5, 1, 1, 0, 1, True, 1),
        # >= 128 output / input channels: the 128x128 tile for fprop+wgrad / dgrad
        (2, 16, 160, 13, 3, 1, 1, 1, True, 1),
        (2, 144, 16, 12, 3, 2, 1, 1, False, 1),
        (1, 130, 136, 9, 3, 1, 2, 2, True, 1),
        (2, 256, 256, 8, 3, 1, 1, 1, True, 2),
    ]
    return cases


@pytest.mark.parametrize("N,C,K,HW,k,s,p,d,bias,groups", _conv_cases())
def test_conv2d(N, C, K, HW, k, s, p, d, bias, groups):
    if (HW + 2 * p - d * (k - 1) - 1) < 0:
        pytest.skip("empty output")
    g = torch.Generator().manual_seed(N * 1000 + C * 10 + K + HW + k * 7 + s + p + d)
    x = torch.randn(N, C, HW, HW + 1, generator=g, dtype=torch.float64)
    w = torch.randn(K, C // groups, k, k, generator=g, dtype=torch.float64) / np.sqrt(C // groups * k * k)
    b = torch.randn(K, generator=g, dtype=torch.float64) if bias else None
    ref = F.conv2d(x, w, b, s, p, d, groups)
    xd, wd = x.float().to(DEV), w.float().to(DEV)
    bd = b.float().to(DEV) if bias else None
    theirs = F.conv2d(xd, wd, bd, s, p, d, groups)
    poison()
    y = pcc.conv2d(xd, wd, bd, s, p, d, groups)
    gate(y, ref, theirs, tol=1e-5, what="conv fwd")
    gy = torch.randn(ref.shape, generator=g, dtype=torch.float64)
    rdx, rdw, rdb = torch.ops.aten.convolution_backward(
        gy, x, w, [K] if bias else None, [s, s], [p, p], [d, d], False, [0, 0], groups, [True, True, bias]
    )
    gyd = gy.float().to(DEV)
    tdx, tdw, tdb = torch.ops.aten.convolution_backward(
        gyd, xd, wd, [K] if bias else None, [s, s], [p, p], [d, d], False, [0, 0], groups, [True, True, bias]
    )
    poison()
    dx, dw, db = pcc.conv2d_backward(gyd, xd, wd, s, p, d, groups, (True, True, bias))
    gate(dx, rdx, tdx, tol=1e-5, what="conv dgrad")
    gate(dw, rdw, tdw, tol=1e-5, what="conv wgrad")
    if bias:
        gate(db, rdb, tdb, tol=1e-5, what="conv bias grad")
    _, dw2, _ = pcc.conv2d_backward(gyd, xd, wd, s, p, d, groups, (False, True, False))
    assert torch.equal(dw, dw2), "wgrad not deterministic"


def test_conv2d_float64_and_unbatched():
    x = torch.randn(3, 10, 9, dtype=torch.float64, device=DEV)
    w = torch.randn(4, 3, 3, 3, dtype=torch.float64, device=DEV)
    y = pcc.conv2d(x, w, None, 1, "same")
    assert rel_err(y, F.conv2d(x, w, None, 1, "same")) < 1e-12


def test_conv2d_wgrad_splitk_large():
    x = torch.randn(8, 32, 28, 28, device=DEV)
    w = torch.randn(16, 32, 3, 3, device=DEV)
    gy = torch.randn(8, 16, 28, 28, device=DEV)
    assert pycnnrnn._C.cuda_conv2d_wgrad_splits((8, 32, 28, 28, 16, 3, 3, 1, 1, 1, 1, 1, 1, 1)) > 1
    _, dw, _ = pcc.conv2d_backward(gy, x, w, 1, 1, 1, 1, (False, True, False))
    rdw = torch.ops.aten.convolution_backward(
        gy.double(),
        x.double(),
        w.double(),
        None,
        [1, 1],
        [1, 1],
        [1, 1],
        False,
        [0, 0],
        1,
        [False, True, False],
    )[1]
    gate(dw, rdw, tol=1e-5, what="split-K wgrad")


# ------------------------------------------------------------------------------------------
# streams


def test_non_default_stream_ordering():
    s = torch.cuda.Stream()
    with torch.cuda.stream(s):
        # produced on s, consumed at once on s: a launch on another stream would race
        a = torch.randn(2048, 2048, device=DEV) * 2.0 + 1.0
        b = torch.randn(2048, 2048, device=DEV)
        c = pcc.matmul(a, b)
        d = c * 0.5
        x = torch.randn(8, 16, 64, 64, device=DEV).exp()
        y = pcc.max_pool2d(x, 2)
        t = torch.randn(20, 4, 32, device=DEV)
        m = torch.nn.LSTM(32, 64).to(DEV)
        yl, _, _, _ = pcc.lstm_forward(
            t, None, None, m.weight_ih_l0, m.weight_hh_l0, m.bias_ih_l0, m.bias_hh_l0
        )
    s.synchronize()
    gate(d, (a.double() @ b.double()) * 0.5, tol=1e-5, what="stream gemm")
    assert torch.equal(y, F.max_pool2d(x, 2))
    with torch.no_grad():
        ref, _ = m.double()(t.double())
    gate(yl, ref, tol=1e-5, what="stream lstm")


def test_cuda_graph_capture():
    """No hidden synchronisation or allocation: our launches capture into a CUDA graph."""
    torch.manual_seed(0)
    m = torch.nn.LSTM(16, 32).to(DEV)
    w = [p.detach() for p in m.parameters()]
    x = torch.randn(6, 3, 16, device=DEV)
    a = torch.randn(130, 70, device=DEV)
    b = torch.randn(70, 90, device=DEV)
    side = torch.cuda.Stream()
    side.wait_stream(torch.cuda.current_stream())
    with torch.cuda.stream(side):  # warm-up outside capture
        pcc.lstm_forward(x, None, None, *w)
        pcc.matmul(a, b)
        pcc.max_pool2d(x.view(1, 6, 3, 16), 2)
    torch.cuda.current_stream().wait_stream(side)
    g = torch.cuda.CUDAGraph()
    with torch.cuda.graph(g):
        y, _, _, _ = pcc.lstm_forward(x, None, None, *w)
        c = pcc.matmul(a, b)
        p = pcc.max_pool2d(x.view(1, 6, 3, 16), 2)
    x.normal_()
    a.normal_()
    g.replay()
    torch.cuda.synchronize()
    with torch.no_grad():
        ref, _ = m.double()(x.double())
    gate(y, ref, tol=1e-5, what="graph lstm")
    gate(c, a.double() @ b.double(), tol=1e-5, what="graph gemm")
    assert torch.equal(p, F.max_pool2d(x.view(1, 6, 3, 16), 2))
