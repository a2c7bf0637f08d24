"""pycnnrnn.torch.nn drop-ins and convert(): same constructor/state_dict as torch.nn, same
outputs and gradients, PackedSequence, cells; DDP (2 gloo processes) equals single-process."""

from __future__ import annotations

import pytest

torch = pytest.importorskip("torch")

from torch import nn  # noqa: E402
from torch.nn.utils.rnn import pack_padded_sequence, pad_packed_sequence  # noqa: E402

import pycnnrnn.torch as pt  # noqa: E402
import pycnnrnn.torch.nn as pnn  # noqa: E402

pytestmark = pytest.mark.torch
D = torch.float64


def _pair_modules(cls_torch, cls_ours, *args, dtype=D, **kwargs):
    torch.manual_seed(0)
    ref = cls_torch(*args, **kwargs).to(dtype)
    ours = cls_ours(*args, **kwargs).to(dtype)
    ours.load_state_dict(ref.state_dict())
    assert list(ours.state_dict()) == list(ref.state_dict())
    assert isinstance(ours, cls_torch)
    return ref, ours


def _grads_equal(ref_out, our_out, ref_mod, our_mod, inputs=()):
    ref_out = ref_out if isinstance(ref_out, (tuple, list)) else (ref_out,)
    our_out = our_out if isinstance(our_out, (tuple, list)) else (our_out,)
    for a, e in zip(our_out, ref_out):
        torch.testing.assert_close(a, e)
    gs = [torch.randn_like(t) for t in ref_out]
    wrt_ref = [*ref_mod.parameters(), *inputs]
    wrt_our = [*our_mod.parameters(), *inputs]
    ours = torch.autograd.grad(our_out, wrt_our, gs, retain_graph=True)  # inputs may share a graph
    for a, e in zip(ours, torch.autograd.grad(ref_out, wrt_ref, gs)):
        torch.testing.assert_close(a, e)


@pytest.mark.parametrize(
    "kw",
    [
        dict(kernel_size=3, padding=1),
        dict(kernel_size=3, stride=2, bias=False),
        dict(kernel_size=(3, 2), padding="same", dilation=2, padding_mode="reflect"),
        dict(kernel_size=3, padding=2, groups=2, padding_mode="circular"),
        dict(kernel_size=1, padding="valid"),
    ],
    ids=str,
)
def test_conv2d_module(kw):
    ref, ours = _pair_modules(nn.Conv2d, pnn.Conv2d, 4, 6, **kw)
    x = torch.randn(2, 4, 9, 8, dtype=D, requires_grad=True)
    _grads_equal(ref(x), ours(x), ref, ours, (x,))
    assert repr(ours) == repr(ref)


@pytest.mark.parametrize(
    "kw",
    [dict(kernel_size=2), dict(kernel_size=3, stride=2, padding=1, ceil_mode=True, return_indices=True)],
    ids=str,
)
def test_maxpool_and_unpool_modules(kw):
    ref, ours = _pair_modules(nn.MaxPool2d, pnn.MaxPool2d, **kw)
    x = (torch.randperm(2 * 3 * 9 * 8).to(D) / 100).reshape(2, 3, 9, 8).requires_grad_(True)
    r, o = ref(x), ours(x)
    if kw.get("return_indices"):
        assert torch.equal(r[1], o[1])
        up_ref = nn.MaxUnpool2d(3, 2, 1)(r[0], r[1], output_size=x.shape)
        up_ours = pnn.MaxUnpool2d(3, 2, 1)(o[0], o[1], output_size=x.shape)
        _grads_equal(up_ref, up_ours, ref, ours, (x,))
    else:
        _grads_equal(r, o, ref, ours, (x,))


def test_linear_module():
    ref, ours = _pair_modules(nn.Linear, pnn.Linear, 5, 3)
    x = torch.randn(4, 2, 5, dtype=D, requires_grad=True)
    _grads_equal(ref(x), ours(x), ref, ours, (x,))


RNN_MODULES = [
    (nn.LSTM, pnn.LSTM, dict(num_layers=2, bidirectional=True)),
    (nn.LSTM, pnn.LSTM, dict(batch_first=True, proj_size=3)),
    (nn.GRU, pnn.GRU, dict(num_layers=2)),
    (nn.GRU, pnn.GRU, dict(batch_first=True, bidirectional=True, bias=False)),
    (nn.RNN, pnn.RNN, dict(nonlinearity="relu")),
    (nn.RNN, pnn.RNN, dict(num_layers=2, bidirectional=True)),
]


@pytest.mark.parametrize("cls_t,cls_o,kw", RNN_MODULES, ids=lambda v: getattr(v, "__name__", str(v)))
def test_rnn_modules(cls_t, cls_o, kw):
    ref, ours = _pair_modules(cls_t, cls_o, 3, 5, **kw)
    x = torch.randn(4, 3, 3, dtype=D, requires_grad=True)
    _grads_equal(ref(x)[0], ours(x)[0], ref, ours, (x,))
    # with initial states and the final states used
    L = kw.get("num_layers", 1) * (2 if kw.get("bidirectional") else 1)
    K = kw.get("proj_size", 0) or 5
    h0 = torch.randn(L, 4 if kw.get("batch_first") else 3, K, dtype=D, requires_grad=True)
    B = h0.shape[1]
    x = torch.randn(B, 4, 3, dtype=D) if kw.get("batch_first") else torch.randn(4, B, 3, dtype=D)
    if cls_t is nn.LSTM:
        c0 = torch.randn(L, B, 5, dtype=D, requires_grad=True)
        ro, (rh, rc) = ref(x, (h0, c0))
        oo, (oh, oc) = ours(x, (h0, c0))
        _grads_equal((ro, rh, rc), (oo, oh, oc), ref, ours, (h0, c0))
    else:
        ro, rh = ref(x, h0)
        oo, oh = ours(x, h0)
        _grads_equal((ro, rh), (oo, oh), ref, ours, (h0,))
    # unbatched
    xu = torch.randn(4, 3, dtype=D)
    torch.testing.assert_close(ours(xu)[0], ref(xu)[0])


@pytest.mark.parametrize("enforce_sorted", [True, False])
@pytest.mark.parametrize("cls_t,cls_o", [(nn.LSTM, pnn.LSTM), (nn.GRU, pnn.GRU)])
def test_packed_sequence(cls_t, cls_o, enforce_sorted):
    ref, ours = _pair_modules(cls_t, cls_o, 3, 4, num_layers=2, bidirectional=True)
    lengths = torch.tensor([5, 4, 2]) if enforce_sorted else torch.tensor([2, 5, 4])
    x = torch.randn(5, 3, 3, dtype=D, requires_grad=True)
    packed = pack_padded_sequence(x, lengths, enforce_sorted=enforce_sorted)
    h0 = torch.randn(4, 3, 4, dtype=D)
    hx = (h0, torch.randn(4, 3, 4, dtype=D)) if cls_t is nn.LSTM else h0
    r_out, r_h = ref(packed, hx)
    o_out, o_h = ours(packed, hx)
    assert torch.equal(o_out.batch_sizes, r_out.batch_sizes)
    for a, e in (
        (o_out.sorted_indices, r_out.sorted_indices),
        (o_out.unsorted_indices, r_out.unsorted_indices),
    ):
        assert (a is None and e is None) or torch.equal(a, e)
    r_flat = (r_out.data, *(r_h if isinstance(r_h, tuple) else (r_h,)))
    o_flat = (o_out.data, *(o_h if isinstance(o_h, tuple) else (o_h,)))
    _grads_equal(r_flat, o_flat, ref, ours, (x,))
    pad_o, len_o = pad_packed_sequence(o_out)
    pad_r, len_r = pad_packed_sequence(r_out)
    torch.testing.assert_close(pad_o, pad_r)
    assert torch.equal(len_o, len_r)


@pytest.mark.parametrize(
    "cls_t,cls_o,kw",
    [
        (nn.LSTMCell, pnn.LSTMCell, {}),
        (nn.GRUCell, pnn.GRUCell, {}),
        (nn.RNNCell, pnn.RNNCell, dict(nonlinearity="relu")),
        (nn.RNNCell, pnn.RNNCell, dict(bias=False)),
    ],
    ids=str,
)
@pytest.mark.parametrize("batched", [True, False])
@pytest.mark.parametrize("with_hx", [True, False])
def test_cells(cls_t, cls_o, kw, batched, with_hx):
    ref, ours = _pair_modules(cls_t, cls_o, 3, 4, **kw)
    lead = (2,) if batched else ()
    x = torch.randn(*lead, 3, dtype=D, requires_grad=True)
    hx = None
    extra: tuple = (x,)
    if with_hx:
        h = torch.randn(*lead, 4, dtype=D, requires_grad=True)
        if cls_t is nn.LSTMCell:
            c = torch.randn(*lead, 4, dtype=D, requires_grad=True)
            hx, extra = (h, c), (x, h, c)
        else:
            hx, extra = h, (x, h)
    _grads_equal(ref(x, hx), ours(x, hx), ref, ours, extra)


def test_convert_swaps_in_place_and_reports():
    from pycnnrnn.train.model import VqaModel

    torch.manual_seed(0)
    model = VqaModel()
    ref = VqaModel()
    ref.load_state_dict(model.state_dict())
    model.fc1 = _Custom(model.fc1.in_features, model.fc1.out_features)  # a user subclass: left alone
    ref.fc1 = _Custom(ref.fc1.in_features, ref.fc1.out_features)
    ref.fc1.load_state_dict(model.fc1.state_dict())
    params_before = [id(p) for p in model.parameters()]
    out, report = pt.convert(model)
    assert out is model
    assert [id(p) for p in model.parameters()] == params_before  # in place: optimizers keep working
    assert report.counts() == {"Conv2d": 3, "MaxPool2d": 3, "Linear": 3, "LSTM": 1}
    assert type(model.qst_encoder.lstm) is pnn.LSTM and type(model.fc1) is _Custom
    assert "swapped 10 modules" in str(report)
    assert list(model.state_dict()) == list(ref.state_dict())
    model.eval()
    ref.eval()
    img, q = torch.randn(3, 3, 32, 32), torch.randint(0, 20, (3, 10))
    torch.testing.assert_close(model(img, q), ref(img, q), rtol=1e-4, atol=1e-5)
    # a second convert is a no-op; a module on an unsupported dtype is reported, not swapped
    assert pt.convert(model)[1].swapped == []
    half = nn.Sequential(nn.Linear(2, 2).half())
    rep = pt.convert(half)[1]
    assert rep.swapped == [] and "float16" in rep.skipped[0][2]


class _Custom(nn.Linear):
    def forward(self, x):
        return super().forward(x) * 1.0


def test_torchvision_style_vgg_converts():
    cfg = [8, "M", 16, "M"]
    layers: list[nn.Module] = []
    c = 3
    for v in cfg:
        if v == "M":
            layers.append(nn.MaxPool2d(2, 2))
        else:
            layers += [nn.Conv2d(c, v, 3, padding=1), nn.ReLU(inplace=True)]
            c = v
    model = nn.Sequential(
        nn.Sequential(*layers),
        nn.AdaptiveAvgPool2d((2, 2)),
        nn.Flatten(),
        nn.Linear(64, 10),
        nn.Dropout(),
        nn.Linear(10, 5),
    ).eval()
    x = torch.randn(2, 3, 16, 16)
    want = model(x)
    report = pt.convert(model)[1]
    assert report.counts() == {"Conv2d": 2, "MaxPool2d": 2, "Linear": 2}
    torch.testing.assert_close(model(x), want, rtol=1e-4, atol=1e-5)


# ---- DDP: 2 gloo processes vs one process on the full batch ----------------------------------
@pytest.mark.slow
def test_ddp_two_processes_gloo_gradients_equal_single_process():
    import socket

    import torch.multiprocessing as mp

    # the worker lives in tests/ddp_worker.py: spawned children import it by name
    from ddp_worker import CnnLstm, ddp_worker

    torch.manual_seed(0)
    x = torch.randn(8, 3, 8, 8, dtype=D)
    y = torch.randint(0, 3, (8,))
    ref = CnnLstm().double()
    state = {k: v.clone() for k, v in ref.state_dict().items()}
    pt.convert(ref)
    nn.functional.cross_entropy(ref(x), y).backward()
    want = {k: p.grad for k, p in ref.named_parameters()}

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    ctx = mp.get_context("spawn")
    q = ctx.SimpleQueue()
    mp.start_processes(ddp_worker, args=(2, port, x, y, state, q), nprocs=2, join=True, start_method="spawn")
    got = q.get()
    assert set(got) == set(want)
    for k in want:
        torch.testing.assert_close(torch.from_numpy(got[k]), want[k], msg=k)
