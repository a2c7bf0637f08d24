"""torch.ops.pycnnrnn.*: values vs torch, opcheck, gradcheck (float64), once-differentiable
errors, non-contiguous and undefined gradients, only-needed grads, torch.compile."""

from __future__ import annotations

import pytest

torch = pytest.importorskip("torch")

import torch.nn.functional as F  # noqa: E402
from torch.library import opcheck  # noqa: E402

import pycnnrnn.torch.ops as P  # noqa: E402
from pycnnrnn import _C  # noqa: E402

pytestmark = pytest.mark.torch

D = torch.float64


def _r(*shape, dtype=D, grad=True, seed=None):
    g = torch.Generator().manual_seed(seed if seed is not None else sum(shape) * 7 + len(shape))
    return torch.randn(*shape, dtype=dtype, generator=g).requires_grad_(grad)


def _distinct(*shape, grad=True):
    """Values with no ties (max pooling gradients are only well defined without ties)."""
    n = 1
    for s in shape:
        n *= s
    g = torch.Generator().manual_seed(n)
    return (torch.randperm(n, generator=g).to(D) / n + 0.01).reshape(shape).requires_grad_(grad)


# ---- sample cases, shared by the value, opcheck and gradcheck tests -------------------------------
CONV_CASES = [
    dict(stride=1, padding=1),
    dict(stride=2, padding=0),
    dict(stride=(2, 1), padding=(1, 2), dilation=(1, 2)),
    dict(padding="same", dilation=2),
    dict(padding="same"),
    dict(padding="valid"),
    dict(padding=1, padding_mode="reflect"),
    dict(padding=1, padding_mode="circular"),
    dict(padding=(1, 0), padding_mode="replicate"),
]


def conv_args(case, groups=1, bias=True, batched=True, dtype=D, grad=True):
    x = _r(2, 4, 7, 6, dtype=dtype, grad=grad) if batched else _r(4, 7, 6, dtype=dtype, grad=grad)
    kh = 2 if case.get("padding") == "same" else 3
    w = _r(6, 4 // groups, kh, 3, dtype=dtype, grad=grad)
    b = _r(6, dtype=dtype, grad=grad) if bias else None
    return x, w, b


def torch_conv(x, w, b, stride=1, padding=0, dilation=1, groups=1, padding_mode="zeros"):
    m = torch.nn.Conv2d(
        w.shape[1] * groups,
        w.shape[0],
        w.shape[2:],
        stride,
        padding,
        dilation,
        groups,
        b is not None,
        padding_mode,
    ).to(w.dtype)
    with torch.no_grad():
        m.weight.copy_(w)
        if b is not None:
            m.bias.copy_(b)
    return m._conv_forward(x, w, b)


@pytest.mark.parametrize("case", CONV_CASES, ids=str)
@pytest.mark.parametrize("groups,bias,batched", [(1, True, True), (2, False, True), (1, True, False)])
def test_conv2d_matches_torch_and_gradcheck(case, groups, bias, batched):
    x, w, b = conv_args(case, groups, bias, batched)
    kw = dict(case, groups=groups)
    ref = torch_conv(x, w, b, **kw)
    out = P.conv2d(x, w, b, **kw)
    torch.testing.assert_close(out, ref)
    g = torch.randn_like(ref)
    grads = torch.autograd.grad(out, [t for t in (x, w, b) if t is not None], g)
    grads_ref = torch.autograd.grad(ref, [t for t in (x, w, b) if t is not None], g)
    for a, e in zip(grads, grads_ref):
        torch.testing.assert_close(a, e)
    inputs = tuple(t for t in (x, w, b) if t is not None)
    assert torch.autograd.gradcheck(lambda *t: P.conv2d(t[0], t[1], t[2] if bias else None, **kw), inputs)


@pytest.mark.parametrize("case", CONV_CASES[:5], ids=str)
@pytest.mark.parametrize("grad", [True, False])
def test_conv2d_opcheck(case, grad):
    x, w, b = conv_args(case, dtype=torch.float32, grad=grad)
    stride, dilation = P._pair(case.get("stride", 1), "s"), P._pair(case.get("dilation", 1), "d")
    pad = case.get("padding", 0)
    if pad == "same":
        th, tw = dilation[0] * (w.shape[2] - 1), dilation[1] * (w.shape[3] - 1)
        pads = [th // 2, th - th // 2, tw // 2, tw - tw // 2]  # torch's split (asymmetric if odd)
    elif pad == "valid":
        pads = [0, 0, 0, 0]
    else:
        ph, pw = P._pair(pad, "p")
        pads = [ph, ph, pw, pw]
    mode = case.get("padding_mode", "zeros")
    opcheck(torch.ops.pycnnrnn.conv2d.default, (x, w, b, stride, pads, dilation, 1, mode))
    gy = torch.randn(P.conv2d(x, w, b, **case).shape)
    opcheck(
        torch.ops.pycnnrnn.conv2d_backward.default,
        (gy, x.detach(), w.detach(), stride, pads, dilation, 1, mode, [True, grad, False]),
    )


POOL_CASES = [
    dict(kernel_size=2),
    dict(kernel_size=3, stride=2, padding=1),
    dict(kernel_size=3, stride=2, ceil_mode=True),
    dict(kernel_size=(3, 2), stride=(1, 2), padding=(1, 1), dilation=(2, 1)),
]


@pytest.mark.parametrize("case", POOL_CASES, ids=str)
@pytest.mark.parametrize("batched", [True, False])
def test_max_pool2d_matches_torch_and_gradcheck(case, batched):
    x = _distinct(2, 3, 9, 8) if batched else _distinct(3, 9, 8)
    y, idx = P.max_pool2d(x, return_indices=True, **case)
    y_ref, idx_ref = F.max_pool2d(x, return_indices=True, **case)
    torch.testing.assert_close(y, y_ref, rtol=0, atol=0)
    assert torch.equal(idx, idx_ref)
    assert not idx.requires_grad
    g = torch.randn_like(y)
    (gx,) = torch.autograd.grad(y, x, g)
    (gx_ref,) = torch.autograd.grad(y_ref, x, g)
    torch.testing.assert_close(gx, gx_ref, rtol=0, atol=0)
    assert torch.autograd.gradcheck(lambda t: P.max_pool2d(t, **case), (x,))


@pytest.mark.parametrize("case", POOL_CASES, ids=str)
@pytest.mark.parametrize("grad", [True, False])
def test_max_pool2d_opcheck(case, grad):
    x = _distinct(2, 3, 9, 8, grad=grad).float()
    k = P._pair(case["kernel_size"], "k")
    s = P._pair(case.get("stride", case["kernel_size"]), "s")
    args = (
        k,
        s,
        P._pair(case.get("padding", 0), "p"),
        P._pair(case.get("dilation", 1), "d"),
        case.get("ceil_mode", False),
    )
    opcheck(torch.ops.pycnnrnn.max_pool2d_with_indices.default, (x, *args))
    y, idx = torch.ops.pycnnrnn.max_pool2d_with_indices(x.detach(), *args)
    opcheck(torch.ops.pycnnrnn.max_pool2d_backward.default, (torch.randn_like(y), x.detach(), idx, *args))


@pytest.mark.parametrize("output_size", [None, (9, 8)])
def test_max_unpool2d_matches_torch_gradcheck_opcheck(output_size):
    x = _distinct(2, 3, 9, 8, grad=False)
    y, idx = F.max_pool2d(x, 2, return_indices=True)
    y = y.detach().requires_grad_(True)
    out = P.max_unpool2d(y, idx, 2, output_size=output_size)
    ref = F.max_unpool2d(y, idx, 2, output_size=output_size)
    torch.testing.assert_close(out, ref, rtol=0, atol=0)
    assert torch.autograd.gradcheck(lambda t: P.max_unpool2d(t, idx, 2, output_size=output_size), (y,))
    size = [] if output_size is None else list(output_size)
    opcheck(torch.ops.pycnnrnn.max_unpool2d.default, (y.float(), idx, [2, 2], [2, 2], [0, 0], size))


@pytest.mark.parametrize("lead", [(5,), (2, 3), ()], ids=str)
@pytest.mark.parametrize("bias", [True, False])
def test_linear_matches_torch_gradcheck_opcheck(lead, bias):
    x, w = _r(*lead, 7), _r(4, 7)
    b = _r(4) if bias else None
    torch.testing.assert_close(P.linear(x, w, b), F.linear(x, w, b))
    inputs = tuple(t for t in (x, w, b) if t is not None)
    assert torch.autograd.gradcheck(lambda *t: P.linear(t[0], t[1], t[2] if bias else None), inputs)
    opcheck(torch.ops.pycnnrnn.linear.default, (x.float(), w.float(), None if b is None else b.float()))
    gy = torch.randn(*lead, 4)
    opcheck(
        torch.ops.pycnnrnn.linear_backward.default,
        (gy, x.detach().float(), w.detach().float(), [True, True, bias]),
    )


# ---- recurrent ------------------------------------------------------------------------------------
RNN_CASES = [
    dict(mode="lstm"),
    dict(mode="lstm", num_layers=2, bidirectional=True),
    dict(mode="lstm", proj_size=2, batch_first=True),
    dict(mode="gru", num_layers=2),
    dict(mode="gru", bidirectional=True, bias=False),
    dict(mode="rnn_tanh", batch_first=True),
    dict(mode="rnn_relu", num_layers=2),
]
_TORCH_RNN = {"lstm": torch.nn.LSTM, "gru": torch.nn.GRU, "rnn_tanh": torch.nn.RNN, "rnn_relu": torch.nn.RNN}


def torch_rnn(case, input_size=3, hidden=4, dtype=D):
    kw = {k: v for k, v in case.items() if k != "mode"}
    if case["mode"].startswith("rnn_"):
        kw["nonlinearity"] = case["mode"][4:]
    torch.manual_seed(0)
    return _TORCH_RNN[case["mode"]](input_size, hidden, **kw).to(dtype)


def rnn_kwargs(case):
    return {k: v for k, v in case.items() if k != "mode"}


@pytest.mark.parametrize("case", RNN_CASES, ids=str)
@pytest.mark.parametrize("with_hx", [False, True])
def test_rnn_matches_torch_and_gradcheck(case, with_hx):
    m = torch_rnn(case)
    bf = case.get("batch_first", False)
    x = _r(3, 5, 3) if bf else _r(5, 3, 3)
    D_ = 2 if case.get("bidirectional") else 1
    L = case.get("num_layers", 1) * D_
    K = case.get("proj_size", 0) or 4
    hx = None
    if with_hx:
        hx = (_r(L, 3, K), _r(L, 3, 4)) if case["mode"] == "lstm" else _r(L, 3, K)
    ref_out, ref_h = m(x, hx)
    params = list(m._flat_weights)
    out, h_n, c_n = P.rnn(case["mode"], x, hx, params, **rnn_kwargs(case))
    torch.testing.assert_close(out, ref_out)
    if case["mode"] == "lstm":
        torch.testing.assert_close(h_n, ref_h[0])
        torch.testing.assert_close(c_n, ref_h[1])
        ref_all = (ref_out, *ref_h)
        ours_all = (out, h_n, c_n)
    else:
        assert c_n is None
        torch.testing.assert_close(h_n, ref_h)
        ref_all, ours_all = (ref_out, ref_h), (out, h_n)
    wrt = [x, *params] + (list(hx if isinstance(hx, tuple) else (hx,)) if with_hx else [])
    gs = [torch.randn_like(t) for t in ref_all]
    for a, e in zip(torch.autograd.grad(ours_all, wrt, gs), torch.autograd.grad(ref_all, wrt, gs)):
        torch.testing.assert_close(a, e)

    n = len(params)

    def f(x, *rest):
        ps = list(rest[:n])
        h = None
        if with_hx:
            h = (rest[n], rest[n + 1]) if case["mode"] == "lstm" else rest[n]
        o, hn, cn = P.rnn(case["mode"], x, h, ps, **rnn_kwargs(case))
        return (o, hn) if cn is None else (o, hn, cn)

    assert torch.autograd.gradcheck(f, tuple(wrt), atol=1e-6)


def test_rnn_unbatched_and_lengths_match_torch():
    m = torch_rnn(dict(mode="lstm", num_layers=2))
    x = _r(6, 3)
    out, h_n, c_n = P.rnn("lstm", x, None, list(m._flat_weights), num_layers=2)
    ref_out, (rh, rc) = m(x)
    torch.testing.assert_close(out, ref_out)
    torch.testing.assert_close(h_n, rh)
    # lengths == PackedSequence semantics
    xb = _r(6, 3, 3)
    lengths = torch.tensor([6, 2, 4])
    packed = torch.nn.utils.rnn.pack_padded_sequence(xb, lengths, enforce_sorted=False)
    ref_p, (rh, rc) = m(packed)
    ref_pad, _ = torch.nn.utils.rnn.pad_packed_sequence(ref_p)
    out, h_n, c_n = P.rnn("lstm", xb, None, list(m._flat_weights), num_layers=2, lengths=lengths)
    torch.testing.assert_close(out, ref_pad)
    torch.testing.assert_close(h_n, rh)
    torch.testing.assert_close(c_n, rc)


@pytest.mark.parametrize("case", [RNN_CASES[0], RNN_CASES[1], RNN_CASES[3]], ids=str)
@pytest.mark.parametrize("grad", [True, False])
def test_rnn_opcheck(case, grad):
    m = torch_rnn(case, dtype=torch.float32)
    kw = rnn_kwargs(case)
    x = torch.randn(5, 2, 3, requires_grad=grad)
    params = [p.detach().requires_grad_(grad) for p in m._flat_weights]
    args = (
        case["mode"], x, None, None, params, kw.get("num_layers", 1), kw.get("bias", True), 0.0, False,
        kw.get("bidirectional", False), False, kw.get("proj_size", 0), None, 0, grad,
    )  # fmt: skip
    opcheck(torch.ops.pycnnrnn.rnn.default, args)
    out, h_n, c_n, saved = torch.ops.pycnnrnn.rnn(*args[:-1], True)
    bwd_args = (
        case["mode"], torch.randn_like(out), torch.randn_like(h_n),
        torch.randn_like(c_n) if case["mode"] == "lstm" else None,
        x.detach(), None, None, [p.detach() for p in params], saved,
        kw.get("num_layers", 1), kw.get("bias", True), kw.get("bidirectional", False), False, kw.get("proj_size", 0),
        None,
    )  # fmt: skip
    opcheck(torch.ops.pycnnrnn.rnn_backward.default, bwd_args)


def test_rnn_dropout_training_is_seeded_and_differentiable():
    m = torch_rnn(dict(mode="lstm", num_layers=2, dropout=0.5))
    x = _r(4, 2, 3)
    params = list(m._flat_weights)
    torch.manual_seed(3)
    a = P.rnn("lstm", x, None, params, num_layers=2, dropout=0.5, training=True)[0]
    torch.manual_seed(3)
    b = P.rnn("lstm", x, None, params, num_layers=2, dropout=0.5, training=True)[0]
    torch.testing.assert_close(a, b)
    c = P.rnn("lstm", x, None, params, num_layers=2, dropout=0.5, training=False)[0]
    assert not torch.allclose(a, c)
    a.sum().backward()
    assert x.grad is not None and torch.isfinite(x.grad).all()


# ---- autograd contract ----------------------------------------------------------------------------
def test_double_backward_raises_clearly():
    x, w, b = conv_args(CONV_CASES[0])
    (gx,) = torch.autograd.grad(P.conv2d(x, w, b, padding=1).sum(), x, create_graph=True)
    with pytest.raises(RuntimeError, match="(?i)autograd|backward|differentiate twice"):
        torch.autograd.grad(gx.sum(), w)
    with pytest.raises(RuntimeError, match="(?i)autograd|backward"):
        torch.autograd.gradgradcheck(lambda t: P.linear(t, w[:, 0, 0, :2].contiguous()), (_r(3, 2),))


def test_only_needed_grads_are_computed(monkeypatch):
    calls = []
    real = P._conv.conv2d_backward

    def spy(*args):
        calls.append(list(args[-1]))
        return real(*args)

    monkeypatch.setattr(P._conv, "conv2d_backward", spy)
    x, w, b = conv_args(CONV_CASES[0])
    x.requires_grad_(False)
    b.requires_grad_(False)
    P.conv2d(x, w, b, padding=1).sum().backward()
    assert calls == [[False, True, False]]
    assert x.grad is None and b.grad is None and w.grad is not None

    lcalls = []
    lreal = P._lin.linear_backward
    monkeypatch.setattr(P._lin, "linear_backward", lambda *a: lcalls.append(list(a[-1])) or lreal(*a))
    xi = _r(3, 5)
    wl = _r(2, 5, grad=False)
    P.linear(xi, wl, None).sum().backward()
    assert lcalls == [[True, False, False]]


def test_noncontiguous_grad_output_and_inputs():
    x, w, b = conv_args(CONV_CASES[1])
    out = P.conv2d(x, w, b, stride=2)
    big = torch.randn(*out.shape[:-1], 2 * out.shape[-1], dtype=D)
    g = big[..., ::2]
    assert not g.is_contiguous()
    ga = torch.autograd.grad(out, (x, w, b), g)
    gb = torch.autograd.grad(P.conv2d(x, w, b, stride=2), (x, w, b), g.contiguous())
    for a, e in zip(ga, gb):
        torch.testing.assert_close(a, e, rtol=0, atol=0)
    # expanded (zero-stride) grad and channels_last / transposed inputs
    ge = torch.ones(1, dtype=D).expand(out.shape)
    torch.testing.assert_close(torch.autograd.grad(P.conv2d(x, w, b, stride=2), x, ge)[0],
                               torch.autograd.grad(torch_conv(x, w, b, stride=2), x, ge)[0])  # fmt: skip
    xc = x.detach().to(memory_format=torch.channels_last)
    torch.testing.assert_close(P.conv2d(xc, w, b, stride=2), torch_conv(x, w, b, stride=2))
    xt = _r(7, 3).t()
    wl = _r(4, 7)
    torch.testing.assert_close(P.linear(xt, wl), F.linear(xt, wl))


def test_undefined_grads_lstm_c_n_unused():
    m = torch_rnn(dict(mode="lstm"))
    x = _r(5, 3, 3)
    params = list(m._flat_weights)
    out, h_n, c_n = P.rnn("lstm", x, None, params)
    ref_out, (rh, rc) = m(x)
    # only h_n used: grads of output and c_n are undefined and must act as zeros
    ga = torch.autograd.grad(h_n.sum(), [x, *params])
    gb = torch.autograd.grad(rh.sum(), [x, *params])
    for a, e in zip(ga, gb):
        torch.testing.assert_close(a, e)
    # pool: the indices output carries no gradient
    xp = _distinct(1, 1, 4, 4)
    y, idx = P.max_pool2d(xp, 2, return_indices=True)
    (g,) = torch.autograd.grad(y.sum(), xp)
    assert g.sum().item() == 4


def test_eager_path_equals_the_op_path():
    """Plain eager calls run through a torch.autograd.Function (no dispatcher round trip); under
    a dispatch mode (as under torch.compile, tracing, functorch) they go through torch.ops. Both
    run the same kernels: outputs and every gradient bit-identical."""
    from torch.utils._python_dispatch import TorchDispatchMode

    class Passthrough(TorchDispatchMode):
        def __torch_dispatch__(self, func, types, args=(), kwargs=None):
            return func(*args, **(kwargs or {}))

    x, w, b = conv_args(CONV_CASES[0], dtype=torch.float32)
    xl, wl, bl = _r(4, 6, dtype=torch.float32), _r(5, 6, dtype=torch.float32), _r(5, dtype=torch.float32)
    m = torch_rnn(dict(mode="lstm", num_layers=2, bidirectional=True)).float()
    params = list(m._flat_weights)
    xr, h0, c0 = (
        _r(5, 3, 3, dtype=torch.float32),
        _r(4, 3, 4, dtype=torch.float32),
        _r(4, 3, 4, dtype=torch.float32),
    )
    calls = {
        "conv2d": (lambda: (P.conv2d(x, w, b, padding=1, stride=(1, 2)),), (x, w, b)),
        "max_pool2d": (lambda: (P.max_pool2d(x, 3, 2, 1),), (x,)),
        "linear": (lambda: (P.linear(xl, wl, bl),), (xl, wl, bl)),
        "lstm": (lambda: P.rnn("lstm", xr, (h0, c0), params, 2, bidirectional=True), (xr, h0, c0, *params)),
    }
    for name, (fn, inputs) in calls.items():
        ys = fn()
        assert "Eager" in type(ys[0].grad_fn).__name__, (name, type(ys[0].grad_fn))
        gs = [torch.randn_like(y) for y in ys]
        grads = torch.autograd.grad(ys, inputs, gs)
        with Passthrough():
            ys_op = fn()
            assert "Eager" not in type(ys_op[0].grad_fn).__name__, (name, type(ys_op[0].grad_fn))
            grads_op = torch.autograd.grad(ys_op, inputs, gs)
        for a, e in zip((*ys, *grads), (*ys_op, *grads_op)):
            torch.testing.assert_close(a, e, rtol=0, atol=0)


def test_in_place_change_after_forward_is_caught():
    x, w, b = conv_args(CONV_CASES[0])
    xi = x.detach().clone().requires_grad_(False)
    out = P.conv2d(xi, w, b, padding=1)
    xi.add_(1)
    with pytest.raises(RuntimeError, match="modified by an inplace operation"):
        out.sum().backward()


class _Sym(int):
    """An int that the ops' shape helpers treat as symbolic (forces the Python mirror)."""


def test_fake_shape_formulas_match_the_cpp_ones():
    import itertools

    # symbolic sizes take the Python mirrors of csrc/core/shapes.h: they must agree everywhere
    for size, k, s, p, d in itertools.product(range(1, 12), (1, 2, 3), (1, 2, 3), (0, 1), (1, 2)):
        assert P._conv_out(_Sym(size), k, s, p, p + 1, d) == _C.conv_output_size(size, k, s, p, p + 1, d)
        assert P._unpool_out(_Sym(size), k, s, p) == _C.unpool_output_size(size, k, s, p)
        for ceil in (False, True):
            assert P._pool_out(_Sym(size), k, s, p, d, ceil) == _C.pool_output_size(size, k, s, p, d, ceil)
    for mode in ("lstm", "gru", "rnn_tanh", "rnn_relu"):
        for proj in (0, 2) if mode == "lstm" else (0,):
            want = _C.rnn_workspace_size(P._rnn.MODES[mode], 3, 2, 5, proj)
            assert P._workspace_size(mode, _Sym(3), 2, 5, proj) == want


# ---- torch.compile ------------------------------------------------------------------------------
class _SmallNet(torch.nn.Module):
    def __init__(self):
        super().__init__()
        self.w1 = torch.nn.Parameter(torch.randn(4, 3, 3, 3) * 0.3)
        self.b1 = torch.nn.Parameter(torch.zeros(4))
        lstm = torch.nn.LSTM(4, 5)
        self.lstm_params = torch.nn.ParameterList(lstm._flat_weights)
        self.fc_w = torch.nn.Parameter(torch.randn(3, 10) * 0.3)

    def forward(self, x):
        y = torch.relu(P.conv2d(x, self.w1, self.b1, padding=1))
        y = P.max_pool2d(y, 2)
        seq = y.flatten(2).permute(2, 0, 1)  # (H*W, N, C)
        _, h, c = P.rnn("lstm", seq, None, list(self.lstm_params))
        return P.linear(torch.cat([h[0], c[0]], 1), self.fc_w)


def test_compile_fullgraph_forward_backward_equals_eager():
    torch.manual_seed(0)
    net = _SmallNet()
    x = torch.randn(2, 3, 8, 8)
    out = net(x)
    grads = torch.autograd.grad(out.square().sum(), list(net.parameters()))
    compiled = torch.compile(net, fullgraph=True, backend="aot_eager")
    out_c = compiled(x)
    grads_c = torch.autograd.grad(out_c.square().sum(), list(net.parameters()))
    torch.testing.assert_close(out_c, out, rtol=0, atol=0)
    for a, e in zip(grads_c, grads):
        torch.testing.assert_close(a, e, rtol=0, atol=0)


@pytest.mark.slow
def test_compile_inductor_fullgraph_equals_eager():
    torch.manual_seed(0)
    net = _SmallNet()
    x = torch.randn(2, 3, 8, 8)
    out = net(x)
    grads = torch.autograd.grad(out.square().sum(), list(net.parameters()))
    compiled = torch.compile(net, fullgraph=True)
    out_c = compiled(x)
    grads_c = torch.autograd.grad(out_c.square().sum(), list(net.parameters()))
    torch.testing.assert_close(out_c, out)
    for a, e in zip(grads_c, grads):
        torch.testing.assert_close(a, e)


# ---- CUDA tensors (run only where pycnnrnn's CUDA backend and a GPU are present) ---------------
@pytest.mark.cuda
@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_cuda_ops_match_torch(dtype):
    dev = "cuda"
    torch.backends.cudnn.allow_tf32 = False  # the reference conv in strict float32 (cuDNN's default is TF32)
    torch.backends.cuda.matmul.allow_tf32 = False
    tol = dict(rtol=1e-4, atol=1e-4) if dtype == torch.float32 else {}
    x = torch.randn(2, 4, 9, 8, dtype=dtype, device=dev, requires_grad=True)
    w = torch.randn(6, 4, 3, 3, dtype=dtype, device=dev, requires_grad=True)
    b = torch.randn(6, dtype=dtype, device=dev, requires_grad=True)
    out, ref = P.conv2d(x, w, b, padding=1, stride=(1, 2)), F.conv2d(x, w, b, padding=1, stride=(1, 2))
    torch.testing.assert_close(out, ref, **tol)
    g = torch.randn_like(ref)
    for a, e in zip(torch.autograd.grad(out, (x, w, b), g), torch.autograd.grad(ref, (x, w, b), g)):
        torch.testing.assert_close(a, e, **tol)
    xp = _distinct(2, 3, 9, 8).to(dtype=dtype, device=dev).detach().requires_grad_(True)
    (y, idx), (yr, ir) = (
        P.max_pool2d(xp, 3, 2, 1, return_indices=True),
        F.max_pool2d(xp, 3, 2, 1, return_indices=True),
    )
    torch.testing.assert_close(y, yr, rtol=0, atol=0)
    assert torch.equal(idx, ir)
    gp = torch.randn_like(y)
    torch.testing.assert_close(torch.autograd.grad(y, xp, gp)[0], torch.autograd.grad(yr, xp, gp)[0], **tol)
    xl = torch.randn(3, 5, 7, dtype=dtype, device=dev, requires_grad=True)
    wl = torch.randn(4, 7, dtype=dtype, device=dev, requires_grad=True)
    out, ref = P.linear(xl, wl, b[:4]), F.linear(xl, wl, b[:4])
    torch.testing.assert_close(out, ref, **tol)
    g = torch.randn_like(ref)
    for a, e in zip(torch.autograd.grad(out, (xl, wl), g), torch.autograd.grad(ref, (xl, wl), g)):
        torch.testing.assert_close(a, e, **tol)
