"""Memory: 10,000 calls of each op (and of each op's error path) leave RSS, tracemalloc and the
inputs' reference counts flat. Slow: run with ``-m slow``.

Each op runs in a fresh interpreter (RSS is a process-wide number): 1,000 warm-up calls, then
10,000 measured calls. Fresh weight arrays on every call check that the packed-weight caches
stay bounded."""

from __future__ import annotations

import json

import pytest
from helpers import run_python

pytestmark = pytest.mark.slow

CHILD = r"""
import gc, json, sys, tracemalloc
import numpy as np
import pycnnrnn
from pycnnrnn import functional as F

def rss_kib():
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * 4096 // 1024

r = np.random.default_rng(0)
def f(*s):
    return r.standard_normal(s).astype(np.float32)

OPS = {}
x, w, b = f(2, 4, 10, 10), f(6, 4, 3, 3), f(6)
gy = f(2, 6, 10, 10)
OPS["conv2d"] = (lambda: F.conv2d(x, w, b, padding=1), [x, w, b])
OPS["conv2d_reflect_depthwise"] = (lambda: F.conv2d(x, f(4, 1, 3, 3), None, padding=1, groups=4, padding_mode="reflect"), [x])
OPS["conv2d_fresh_weights"] = (lambda: F.conv2d(x, w.copy(), b, padding=1), [x, w, b])
OPS["conv2d_backward"] = (lambda: F.conv2d_backward(gy, x, w, padding=1), [gy, x, w])
OPS["conv2d_error"] = (lambda: F.conv2d(x, w, b, stride=0), [x, w, b])
xp = f(2, 3, 12, 13)
yp, ip = F.max_pool2d(xp, 3, 2, 1, return_indices=True)
OPS["max_pool2d"] = (lambda: F.max_pool2d(xp, 3, 2, 1, return_indices=True), [xp])
OPS["max_pool2d_backward"] = (lambda: F.max_pool2d_backward(yp, xp, ip, 3, 2, 1), [yp, xp, ip])
OPS["max_unpool2d"] = (lambda: F.max_unpool2d(yp, ip, 3, 2, 1, output_size=(12, 13)), [yp, ip])
OPS["max_pool2d_error"] = (lambda: F.max_pool2d(xp, 3, 2, 5), [xp])
a, bm = f(9, 33), f(33, 17)
OPS["matmul"] = (lambda: F.matmul(a, bm), [a, bm])
OPS["linear"] = (lambda: F.linear(a, f(17, 33), None), [a])
OPS["linear_backward"] = (lambda: F.linear_backward(f(9, 17), a, bm.T.copy()), [a])
OPS["linear_error"] = (lambda: F.linear(a, bm), [a, bm])
if hasattr(F, "rnn_forward"):
    from pycnnrnn.conformance import rnn_param_shapes
    for mode in ("lstm", "gru", "rnn_tanh"):
        params = [f(*s) * 0.3 for s in rnn_param_shapes(mode, 5, 8, 2, True, True)]
        xs = f(4, 2, 5)
        kw = dict(num_layers=2, bidirectional=True)
        def fb(mode=mode, params=params, xs=xs, kw=kw):
            out, hn, cn, saved = F.rnn_forward(mode, xs, None, params, need_saved=True, **kw)
            return F.rnn_backward(mode, np.ones_like(out), None, None, xs, None, params, saved, **kw)
        OPS[mode] = (fb, [xs, *params])
    OPS["lstm_cell"] = (lambda: F.lstm_cell(f(3, 5), None, f(32, 5), f(32, 8)), [])
    OPS["rnn_error"] = (lambda: F.rnn_forward("lstm", f(4, 2, 6), None, params), [])

name = NAME
fn, inputs = OPS[name]
def call():
    try:
        fn()
    except (ValueError, TypeError):
        if not name.endswith("_error"):
            raise
    else:
        if name.endswith("_error"):
            raise AssertionError("the error case did not raise")

for _ in range(1000):
    call()
gc.collect()
refs0 = [sys.getrefcount(a) for a in inputs]
tracemalloc.start()
gc.collect()
rss0, tm0 = rss_kib(), tracemalloc.get_traced_memory()[0]
for i in range(10_000):
    call()
gc.collect()
rss1, tm1 = rss_kib(), tracemalloc.get_traced_memory()[0]
refs1 = [sys.getrefcount(a) for a in inputs]
print(json.dumps({"rss_kib": rss1 - rss0, "traced_bytes": tm1 - tm0, "refs0": refs0, "refs1": refs1}))
"""

NAMES = [
    "conv2d",
    "conv2d_reflect_depthwise",
    "conv2d_fresh_weights",
    "conv2d_backward",
    "conv2d_error",
    "max_pool2d",
    "max_pool2d_backward",
    "max_unpool2d",
    "max_pool2d_error",
    "matmul",
    "linear",
    "linear_backward",
    "linear_error",
    "lstm",
    "gru",
    "rnn_tanh",
    "lstm_cell",
    "rnn_error",
]


@pytest.mark.parametrize("name", NAMES)
def test_ten_thousand_calls_leave_memory_flat(name):
    r = run_python(CHILD.replace("NAME", repr(name)), timeout=600, check=False, PYCNNRNN_BLOCK_TORCH="1")
    assert r.returncode == 0, f"rc={r.returncode}\n{r.stderr[-3000:]}"
    res = json.loads(r.stdout.strip().splitlines()[-1])
    # 10,000 calls: a leak of even 100 bytes per call shows up as ~1 MB.
    assert res["rss_kib"] < 2048, f"{name}: RSS grew by {res['rss_kib']} KiB over 10,000 calls ({res})"
    assert res["traced_bytes"] < 64 * 1024, f"{name}: tracemalloc grew by {res['traced_bytes']} bytes ({res})"
    assert res["refs0"] == res["refs1"], f"{name}: input reference counts changed ({res})"
