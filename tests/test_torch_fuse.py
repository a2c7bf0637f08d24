"""convert(model, fuse=True): Conv2d -> ReLU (-> MaxPool2d) runs in an nn.Sequential fused into
the Conv2d. Outputs and every gradient bit-identical to the unfused pycnnrnn modules (and close to
torch), on the eager path and on the op path, state_dict keys unchanged, hooks respected."""

from __future__ import annotations

import copy

import pytest

torch = pytest.importorskip("torch")

from torch import nn  # noqa: E402
from torch.overrides import TorchFunctionMode  # noqa: E402

import pycnnrnn.torch as pt  # noqa: E402
import pycnnrnn.torch.nn as pnn  # noqa: E402

pytestmark = pytest.mark.torch


def _net(dtype):
    torch.manual_seed(0)
    return nn.Sequential(
        nn.Conv2d(3, 8, 3, padding=1),
        nn.ReLU(),
        nn.MaxPool2d(2),  # fused: conv + relu + pool
        nn.Conv2d(8, 6, 3, padding=(1, 2), dilation=(1, 2), padding_mode="reflect"),
        nn.ReLU(inplace=True),
        nn.MaxPool2d(3, stride=2, padding=1, ceil_mode=True),  # overlapping windows, -inf padding
        nn.Conv2d(6, 5, 2),
        nn.ReLU(),  # fused: conv + relu (a Tanh follows, not a pooling)
        nn.Tanh(),
        nn.Conv2d(5, 4, 1, stride=1),
        nn.ReLU(),
        nn.MaxPool2d(2, return_indices=True),  # returns indices: not fused into the conv
    ).to(dtype)


def _run(model, x):
    y, idx = model(x)
    g = torch.randn_like(y)
    grads = torch.autograd.grad(y, [x, *model.parameters()], g)
    return y, idx, grads


class _OpPath(TorchFunctionMode):
    """A function mode on the stack sends pycnnrnn.torch through torch.ops.pycnnrnn.* (not fused)."""

    def __torch_function__(self, func, types, args=(), kwargs=None):
        return func(*args, **(kwargs or {}))


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
@pytest.mark.parametrize("shape", [(2, 3, 13, 11), (3, 12, 12)])
def test_fused_equals_unfused_and_torch(dtype, shape):
    ref = _net(dtype)
    plain = pt.convert(copy.deepcopy(ref))[0]
    fused, report = pt.convert(copy.deepcopy(ref), fuse=True)
    assert report.fused == [("0", "1", "2"), ("3", "4", "5"), ("6", "7"), ("9", "10")]
    assert fused[0].fused_relu and fused[0].fused_pool == (2, 2, 0, 1, False)
    assert fused[6].fused_relu and fused[6].fused_pool is None
    assert fused[9].fused_relu and fused[9].fused_pool is None  # the pooling keeps its indices
    assert [type(m) for m in fused][:3] == [pnn.Conv2d, nn.Identity, nn.Identity]
    assert type(fused[11]) is pnn.MaxPool2d
    assert "fused=ReLU+MaxPool2d" in repr(fused) and "fused 0 + 1 + 2" in str(report)
    assert list(fused.state_dict()) == list(ref.state_dict())

    torch.manual_seed(1)
    x = torch.randn(*shape, dtype=dtype)
    x[..., :4, :4] = -1.0  # whole windows of negative conv outputs (ReLU zeros, ties at 0)
    x.requires_grad_(True)
    torch.manual_seed(2)
    y_p, i_p, g_p = _run(plain, x)
    torch.manual_seed(2)
    y_f, i_f, g_f = _run(fused, x)
    assert torch.equal(y_f, y_p) and torch.equal(i_f, i_p)
    for a, b in zip(g_f, g_p):
        assert torch.equal(a, b)
    torch.manual_seed(2)
    y_t, i_t, g_t = _run(ref, x)
    tol = {"rtol": 1e-4, "atol": 1e-5} if dtype == torch.float32 else {}
    torch.testing.assert_close(y_f, y_t, **tol)
    for a, b in zip(g_f, g_t):
        torch.testing.assert_close(a, b, **tol)
    # the op path (torch.compile, function modes, ...) runs the three ops: same numbers
    with _OpPath():
        torch.manual_seed(2)
        y_o, _, g_o = _run(fused, x)
    assert torch.equal(y_o, y_p)
    for a, b in zip(g_o, g_p):
        assert torch.equal(a, b)


def test_fused_nan_and_partial_grads_match_unfused():
    ref = _net(torch.float64)
    plain = pt.convert(copy.deepcopy(ref))[0]
    fused = pt.convert(copy.deepcopy(ref), fuse=True)[0]
    x = torch.randn(2, 3, 10, 10, dtype=torch.float64)
    x[0, 1, 3, 3] = float("nan")
    y_p, _ = plain(x)
    y_f, _ = fused(x)
    assert torch.equal(y_f.isnan(), y_p.isnan()) and torch.equal(y_f.nan_to_num(), y_p.nan_to_num())
    # weights only (input needs no grad), and inference without autograd
    for m in (plain, fused):
        m.zero_grad()
        m(x)[0].nan_to_num().sum().backward()
    for a, b in zip(fused.parameters(), plain.parameters()):
        assert torch.equal(a.grad.nan_to_num(), b.grad.nan_to_num())
    with torch.no_grad():
        assert torch.equal(fused(x)[0].nan_to_num(), y_p.nan_to_num())


def test_fuse_respects_hooks_and_string_padding():
    torch.manual_seed(0)
    net = nn.Sequential(
        nn.Conv2d(3, 4, 3, padding="same"), nn.ReLU(), nn.MaxPool2d(2), nn.Conv2d(4, 4, 3), nn.ReLU()
    )
    seen = []
    net[4].register_forward_hook(lambda m, i, o: seen.append(o.shape))
    x = torch.randn(1, 3, 8, 8, requires_grad=True)
    want = net(x)
    report = pt.convert(net, fuse=True)[1]
    assert report.fused == [("0", "1", "2")]  # the hooked ReLU stays a module of its own
    assert type(net[4]) is nn.ReLU and not net[3].fused_relu
    got = net(x)  # padding='same' in the fused conv (torch's split, as in the unfused op)
    torch.testing.assert_close(got, want, rtol=1e-5, atol=1e-6)
    assert len(seen) == 2
    # a second fuse finds nothing left to fuse
    assert pt.convert(net, fuse=True)[1].fused == []


def test_fused_double_backward_raises_clearly():
    net = pt.convert(
        nn.Sequential(nn.Conv2d(2, 3, 3, padding=1), nn.ReLU(), nn.MaxPool2d(2)).double(), fuse=True
    )[0]
    x = torch.randn(1, 2, 6, 6, dtype=torch.float64, requires_grad=True)
    (gx,) = torch.autograd.grad(net(x).sum(), x, create_graph=True)
    # the same gradient as without create_graph; a second derivative raises (not silently zero)
    torch.testing.assert_close(gx, torch.autograd.grad(net(x).sum(), x)[0], rtol=0, atol=0)
    assert gx.requires_grad
    with pytest.raises(RuntimeError, match="(?i)autograd|backward"):
        torch.autograd.grad(gx.sum(), net[0].weight)
