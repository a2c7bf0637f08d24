"""max_pool2d benchmarks: pycnnrnn vs torch vs onnxruntime, same run, same thread count.

Cases (float32, C=64, 224x224): 2x2/2 and 3x3/2, N=1 (cache-resident) and N=8 (memory
bound). Groups: forward (all three), forward with indices and backward (pycnnrnn vs torch;
onnxruntime's MaxPool has an Indices output, timed too). extra_info["bytes"] = bytes read +
written, so the table prints the fraction of the measured copy bandwidth.

    PYTHONPATH=build/dev-pool/stage pytest bench/bench_pool2d.py --benchmark-enable -p no:cacheprovider
"""

from __future__ import annotations

import importlib.util
import os
import tempfile

import numpy as np
import pytest

import pycnnrnn

F = pycnnrnn.functional

CASES = [(1, 2, 2), (8, 2, 2), (1, 3, 2), (8, 3, 2)]  # (N, kernel, stride)
C, HW = 64, 224
HAVE_TORCH = importlib.util.find_spec("torch") is not None
HAVE_ORT = all(importlib.util.find_spec(m) is not None for m in ("onnx", "onnxruntime"))


def _case_id(c):
    n, k, s = c
    return f"N{n}-k{k}s{s}"


def _input(n):
    rng = np.random.default_rng(0)
    return rng.standard_normal((n, C, HW, HW), dtype=np.float32)


def _out_hw(k, s):
    return (HW - k) // s + 1


def _ort_session(k, s, with_indices):
    import onnx
    import onnxruntime as ort
    from onnx import TensorProto, helper

    outs = [helper.make_tensor_value_info("y", TensorProto.FLOAT, None)]
    names = ["y"]
    if with_indices:
        outs.append(helper.make_tensor_value_info("i", TensorProto.INT64, None))
        names.append("i")
    node = helper.make_node("MaxPool", ["x"], names, kernel_shape=[k, k], strides=[s, s])
    graph = helper.make_graph(
        [node], "pool", [helper.make_tensor_value_info("x", TensorProto.FLOAT, [None, C, HW, HW])], outs
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 13)])
    model.ir_version = 8
    so = ort.SessionOptions()
    so.intra_op_num_threads = pycnnrnn.get_num_threads()
    so.inter_op_num_threads = 1
    with tempfile.TemporaryDirectory() as d:
        path = os.path.join(d, "pool.onnx")
        onnx.save(model, path)
        sess = ort.InferenceSession(path, so, providers=["CPUExecutionProvider"])
    return sess, names


def _forward(benchmark, interleaved, case, with_indices):
    n, k, s = case
    x = _input(n)
    o = _out_hw(k, s)
    benchmark.group = f"max_pool2d-fwd-{'idx-' if with_indices else ''}{_case_id(case)}"
    benchmark.extra_info["bytes"] = x.nbytes + n * C * o * o * (4 + (8 if with_indices else 0))
    fns = {"pycnnrnn": lambda: F.max_pool2d(x, k, s, return_indices=with_indices)}
    if HAVE_TORCH:
        import torch

        tx = torch.from_numpy(x)

        def theirs():
            with torch.no_grad():
                return torch.nn.functional.max_pool2d(tx, k, s, return_indices=with_indices)

        fns["torch"] = theirs
    if HAVE_ORT:
        sess, names = _ort_session(k, s, with_indices)
        fns["onnxruntime"] = lambda: sess.run(names, {"x": x})
    interleaved(fns)


@pytest.mark.parametrize("case", CASES, ids=_case_id)
def test_forward(benchmark, interleaved, case):
    _forward(benchmark, interleaved, case, with_indices=False)


@pytest.mark.parametrize("case", CASES, ids=_case_id)
def test_forward_indices(benchmark, interleaved, case):
    _forward(benchmark, interleaved, case, with_indices=True)


@pytest.mark.parametrize("case", CASES, ids=_case_id)
def test_backward(benchmark, interleaved, case):
    n, k, s = case
    x = _input(n)
    y, idx = F.max_pool2d(x, k, s, return_indices=True)
    gy = np.random.default_rng(1).standard_normal(y.shape, dtype=np.float32)
    benchmark.group = f"max_pool2d-bwd-{_case_id(case)}"
    benchmark.extra_info["bytes"] = gy.nbytes + idx.nbytes + x.nbytes
    fns = {"pycnnrnn": lambda: F.max_pool2d_backward(gy, x, idx, k, s)}
    if HAVE_TORCH:
        import torch

        tg, tx, ti = torch.from_numpy(gy), torch.from_numpy(x), torch.from_numpy(idx)
        bw = torch.ops.aten.max_pool2d_with_indices_backward
        fns["torch"] = lambda: bw(tg, tx, [k, k], [s, s], [0, 0], [1, 1], False, ti)
    interleaved(fns)
