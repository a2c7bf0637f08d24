"""The foundation: import, ISA dispatch, threads, roofline probe, shape formulas, CUDA query."""

from __future__ import annotations

import os
import threading

import numpy as np
import pytest
from helpers import run_python

import pycnnrnn
from pycnnrnn import _C
from pycnnrnn import functional as F


def run_py(code: str, **env) -> str:
    return run_python(code, **env).stdout.strip()


def test_import_is_fast_and_never_imports_torch():
    out = run_py(
        "import sys, time; t = time.perf_counter(); import pycnnrnn; dt = time.perf_counter() - t;"
        "print(dt, 'torch' in sys.modules, 'pycnnrnn.functional' in sys.modules)"
    )
    dt, torch_loaded, functional_loaded = out.split()
    assert float(dt) < 0.5
    assert torch_loaded == "False"
    assert functional_loaded == "False"  # submodules load lazily


def test_default_isa_is_the_best_detected():
    assert pycnnrnn.cpu_isa() in ("avx512", "avx2", "scalar")
    if "PYCNNRNN_ISA" not in os.environ:
        assert pycnnrnn.cpu_isa() == _C.detected_isa()


@pytest.mark.parametrize("isa", ["avx2", "scalar"])
def test_pycnnrnn_isa_forces_a_lower_path(isa):
    best = _C.detected_isa()
    order = ["scalar", "avx2", "avx512"]
    expect = isa if order.index(isa) <= order.index(best) else best
    assert run_py("import pycnnrnn; print(pycnnrnn.cpu_isa())", PYCNNRNN_ISA=isa) == expect


def test_pycnnrnn_isa_rejects_unknown_values():
    r = run_python("import pycnnrnn; pycnnrnn.cpu_isa()", check=False, PYCNNRNN_ISA="sse9")
    assert r.returncode != 0
    assert "PYCNNRNN_ISA must be one of" in r.stderr


def test_threads_default_to_affinity_and_can_be_set():
    assert pycnnrnn.get_num_threads() == len(os.sched_getaffinity(0)) or "PYCNNRNN_THREADS" in os.environ
    n0 = pycnnrnn.get_num_threads()
    try:
        pycnnrnn.set_num_threads(1)
        assert pycnnrnn.get_num_threads() == 1
        pycnnrnn.set_num_threads(3)
        assert pycnnrnn.get_num_threads() == 3
    finally:
        pycnnrnn.set_num_threads(n0)


@pytest.mark.parametrize(
    "bad, exc", [(0, ValueError), (-2, ValueError), (256, ValueError), (1.5, TypeError), (True, TypeError)]
)
def test_set_num_threads_rejects_bad_values(bad, exc):
    with pytest.raises(exc, match="set_num_threads"):
        pycnnrnn.set_num_threads(bad)


def test_set_num_threads_while_other_threads_measure():
    # Resizing the pool while other Python threads run parallel regions must be safe.
    n0 = pycnnrnn.get_num_threads()
    errors = []

    def worker():
        try:
            for _ in range(5):
                assert _C.measure_fma_peak_gflops(20000) > 0
        except Exception as exc:  # pragma: no cover - reported below
            errors.append(exc)

    ts = [threading.Thread(target=worker) for _ in range(3)]
    for t in ts:
        t.start()
    for n in (1, 2, 4, 1, n0):
        pycnnrnn.set_num_threads(n)
    for t in ts:
        t.join()
    assert not errors
    assert pycnnrnn.get_num_threads() == n0


def test_roofline_measures_positive_ceilings():
    r = pycnnrnn.roofline(fma_iters=200_000, copy_bytes=8 << 20)
    assert r["fma_peak_gflops"] > 1
    assert r["copy_bandwidth_gbs"] > 0.1
    assert r["threads"] == pycnnrnn.get_num_threads()


def test_cuda_available_is_false_without_a_gpu_and_never_raises():
    assert isinstance(pycnnrnn.cuda_available(), bool)
    if _C.cuda_device_count() == 0:
        assert pycnnrnn.cuda_available() is False


# ---- shape formulas (csrc/core/shapes.h), checked against torch's own -----------------------

conv_cases = [
    # size, kernel, stride, pad_l, pad_r, dilation
    (7, 3, 1, 1, 1, 1),
    (7, 3, 2, 0, 0, 1),
    (8, 3, 2, 1, 1, 2),
    (5, 5, 1, 0, 0, 1),
    (1, 1, 3, 0, 0, 1),
    (10, 4, 3, 2, 1, 1),
]


@pytest.mark.torch
@pytest.mark.parametrize("case", conv_cases)
def test_conv_output_size_matches_torch(case):
    torch = pytest.importorskip("torch")
    size, k, s, pl, pr, d = case
    x = torch.zeros(1, 1, size + pl + pr, 1)
    w = torch.zeros(1, 1, k, 1)
    expect = torch.nn.functional.conv2d(x, w, stride=(s, 1), dilation=(d, 1)).shape[2]
    assert _C.conv_output_size(size, k, s, pl, pr, d) == expect


pool_cases = [
    (7, 2, 2, 0, 1, False),
    (7, 2, 2, 0, 1, True),
    (7, 3, 2, 1, 1, True),
    (6, 3, 3, 1, 1, True),
    (5, 2, 2, 1, 2, True),
    (224, 2, 2, 0, 1, False),
    (13, 3, 2, 1, 2, True),
]


@pytest.mark.torch
@pytest.mark.parametrize("case", pool_cases)
def test_pool_output_size_matches_torch(case):
    torch = pytest.importorskip("torch")
    size, k, s, p, d, ceil = case
    x = torch.rand(1, 1, size, size)
    out = torch.nn.functional.max_pool2d(x, k, s, p, d, ceil_mode=ceil)
    assert _C.pool_output_size(size, k, s, p, d, ceil) == out.shape[2]


# ---------------------------------------------------------------- output block cache
def test_large_outputs_reuse_freed_blocks():
    """A freed large output waits in core/block_cache and serves the next request of its size
    (no fresh, page-faulting mapping); small outputs bypass the cache; the cache empties on
    request and the reused memory gives the same answer as a fresh one."""
    _C.block_cache_clear()
    x = np.random.default_rng(0).standard_normal((8, 64, 56, 56)).astype(np.float32)  # 6.4 MB
    first = F.max_pool2d(x, 1, 1)  # a copy of x, 6.4 MB
    np.testing.assert_array_equal(first, x)
    assert _C.block_cache_bytes() == 0
    assert first.flags.c_contiguous and first.flags.writeable
    del first
    held = _C.block_cache_bytes()
    assert held >= x.nbytes
    second = F.max_pool2d(x, 1, 1)  # takes the cached block
    assert _C.block_cache_bytes() == 0  # it was the only cached block
    np.testing.assert_array_equal(second, x)
    small = F.max_pool2d(x[:1, :1], 1, 1)  # 12.5 KB: malloc, never cached
    del small
    assert _C.block_cache_bytes() == 0
    del second
    assert _C.block_cache_bytes() == held
    _C.block_cache_clear()
    assert _C.block_cache_bytes() == 0
    assert _C.BLOCK_CACHE_MIN_BYTES == 1 << 16 and _C.BLOCK_CACHE_MAX_BYTES == 1 << 30


def test_block_cache_stays_bounded():
    """Freeing more than BLOCK_CACHE_MAX_BYTES of outputs keeps at most that much cached."""
    _C.block_cache_clear()
    x = np.ones((64, 1024, 1024), np.float32)  # 256 MiB
    outs = [F.max_pool2d(x, 1, 1) for _ in range(5)]  # 1.25 GiB
    del outs
    assert 0 < _C.block_cache_bytes() <= _C.BLOCK_CACHE_MAX_BYTES
    _C.block_cache_clear()


def test_empty_allocates_like_numpy_empty_from_the_block_cache():
    for dtype in (np.float32, np.float64, np.int64):
        a = _C.empty((3, 0, 2), np.dtype(dtype))
        assert a.shape == (3, 0, 2) and a.dtype == dtype and a.flags.c_contiguous and a.flags.writeable
    big = _C.empty((1 << 19,), np.dtype(np.float32))  # 2 MiB: from the cache's mappings
    big[:] = 1.5
    assert big.sum() == 1.5 * (1 << 19)
    with pytest.raises(ValueError, match="negative dimension"):
        _C.empty((2, -1), np.dtype(np.float32))
    with pytest.raises(ValueError, match="dtype must be float32, float64 or int64, got int8"):
        _C.empty((2,), np.dtype(np.int8))
