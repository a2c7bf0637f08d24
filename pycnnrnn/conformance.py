"""Conformance matrix: pycnnrnn against torch, per op, parameter class, dtype and ISA path.

``python -m pycnnrnn conformance [--out DIR] [--isa avx512,avx2,scalar] [--cases N]`` runs a
fixed, seeded set of small cases for every op and parameter class on each ISA path (each path
in its own interpreter with ``PYCNNRNN_ISA``, which is read once at import), and writes
``conformance.json`` and ``conformance.md`` into DIR (default: the current directory), then
prints the table.

Per row: the number of cases, pycnnrnn's max abs error against a float64 reference, torch's
max abs error (torch float32 on the same float32 inputs) and pass/fail under the project's
error gate (DESIGN.md): on every case, ``err_ours <= 2 * err_torch + 1e-6 * max(1, max|ref|)``.
float64 rows compare against torch's float64 result (torch's column is the reference itself,
shown as 0) with the gate ``err_ours <= 1e-10 * max(1, max|ref|)``. Max pooling must be exact
(values, and indices where returned, equal to torch's).

Needs torch (the reference). The torch reference helpers (``torch_conv2d``, ``torch_max_pool2d``,
``torch_rnn``, ...) are also used by the hardening tests.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterator

import numpy as np

__all__ = [
    "add_args",
    "main",
    "run",
    "run_matrix",
    "torch_conv2d",
    "torch_linear",
    "torch_max_pool2d",
    "torch_rnn",
]

ISA_ORDER = ["avx512", "avx2", "scalar"]
GATE_FACTOR = 2.0
GATE_FLOOR32 = 1e-6
GATE_REL64 = 1e-10


def _torch():
    try:
        import torch
    except ImportError as e:  # pragma: no cover - exercised by the CLI test without torch
        raise ImportError(
            "the conformance matrix compares against torch, which is not installed: "
            "pip install torch (CPU build: --index-url https://download.pytorch.org/whl/cpu)"
        ) from e
    return torch


# ------------------------------------------------------------------ torch references (numpy in/out)
def _t(a, dtype, grad=False):
    torch = _torch()
    if a is None:
        return None
    t = torch.tensor(np.ascontiguousarray(a), dtype=dtype)
    return t.requires_grad_(grad)


def _tdtype(dtype):
    torch = _torch()
    return {np.dtype(np.float32): torch.float32, np.dtype(np.float64): torch.float64}[np.dtype(dtype)]


def torch_conv2d(x, w, b=None, *, stride=1, padding=0, dilation=1, groups=1, padding_mode="zeros",
                 dtype=np.float32, grad_output=None):  # fmt: skip
    """torch.nn.Conv2d semantics (its padding_mode path) in `dtype`; returns (y, gx, gw, gb)."""
    torch = _torch()
    td = _tdtype(dtype)
    g = grad_output is not None
    xt, wt, bt = _t(x, td, g), _t(w, td, g), _t(b, td, g)
    m = torch.nn.Conv2d(w.shape[1] * groups, w.shape[0], tuple(w.shape[2:]), stride=stride, padding=padding,
                        dilation=dilation, groups=groups, bias=b is not None, padding_mode=padding_mode)  # fmt: skip
    y = m._conv_forward(xt, wt, bt)
    if not g:
        return y.detach().numpy(), None, None, None
    y.backward(_t(grad_output, td))
    return y.detach().numpy(), xt.grad.numpy(), wt.grad.numpy(), None if bt is None else bt.grad.numpy()


def torch_max_pool2d(x, kernel_size, stride=None, padding=0, dilation=1, ceil_mode=False, *, dtype=None,
                     grad_output=None):  # fmt: skip
    """torch.nn.functional.max_pool2d with indices; returns (y, idx, gx)."""
    torch = _torch()
    td = _tdtype(dtype or x.dtype)
    g = grad_output is not None
    xt = _t(x, td, g)
    y, idx = torch.nn.functional.max_pool2d(xt, kernel_size, stride, padding, dilation, ceil_mode, True)
    gx = None
    if g:
        y.backward(_t(grad_output, td))
        gx = xt.grad.numpy()
    return y.detach().numpy(), idx.numpy(), gx


def torch_linear(x, w, b=None, *, dtype=np.float32, grad_output=None):
    torch = _torch()
    td = _tdtype(dtype)
    g = grad_output is not None
    xt, wt, bt = _t(x, td, g), _t(w, td, g), _t(b, td, g)
    y = torch.nn.functional.linear(xt, wt, bt)
    if not g:
        return y.detach().numpy(), None, None, None
    y.backward(_t(grad_output, td))
    return y.detach().numpy(), xt.grad.numpy(), wt.grad.numpy(), None if bt is None else bt.grad.numpy()


_TORCH_RNN = {"lstm": "LSTM", "gru": "GRU", "rnn_tanh": "RNN", "rnn_relu": "RNN"}


def rnn_param_shapes(mode, input_size, hidden, num_layers=1, bias=True, bidirectional=False, proj_size=0):
    """Shapes of torch's flat weights (module._flat_weights order)."""
    G = {"lstm": 4, "gru": 3, "rnn_tanh": 1, "rnn_relu": 1}[mode]
    D = 2 if bidirectional else 1
    K = proj_size or hidden
    shapes = []
    for layer in range(num_layers):
        for _ in range(D):
            shapes += [(G * hidden, input_size if layer == 0 else D * K), (G * hidden, K)]
            if bias:
                shapes += [(G * hidden,), (G * hidden,)]
            if proj_size:
                shapes.append((proj_size, hidden))
    return shapes


def torch_rnn(mode, x, hx, params, *, num_layers=1, bias=True, bidirectional=False, batch_first=False,
              proj_size=0, lengths=None, dtype=np.float32, grad=None):  # fmt: skip
    """torch.nn.LSTM/GRU/RNN with the given flat params; lengths via pack_padded_sequence.
    grad: None or (grad_output, grad_h_n, grad_c_n) -> also returns (gx, gh0, gc0, gparams).
    Returns (output, h_n, c_n, grads)."""
    torch = _torch()
    td = _tdtype(dtype)
    kw = {"nonlinearity": mode[4:]} if mode.startswith("rnn_") else {}
    if proj_size:
        kw["proj_size"] = proj_size
    I = x.shape[-1]  # noqa: E741
    H = params[1].shape[1] if not proj_size else params[-1].shape[1]
    m = getattr(torch.nn, _TORCH_RNN[mode])(I, H, num_layers, bias=bias, batch_first=batch_first,
                                            bidirectional=bidirectional, **kw).to(td)  # fmt: skip
    with torch.no_grad():
        for p, a in zip(m._flat_weights, params):
            p.copy_(torch.from_numpy(np.ascontiguousarray(a)))
    g = grad is not None
    xt = _t(x, td, g)
    lstm = mode == "lstm"
    if hx is None:
        ht = None
    elif lstm:
        ht = (_t(hx[0], td, g), _t(hx[1], td, g))
    else:
        ht = _t(hx, td, g)
    inp = xt
    if lengths is not None:
        inp = torch.nn.utils.rnn.pack_padded_sequence(xt, torch.as_tensor(np.asarray(lengths)), batch_first=batch_first,
                                                      enforce_sorted=False)  # fmt: skip
    out, hn = m(inp, ht)
    if lengths is not None:
        out, _ = torch.nn.utils.rnn.pad_packed_sequence(
            out, batch_first=batch_first, total_length=x.shape[1 if batch_first else 0]
        )
    h_n, c_n = hn if lstm else (hn, None)
    if not g:
        return out.detach().numpy(), h_n.detach().numpy(), None if c_n is None else c_n.detach().numpy(), None
    gy, ghn, gcn = grad
    loss = (out * _t(gy, td)).sum() + (h_n * _t(ghn, td)).sum()
    if lstm:
        loss = loss + (c_n * _t(gcn, td)).sum()
    loss.backward()
    gh0 = gc0 = None
    if ht is not None:
        gh0 = (ht[0] if lstm else ht).grad.numpy()
        gc0 = ht[1].grad.numpy() if lstm else None
    grads = (xt.grad.numpy(), gh0, gc0, [p.grad.numpy() for p in m._flat_weights])
    return out.detach().numpy(), h_n.detach().numpy(), None if c_n is None else c_n.detach().numpy(), grads


# ------------------------------------------------------------------ error measurement
def max_abs_err(a, ref) -> float:
    a = np.asarray(a, np.float64)
    ref = np.asarray(ref, np.float64)
    if a.shape != ref.shape:
        raise AssertionError(f"shape {a.shape} != reference {ref.shape}")
    if a.size == 0:
        return 0.0
    both_nan = np.isnan(a) & np.isnan(ref)
    d = np.abs(np.where(both_nan, 0.0, a - ref))
    if np.isnan(d).any():
        return float("inf")
    return float(d.max())


def gate(ours, ref, torch_out, dtype) -> tuple[float, float, bool]:
    """(err_ours, err_torch, passed) for one output array."""
    scale = max(1.0, float(np.max(np.abs(np.asarray(ref, np.float64))))) if np.size(ref) else 1.0
    e = max_abs_err(ours, ref)
    if np.dtype(dtype) == np.float64:
        return e, 0.0, e <= GATE_REL64 * scale
    et = max_abs_err(torch_out, ref)
    return e, et, e <= GATE_FACTOR * et + GATE_FLOOR32 * scale


# ------------------------------------------------------------------ case generators
# Each generator yields callables case(dtype) -> list of (ours, ref64, torch32) triples
# (torch32 is None for float64) plus an optional list of exactness failures.
Case = Callable[[np.dtype], tuple[list, list]]


def _u(rng, shape, dtype, lo=-1.0, hi=1.0):
    return rng.uniform(lo, hi, shape).astype(dtype)


def _conv_cases(rng, n) -> Iterator[tuple[str, dict]]:
    """(class, spec) pairs; spec: x shape, w shape, kwargs, bias, backward."""

    def spec(cls, xs, ws, bias=True, **kw):
        return cls, {"xs": xs, "ws": ws, "kw": kw, "bias": bias}

    for i in range(n):
        N = 1 + i % 2
        H, W = 5 + int(rng.integers(0, 6)), 5 + int(rng.integers(0, 6))
        ci, co = 1 + int(rng.integers(0, 5)), 1 + int(rng.integers(0, 6))
        k = 1 + int(rng.integers(0, 4))
        yield spec("basic", (N, ci, H, W), (co, ci, k, k), bias=bool(i % 2))
        yield spec("stride", (N, ci, H, W), (co, ci, k, k), stride=(1 + i % 3, 2), padding=k // 2)
        yield spec(
            "padding-same", (N, ci, H, W), (co, ci, k, 1 + (i + 1) % 4), padding="same", dilation=1 + i % 2
        )
        mode = ["reflect", "replicate", "circular"][i % 3]
        pad = min(k // 2 + 1, H - 1, W - 1) if mode == "reflect" else k // 2 + 1
        yield spec("padding_mode", (N, ci, H, W), (co, ci, k, k), padding=pad, padding_mode=mode)
        yield spec(
            "dilation", (N, ci, H + 4, W + 4), (co, ci, 2 + i % 2, 2), dilation=(2, 1 + i % 3), padding=1
        )
        g = 2 + i % 2
        yield spec("groups", (N, g * ci, H, W), (g * (1 + i % 3), ci, k, k), groups=g, padding=k // 2)
        yield spec("depthwise", (N, ci + 1, H, W + 30), ((ci + 1) * (1 + i % 2), 1, 3, 3), groups=ci + 1,
                   padding=1, stride=1 + i % 2)  # fmt: skip
        s = spec(
            "backward",
            (N, ci, H, W),
            (co, ci, k, k),
            stride=1 + i % 2,
            padding=k // 2,
            dilation=1 + (i // 2) % 2,
        )
        yield s


def _run_conv(F, rng, dtype, cls, sp):
    x = _u(rng, sp["xs"], dtype)
    w = (_u(rng, sp["ws"], dtype) / np.sqrt(np.prod(sp["ws"][1:]))).astype(dtype)
    b = _u(rng, sp["ws"][0], dtype, -0.5, 0.5) if sp["bias"] else None
    kw = sp["kw"]
    x64, w64 = x.astype(np.float64), w.astype(np.float64)
    b64 = None if b is None else b.astype(np.float64)
    if cls != "backward":
        y = F.conv2d(x, w, b, **kw)
        r64 = torch_conv2d(x64, w64, b64, dtype=np.float64, **kw)[0]
        t32 = torch_conv2d(x, w, b, dtype=np.float32, **kw)[0] if dtype == np.float32 else None
        return [(y, r64, t32)], []
    yshape = torch_conv2d(x64, w64, b64, dtype=np.float64, **kw)[0].shape
    gy = _u(rng, yshape, dtype)
    gx, gw, gb = F.conv2d_backward(gy, x, w, **kw)
    r = torch_conv2d(x64, w64, b64, dtype=np.float64, grad_output=gy.astype(np.float64), **kw)
    t = torch_conv2d(x, w, b, dtype=np.float32, grad_output=gy, **kw) if dtype == np.float32 else (None,) * 4
    trip = [(gx, r[1], t[1]), (gw, r[2], t[2])]
    if b is not None:
        trip.append((gb, r[3], t[3]))
    return trip, []


def _pool_cases(rng, n):
    for i in range(n):
        N, C = i % 3, 1 + int(rng.integers(0, 4))
        H, W = 4 + int(rng.integers(0, 9)), 4 + int(rng.integers(0, 40))
        k = 2 + i % 3
        base = {"xs": (max(N, 1), C, H, W)}
        yield "basic", {**base, "kw": {"kernel_size": k}}
        yield (
            "padding",
            {
                **base,
                "kw": {
                    "kernel_size": (k, k + 1),
                    "stride": (1 + i % 2, 2),
                    "padding": (k // 2, (k + 1) // 2),
                },
            },
        )
        yield (
            "dilation",
            {**base, "kw": {"kernel_size": 2, "stride": 1 + i % 2, "dilation": (2, 1 + i % 2), "padding": 1}},
        )
        yield "ceil", {**base, "kw": {"kernel_size": k, "stride": 2, "padding": k // 2, "ceil_mode": True}}
        yield (
            "indices",
            {**base, "kw": {"kernel_size": k, "stride": 1 + i % 3, "padding": i % 2}, "ties": True},
        )
        yield (
            "backward",
            {
                **base,
                "kw": {"kernel_size": k, "stride": 1 + i % 2, "padding": k // 2, "ceil_mode": bool(i % 2)},
            },
        )


def _run_pool(F, rng, dtype, cls, sp):
    if sp.get("ties"):
        x = rng.integers(-3, 4, sp["xs"]).astype(dtype)  # many ties: first max must win
    else:
        x = _u(rng, sp["xs"], dtype)
    kw = sp["kw"]
    bad = []
    if cls == "backward":
        y, idx = F.max_pool2d(x, return_indices=True, **kw)
        gy = _u(rng, y.shape, dtype)
        gx = F.max_pool2d_backward(gy, x, idx, **kw)
        _, _, g64 = torch_max_pool2d(x.astype(np.float64), grad_output=gy.astype(np.float64), **kw)
        t32 = torch_max_pool2d(x, grad_output=gy, **kw)[2] if dtype == np.float32 else None
        return [(gx, g64, t32)], bad
    y, idx = F.max_pool2d(x, return_indices=True, **kw)
    ty, tidx, _ = torch_max_pool2d(x, **kw)
    if not np.array_equal(y, ty, equal_nan=True):
        bad.append("values differ from torch (max pooling must be exact)")
    if not np.array_equal(idx, tidx):
        bad.append(f"{int((idx != tidx).sum())} indices differ from torch")
    y2 = F.max_pool2d(x, **kw)
    if not np.array_equal(y2, y, equal_nan=True):
        bad.append("return_indices=False values differ")
    r64 = torch_max_pool2d(x.astype(np.float64), **kw)[0]
    return [(y, r64, ty if dtype == np.float32 else None)], bad


def _linear_cases(rng, n):
    for i in range(n):
        lead = [(3,), (2, 5), (1,), (4, 1, 3)][i % 4]
        fi, fo = 1 + int(rng.integers(0, 70)), 1 + int(rng.integers(0, 70))
        yield "forward", {"xs": (*lead, fi), "ws": (fo, fi), "bias": bool(i % 2)}
        yield "backward", {"xs": (*lead, fi), "ws": (fo, fi), "bias": True}
        m, k, nn = 1 + int(rng.integers(0, 40)), 1 + int(rng.integers(0, 90)), 1 + int(rng.integers(0, 70))
        yield "matmul", {"a": ((2,) if i % 2 else ()) + (m, k), "b": (k, nn)}


def _run_linear(F, rng, dtype, cls, sp):
    if cls == "matmul":
        a, b = _u(rng, sp["a"], dtype), _u(rng, sp["b"], dtype)
        y = F.matmul(a, b)
        r64 = a.astype(np.float64) @ b.astype(np.float64)
        t32 = None
        if dtype == np.float32:
            torch = _torch()
            t32 = torch.matmul(torch.from_numpy(a), torch.from_numpy(b)).numpy()
        return [(y, r64, t32)], []
    x, w = _u(rng, sp["xs"], dtype), (_u(rng, sp["ws"], dtype) / np.sqrt(sp["ws"][1])).astype(dtype)
    b = _u(rng, sp["ws"][0], dtype) if sp["bias"] else None
    x64, w64, b64 = x.astype(np.float64), w.astype(np.float64), None if b is None else b.astype(np.float64)
    if cls == "forward":
        y = F.linear(x, w, b)
        r = torch_linear(x64, w64, b64, dtype=np.float64)[0]
        t = torch_linear(x, w, b)[0] if dtype == np.float32 else None
        return [(y, r, t)], []
    gy = _u(rng, (*sp["xs"][:-1], sp["ws"][0]), dtype)
    gx, gw, gb = F.linear_backward(gy, x, w)
    r = torch_linear(x64, w64, b64, dtype=np.float64, grad_output=gy.astype(np.float64))
    t = torch_linear(x, w, b, grad_output=gy) if dtype == np.float32 else (None,) * 4
    return [(gx, r[1], t[1]), (gw, r[2], t[2]), (gb, r[3], t[3])], []


def _rnn_cases(rng, n):
    for mode in ("lstm", "gru", "rnn_tanh"):
        name = {"rnn_tanh": "rnn"}.get(mode, mode)
        for i in range(n):
            T, B, I, H = (
                2 + int(rng.integers(0, 6)),
                1 + int(rng.integers(0, 4)),
                1 + int(rng.integers(0, 9)),
                1 + int(rng.integers(0, 20)),
            )  # noqa: E501
            base = {"mode": mode, "T": T, "B": B, "I": I, "H": H, "num_layers": 1, "bidirectional": False,
                    "proj_size": 0, "lengths": False, "batch_first": bool(i % 2), "hx": bool((i + 1) % 2)}  # fmt: skip
            yield f"{name}/basic", base
            yield f"{name}/layers", {**base, "num_layers": 2 + i % 2}
            yield f"{name}/bidirectional", {**base, "bidirectional": True, "num_layers": 1 + i % 2}
            if mode == "lstm":
                yield f"{name}/proj", {**base, "H": max(H, 2), "proj_size": 1 + i % max(1, max(H, 2) - 1)}
            yield f"{name}/lengths", {**base, "lengths": True, "bidirectional": bool(i % 2)}
            yield (
                f"{name}/backward",
                {**base, "num_layers": 1 + i % 2, "bidirectional": bool((i // 2) % 2), "backward": True},
            )


def _run_rnn(F, rng, dtype, cls, sp):
    mode, T, B, I, H = sp["mode"], sp["T"], sp["B"], sp["I"], sp["H"]  # noqa: E741
    L, bi, P = sp["num_layers"], sp["bidirectional"], sp["proj_size"]
    D = 2 if bi else 1
    K = P or H
    bf = sp["batch_first"]
    shapes = rnn_param_shapes(mode, I, H, L, True, bi, P)
    s = 1.0 / np.sqrt(H)
    params = [_u(rng, sh, dtype, -s, s) for sh in shapes]
    x = _u(rng, (B, T, I) if bf else (T, B, I), dtype)
    hx = None
    if sp["hx"]:
        h0 = _u(rng, (L * D, B, K), dtype)
        hx = (h0, _u(rng, (L * D, B, H), dtype)) if mode == "lstm" else h0
    lengths = None
    if sp["lengths"]:
        lengths = rng.integers(1, T + 1, B)
        lengths[0] = T
    kw = {"num_layers": L, "bidirectional": bi, "batch_first": bf}
    if P:
        kw["proj_size"] = P
    ours_kw = dict(kw, proj_size=P, lengths=lengths)

    def up(a):
        if a is None:
            return None
        if isinstance(a, tuple):
            return tuple(up(e) for e in a)
        if isinstance(a, list):
            return [up(e) for e in a]
        return a.astype(np.float64)

    f32 = dtype == np.float32
    if not sp.get("backward"):
        out, h_n, c_n, _ = F.rnn_forward(mode, x, hx, params, **ours_kw)
        r = torch_rnn(mode, up(x), up(hx), up(params), lengths=lengths, dtype=np.float64, **kw)
        t = torch_rnn(mode, x, hx, params, lengths=lengths, dtype=np.float32, **kw) if f32 else (None,) * 4
        trip = [(out, r[0], t[0]), (h_n, r[1], t[1])]
        if mode == "lstm":
            trip.append((c_n, r[2], t[2]))
        return trip, []
    out, h_n, c_n, saved = F.rnn_forward(mode, x, hx, params, need_saved=True, **ours_kw)
    gy, ghn = _u(rng, out.shape, dtype), _u(rng, h_n.shape, dtype)
    gcn = _u(rng, c_n.shape, dtype) if mode == "lstm" else None
    gx, gh0, gc0, gp = F.rnn_backward(mode, gy, ghn, gcn, x, hx, params, saved, **ours_kw)
    r = torch_rnn(
        mode, up(x), up(hx), up(params), lengths=lengths, dtype=np.float64, grad=up((gy, ghn, gcn)), **kw
    )[3]
    t = (
        torch_rnn(mode, x, hx, params, lengths=lengths, dtype=np.float32, grad=(gy, ghn, gcn), **kw)[3]
        if f32
        else None
    )
    trip = [(gx, r[0], t and t[0])]
    if hx is not None:
        trip.append((gh0, r[1], t and t[1]))
        if mode == "lstm":
            trip.append((gc0, r[2], t and t[2]))
    for j, g in enumerate(gp):
        trip.append((g, r[3][j], t and t[3][j]))
    return trip, []


OPS = {
    "conv2d": (_conv_cases, _run_conv),
    "max_pool2d": (_pool_cases, _run_pool),
    "linear": (_linear_cases, _run_linear),
    "rnn": (_rnn_cases, _run_rnn),
}


def _available_ops(F):
    ok = []
    for op, fns in (("conv2d", ("conv2d", "conv2d_backward")), ("max_pool2d", ("max_pool2d", "max_pool2d_backward")),
                    ("linear", ("linear", "linear_backward", "matmul")), ("rnn", ("rnn_forward", "rnn_backward"))):  # fmt: skip
        if all(hasattr(F, f) for f in fns):
            ok.append(op)
    return ok


def run_matrix(ops=None, cases: int = 4, dtypes=("float32", "float64"), seed: int = 0) -> list[dict]:
    """Run the matrix on this process's ISA path; returns one row per (op, class, dtype)."""
    _torch()
    import warnings

    import pycnnrnn
    from pycnnrnn import functional as F

    warnings.filterwarnings("ignore", category=UserWarning, module="torch")  # e.g. oneDNN fallbacks

    isa = pycnnrnn.cpu_isa()
    rows: dict[tuple, dict] = {}
    for op in ops or _available_ops(F):
        gen, run = OPS[op]
        for dt_name in dtypes:
            dtype = np.dtype(dt_name).type
            rng = np.random.default_rng(seed)
            for cls, sp in gen(np.random.default_rng(seed), cases):
                key = (op, cls, dt_name)
                row = rows.setdefault(key, {"op": op, "class": cls, "dtype": dt_name, "isa": isa, "cases": 0,
                                            "err_ours": 0.0, "err_torch": 0.0, "passed": True, "failures": []})  # fmt: skip
                row["cases"] += 1
                try:
                    trips, bad = run(F, rng, dtype, cls, sp)
                except Exception as e:  # a crash of a valid case is a failure, recorded
                    row["passed"] = False
                    row["failures"].append(f"{type(e).__name__}: {e}"[:200])
                    continue
                for ours, ref, t in trips:
                    e, et, ok = gate(ours, ref, t, dtype)
                    row["err_ours"] = max(row["err_ours"], e)
                    row["err_torch"] = max(row["err_torch"], et)
                    if not ok:
                        row["passed"] = False
                        row["failures"].append(
                            f"case {row['cases']}: err {e:.3g} vs torch {et:.3g} ({sp})"[:300]
                        )
                if bad:
                    row["passed"] = False
                    row["failures"].extend(f"case {row['cases']}: {b}" for b in bad)
    return list(rows.values())


# ------------------------------------------------------------------ CLI
def _isas_here() -> list[str]:
    import pycnnrnn

    best = pycnnrnn.cpu_isa()
    if best not in ISA_ORDER:  # e.g. neon: only the native path
        return [best]
    return ISA_ORDER[ISA_ORDER.index(best) :]


def _run_isa_subprocess(isa: str, native: str, cases: int, timeout: float) -> list[dict]:
    env = dict(os.environ)
    if isa != native:
        env["PYCNNRNN_ISA"] = isa
    else:
        env.pop("PYCNNRNN_ISA", None)
    pkg_parent = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    env["PYTHONPATH"] = os.pathsep.join(p for p in (pkg_parent, env.get("PYTHONPATH", "")) if p)
    code = ("import json, sys; from pycnnrnn.conformance import run_matrix; "
            f"json.dump(run_matrix(cases={cases}), sys.stdout)")  # fmt: skip
    # run outside any source tree so the same (built) pycnnrnn is imported
    r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env, timeout=timeout,
                       cwd=tempfile.gettempdir())  # fmt: skip
    if r.returncode != 0:
        raise RuntimeError(f"conformance run on ISA {isa} failed (exit {r.returncode}):\n{r.stderr[-2000:]}")
    rows = json.loads(r.stdout)
    for row in rows:
        if row["isa"] != isa:
            raise RuntimeError(f"asked for ISA {isa}, the child ran {row['isa']}")
    return rows


def to_markdown(rows: list[dict], meta: dict) -> str:
    lines = [
        "# pycnnrnn conformance matrix",
        "",
        f"Generated {meta['date']} by `python -m pycnnrnn conformance` (pycnnrnn {meta['version']}, "
        f"torch {meta['torch']}, numpy {meta['numpy']}, {meta['cases_per_class']} seeded cases per class).",
        "",
        "err = max |result - float64 reference| over all cases and outputs. float32 gate: "
        "err(pycnnrnn) <= 2 x err(torch float32) + 1e-6 x max(1, |ref|) on every case; float64 gate: "
        "err <= 1e-10 x max(1, |ref|) against torch float64. Max pooling must also match torch exactly "
        "(values and indices).",
        "",
        f"**{sum(r['passed'] for r in rows)}/{len(rows)} rows pass.**",
        "",
        "| op | class | dtype | ISA | cases | err pycnnrnn | err torch | pass |",
        "|---|---|---|---|---:|---:|---:|---|",
    ]
    for r in rows:
        et = "ref" if r["dtype"] == "float64" else f"{r['err_torch']:.2e}"
        lines.append(f"| {r['op']} | {r['class']} | {r['dtype']} | {r['isa']} | {r['cases']} | {r['err_ours']:.2e} | "
                     f"{et} | {'pass' if r['passed'] else '**FAIL**'} |")  # fmt: skip
    fails = [r for r in rows if not r["passed"]]
    if fails:
        lines += ["", "## Failures", ""]
        for r in fails:
            for f in r["failures"][:5]:
                lines.append(f"- {r['op']} {r['class']} {r['dtype']} {r['isa']}: {f}")
    return "\n".join(lines) + "\n"


def add_args(ap: argparse.ArgumentParser) -> None:
    ap.add_argument(
        "--out", default=".", help="directory for conformance.json and conformance.md (default: .)"
    )
    ap.add_argument(
        "--isa", default=None, help="comma-separated ISA paths (default: every path this CPU runs)"
    )
    ap.add_argument("--cases", type=int, default=4, help="seeded cases per parameter class (default: 4)")
    ap.add_argument("--timeout", type=float, default=900, help="seconds per ISA run (default: 900)")


def run(args: argparse.Namespace) -> int:
    """Run the matrix on every requested ISA path, write the files, print the table.
    Returns 0 when every row passes, 1 otherwise. Raises ImportError without torch and
    ValueError for a bad --isa/--cases."""
    torch = _torch()
    import pycnnrnn

    if args.cases < 1:
        raise ValueError(f"--cases must be >= 1, got {args.cases}")
    native = pycnnrnn.cpu_isa()
    here = _isas_here()
    isas = args.isa.split(",") if args.isa else here
    for isa in isas:
        if isa not in here:
            raise ValueError(f"ISA {isa!r} is not available here (available: {', '.join(here)})")
    t0 = time.time()
    rows = []
    for isa in isas:
        print(f"running ISA path {isa} ...", file=sys.stderr, flush=True)
        rows += _run_isa_subprocess(isa, native, args.cases, args.timeout)
    order = {op: i for i, op in enumerate(OPS)}
    rows.sort(
        key=lambda r: (order[r["op"]], r["dtype"], ISA_ORDER.index(r["isa"]) if r["isa"] in ISA_ORDER else 9)
    )
    meta = {
        "date": time.strftime("%Y-%m-%d %H:%M:%S UTC", time.gmtime()),
        "version": pycnnrnn.__version__,
        "torch": torch.__version__,
        "numpy": np.__version__,
        "cases_per_class": args.cases,
        "isas": isas,
        "seconds": round(time.time() - t0, 1),
    }
    os.makedirs(args.out, exist_ok=True)
    jpath, mpath = os.path.join(args.out, "conformance.json"), os.path.join(args.out, "conformance.md")
    with open(jpath, "w") as f:
        json.dump({"meta": meta, "rows": rows}, f, indent=1)
    md = to_markdown(rows, meta)
    with open(mpath, "w") as f:
        f.write(md)
    print(md)
    print(f"wrote {mpath} and {jpath}", file=sys.stderr)
    return 0 if all(r["passed"] for r in rows) else 1


def main(argv=None) -> int:
    """Standalone entry point (``python -m pycnnrnn.conformance``)."""
    ap = argparse.ArgumentParser(prog="python -m pycnnrnn conformance", description=__doc__.split("\n\n")[0])
    add_args(ap)
    args = ap.parse_args(argv)
    try:
        return run(args)
    except (ImportError, ValueError) as e:
        print(f"pycnnrnn conformance: error: {e}", file=sys.stderr)
        return 2


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
