"""Recurrent layers (pycnnrnn.functional rnn_forward/rnn_backward, cells, nn modules) vs torch.

Every comparison runs torch in float32 and float64 on the same weights: float32 results must
pass the error gate (max error vs float64 <= 2x torch's own + floor); float64 results must match
torch float64 to ~1e-12. Gradients: input, h0, c0 and every weight and bias."""

from __future__ import annotations

import copy
import os
import subprocess
import sys

import numpy as np
import pytest

torch = pytest.importorskip("torch")
from torch.nn.utils.rnn import pack_padded_sequence, pad_packed_sequence  # noqa: E402

import pycnnrnn  # noqa: E402
from pycnnrnn import _C  # noqa: E402
from pycnnrnn.ops import rnn as R  # noqa: E402

from .helpers import assert_error_gate, layouts  # noqa: E402

MODES = ["lstm", "gru", "rnn_tanh", "rnn_relu"]


def torch_module(mode, I, H, L=1, bias=True, bidir=False, batch_first=False, proj=0, seed=0):
    torch.manual_seed(seed)
    kw = {}
    if mode == "lstm":
        cls = torch.nn.LSTM
        kw["proj_size"] = proj
    elif mode == "gru":
        cls = torch.nn.GRU
    else:
        cls = torch.nn.RNN
        kw["nonlinearity"] = "relu" if mode == "rnn_relu" else "tanh"
    m = cls(I, H, num_layers=L, bias=bias, batch_first=batch_first, bidirectional=bidir, **kw)
    with torch.no_grad():  # larger than torch's init so the gates are not all near-linear
        for p in m.parameters():
            p.uniform_(-0.5, 0.5)
    return m


def torch_run(m, mode, x, hx, grads=None, lengths=None):
    """Forward (and backward when grads=(gy, gh, gc)) in the module's dtype. Returns dict."""
    dt = next(m.parameters()).dtype
    xt = torch.tensor(x, dtype=dt, requires_grad=True)
    hxt = None
    if hx is not None:
        hxt = (
            tuple(torch.tensor(h, dtype=dt, requires_grad=True) for h in hx)
            if mode == "lstm"
            else torch.tensor(hx, dtype=dt, requires_grad=True)
        )
    inp = xt
    if lengths is not None:
        inp = pack_padded_sequence(xt, torch.tensor(lengths), batch_first=m.batch_first, enforce_sorted=False)
    y, hs = m(inp, hxt)
    if lengths is not None:
        y, _ = pad_packed_sequence(
            y, batch_first=m.batch_first, total_length=x.shape[1 if m.batch_first else 0]
        )
    h, c = hs if mode == "lstm" else (hs, None)
    res = {"y": y.detach().numpy(), "h": h.detach().numpy(), "c": None if c is None else c.detach().numpy()}
    if grads is not None:
        gy, gh, gc = grads
        loss = (y * torch.tensor(gy, dtype=dt)).sum() + (h * torch.tensor(gh, dtype=dt)).sum()
        if c is not None:
            loss = loss + (c * torch.tensor(gc, dtype=dt)).sum()
        wrt = [xt, *(hxt if mode == "lstm" else [hxt])] if hxt is not None else [xt]
        wrt += list(m._flat_weights)
        g = torch.autograd.grad(loss, wrt, allow_unused=True)
        g = [np.zeros(tuple(w.shape)) if gi is None else gi.numpy() for gi, w in zip(g, wrt)]
        res["dx"] = g[0]
        nh = (2 if mode == "lstm" else 1) if hxt is not None else 0
        res["dh"] = g[1 : 1 + nh]
        res["dp"] = g[1 + nh :]
    return res


def ours_run(m, mode, x, hx, grads=None, lengths=None, dtype=np.float32):
    params = [p.detach().numpy().astype(dtype) for p in m._flat_weights]
    x = x.astype(dtype)
    if hx is not None:
        hx = tuple(h.astype(dtype) for h in hx) if mode == "lstm" else hx.astype(dtype)
    cfg = dict(num_layers=m.num_layers, bias=m.bias, bidirectional=m.bidirectional, batch_first=m.batch_first,
               proj_size=getattr(m, "proj_size", 0), lengths=lengths)  # fmt: skip
    x0 = x.copy()
    y, h, c, saved = R.rnn_forward(mode, x, hx, params, need_saved=grads is not None, **cfg)
    res = {"y": y, "h": h, "c": c}
    if grads is not None:
        gy, gh, gc = (None if g is None else g.astype(dtype) for g in grads)
        dx, dh0, dc0, dp = R.rnn_backward(mode, gy, gh, gc, x, hx, params, saved, **cfg)
        res["dx"], res["dp"] = dx, dp
        res["dh"] = [] if hx is None else ([dh0, dc0] if mode == "lstm" else [dh0])
    assert np.array_equal(x, x0), "input modified"
    return res


def check(mode, m, x, hx, rng, with_grad=True, lengths=None):
    """Forward (+ backward) of ours in float32 and float64 against torch float32/float64."""
    m64 = copy.deepcopy(m).double()
    L, D = m.num_layers, 2 if m.bidirectional else 1
    K = getattr(m, "proj_size", 0) or m.hidden_size
    grads = None
    if with_grad:
        tb = x.shape[:2]
        gy = rng.standard_normal((*tb, D * K)) if x.ndim == 3 else rng.standard_normal((x.shape[0], D * K))
        hshape = (L * D, x.shape[1 if not m.batch_first else 0]) if x.ndim == 3 else (L * D,)
        gh = rng.standard_normal((*hshape, K))
        gc = rng.standard_normal((*hshape, m.hidden_size)) if mode == "lstm" else None
        if lengths is not None:  # positions past each length have no output to differentiate
            mask = np.arange(x.shape[1 if m.batch_first else 0])[:, None] < np.asarray(lengths)[None, :]
            gy = gy * (mask.T if m.batch_first else mask)[..., None]
        grads = (gy, gh, gc)
    ref = torch_run(m64, mode, x, hx, grads, lengths)
    t32 = torch_run(m, mode, x, hx, grads, lengths)
    o32 = ours_run(m, mode, x, hx, grads, lengths, np.float32)
    o64 = ours_run(m, mode, x, hx, grads, lengths, np.float64)
    keys = ["y", "h"] + (["c"] if mode == "lstm" else [])
    pairs = [(k, o32[k], ref[k], t32[k], o64[k]) for k in keys]
    if with_grad:
        pairs.append(("dx", o32["dx"], ref["dx"], t32["dx"], o64["dx"]))
        for i, (a, r, t, b) in enumerate(zip(o32["dh"], ref["dh"], t32["dh"], o64["dh"])):
            pairs.append((f"dh{i}", a, r, t, b))
        names = m._flat_weights_names
        for name, a, r, t, b in zip(names, o32["dp"], ref["dp"], t32["dp"], o64["dp"]):
            pairs.append((name, a, r, t, b))
    for name, a, r, t, b in pairs:
        assert a.dtype == np.float32 and b.dtype == np.float64, name
        assert a.shape == r.shape, f"{name}: shape {a.shape} != torch {r.shape}"
        assert_error_gate(a, r, t, floor=2e-6, what=f"{mode} {name} float32")
        np.testing.assert_allclose(b, r, rtol=1e-10, atol=1e-11, err_msg=f"{mode} {name} float64")


# ---- forward + backward over the option grid ------------------------------------------------
GRID = [  # num_layers, bidirectional, batch_first, with h0
    (1, False, False, False),
    (2, True, False, True),
    (3, False, True, True),
    (2, True, True, False),
]


@pytest.mark.parametrize("mode", MODES)
@pytest.mark.parametrize("L,bidir,bf,with_h0", GRID)
def test_stack_matches_torch(mode, L, bidir, bf, with_h0, rng):
    T, B, I, H = 5, 3, 7, 20  # H=20: one full vector plus a tail on AVX2, a tail on AVX-512
    m = torch_module(mode, I, H, L, bidir=bidir, batch_first=bf)
    x = rng.standard_normal((B, T, I) if bf else (T, B, I))
    hx = None
    if with_h0:
        D = 2 if bidir else 1
        hx = rng.standard_normal((L * D, B, H))
        if mode == "lstm":
            hx = (hx, rng.standard_normal((L * D, B, H)))
    check(mode, m, x, hx, rng)


@pytest.mark.parametrize("mode", MODES)
def test_no_bias(mode, rng):
    m = torch_module(mode, 6, 9, 2, bias=False, bidir=True)
    check(mode, m, rng.standard_normal((4, 2, 6)), None, rng)


@pytest.mark.parametrize("L,bidir", [(1, False), (2, True)])
def test_lstm_proj_size(L, bidir, rng):
    m = torch_module("lstm", 5, 11, L, bidir=bidir, proj=4)
    D = 2 if bidir else 1
    hx = (rng.standard_normal((L * D, 3, 4)), rng.standard_normal((L * D, 3, 11)))
    check("lstm", m, rng.standard_normal((6, 3, 5)), hx, rng)


@pytest.mark.parametrize("mode", MODES)
@pytest.mark.parametrize("bf", [False, True])
def test_lengths_match_packed_sequence(mode, bf, rng):
    T, B, I, H = 7, 5, 4, 18
    m = torch_module(mode, I, H, 2, bidir=True, batch_first=bf)
    lengths = [7, 3, 1, 5, 7]
    x = rng.standard_normal((B, T, I) if bf else (T, B, I))
    D = 2
    hx = rng.standard_normal((2 * D, B, H))
    if mode == "lstm":
        hx = (hx, rng.standard_normal((2 * D, B, H)))
    check(mode, m, x, hx, rng, lengths=lengths)


def test_lstm_proj_with_lengths(rng):
    m = torch_module("lstm", 4, 10, 2, bidir=True, proj=3)
    check("lstm", m, rng.standard_normal((6, 3, 4)), None, rng, lengths=[6, 2, 4])


@pytest.mark.parametrize("mode", MODES)
@pytest.mark.parametrize(
    "T,B,H", [(1, 1, 16), (1, 7, 33), (9, 1, 64), (4, 13, 65), (3, 8, 130), (2, 50, 140)]
)
def test_shapes(mode, T, B, H, rng):
    """Batch 1, T=1, exact vector multiples and tails, more rows than one register tile."""
    m = torch_module(mode, 5, H, 1, bidir=True)
    check(mode, m, rng.standard_normal((T, B, 5)), None, rng)


@pytest.mark.parametrize("mode", MODES)
@pytest.mark.parametrize("B,with_lengths", [(17, False), (33, True)])
def test_row_split_recurrence(mode, B, with_lengths, rng):
    """Batches of 8+ rows a thread with small packed weights run the whole recurrence per thread
    on its own rows (rnn_row_threads in rnn.cpp; odd splits, lengths, both directions, two
    layers, LSTM projections): same results as torch, forward and backward."""
    T, I, H = 6, 5, 24
    proj = 7 if mode == "lstm" and with_lengths else 0
    m = torch_module(mode, I, H, 2, bidir=True, proj=proj)
    lengths = list(rng.integers(1, T + 1, B)) if with_lengths else None
    if lengths:
        lengths[0] = T
    check(mode, m, rng.standard_normal((T, B, I)), None, rng, lengths=lengths)


@pytest.mark.parametrize("mode,B,with_lengths,proj",
                         [(m, 16, False, 0) for m in MODES] + [(m, 17, True, 0) for m in MODES])  # fmt: skip
def test_engine_step_recurrence(mode, B, with_lengths, proj, rng):
    """W_hh above 512 KiB from 16 rows: the GEMM engine computes h W_hh^T into the step's input
    projection and the step kernel applies the gate formulas (rnn_engine_step in rnn.cpp); two
    layers (ReLU one), both directions, lengths (GRU keeps the fused step): same results as torch, forward
    and backward. (A projection big enough for the path is checked against the oracle below: at
    these sizes its gradients are too ill-conditioned for torch's float32 error to be a bound.)"""
    T, I, H = 4, 5, ENGINE_H[mode]
    # ReLU: one layer (two at H=370 grow the weight gradients to 1e4, where the float64
    # comparison's 1e-11 absolute bound is below the reference's own rounding)
    m = torch_module(mode, I, H, 1 if mode == "rnn_relu" else 2, bidir=True, proj=proj)
    lengths = list(rng.integers(1, T + 1, B)) if with_lengths else None
    if lengths:
        lengths[0] = T
    check(mode, m, rng.standard_normal((T, B, I)), None, rng, lengths=lengths)


@pytest.mark.parametrize("mode,H", [("lstm", 192), ("lstm", 99), ("gru", 99), ("rnn_tanh", 370)])
def test_streamed_workspace(mode, H, rng):
    """A layer whose training workspace is 4 MiB or more saves the activations BPTT reads back
    with non-temporal stores (stream_saved in rnn.cpp; H = 99: rows not aligned to a vector, the
    plain stores): same results as torch, forward and backward."""
    # workspace 4.3 MiB (GRU, H = 99) to 11.8 MiB (LSTM, H = 192); tanh RNN: 12 steps (over 24
    # its float64 input gradient drifts past the 1e-10 comparison with torch's)
    T, B, I = (12, 192, 5) if mode == "rnn_tanh" else (24, 96, 5)
    m = torch_module(mode, I, H, 1)
    with torch.no_grad():
        for p in m.parameters():
            p.mul_(0.4)
    check(mode, m, rng.standard_normal((T, B, I)), None, rng)


@pytest.mark.parametrize("mode", ["lstm", "gru"])
def test_long_sequence(mode, rng):
    m = torch_module(mode, 3, 24, 1)
    with torch.no_grad():
        for p in m.parameters():
            p.mul_(0.4)
    check(mode, m, rng.standard_normal((300, 2, 3)), None, rng)


@pytest.mark.parametrize("mode", MODES)
def test_unbatched(mode, rng):
    m = torch_module(mode, 4, 12, 2, bidir=True)
    hx = rng.standard_normal((4, 12))
    if mode == "lstm":
        hx = (hx, rng.standard_normal((4, 12)))
    check(mode, m, rng.standard_normal((6, 4)), hx, rng)


def test_batch_zero():
    m = torch_module("lstm", 4, 8, 2, bidir=True)
    params = [p.detach().numpy() for p in m._flat_weights]
    y, h, c, saved = R.rnn_forward("lstm", np.zeros((3, 0, 4), np.float32), None, params, 2, bidirectional=True,
                                   need_saved=True)  # fmt: skip
    assert y.shape == (3, 0, 16) and h.shape == (4, 0, 8) and c.shape == (4, 0, 8)
    dx, dh0, dc0, dp = R.rnn_backward("lstm", np.zeros((3, 0, 16), np.float32), None, None,
                                      np.zeros((3, 0, 4), np.float32), None, params, saved, 2, bidirectional=True)  # fmt: skip
    assert dx.shape == (3, 0, 4) and all(np.all(g == 0) for g in dp)


# ---- the C++ oracle and unwritten outputs -------------------------------------------------------
# Hidden sizes whose W_hh is above 512 KiB: from 16 rows the GEMM engine computes the step's
# product (rnn_engine_step in rnn.cpp; LSTM and RNN; GRU keeps the fused step).
ENGINE_H = {"lstm": 192, "gru": 192, "rnn_tanh": 370, "rnn_relu": 370}


# (mode, H, B): packed panels per call (B >= 2), the whole recurrence per thread on its own rows
# (33 rows, small weights), the GEMM engine's step product (W_hh above 512 KiB, 16 rows)
FIRST_STEP_PATHS = [("lstm", 24, 4), ("gru", 24, 4), ("rnn_relu", 24, 4), ("lstm", 24, 33), ("gru", 24, 33),
                    ("lstm", ENGINE_H["lstm"], 16), ("rnn_tanh", ENGINE_H["rnn_tanh"], 16)]  # fmt: skip


@pytest.mark.parametrize("mode,H,B", FIRST_STEP_PATHS)
@pytest.mark.parametrize("prepared", [False, True])
def test_first_step_without_h0(mode, H, B, prepared, rng):
    """Without h0 the first step of a packed or engine-step layer runs on the input projection
    alone (its product with the zero state is zero, rnn_layer_forward's skip_first_product): the
    same bits as an explicit zero h0 (which takes the product), both directions, two layers,
    lengths, prepared weights too; and with an inf or a NaN in W_hh (0 * inf is NaN) still the
    same, NaN in the first step's outputs included."""
    T, I, L = 5, 6, 2
    m = torch_module(mode, I, H, L, bidir=True)
    params = [w.detach().numpy().copy() for w in m._flat_weights]
    names = m._flat_weights_names
    x = rng.standard_normal((T, B, I)).astype(np.float32)
    lengths = rng.integers(1, T + 1, B)
    lengths[0] = T
    D = 2

    def run(ps, zero_h0, lens, layers=L):
        """The first `layers` layers (weight_hh prepared if asked), h0 absent or explicit zeros."""
        prep = R.prepare_rnn_weight
        ps = [prep(w) if prepared and n.startswith("weight_hh") else w for n, w in zip(names, ps)]
        h0 = np.zeros((layers * D, B, H), np.float32) if zero_h0 else None
        hx = (h0, h0) if zero_h0 and mode == "lstm" else h0
        kw = dict(num_layers=layers, bidirectional=True, lengths=lens)
        return R.rnn_forward(mode, x, hx, ps[: len(ps) * layers // L], **kw)[:3]

    for lens in (None, lengths):
        for a, b in zip(run(params, False, lens), run(params, True, lens)):
            if a is not None:
                np.testing.assert_array_equal(a, b)
    # one layer: a second one would spread the NaN over all of its outputs either way
    bad = [w.copy() for w in params]
    bad[names.index("weight_hh_l0")][3, 1] = np.inf
    bad[names.index("weight_hh_l0_reverse")][5, 2] = np.nan
    y_none, y_zero = run(bad, False, None, layers=1), run(bad, True, None, layers=1)
    assert np.isnan(y_zero[0][0]).any() and np.isnan(y_zero[0][-1]).any(), "the first steps' outputs are NaN"
    for a, b in zip(y_none, y_zero):
        if a is not None:
            np.testing.assert_array_equal(a, b)


@pytest.mark.parametrize("mode,proj,B,engine,with_lengths",
                         [(m, 0, 5, False, True) for m in MODES] + [("lstm", 3, 5, False, True)]
                         + [(m, 0, 16, True, False) for m in MODES] + [(m, 0, 17, True, True) for m in MODES]
                         + [("lstm", 180, 16, True, False)])  # fmt: skip
def test_fast_path_vs_naive_oracle(mode, proj, B, engine, with_lengths, rng):
    """The fast forward against the float64 oracle loop, NaN-filled outputs and workspace: small
    weights (fused step), and W_hh above 512 KiB at 16-17 rows (the engine's step product, which
    without lengths saves the state and updates the outputs column-wise per thread)."""
    code = R.MODES[mode]
    G = R.GATES[mode]
    T, I, H = 6, 7, ENGINE_H[mode] if engine else 21
    K = proj or H
    lengths = rng.integers(1, T + 1, B).astype(np.int64) if with_lengths else None
    if with_lengths:
        lengths[0] = T
    a = 0.5 if not engine else K**-0.5  # torch's init scale at the big sizes (tame pre-activations)
    w = [rng.uniform(-a, a, s) for s in [(G * H, I), (G * H, K), (G * H,), (G * H,)]]
    w_hr = rng.uniform(-a, a, (proj, H)) if proj else None
    x, h0, c0 = rng.standard_normal((T, B, I)), rng.standard_normal((B, K)), rng.standard_normal((B, H))
    for reverse in (False, True):
        for dt in (np.float32, np.float64):
            cast = [a.astype(dt) for a in w]
            outs = []
            for naive in (True, False):
                y = np.full((T, B, K + 2), np.nan, dt)  # NaN-filled: every element must be written
                hn, cn = np.full((B, K), np.nan, dt), np.full((B, H), np.nan, dt)
                ws = None
                if not naive:
                    ws = np.full(_C.rnn_workspace_size(code, T, B, H, proj), np.nan, dt)
                _C.rnn_layer_forward(code, reverse, x.astype(dt), h0.astype(dt), c0.astype(dt), *cast,
                                     None if w_hr is None else w_hr.astype(dt), lengths, y, 1, hn, cn, ws, naive)  # fmt: skip
                assert np.isnan(y[..., 0]).all() and np.isnan(y[..., -1]).all(), "wrote outside its columns"
                assert not np.isnan(y[..., 1:-1]).any() and not np.isnan(hn).any()
                if mode == "lstm":
                    assert not np.isnan(cn).any()
                if ws is not None:
                    assert not np.isnan(ws).any(), "workspace not fully written"
                if with_lengths:
                    past = np.arange(T)[:, None] >= lengths[None, :]
                    assert np.all(y[..., 1:-1][past] == 0), "outputs past each length must be zero"
                outs.append((y[..., 1:-1], hn, cn))
            tol = 2e-5 if dt == np.float32 else 1e-12
            for a, b in zip(outs[0], outs[1]):
                if mode != "lstm" and a is outs[0][2]:
                    continue
                np.testing.assert_allclose(b, a, rtol=tol, atol=tol)


# ---- cells ----------------------------------------------------------------------------------
@pytest.mark.parametrize("mode", MODES)
@pytest.mark.parametrize("batched", [True, False])
@pytest.mark.parametrize("with_h", [True, False])
def test_cells(mode, batched, with_h, rng):
    I, H, B = 6, 19, 4
    torch.manual_seed(1)
    if mode == "lstm":
        cell = torch.nn.LSTMCell(I, H)
    elif mode == "gru":
        cell = torch.nn.GRUCell(I, H)
    else:
        cell = torch.nn.RNNCell(I, H, nonlinearity="relu" if mode == "rnn_relu" else "tanh")
    fn = {"lstm": R.lstm_cell, "gru": R.gru_cell, "rnn_tanh": R.rnn_tanh_cell, "rnn_relu": R.rnn_relu_cell}[
        mode
    ]
    shape = (B,) if batched else ()
    x = rng.standard_normal((*shape, I))
    hx = None
    if with_h:
        hx = rng.standard_normal((*shape, H))
        if mode == "lstm":
            hx = (hx, rng.standard_normal((*shape, H)))
    c64 = copy.deepcopy(cell).double()

    def t_run(c, dt):
        xt = torch.tensor(x, dtype=dt)
        h = (
            None
            if hx is None
            else (
                tuple(torch.tensor(a, dtype=dt) for a in hx) if mode == "lstm" else torch.tensor(hx, dtype=dt)
            )
        )
        with torch.no_grad():
            out = c(xt, h)
        return [o.numpy() for o in out] if mode == "lstm" else [out.numpy()]

    ref, t32 = t_run(c64, torch.float64), t_run(cell, torch.float32)
    for dt in (np.float32, np.float64):
        ws = [
            p.detach().numpy().astype(dt)
            for p in (cell.weight_ih, cell.weight_hh, cell.bias_ih, cell.bias_hh)
        ]
        h = None if hx is None else (tuple(a.astype(dt) for a in hx) if mode == "lstm" else hx.astype(dt))
        out = fn(x.astype(dt), h, *ws)
        out = list(out) if mode == "lstm" else [out]
        for a, r, t in zip(out, ref, t32):
            assert a.shape == r.shape and a.dtype == dt
            if dt == np.float32:
                assert_error_gate(a, r, t, floor=2e-6, what=f"{mode} cell")
            else:
                np.testing.assert_allclose(a, r, rtol=1e-11, atol=1e-12)


# ---- dropout --------------------------------------------------------------------------------
def test_dropout_masks_between_layers(rng):
    """Two layers with an explicit mask == layer 1, then mask, then layer 2 (torch)."""
    m = torch_module("lstm", 5, 8, 2, bidir=True)
    x = rng.standard_normal((4, 3, 5)).astype(np.float32)
    mask = (rng.random((4, 3, 16)) > 0.3).astype(np.float32) / 0.7
    params = [p.detach().numpy() for p in m._flat_weights]
    y, h, c, saved = R.rnn_forward(
        "lstm", x, None, params, 2, True, 0.3, True, True, dropout_masks=[mask], need_saved=True
    )
    l0, l1 = torch.nn.LSTM(5, 8, bidirectional=True), torch.nn.LSTM(16, 8, bidirectional=True)
    with torch.no_grad():
        for name, p in m.named_parameters():
            tgt = l0 if "_l0" in name else l1
            getattr(tgt, name.replace("_l1", "_l0")).copy_(p)
        y0, _ = l0(torch.from_numpy(x))
        y1, _ = l1(y0 * torch.from_numpy(mask))
    np.testing.assert_allclose(y, y1.numpy(), rtol=1e-5, atol=1e-5)
    # eval mode ignores dropout; a seed makes the drawn masks reproducible
    y_eval, *_ = R.rnn_forward("lstm", x, None, params, 2, True, 0.3, False, True)
    y_nodrop, *_ = R.rnn_forward("lstm", x, None, params, 2, True, 0.0, True, True)
    np.testing.assert_array_equal(y_eval, y_nodrop)
    a, *_ = R.rnn_forward("lstm", x, None, params, 2, True, 0.5, True, True, dropout_seed=7)
    b, *_ = R.rnn_forward("lstm", x, None, params, 2, True, 0.5, True, True, dropout_seed=7)
    np.testing.assert_array_equal(a, b)
    assert not np.allclose(a, y_eval)
    # backward through the mask: finite differences on one input element (float64)
    p64 = [p.astype(np.float64) for p in params]
    x64, m64 = x.astype(np.float64), [mask.astype(np.float64)]
    y, _, _, saved = R.rnn_forward(
        "lstm", x64, None, p64, 2, True, 0.3, True, True, dropout_masks=m64, need_saved=True
    )
    gy = rng.standard_normal(y.shape)
    dx, *_ = R.rnn_backward("lstm", gy, None, None, x64, None, p64, saved, 2, True, True)
    eps = 1e-6
    for idx in [(0, 0, 0), (2, 1, 3), (3, 2, 4)]:
        xp, xm = x64.copy(), x64.copy()
        xp[idx] += eps
        xm[idx] -= eps
        fp = (R.rnn_forward("lstm", xp, None, p64, 2, True, 0.3, True, True, dropout_masks=m64)[0] * gy).sum()
        fm = (R.rnn_forward("lstm", xm, None, p64, 2, True, 0.3, True, True, dropout_masks=m64)[0] * gy).sum()
        assert abs((fp - fm) / (2 * eps) - dx[idx]) < 1e-6


# ---- layouts and bad input --------------------------------------------------------------------
def test_input_layouts(rng):
    m = torch_module("gru", 6, 10, 1)
    params = [p.detach().numpy() for p in m._flat_weights]
    x = rng.standard_normal((5, 3, 6)).astype(np.float32)
    ref, *_ = R.rnn_forward("gru", x, None, params)
    for name, v in layouts(x):
        y, *_ = R.rnn_forward("gru", v, None, params)
        np.testing.assert_array_equal(y, ref, err_msg=name)
    for name, v in layouts(params[1]):
        y, *_ = R.rnn_forward("gru", x, None, [params[0], v, *params[2:]])
        np.testing.assert_array_equal(y, ref, err_msg=name)


def _lstm_params(I=4, H=6, L=1, dtype=np.float32):
    m = torch_module("lstm", I, H, L)
    return [p.detach().numpy().astype(dtype) for p in m._flat_weights]


@pytest.mark.parametrize(
    "kwargs,exc,match",
    [
        (
            dict(input=np.zeros((2, 3, 5), np.float32)),
            ValueError,
            r"input.size\(-1\) must be equal to input_size. Expected 4, got 5",
        ),
        (
            dict(input=np.zeros((2, 3, 4, 1), np.float32)),
            ValueError,
            r"input must be 2-D .* or 3-D .*got 4-D",
        ),
        (dict(input=np.zeros((0, 3, 4), np.float32)), ValueError, r"at least one time step"),
        (dict(input=np.zeros((2, 3, 4), np.int64)), TypeError, r"input must have dtype float32 or float64"),
        (dict(input=np.zeros((2, 3, 4), np.float64)), TypeError, r"weight_ih_l0\) must have dtype float64"),
        (dict(input=[[[0.0] * 4]]), TypeError, r"input must be a numpy array"),
        (
            dict(hx=(np.zeros((1, 3, 7), np.float32), np.zeros((1, 3, 6), np.float32))),
            ValueError,
            r"Expected h_0 size \(1, 3, 6\), got \(1, 3, 7\)",
        ),
        (
            dict(hx=(np.zeros((1, 2, 6), np.float32), np.zeros((1, 3, 6), np.float32))),
            ValueError,
            r"Expected h_0 size \(1, 3, 6\), got \(1, 2, 6\)",
        ),
        (dict(hx=np.zeros((1, 3, 6), np.float32)), TypeError, r"hx for LSTM must be a tuple"),
        (
            dict(hx=(np.zeros((3, 6), np.float32), np.zeros((3, 6), np.float32))),
            ValueError,
            r"For batched 3-D input, h_0 should also be 3-D",
        ),
        (dict(num_layers=2), ValueError, r"params must hold 8 arrays"),
        (dict(num_layers=0), ValueError, r"num_layers must be >= 1, got 0"),
        (dict(bias=1), TypeError, r"bias should be of type bool, got: int"),
        (dict(batch_first=1), TypeError, r"batch_first should be of type bool"),
        (dict(proj_size=2), ValueError, r"params must hold 5 arrays"),
        (dict(lengths=[2, 2]), ValueError, r"lengths must have one entry per batch row \(3\), got 2"),
        (dict(lengths=[2, 3, 1]), ValueError, r"lengths must be in \[1, 2\].*max 3"),
        (dict(lengths=[2, 0, 1]), ValueError, r"lengths must be in \[1, 2\].*min 0"),
        (dict(lengths=[1.5, 2, 2]), TypeError, r"lengths must be a 1-D sequence of ints"),
        (dict(dropout=1.5), ValueError, r"dropout should be a number in range \[0, 1\]"),
        (dict(params="w"), TypeError, r"params must be a list of arrays"),
    ],
)
def test_bad_input(kwargs, exc, match):
    args = dict(input=np.ones((2, 3, 4), np.float32), hx=None, params=_lstm_params())
    args.update(kwargs)
    snapshot = {k: (v.copy() if isinstance(v, np.ndarray) else v) for k, v in args.items()}
    with pytest.raises(exc, match=match):
        R.rnn_forward("lstm", **args)
    for k, v in snapshot.items():
        if isinstance(v, np.ndarray):
            assert np.array_equal(args[k], v), f"{k} modified"


def test_bad_input_other():
    p = _lstm_params()
    x = np.ones((2, 3, 4), np.float32)
    with pytest.raises(ValueError, match="proj_size argument is only supported for LSTM"):
        R.rnn_forward("gru", x, None, p, proj_size=1)
    with pytest.raises(
        ValueError, match=r"params\[1\] \(weight_hh_l0\) must have shape \(24, 6\), got \(24, 5\)"
    ):
        R.rnn_forward("lstm", x, None, [p[0], p[1][:, :5].copy(), p[2], p[3]])
    with pytest.raises(ValueError, match=r"mode must be one of"):
        R.rnn_forward("lstmx", x, None, p)
    with pytest.raises(ValueError, match="input has inconsistent input_size: got 5 expected 4"):
        R.lstm_cell(np.ones((3, 5), np.float32), None, p[0], p[1], p[2], p[3])
    with pytest.raises(ValueError, match="hidden0 has inconsistent hidden_size: got 7, expected 6"):
        R.lstm_cell(np.ones((3, 4), np.float32), (np.ones((3, 7), np.float32),) * 2, *p)
    with pytest.raises(ValueError, match="Input batch size 3 doesn't match hidden0 batch size 5"):
        R.lstm_cell(np.ones((3, 4), np.float32), (np.ones((5, 6), np.float32),) * 2, *p)
    with pytest.raises(ValueError, match=r"Expected input to be 1D or 2D, got 3D"):
        R.gru_cell(np.ones((1, 3, 4), np.float32), None, *_gru_cell_params())
    with pytest.raises(ValueError, match=r"b_hh must have shape \(24,\), got \(23,\)"):
        R.lstm_cell(np.ones((3, 4), np.float32), None, p[0], p[1], p[2], p[3][:23])
    with pytest.raises(TypeError, match="b_ih must have dtype float32"):
        R.lstm_cell(np.ones((3, 4), np.float32), None, p[0], p[1], p[2].astype(np.float64), p[3])
    # the binding's own checks (second line of defence)
    with pytest.raises(ValueError, match="output must be"):
        _C.rnn_layer_forward(0, False, x, None, None, *p, None, None, np.empty((2, 3, 5), np.float32), 0,
                             np.empty((3, 6), np.float32), None, None)  # fmt: skip
    with pytest.raises(TypeError, match="must be a float32 array"):
        _C.rnn_layer_forward(0, False, x, None, None, p[0].astype(np.float64), *p[1:], None, None,
                             np.empty((2, 3, 6), np.float32), 0, np.empty((3, 6), np.float32), None, None)  # fmt: skip


def _gru_cell_params():
    c = torch.nn.GRUCell(4, 6)
    return [p.detach().numpy() for p in (c.weight_ih, c.weight_hh, c.bias_ih, c.bias_hh)]


# ---- every ISA path -------------------------------------------------------------------------
@pytest.mark.parametrize(
    "isa,pack_min_b", [("avx2", "1"), ("avx2", "1000"), ("avx512", "1000"), ("scalar", "1")]
)
def test_isa_paths_in_subprocess(isa, pack_min_b, tmp_path):
    """The same check under PYCNNRNN_ISA (vector kernels with 8 lanes; the portable step), with
    packed W_hh panels and with the per-step GEMM path (PYCNNRNN_RNN_PACK_MIN_B=1000)."""
    code = (
        "import numpy as np, torch, pycnnrnn\n"
        "from pycnnrnn.ops import rnn as R\n"
        f"assert pycnnrnn.cpu_isa() in ({isa!r}, 'avx2', 'scalar'), pycnnrnn.cpu_isa()\n"
        "rng = np.random.default_rng(0)\n"
        "for mode, cls, kw in [('lstm', torch.nn.LSTM, {}), ('gru', torch.nn.GRU, {}),"
        " ('rnn_relu', torch.nn.RNN, {'nonlinearity': 'relu'})]:\n"
        "  for B in (3, 13):  # per-step GEMM path and packed-panel path\n"
        "    lens = [4, 2, 3] + [4, 1] * ((B - 3) // 2)\n"
        "    torch.manual_seed(0); m = cls(5, 21, 2, bidirectional=True, **kw)\n"
        "    x = rng.standard_normal((4, B, 5)).astype(np.float32)\n"
        "    p = [w.detach().numpy() for w in m._flat_weights]\n"
        "    y, h, c, s = R.rnn_forward(mode, x, None, p, 2, True, 0.0, False, True, need_saved=True, lengths=lens)\n"
        "    gy = rng.standard_normal(y.shape).astype(np.float32)\n"
        "    dx, dh, dc, dp = R.rnn_backward(mode, gy, None, None, x, None, p, s, 2, True, True, lengths=lens)\n"
        "    xt = torch.from_numpy(x).requires_grad_()\n"
        "    pk = torch.nn.utils.rnn.pack_padded_sequence(xt, torch.tensor(lens), enforce_sorted=False)\n"
        "    yt, _ = torch.nn.utils.rnn.pad_packed_sequence(m(pk)[0], total_length=4)\n"
        "    (yt * torch.from_numpy(gy)).sum().backward()\n"
        "    assert np.abs(y - yt.detach().numpy()).max() < 1e-5, mode\n"
        "    assert np.abs(dx - xt.grad.numpy()).max() < 1e-4, mode\n"
        "    for a, w in zip(dp, m._flat_weights): assert np.abs(a - w.grad.numpy()).max() < 1e-4, mode\n"
        "print('ok')\n"
    )
    pkg_parent = os.path.dirname(os.path.dirname(pycnnrnn.__file__))  # the package under test, wherever it is
    env = dict(
        os.environ,
        PYCNNRNN_ISA=isa,
        PYCNNRNN_RNN_PACK_MIN_B=pack_min_b,
        PYTHONPATH=os.pathsep.join([pkg_parent, os.environ.get("PYTHONPATH", "")]),
    )
    r = subprocess.run(
        [sys.executable, "-c", code], env=env, capture_output=True, text=True, timeout=120, cwd=tmp_path
    )
    assert r.returncode == 0 and r.stdout.strip().endswith("ok"), r.stdout + r.stderr


@pytest.mark.parametrize("T,B", [(1, 109), (2, 16)])  # per-step GEMM path; packed W_hh panels
def test_vector_activations_within_3_ulp(T, B, rng):
    """tanh and sigmoid of the float32 step kernels (polynomial exp, reciprocal estimate + Newton
    step on AVX-512) against float64, in units of float32 spacing, with W_ih = I and W_hh = 0 so
    that an output is the activation of the input itself: RNN tanh y = tanh(x); LSTM with
    g = tanh(20) = 1 and c0 = 0 gives c_1 = sigmoid(x_1), c_2 = sigmoid(0) c_1 + sigmoid(x_2)."""
    H = 37
    x = np.concatenate([rng.uniform(-12, 12, 2000), rng.uniform(-0.7, 0.7, 1000), rng.standard_normal(1000) * 1e-3,
                        [0.625, -0.625, 0.6249999, 30, -30, 60, -60, 1e-30]])  # fmt: skip
    x = np.resize(x, T * B * H).reshape(T, B, H).astype(np.float32)
    x64 = x.astype(np.float64)

    def ulps(got, ref):
        return np.abs(got.astype(np.float64) - ref) / np.spacing(np.abs(ref.astype(np.float32))).astype(
            np.float64
        )

    zeros = np.zeros((H, H), np.float32)
    y = R.rnn_forward("rnn_tanh", x, None, [np.eye(H, dtype=np.float32), zeros, np.zeros(H, np.float32),
                                             np.zeros(H, np.float32)], 1)[0]  # fmt: skip
    assert ulps(y, np.tanh(x64)).max() <= 3
    w_ih = np.zeros((4 * H, H), np.float32)
    w_ih[:H] = np.eye(H)
    b_ih = np.zeros(4 * H, np.float32)
    b_ih[2 * H : 3 * H] = 20
    c_n = R.rnn_forward(
        "lstm", x, None, [w_ih, np.zeros((4 * H, H), np.float32), b_ih, np.zeros(4 * H, np.float32)], 1
    )[2]
    sig = 1 / (1 + np.exp(-x64))
    ref = sig[0] if T == 1 else 0.5 * sig[0] + sig[1]
    assert ulps(c_n[0], ref).max() <= 3


@pytest.mark.parametrize("batch,H", [(16, 40), (13, 40), (17, 40), (17, ENGINE_H["lstm"]), (1, 40), (5, 99)])
def test_threads_give_identical_results(rng, batch, H):
    """Batches split between threads by rows (odd ones too: a row must land in the same
    register tile whatever the thread count), the engine's step product (W_hh above 512 KiB),
    and hidden units split between threads that meet after each step (batch 1 and 5; 3
    threads: more than this machine's cores), forward and backward."""
    m = torch_module("lstm", 8, H, 1)
    p = [w.detach().numpy() for w in m._flat_weights]
    x = rng.standard_normal((6, batch, 8)).astype(np.float32)
    gy = rng.standard_normal((6, batch, H)).astype(np.float32)
    n = pycnnrnn.get_num_threads()
    out = []
    try:
        for threads in (1, 2, 3):
            pycnnrnn.set_num_threads(threads)
            y, h, c, saved = R.rnn_forward("lstm", x, None, p, need_saved=True)
            dx, dh0, dc0, dp = R.rnn_backward("lstm", gy, None, None, x, None, p, saved)
            out.append((y, h, c, dx, dh0, dc0, *dp))
    finally:
        pycnnrnn.set_num_threads(n)
    for other in out[1:]:
        for a, b in zip(out[0], other):
            np.testing.assert_array_equal(a, b)


@pytest.mark.parametrize("mode", MODES)
def test_concurrent_calls_give_identical_results(mode, rng):
    """Forward calls from several Python threads at once: one runs its steps in a team region
    (threads meeting after each step), the others find the pool busy and run every step's
    parts themselves; all equal the same calls made one at a time."""
    import threading

    H = 99
    m = torch_module(mode, 8, H, 2)
    p = [w.detach().numpy() for w in m._flat_weights]
    xs = [rng.standard_normal((12, b, 8)).astype(np.float32) for b in (1, 2, 5, 1, 3, 1)]
    ref = [R.rnn_forward(mode, x, None, p, 2) for x in xs]
    out = [None] * len(xs)
    start = threading.Barrier(len(xs))

    def run(i):
        start.wait()
        for _ in range(3):
            out[i] = R.rnn_forward(mode, xs[i], None, p, 2)

    threads = [threading.Thread(target=run, args=(i,)) for i in range(len(xs))]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    for got, want in zip(out, ref):
        for a, b in zip(got, want):
            if b is not None:
                np.testing.assert_array_equal(a, b)


# ---- nn modules -------------------------------------------------------------------------------
def _nn():
    from pycnnrnn.nn import rnn as nn_rnn

    return nn_rnn


@pytest.mark.parametrize(
    "name,args,kwargs",
    [
        ("LSTM", (5, 8), dict(num_layers=2, bidirectional=True, batch_first=True)),
        ("LSTM", (5, 8), dict(proj_size=3, num_layers=2)),
        ("GRU", (5, 8), dict(num_layers=3, bias=False)),
        ("RNN", (5, 8), dict(nonlinearity="relu", bidirectional=True)),
        ("RNN", (5, 8), dict(num_layers=2)),
    ],
)
def test_modules_load_torch_state_dict(name, args, kwargs, rng):
    torch.manual_seed(3)
    tm = getattr(torch.nn, name)(*args, **kwargs)
    from pycnnrnn.nn import init

    init.manual_seed(3)
    om = getattr(_nn(), name)(*args, **kwargs)
    assert list(om.state_dict().keys()) == list(tm.state_dict().keys())
    bound = 1 / np.sqrt(args[1])
    for k, v in om.state_dict().items():
        assert v.shape == tuple(tm.state_dict()[k].shape) and v.dtype == np.float32, k
        assert np.abs(v).max() <= bound, f"{k}: init not U(-1/sqrt(H), 1/sqrt(H))"
    # the range is filled: over all (hundreds of) draws the largest magnitude nears the bound
    # (per 8-element bias, max < bound/2 happens for 1 draw in 256)
    assert max(np.abs(v).max() for v in om.state_dict().values()) > 0.9 * bound
    assert repr(om) == repr(tm)
    om.load_state_dict(tm.state_dict())
    x = rng.standard_normal((3, 4, 5)).astype(np.float32)
    with torch.no_grad():
        ty, th = tm(torch.from_numpy(x))
    oy, oh = om(x)
    np.testing.assert_allclose(oy, ty.numpy(), rtol=1e-5, atol=1e-6)
    for a, b in zip(oh if name == "LSTM" else [oh], th if name == "LSTM" else [th]):
        np.testing.assert_allclose(a, b.numpy(), rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize(
    "name,kwargs", [("LSTMCell", {}), ("GRUCell", {"bias": False}), ("RNNCell", {"nonlinearity": "relu"})]
)
def test_cell_modules(name, kwargs, rng):
    torch.manual_seed(4)
    tm = getattr(torch.nn, name)(6, 9, **kwargs)
    om = getattr(_nn(), name)(6, 9, **kwargs)
    assert list(om.state_dict().keys()) == list(tm.state_dict().keys())
    assert repr(om) == repr(tm)
    om.load_state_dict(tm.state_dict())
    x = rng.standard_normal((2, 6)).astype(np.float32)
    with torch.no_grad():
        t = tm(torch.from_numpy(x))
    o = om(x)
    for a, b in zip(o if name == "LSTMCell" else [o], t if name == "LSTMCell" else [t]):
        np.testing.assert_allclose(a, b.numpy(), rtol=1e-5, atol=1e-6)


def test_module_constructor_errors():
    nn = _nn()
    with pytest.raises(ValueError, match="hidden_size must be greater than zero"):
        nn.LSTM(3, 0)
    with pytest.raises(TypeError, match="input_size should be of type int, got: float"):
        nn.GRU(3.0, 4)
    with pytest.raises(TypeError, match="bias should be of type bool, got: int"):
        nn.LSTM(3, 4, bias=0)
    with pytest.raises(ValueError, match="proj_size has to be smaller than hidden_size"):
        nn.LSTM(3, 4, proj_size=4)
    with pytest.raises(ValueError, match="dropout should be a number in range"):
        nn.LSTM(3, 4, num_layers=2, dropout=2.0)
    with pytest.warns(UserWarning, match="non-zero dropout expects num_layers greater than 1"):
        nn.LSTM(3, 4, dropout=0.5)
    with pytest.raises(ValueError, match="Unknown nonlinearity"):
        nn.RNN(3, 4, nonlinearity="sigmoid")


def test_module_lengths_and_training_dropout(rng):
    nn = _nn()
    m = nn.GRU(4, 6, num_layers=2, dropout=0.5, bidirectional=True)
    x = rng.standard_normal((5, 3, 4)).astype(np.float32)
    m.eval()
    a, ha = m(x, lengths=[5, 2, 4])
    b, hb = m(x, lengths=[5, 2, 4])
    np.testing.assert_array_equal(a, b)
    assert np.all(a[2:, 1] == 0) and np.all(a[4:, 2] == 0)
    m.train()
    c, _ = m(x)
    d, _ = m(x)
    assert not np.allclose(c, d), "training mode must draw fresh dropout masks"


# ---- prepared recurrent weights (inference) -----------------------------------------------------
@pytest.mark.parametrize("mode", MODES)
@pytest.mark.parametrize("B", [1, 3, 8, 13])  # W_hh of 7 KiB: packed either way, batch 1 too
@pytest.mark.parametrize("which", [("weight_hh",), ("weight_ih", "weight_hh"), ("weight_ih",)])
def test_prepared_weights(mode, B, which, rng):
    """PreparedRnnWeight in place of every weight_hh and/or weight_ih: float32 within the error
    gate against float64 torch (like the plain call), bit-identical to the plain call at every
    batch (both run the packed panels, which the plain call packs from batch 1 for a W_hh of at
    most 3 MiB; a prepared weight_ih only replaces the packing the input GEMM does anyway), and
    the packed forms built
    once and reused by later calls of other sizes (T * B on both sides of the GEMM's small-M
    path)."""
    m = torch_module(mode, 7, 21, 2, bidir=True, proj=4 if mode == "lstm" else 0)
    params = [w.detach().numpy() for w in m._flat_weights]
    names = m._flat_weights_names
    prepared = [R.prepare_rnn_weight(w) if n.startswith(which) else w for n, w in zip(names, params)]
    assert sum(isinstance(p, R.PreparedRnnWeight) for p in prepared) == 4 * len(which)
    m64 = copy.deepcopy(m).double()
    kw = dict(num_layers=2, bidirectional=True, proj_size=4 if mode == "lstm" else 0)
    for T in (5, 2):
        x = rng.standard_normal((T, B, 7))
        y, h, c, _ = R.rnn_forward(mode, x.astype(np.float32), None, prepared, **kw)
        y0, h0, c0, _ = R.rnn_forward(mode, x.astype(np.float32), None, params, **kw)
        ref = torch_run(m64, mode, x, None)
        t32 = torch_run(m, mode, x, None)
        for name, a, a0 in [("y", y, y0), ("h", h, h0)] + ([("c", c, c0)] if mode == "lstm" else []):
            assert_error_gate(a, ref[name], t32[name], floor=2e-6, what=f"prepared {mode} {name}")
            np.testing.assert_array_equal(a, a0)
    # the forms the calls needed were built: panels (float32, T >= 2, an ISA with the packed step
    # kernels: not the scalar path), and the input operand when some call's input GEMM had more
    # rows (T * B) than the GEMM's small-M path takes (8)
    for n, p in zip(names, prepared):
        if isinstance(p, R.PreparedRnnWeight):
            want = (
                (pycnnrnn.cpu_isa() != "scalar", False, False)
                if n.startswith("weight_hh")
                else (False, 5 * B > 8, False)
            )
            assert p._c.built == want, (n, B)
    # the snapshot is what the prepared weight holds: the original array may change freely
    p0 = prepared[names.index(which[0] + "_l0")]
    assert not p0.weight.flags.writeable and p0.shape == params[names.index(which[0] + "_l0")].shape
    assert p0.dtype == np.float32
    with pytest.raises(ValueError, match="read-only"):
        p0.weight[0, 0] = 1.0
    assert "PreparedRnnWeight(shape=" in repr(p0)
    assert np.array_equal(copy.deepcopy(p0).weight, p0.weight)


@pytest.mark.parametrize("mode", ["lstm", "rnn_tanh"])
def test_prepared_weights_engine_step(mode, rng):
    """Prepared weight_hh at the engine step's sizes (W_hh above 512 KiB, 16+ rows): W_hh^T is
    packed once for the engine (the third form), results bit-identical to the plain call (which
    packs the same way per call); at 8 rows the same prepared weight builds the step panels."""
    m = torch_module(mode, 6, ENGINE_H[mode], 1)
    params = [w.detach().numpy() for w in m._flat_weights]
    prepared = [params[0], R.prepare_rnn_weight(params[1]), *params[2:]]
    x = rng.standard_normal((3, 16, 6)).astype(np.float32)
    for a, b in zip(R.rnn_forward(mode, x, None, prepared)[:3], R.rnn_forward(mode, x, None, params)[:3]):
        if a is not None:
            np.testing.assert_array_equal(a, b)
    assert prepared[1]._c.built == (False, False, pycnnrnn.cpu_isa() != "scalar")
    R.rnn_forward(mode, x[:, :8], None, prepared)
    assert prepared[1]._c.built == (pycnnrnn.cpu_isa() != "scalar", False, pycnnrnn.cpu_isa() != "scalar")


def test_prepared_weight_errors_and_float64(rng):
    w_ih, w_hh, b_ih, b_hh = (
        rng.standard_normal(s).astype(np.float32) for s in [(24, 5), (24, 6), (24,), (24,)]
    )
    x = rng.standard_normal((3, 2, 5)).astype(np.float32)
    with pytest.raises(
        TypeError, match=r"params\[2\] \(bias_ih_l0\): only a weight_ih or weight_hh may be a Prepared"
    ):
        R.rnn_forward("lstm", x, None, [w_ih, w_hh, R.prepare_rnn_weight(w_ih), b_hh])
    with pytest.raises(ValueError, match=r"weight must be 2-D"):
        R.prepare_rnn_weight(b_ih)
    with pytest.raises(TypeError, match="must be a numpy array"):
        R.prepare_rnn_weight([[1.0]])
    with pytest.raises(
        ValueError, match="made for a different weight_hh array"
    ):  # the C++ check behind the Python one
        y = _C.empty((3, 2, 6), np.dtype(np.float32))
        _C.rnn_layer_forward(0, False, x, None, None, w_ih, w_hh, b_ih, b_hh, None, None, y, 0,
                             _C.empty((2, 6), np.dtype(np.float32)), None, None,
                             prepared=_C.RnnPrepared(R.prepare_rnn_weight(w_hh).weight))  # fmt: skip
    with pytest.raises(ValueError, match="prepared_ih: made for a different weight_ih array"):
        y = _C.empty((3, 2, 6), np.dtype(np.float32))
        _C.rnn_layer_forward(0, False, x, None, None, w_ih, w_hh, b_ih, b_hh, None, None, y, 0,
                             _C.empty((2, 6), np.dtype(np.float32)), None, None, False, None,
                             _C.RnnPrepared(R.prepare_rnn_weight(w_ih).weight))  # fmt: skip
    with pytest.raises(ValueError, match="read-only"):
        _C.RnnPrepared(w_hh.copy())
    plain64 = [a.astype(np.float64) for a in (w_ih, w_hh, b_ih, b_hh)]
    with pytest.raises(
        TypeError, match=r"params\[1\] \(weight_hh_l0\) must have dtype float64 .* got float32"
    ):
        R.rnn_forward(
            "lstm", x.astype(np.float64), None, [plain64[0], R.prepare_rnn_weight(w_hh), *plain64[2:]]
        )
    p64 = [plain64[0], R.prepare_rnn_weight(plain64[1]), *plain64[2:]]
    for a, b in zip(R.rnn_forward("lstm", x.astype(np.float64), None, p64)[:3],
                    R.rnn_forward("lstm", x.astype(np.float64), None, plain64)[:3]):  # fmt: skip
        np.testing.assert_array_equal(a, b)


@pytest.mark.parametrize(
    "name,kwargs", [("LSTM", dict(num_layers=2, bidirectional=True)), ("GRU", {}), ("RNN", {})]
)
def test_module_prepack(name, kwargs, rng):
    """Module.prepack() on a recurrent module: every weight_ih and weight_hh becomes a read-only
    snapshot with its packed form; outputs match the unprepared module; a new weight array or
    load_state_dict() drops the prepared form."""
    om = getattr(_nn(), name)(5, 12, **kwargs)
    x = rng.standard_normal((4, 9, 5)).astype(np.float32)  # batch 9: packed either way, bit-identical
    before = om(x)[0]
    sd = {k: v.copy() for k, v in om.state_dict().items()}
    assert om.prepack() is om and not om.training
    weights = [n for n in om._flat_weights_names if n.startswith(("weight_ih", "weight_hh"))]
    assert len(weights) == 2 * om.num_layers * (1 + om.bidirectional)
    assert all(not getattr(om, n).flags.writeable for n in weights)
    assert all(
        isinstance(w, R.PreparedRnnWeight)
        for n, w in zip(om._flat_weights_names, om._flat_weights)
        if n in weights
    )
    np.testing.assert_array_equal(om(x)[0], before)
    with pytest.raises(ValueError, match="read-only"):
        getattr(om, weights[0])[0, 0] = 0.0
    om.weight_hh_l0 = np.zeros_like(om.weight_hh_l0)  # a new array: the prepared form is not used for it
    assert not isinstance(om._flat_weights[om._flat_weights_names.index("weight_hh_l0")], R.PreparedRnnWeight)
    assert isinstance(om._flat_weights[om._flat_weights_names.index("weight_ih_l0")], R.PreparedRnnWeight)
    changed = om(x)[0]
    assert not np.array_equal(changed, before)
    om.load_state_dict(sd)
    np.testing.assert_array_equal(om(x)[0], before)
    assert not any(isinstance(w, R.PreparedRnnWeight) for w in om._flat_weights)
