"""conv2d benchmarks: pycnnrnn vs torch vs onnxruntime, same run, same thread count.

Cases (float32): the VGG16 conv layers (3x3, pad 1; the 9 distinct shapes of the 13 layers,
N=1; N=8 with --slow-conv / PYCNNRNN_BENCH_N8=1), depthwise 3x3 N=8 C=256 56x56, 1x1 N=8
256->512 28x28, 7x7 stride-2 stem N=8 3->64 224x224, dilated 3x3 (d=2) N=8 128->128 56x56,
and backward (data + weight + bias) N=8 128->128@56 and 256->256@28 vs torch autograd's
convolution_backward. extra_info["flops"] = 2 * MACs (backward: 2 GEMMs' worth).

onnxruntime runs a one-node Conv model built with onnx.helper (weights as initializers),
intra_op_num_threads = pycnnrnn.get_num_threads().

    PYTHONPATH=build/dev-conv/stage pytest bench/bench_conv2d.py --benchmark-enable -p no:cacheprovider
"""

from __future__ import annotations

import importlib.util
import os
import tempfile

import numpy as np
import pytest

import pycnnrnn

F = pycnnrnn.functional
HAVE_TORCH = importlib.util.find_spec("torch") is not None
HAVE_ORT = all(importlib.util.find_spec(m) is not None for m in ("onnx", "onnxruntime"))

# (name, N, Cin, Cout, HW, k, stride, pad, dilation, groups)
VGG = [
    ("vgg-conv1_1", 3, 64, 224),
    ("vgg-conv1_2", 64, 64, 224),
    ("vgg-conv2_1", 64, 128, 112),
    ("vgg-conv2_2", 128, 128, 112),
    ("vgg-conv3_1", 128, 256, 56),
    ("vgg-conv3_2+3", 256, 256, 56),
    ("vgg-conv4_1", 256, 512, 28),
    ("vgg-conv4_2+3", 512, 512, 28),
    ("vgg-conv5_x3", 512, 512, 14),
]
BATCHES = [1, 8] if os.environ.get("PYCNNRNN_BENCH_N8") else [1]
CASES = [(f"{name}-N{n}", n, ci, co, hw, 3, 1, 1, 1, 1) for n in BATCHES for name, ci, co, hw in VGG] + [
    ("depthwise3x3-N8-C256-56", 8, 256, 256, 56, 3, 1, 1, 1, 256),
    ("pointwise1x1-N8-256to512-28", 8, 256, 512, 28, 1, 1, 0, 1, 1),
    ("stem7x7s2-N8-3to64-224", 8, 3, 64, 224, 7, 2, 3, 1, 1),
    ("dilated3x3d2-N8-128-56", 8, 128, 128, 56, 3, 1, 2, 2, 1),
]
BWD_CASES = [
    ("bwd3x3-N8-128-56", 8, 128, 128, 56, 3, 1, 1, 1, 1),
    ("bwd3x3-N8-256-28", 8, 256, 256, 28, 3, 1, 1, 1, 1),
]


def _out(hw, k, s, p, d):
    return (hw + 2 * p - d * (k - 1) - 1) // s + 1


def _flops(case):
    _, n, ci, co, hw, k, s, p, d, g = case
    o = _out(hw, k, s, p, d)
    return 2.0 * n * co * o * o * (ci // g) * k * k


def _data(case):
    _, n, ci, co, hw, k, s, p, d, g = case
    rng = np.random.default_rng(0)
    x = np.maximum(rng.standard_normal((n, ci, hw, hw), dtype=np.float32), 0)
    w = (rng.standard_normal((co, ci // g, k, k)) * np.sqrt(2.0 / (ci // g * k * k))).astype(np.float32)
    b = rng.standard_normal(co).astype(np.float32) * 0.1
    return x, w, b


def _rounds(case):  # rounds of BLOCK timed calls per implementation
    return max(5, min(10, int(7e9 / _flops(case))))


def _ort_session(case, w, b):
    import onnx
    import onnxruntime as ort
    from onnx import TensorProto, helper, numpy_helper

    _, n, ci, co, hw, k, s, p, d, g = case
    node = helper.make_node(
        "Conv",
        ["x", "w", "b"],
        ["y"],
        kernel_shape=[k, k],
        strides=[s, s],
        pads=[p, p, p, p],
        dilations=[d, d],
        group=g,
    )
    graph = helper.make_graph(
        [node],
        "conv",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, [n, ci, hw, hw])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, None)],
        initializer=[numpy_helper.from_array(w, "w"), numpy_helper.from_array(b, "b")],
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 13)])
    model.ir_version = 8
    so = ort.SessionOptions()
    so.intra_op_num_threads = pycnnrnn.get_num_threads()
    so.inter_op_num_threads = 1
    with tempfile.TemporaryDirectory() as tmp:
        path = os.path.join(tmp, "conv.onnx")
        onnx.save(model, path)
        return ort.InferenceSession(path, so, providers=["CPUExecutionProvider"])


def _forward(benchmark, interleaved, case, prepared):
    name, n, ci, co, hw, k, s, p, d, g = case
    x, w, b = _data(case)
    benchmark.group = f"conv2d-fwd-{'prepared-' if prepared else ''}{name}"
    benchmark.extra_info["flops"] = _flops(case)
    weight = F.prepare_conv2d_weight(w) if prepared else w
    fns = {"pycnnrnn": lambda: F.conv2d(x, weight, b, s, p, d, g)}
    if HAVE_TORCH:
        import torch

        tx, tw, tb = (torch.from_numpy(a) for a in (x, w, b))

        def torch_conv():
            with torch.no_grad():
                return torch.nn.functional.conv2d(tx, tw, tb, s, p, d, g)

        fns["torch"] = torch_conv
    if HAVE_ORT:
        sess = _ort_session(case, w, b)
        fns["onnxruntime"] = lambda: sess.run(["y"], {"x": x})
    interleaved(fns, rounds=_rounds(case))


@pytest.mark.parametrize("case", CASES, ids=[c[0] for c in CASES])
def test_forward(benchmark, interleaved, case):
    _forward(benchmark, interleaved, case, prepared=False)


# The VGG layers at N=1 once more with pycnnrnn on prepare_conv2d_weight (the Winograd matrices
# kept from call to call, as onnxruntime keeps its session's prepacked initializers and as
# Module.prepack() runs a model); torch eager has no such step.
PREPARED_CASES = [c for c in CASES if c[0].startswith("vgg-") and c[1] == 1]


@pytest.mark.parametrize("case", PREPARED_CASES, ids=[c[0] for c in PREPARED_CASES])
def test_forward_prepared(benchmark, interleaved, case):
    _forward(benchmark, interleaved, case, prepared=True)


@pytest.mark.parametrize("case", BWD_CASES, ids=[c[0] for c in BWD_CASES])
def test_backward(benchmark, interleaved, case):
    name, n, ci, co, hw, k, s, p, d, g = case
    x, w, b = _data(case)
    o = _out(hw, k, s, p, d)
    gy = np.random.default_rng(1).standard_normal((n, co, o, o), dtype=np.float32)
    benchmark.group = f"conv2d-bwd-{name}"
    benchmark.extra_info["flops"] = 2 * _flops(case)  # grad_input + grad_weight
    fns = {"pycnnrnn": lambda: F.conv2d_backward(gy, x, w, s, p, d, g)}
    if HAVE_TORCH:
        import torch

        tg, tx, tw = (torch.from_numpy(a) for a in (gy, x, w))
        args = (tg, tx, tw, [co], [s, s], [p, p], [d, d], False, [0, 0], g, [True, True, True])
        fns["torch"] = lambda: torch.ops.aten.convolution_backward(*args)
    interleaved(fns, rounds=max(5, _rounds(case) // 2))
