"""Recurrent layers: pycnnrnn vs torch vs onnxruntime (same weights, same run, 2 threads).

Cases (issue 6): LSTM(300, 512, num_layers=2), T=30, forward B=1/8/64 (torch, onnxruntime), also
with pycnnrnn's prepared weights (the `prepared` groups);
forward+backward B=1/64 (torch); LSTMCell(512, 512) one step B=1 (torch); GRU and RNN forward
at the same shapes (onnxruntime, torch). onnxruntime runs torch.onnx.export'ed models
(needs the onnx package). Run:
    pytest bench/bench_rnn.py --benchmark-enable -p no:cacheprovider
"""

from __future__ import annotations

import importlib.util
import io

import numpy as np
import pytest

import pycnnrnn
from pycnnrnn.ops import rnn as R

torch = pytest.importorskip("torch")

I, H, L, T = 300, 512, 2, 30
IMPLS = ["pycnnrnn", "torch"] + (
    ["onnxruntime"] if all(importlib.util.find_spec(m) is not None for m in ("onnx", "onnxruntime")) else []
)


def _module(kind):
    torch.manual_seed(0)
    if kind == "lstm":
        return torch.nn.LSTM(I, H, L).eval()
    if kind == "gru":
        return torch.nn.GRU(I, H, L).eval()
    return torch.nn.RNN(I, H, L).eval()


def _flops(kind, B, backward=False):
    G = {"lstm": 4, "gru": 3, "rnn_tanh": 1}[kind]
    f = 2 * T * B * G * H * (I + H) + 2 * T * B * G * H * (2 * H)  # layer 0 + layer 1 (input 512)
    return 3 * f if backward else f


def _ort_session(m, x):
    import onnxruntime as ort

    buf = io.BytesIO()
    torch.onnx.export(m, (torch.from_numpy(x),), buf, dynamo=False, opset_version=17)
    so = ort.SessionOptions()
    so.intra_op_num_threads = pycnnrnn.get_num_threads()
    so.inter_op_num_threads = 1
    sess = ort.InferenceSession(buf.getvalue(), so, providers=["CPUExecutionProvider"])
    name = sess.get_inputs()[0].name
    return lambda: sess.run(None, {name: x})


def _forward_fn(impl, kind, m, x, prepared=False):
    if impl == "pycnnrnn":
        params = [p.detach().numpy() for p in m._flat_weights]
        if prepared:  # weight_ih and weight_hh packed once, as nn.LSTM.prepack() does and as
            # onnxruntime packs its session's weights (W and R)
            params = [R.prepare_rnn_weight(p) if n.startswith("weight_") else p
                      for n, p in zip(m._flat_weights_names, params)]  # fmt: skip
        mode = "rnn_tanh" if kind == "rnn" else kind
        return lambda: R.rnn_forward(mode, x, None, params, L)
    if impl == "torch":
        xt = torch.from_numpy(x)

        def run():
            with torch.no_grad():
                return m(xt)

        return run
    return _ort_session(m, x)


@pytest.mark.parametrize("B", [1, 8, 64])
def test_lstm_forward(benchmark, interleaved, B):
    m = _module("lstm")
    x = np.random.default_rng(0).standard_normal((T, B, I)).astype(np.float32)
    benchmark.group = f"rnn-lstm300x512x2-T30-fwd-B{B}"
    benchmark.extra_info["flops"] = _flops("lstm", B)
    interleaved({impl: _forward_fn(impl, "lstm", m, x) for impl in IMPLS})


# pycnnrnn with prepared weights (R.prepare_rnn_weight, nn.LSTM.prepack()); torch and
# onnxruntime run as in test_lstm_forward (onnxruntime packs its weights at session creation).
@pytest.mark.parametrize("B", [1, 8, 64])
def test_lstm_forward_prepared(benchmark, interleaved, B):
    m = _module("lstm")
    x = np.random.default_rng(0).standard_normal((T, B, I)).astype(np.float32)
    benchmark.group = f"rnn-lstm300x512x2-T30-fwd-prepared-B{B}"
    benchmark.extra_info["flops"] = _flops("lstm", B)
    interleaved({impl: _forward_fn(impl, "lstm", m, x, prepared=True) for impl in IMPLS})


@pytest.mark.parametrize("kind", ["gru", "rnn"])
@pytest.mark.parametrize("B", [1, 64])
def test_gru_rnn_forward(benchmark, interleaved, kind, B):
    m = _module(kind)
    x = np.random.default_rng(0).standard_normal((T, B, I)).astype(np.float32)
    benchmark.group = f"rnn-{kind}300x512x2-T30-fwd-B{B}"
    benchmark.extra_info["flops"] = _flops("gru" if kind == "gru" else "rnn_tanh", B)
    interleaved({impl: _forward_fn(impl, kind, m, x) for impl in IMPLS})


@pytest.mark.parametrize("B", [1, 64])
def test_lstm_forward_backward(benchmark, interleaved, B):
    m = _module("lstm").train()
    x = np.random.default_rng(0).standard_normal((T, B, I)).astype(np.float32)
    gy = np.random.default_rng(1).standard_normal((T, B, H)).astype(np.float32)
    params = [p.detach().numpy() for p in m._flat_weights]

    def ours():
        y, h, c, saved = R.rnn_forward("lstm", x, None, params, L, training=True, need_saved=True)
        return R.rnn_backward("lstm", gy, None, None, x, None, params, saved, L)

    gyt = torch.from_numpy(gy)

    def theirs():
        xt = torch.from_numpy(x).requires_grad_()
        m.zero_grad(set_to_none=True)
        y, _ = m(xt)
        y.backward(gyt)
        return xt.grad

    benchmark.group = f"rnn-lstm300x512x2-T30-fwdbwd-B{B}"
    benchmark.extra_info["flops"] = _flops("lstm", B, backward=True)
    interleaved({"pycnnrnn": ours, "torch": theirs})


def test_lstm_cell_step(benchmark, interleaved):
    torch.manual_seed(0)
    cell = torch.nn.LSTMCell(512, 512)
    rng = np.random.default_rng(0)
    x, h, c = (rng.standard_normal((1, 512)).astype(np.float32) for _ in range(3))
    w = [p.detach().numpy() for p in (cell.weight_ih, cell.weight_hh, cell.bias_ih, cell.bias_hh)]
    xt, ht, ct = torch.from_numpy(x), torch.from_numpy(h), torch.from_numpy(c)

    def theirs():
        with torch.no_grad():
            return cell(xt, (ht, ct))

    benchmark.group = "rnn-lstmcell512-B1-step"
    benchmark.extra_info["flops"] = 2 * 4 * 512 * 1024
    interleaved({"pycnnrnn": lambda: R.lstm_cell(x, (h, c), *w), "torch": theirs})
