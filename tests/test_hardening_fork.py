"""fork: a child forked (multiprocessing, 'fork' start method) after the parent used pycnnrnn can
use it too: same results, no hang on the thread pool (pthread_atfork in csrc/core/thread_pool.cpp),
also when the fork happens while another parent thread is inside a kernel.

Each scenario runs in a fresh interpreter so the pytest process's own threads (torch's, if
imported) play no part; a hang shows up as the child's timeout."""

from __future__ import annotations

import sys

import pytest
from helpers import run_python

pytestmark = pytest.mark.skipif(sys.platform != "linux", reason="fork start method: Linux")

COMMON = r"""
import multiprocessing as mp, threading, time
import numpy as np
import pycnnrnn
from pycnnrnn import functional as F

def work(seed):
    r = np.random.default_rng(seed)
    x = r.standard_normal((2, 6, 17, 19)).astype(np.float32)
    w = r.standard_normal((8, 6, 3, 3)).astype(np.float32)
    y = F.conv2d(x, w, None, padding=1)
    gx, gw, gb = F.conv2d_backward(np.ones_like(y), x, w, padding=1)
    p, i = F.max_pool2d(x, 3, 2, 1, return_indices=True)
    m = F.matmul(r.standard_normal((33, 70)).astype(np.float32), r.standard_normal((70, 41)).astype(np.float32))
    outs = [y, gx, gw, gb, p, i, m]
    if hasattr(F, "rnn_forward"):
        from pycnnrnn.conformance import rnn_param_shapes
        params = [r.standard_normal(s).astype(np.float32) * 0.3 for s in rnn_param_shapes("lstm", 5, 7, 2, True, True)]
        out, hn, cn, _ = F.rnn_forward("lstm", r.standard_normal((6, 2, 5)).astype(np.float32), None, params,
                                       num_layers=2, bidirectional=True)
        outs += [out, hn, cn]
    return [o.tobytes() for o in outs]

def child_task(seed):
    return pycnnrnn.get_num_threads(), work(seed)
"""


def _run(code: str, timeout: float = 120):
    r = run_python(COMMON + code, timeout=timeout, check=False, PYCNNRNN_BLOCK_TORCH="1")
    assert r.returncode == 0, f"rc={r.returncode}\n{r.stdout[-2000:]}\n{r.stderr[-3000:]}"
    assert "OK" in r.stdout, r.stdout[-2000:]


def test_forked_child_uses_pycnnrnn_after_parent():
    _run(
        r"""
pycnnrnn.set_num_threads(2)
ref = [work(s) for s in range(3)]            # the parent used the pool (threads started)
ctx = mp.get_context("fork")
with ctx.Pool(2) as pool:
    got = pool.map_async(child_task, range(3)).get(timeout=60)
for s, (nt, res) in enumerate(got):
    assert nt == 2, nt                       # the setting survives the fork
    assert res == ref[s], f"child result {s} differs from the parent's"
# and the parent still works after forking
assert work(0) == ref[0]
print("OK")
"""
    )


def test_fork_while_parent_thread_is_inside_a_kernel():
    """The nasty case: fork while the pool is busy (its mutex/condvars held by other threads)."""
    _run(
        r"""
pycnnrnn.set_num_threads(2)
ref = work(5)
stop = threading.Event()
def busy():
    r = np.random.default_rng(1)
    x = r.standard_normal((4, 32, 48, 48)).astype(np.float32)
    w = r.standard_normal((32, 32, 3, 3)).astype(np.float32)
    while not stop.is_set():
        F.conv2d(x, w, None, padding=1)
t = threading.Thread(target=busy, daemon=True)
t.start()
time.sleep(0.05)
ctx = mp.get_context("fork")
for k in range(6):                           # several forks at random points of the busy loop
    p = ctx.Process(target=lambda: (work(5) == ref) or exit(3))
    p.start()
    p.join(60)
    assert p.exitcode == 0, f"fork {k}: child exit code {p.exitcode} (None = hung)"
    time.sleep(0.013 * k)
stop.set()
t.join(30)
assert work(5) == ref
print("OK")
"""
    )


def test_fork_before_first_use_and_nested_fork():
    _run(
        r"""
ctx = mp.get_context("fork")
def grandchild(q):
    q.put(work(2))
def child(q):
    a = work(2)                              # first use happens in the child
    q2 = ctx.Queue()
    p = ctx.Process(target=grandchild, args=(q2,))
    p.start()
    b = q2.get(timeout=60)
    p.join(60)
    q.put(a == b and p.exitcode == 0)
q = ctx.Queue()
p = ctx.Process(target=child, args=(q,))
p.start()
ok = q.get(timeout=90)
p.join(60)
assert ok and p.exitcode == 0
assert work(2) == work(2)
print("OK")
"""
    )
