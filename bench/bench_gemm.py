"""GEMM / Linear benchmarks: pycnnrnn vs numpy (OpenBLAS) vs torch (MKL), float32, same run.

Run: pytest bench/bench_gemm.py --benchmark-enable -p no:cacheprovider
Square cases report FLOP/s against the measured FMA peak; the M=1 case is memory-bound and
reports bytes (B read once + A + C) against the measured copy bandwidth."""

from __future__ import annotations

import importlib.util

import numpy as np
import pytest

import pycnnrnn
from pycnnrnn import functional as F

HAVE_TORCH = importlib.util.find_spec("torch") is not None
IMPLS = ["pycnnrnn", "numpy"] + (["torch"] if HAVE_TORCH else [])

# (name, M, K, N, memory-bound)
CASES = [
    ("512^3", 512, 512, 512, False),
    ("1024^3", 1024, 1024, 1024, False),
    ("2048^3", 2048, 2048, 2048, False),
    ("30x300@300x2048", 30, 300, 2048, False),
    ("64x512@512x2048", 64, 512, 2048, False),
    ("1x25088@25088x4096", 1, 25088, 4096, True),
    ("8x25088@25088x4096", 8, 25088, 4096, False),
]


def _fn(impl, a, b):
    if impl == "pycnnrnn":
        return lambda: F.matmul(a, b)
    if impl == "numpy":
        return lambda: np.matmul(a, b)
    import torch

    ta, tb = torch.from_numpy(a), torch.from_numpy(b)
    return lambda: torch.mm(ta, tb)


@pytest.mark.parametrize("case", CASES, ids=[c[0] for c in CASES])
def test_matmul(benchmark, interleaved, case):
    name, m, k, n, membound = case
    rng = np.random.default_rng(0)
    a = rng.standard_normal((m, k), dtype=np.float32)
    b = rng.standard_normal((k, n), dtype=np.float32)
    benchmark.group = f"matmul-f32-{name}"
    if membound:
        benchmark.extra_info["bytes"] = 4 * (m * k + k * n + m * n)
    else:
        benchmark.extra_info["flops"] = 2 * m * n * k
    benchmark.extra_info["threads"] = pycnnrnn.get_num_threads()
    interleaved({impl: _fn(impl, a, b) for impl in IMPLS})


# Linear (x @ W^T + b, W stored (out, in)) at the model shapes
LINEAR = [
    ("vqa-fc 30x300->2048", 30, 300, 2048),
    ("vgg-fc6 1x25088->4096", 1, 25088, 4096),
    ("vgg-fc6 8x25088->4096", 8, 25088, 4096),
    ("vgg-fc7 8x4096->4096", 8, 4096, 4096),
]


@pytest.mark.parametrize("case", LINEAR, ids=[c[0] for c in LINEAR])
def test_linear(benchmark, interleaved, case):
    name, m, k, n = case
    rng = np.random.default_rng(0)
    x = rng.standard_normal((m, k), dtype=np.float32)
    w = rng.standard_normal((n, k), dtype=np.float32)
    bias = rng.standard_normal(n, dtype=np.float32)
    benchmark.group = f"linear-f32-{name}"
    if m == 1:
        benchmark.extra_info["bytes"] = 4 * (m * k + k * n + m * n + n)
    else:
        benchmark.extra_info["flops"] = 2 * m * n * k
    fns = {"pycnnrnn": lambda: F.linear(x, w, bias)}
    if HAVE_TORCH:
        import torch

        tx, tw, tb = torch.from_numpy(x), torch.from_numpy(w), torch.from_numpy(bias)
        fns["torch"] = lambda: torch.nn.functional.linear(tx, tw, tb)
    interleaved(fns)
