"""max_pool2d benchmarks: pycnnrnn vs torch vs onnxruntime, same run, same thread count.

Cases (float32, C=64, 224x224): 2x2/2 and 3x3/2, N=1 (cache-resident) and N=8 (memory
bound). Groups: forward (all three), forward with indices and backward (pycnnrnn vs torch;
onnxruntime's MaxPool has an Indices output, timed too). extra_info["bytes"] = bytes read +
written, so the table prints the fraction of the measured copy bandwidth.

    PYTHONPATH=build/dev-pool/stage pytest bench/bench_pool2d.py --benchmark-enable -p no:cacheprovider
"""

from __future__ import annotations

import os
import tempfile

import numpy as np
import pytest

import pycnnrnn

F = pycnnrnn.functional

CASES = [(1, 2, 2), (8, 2, 2), (1, 3, 2), (8, 3, 2)]  # (N, kernel, stride)
C, HW = 64, 224
IMPLS = ["pycnnrnn", "torch", "onnxruntime"]


def _case_id(c):
    n, k, s = c
    return f"N{n}-k{k}s{s}"


def _input(n):
    rng = np.random.default_rng(0)
    return rng.standard_normal((n, C, HW, HW), dtype=np.float32)


def _out_hw(k, s):
    return (HW - k) // s + 1


def _ort_session(k, s, with_indices):
    onnx = pytest.importorskip("onnx")
    ort = pytest.importorskip("onnxruntime")
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


@pytest.mark.parametrize("impl", IMPLS)
@pytest.mark.parametrize("case", CASES, ids=_case_id)
def test_forward(benchmark, timed, impl, case):
    n, k, s = case
    x = _input(n)
    o = _out_hw(k, s)
    benchmark.group = f"max_pool2d-fwd-{_case_id(case)}"
    benchmark.extra_info["bytes"] = x.nbytes + n * C * o * o * 4
    if impl == "pycnnrnn":
        timed(F.max_pool2d, x, k, s)
    elif impl == "torch":
        torch = pytest.importorskip("torch")
        tx = torch.from_numpy(x)
        with torch.no_grad():
            timed(torch.nn.functional.max_pool2d, tx, k, s)
    else:
        sess, names = _ort_session(k, s, False)
        timed(sess.run, names, {"x": x})


@pytest.mark.parametrize("impl", IMPLS)
@pytest.mark.parametrize("case", CASES, ids=_case_id)
def test_forward_indices(benchmark, timed, impl, case):
    n, k, s = case
    x = _input(n)
    o = _out_hw(k, s)
    benchmark.group = f"max_pool2d-fwd-idx-{_case_id(case)}"
    benchmark.extra_info["bytes"] = x.nbytes + n * C * o * o * (4 + 8)
    if impl == "pycnnrnn":
        timed(F.max_pool2d, x, k, s, return_indices=True)
    elif impl == "torch":
        torch = pytest.importorskip("torch")
        tx = torch.from_numpy(x)
        with torch.no_grad():
            timed(torch.nn.functional.max_pool2d, tx, k, s, return_indices=True)
    else:
        sess, names = _ort_session(k, s, True)
        timed(sess.run, names, {"x": x})


@pytest.mark.parametrize("impl", ["pycnnrnn", "torch"])
@pytest.mark.parametrize("case", CASES, ids=_case_id)
def test_backward(benchmark, timed, impl, case):
    n, k, s = case
    x = _input(n)
    y, idx = F.max_pool2d(x, k, s, return_indices=True)
    gy = np.random.default_rng(1).standard_normal(y.shape, dtype=np.float32)
    benchmark.group = f"max_pool2d-bwd-{_case_id(case)}"
    benchmark.extra_info["bytes"] = gy.nbytes + idx.nbytes + x.nbytes
    if impl == "pycnnrnn":
        timed(F.max_pool2d_backward, gy, x, idx, k, s)
    else:
        torch = pytest.importorskip("torch")
        tg, tx, ti = torch.from_numpy(gy), torch.from_numpy(x), torch.from_numpy(idx)
        bw = torch.ops.aten.max_pool2d_with_indices_backward
        timed(bw, tg, tx, [k, k], [s, s], [0, 0], [1, 1], False, ti)
