"""Whole-model benchmarks: VGG16 forward (eval, float32, 224x224), pycnnrnn vs torch vs
onnxruntime on the same weights, same run, same thread count.

N=1 always; N=8 with PYCNNRNN_BENCH_N8=1 (slow). onnxruntime runs the torch twin exported
with torch.onnx.export(..., dynamo=False) (needs the onnx package), intra_op_num_threads =
pycnnrnn.get_num_threads(). extra_info["flops"] = 2 * multiply-adds (convs + linears).

    PYTHONPATH=build/dev-py/stage pytest bench/bench_models.py --benchmark-enable -p no:cacheprovider
"""

from __future__ import annotations

import importlib.util
import os
import tempfile

import numpy as np
import pytest

import pycnnrnn
from pycnnrnn import models
from pycnnrnn.nn import init
from pycnnrnn.nn.summary import summary

HAVE_TORCH = importlib.util.find_spec("torch") is not None
HAVE_ORT = HAVE_TORCH and all(importlib.util.find_spec(m) is not None for m in ("onnx", "onnxruntime"))
BATCHES = [1, 8] if os.environ.get("PYCNNRNN_BENCH_N8") else [1]


@pytest.fixture(scope="module")
def vgg16():
    init.manual_seed(0)
    model = models.vgg16().eval()
    x = np.random.default_rng(0).random((1, 3, 224, 224), dtype=np.float32)
    macs = summary(model, input_data=x, verbose=False).mult_adds  # per image
    return model, macs


@pytest.fixture(scope="module")
def torch_vgg16(vgg16):
    torch = pytest.importorskip("torch")
    from pycnnrnn.models import torch_reference as R

    torch.set_num_threads(pycnnrnn.get_num_threads())
    return R.twin_of(vgg16[0], lambda: R.vgg("vgg16")).eval()


@pytest.fixture(scope="module")
def ort_vgg16(torch_vgg16):
    import onnxruntime as ort
    import torch

    so = ort.SessionOptions()
    so.intra_op_num_threads = pycnnrnn.get_num_threads()
    so.inter_op_num_threads = 1
    with tempfile.TemporaryDirectory() as tmp:
        path = os.path.join(tmp, "vgg16.onnx")
        torch.onnx.export(
            torch_vgg16,
            (torch.zeros(1, 3, 224, 224),),
            path,
            input_names=["x"],
            output_names=["y"],
            dynamic_axes={"x": {0: "n"}, "y": {0: "n"}},
            dynamo=False,
        )
        return ort.InferenceSession(path, so, providers=["CPUExecutionProvider"])


@pytest.fixture(scope="module")
def vgg16_prepacked(vgg16):
    import copy

    return copy.deepcopy(vgg16[0]).prepack()


def _vgg16(benchmark, interleaved, request, vgg16, n, prepacked):
    model, macs = vgg16
    x = np.random.default_rng(1).random((n, 3, 224, 224), dtype=np.float32)
    benchmark.group = f"vgg16-fwd-{'prepacked-' if prepacked else ''}N{n}"
    benchmark.extra_info["flops"] = 2.0 * macs * n
    ours = request.getfixturevalue("vgg16_prepacked") if prepacked else model
    fns = {"pycnnrnn": lambda: ours(x)}
    if HAVE_TORCH:
        import torch

        tm, tx = request.getfixturevalue("torch_vgg16"), torch.from_numpy(x)

        def theirs():
            with torch.no_grad():
                return tm(tx)

        fns["torch"] = theirs
    if HAVE_ORT:
        sess = request.getfixturevalue("ort_vgg16")
        fns["onnxruntime"] = lambda: sess.run(["y"], {"x": x})
    interleaved(fns, rounds=5 if n == 1 else 3)


@pytest.mark.parametrize("n", BATCHES, ids=lambda n: f"N{n}")
def test_vgg16_forward(benchmark, interleaved, request, vgg16, n):
    _vgg16(benchmark, interleaved, request, vgg16, n, prepacked=False)


# pycnnrnn after Module.prepack() (the Winograd matrices kept across calls, as onnxruntime keeps
# its session's prepacked initializers); torch eager has no such step.
@pytest.mark.parametrize("n", BATCHES, ids=lambda n: f"N{n}")
def test_vgg16_forward_prepacked(benchmark, interleaved, request, vgg16, n):
    _vgg16(benchmark, interleaved, request, vgg16, n, prepacked=True)
