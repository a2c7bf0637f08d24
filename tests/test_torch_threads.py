"""pycnnrnn.torch runs the kernels' parallel regions on torch's OpenMP threads (one set of
threads for both libraries, see pycnnrnn/torch/threads.py): results bit-identical to the own
pool, concurrent Python threads safe, a forked child falls back to the own pool, opt-out works."""

from __future__ import annotations

import os
import subprocess
import sys

import pytest

torch = pytest.importorskip("torch")

from test_hardening_threads import _run_threads, _same, make_calls  # noqa: E402

import pycnnrnn  # noqa: E402
import pycnnrnn.torch as pt  # noqa: E402
from pycnnrnn import _C  # noqa: E402
from pycnnrnn.torch import threads  # noqa: E402

OPENMP = "parallel backend: OpenMP" in torch.__config__.parallel_info()


@pytest.fixture
def sharing():
    """Sharing on for the test (when torch runs on OpenMP), restored afterwards."""
    before = threads.sharing_torch_threads()
    on = pt.share_torch_threads(True)
    yield on
    pt.share_torch_threads(before)


def test_on_by_default_after_import():
    if not OPENMP:
        pytest.skip("torch's parallel backend is not OpenMP: nothing to share")
    lib = threads.torch_openmp_library()
    assert lib is not None and os.path.exists(lib), lib
    code = "import pycnnrnn.torch, pycnnrnn._C as C; print(C.using_openmp_runtime())"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "True"
    env = dict(os.environ, PYCNNRNN_SHARE_TORCH_THREADS="0")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True, env=env)
    assert out.stdout.strip() == "False"


def test_library_not_loaded_is_refused_and_changes_nothing(sharing):
    assert _C.use_openmp_runtime("/nonexistent/libgomp.so.1") is False
    assert threads.sharing_torch_threads() is sharing
    assert pt.share_torch_threads(False) is False
    assert threads.sharing_torch_threads() is False


@pytest.mark.parametrize("nthreads_pool", [1, 2, 3])
def test_results_bit_identical_to_own_pool(nthreads_pool):
    if not OPENMP:
        pytest.skip("torch's parallel backend is not OpenMP")
    old, before = pycnnrnn.get_num_threads(), threads.sharing_torch_threads()
    pycnnrnn.set_num_threads(nthreads_pool)
    try:
        calls = make_calls()
        pt.share_torch_threads(False)
        own = {k: fn() for k, fn in calls.items()}
        assert pt.share_torch_threads(True)
        shared = {k: fn() for k, fn in calls.items()}
        bad = [k for k in calls if not _same(own[k], shared[k])]
        assert not bad, f"differ between torch's threads and the own pool: {bad}"
    finally:
        pycnnrnn.set_num_threads(old)
        pt.share_torch_threads(before)


def test_eight_python_threads_on_torchs_runtime(sharing):
    if not sharing:
        pytest.skip("torch's parallel backend is not OpenMP")
    calls = make_calls()
    ref = {k: fn() for k, fn in calls.items()}
    names = sorted(calls)
    bad = []

    def work(i):
        for j in range(3 * len(names)):
            k = names[(i + j) % len(names)]
            if not _same(calls[k](), ref[k]):
                bad.append(k)

    _run_threads(work, 8)
    assert not bad, f"concurrent calls differ from serial: {sorted(set(bad))}"


def test_torch_training_step_same_gradients_shared_or_not():
    """The same conv/pool/LSTM/linear model's gradients through the torch ops, both ways."""
    from pycnnrnn.train.vqa import build_model

    before = threads.sharing_torch_threads()
    grads = []
    try:
        for share in (False, True):
            pt.share_torch_threads(share)
            model = build_model("pycnnrnn", seed=3)
            g = torch.Generator().manual_seed(0)
            img = torch.randn(6, 3, 32, 32, generator=g)
            q = torch.randint(1, 10, (6, 10), generator=g)
            model(img, q).square().sum().backward()
            grads.append([p.grad.clone() for p in model.parameters()])
    finally:
        pt.share_torch_threads(before)
    assert all(torch.equal(a, b) for a, b in zip(*grads))


FORK_CHILD = r"""
import os, numpy as np, torch
import pycnnrnn, pycnnrnn.torch, pycnnrnn._C as C
from pycnnrnn import functional as F
pycnnrnn.set_num_threads(2)
r = np.random.default_rng(0)
x = r.standard_normal((4, 32, 24, 24), dtype=np.float32)
w = r.standard_normal((32, 32, 3, 3), dtype=np.float32)
y = F.conv2d(x, w, padding=1)  # parent: regions on torch's OpenMP team
assert C.using_openmp_runtime()
pid = os.fork()
if pid == 0:  # child: libgomp's team is gone; the kernels must fall back to the own pool
    ok = not C.using_openmp_runtime() and np.array_equal(F.conv2d(x, w, padding=1), y)
    os._exit(0 if ok else 3)
_, status = os.waitpid(pid, 0)
print(os.WEXITSTATUS(status))
"""


def test_forked_child_falls_back_to_own_pool():
    if not OPENMP:
        pytest.skip("torch's parallel backend is not OpenMP")
    out = subprocess.run([sys.executable, "-c", FORK_CHILD], capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == "0"


@pytest.mark.parametrize("pool", [1, 2])
def test_openmp_regions_keep_every_part_when_the_count_is_smaller(sharing, pool):
    """As on the own pool (test_hardening_threads): parallel_run(nt) runs nt parts with nthreads
    nt on torch's team too, when get_num_threads() is below nt."""
    if not sharing:
        pytest.skip("torch's parallel backend is not OpenMP")
    old = pycnnrnn.get_num_threads()
    try:
        pycnnrnn.set_num_threads(pool)
        assert _C.using_openmp_runtime()
        for nt in (1, 3, 5):
            assert _C._parallel_parts(nt) == [(t, nt) for t in range(nt)]
    finally:
        pycnnrnn.set_num_threads(old)
