"""Threads: many Python threads calling ops at once give bit-identical results to serial calls;
the GIL is released during kernels; set_num_threads while other threads run ops is safe.

The pool (csrc/core/thread_pool.cpp) partitions statically, and a call that finds the pool busy
runs every part itself in the same order, so a result depends only on the thread count."""

from __future__ import annotations

import threading
import time

import numpy as np
import pytest

import pycnnrnn
from pycnnrnn import _C
from pycnnrnn import functional as F


def _rng(seed=0):
    return np.random.default_rng(seed)


def _f(rng, *shape, dtype=np.float32):
    return rng.standard_normal(shape).astype(dtype)


def make_calls():
    """name -> zero-argument callable returning a tuple of arrays. Sizes: a few ms each."""
    r = _rng(42)
    calls = {}
    x, w, b = _f(r, 2, 8, 20, 20), _f(r, 16, 8, 3, 3), _f(r, 16)
    calls["conv2d"] = lambda: (F.conv2d(x, w, b, padding=1),)
    calls["conv2d_s2_dil"] = lambda: (
        F.conv2d(x, w, None, stride=2, dilation=2, padding=2, padding_mode="reflect"),
    )
    xd, wd = _f(r, 2, 16, 20, 36), _f(r, 16, 1, 3, 3)
    calls["conv2d_depthwise"] = lambda: (F.conv2d(xd, wd, None, padding=1, groups=16),)
    gy = _f(r, 2, 16, 20, 20)
    calls["conv2d_backward"] = lambda: F.conv2d_backward(gy, x, w, padding=1)
    x64, w64 = x.astype(np.float64), w.astype(np.float64)
    calls["conv2d_f64"] = lambda: (F.conv2d(x64, w64, None, padding=1),)
    xp = _f(r, 2, 8, 33, 47)
    calls["max_pool2d"] = lambda: F.max_pool2d(xp, 3, 2, 1, return_indices=True)
    yp, ip = F.max_pool2d(xp, 3, 2, 1, return_indices=True)
    gp = _f(r, *yp.shape)
    calls["max_pool2d_backward"] = lambda: (F.max_pool2d_backward(gp, xp, ip, 3, 2, 1),)
    calls["max_unpool2d"] = lambda: (F.max_unpool2d(yp, ip, 3, 2, 1, output_size=xp.shape[-2:]),)
    a, bm = _f(r, 37, 129), _f(r, 129, 75)
    calls["matmul"] = lambda: (F.matmul(a, bm),)
    xl, wl, bl = _f(r, 5, 7, 129), _f(r, 75, 129), _f(r, 75)
    calls["linear"] = lambda: (F.linear(xl, wl, bl),)
    gl = _f(r, 5, 7, 75)
    calls["linear_backward"] = lambda: F.linear_backward(gl, xl, wl)
    if hasattr(F, "rnn_forward"):
        from pycnnrnn.conformance import rnn_param_shapes

        for mode in ("lstm", "gru", "rnn_tanh"):
            params = [_f(r, *s) * 0.3 for s in rnn_param_shapes(mode, 10, 24, 2, True, True)]
            xs = _f(r, 12, 3, 10)
            kw = dict(num_layers=2, bidirectional=True)

            def fwd(mode=mode, params=params, xs=xs, kw=kw):
                out, hn, cn, _ = F.rnn_forward(mode, xs, None, params, **kw)
                return (out, hn) if cn is None else (out, hn, cn)

            def bwd(mode=mode, params=params, xs=xs, kw=kw):
                out, hn, cn, saved = F.rnn_forward(mode, xs, None, params, need_saved=True, **kw)
                go = np.ones_like(out)
                gx, gh0, gc0, gp_ = F.rnn_backward(mode, go, None, None, xs, None, params, saved, **kw)
                return (gx, gh0, *gp_)

            calls[f"{mode}_forward"] = fwd
            calls[f"{mode}_backward"] = bwd
            # 99 units at batch 1: the units split between threads that meet after each step
            units_params = [_f(r, *s) * 0.3 for s in rnn_param_shapes(mode, 10, 99, 1, True, False)]
            x1 = _f(r, 9, 1, 10)

            def units_fwd(mode=mode, params=units_params, x1=x1):
                return F.rnn_forward(mode, x1, None, params)[:2]

            calls[f"{mode}_units_forward"] = units_fwd
        cx, ch = _f(r, 4, 10), (_f(r, 4, 24), _f(r, 4, 24))
        wih, whh = _f(r, 96, 10) * 0.3, _f(r, 96, 24) * 0.3
        calls["lstm_cell"] = lambda: F.lstm_cell(cx, ch, wih, whh)
    return calls


def _same(a, b):
    return len(a) == len(b) and all(
        (x is None and y is None)
        or (x is not None and y is not None and np.array_equal(x, y, equal_nan=True))
        for x, y in zip(a, b)
    )


def _run_threads(fn, n_threads, timeout=120):
    errors = []

    def wrap(i):
        try:
            fn(i)
        except BaseException as e:  # noqa: BLE001 - recorded and re-raised in the main thread
            errors.append(e)

    ts = [threading.Thread(target=wrap, args=(i,), daemon=True) for i in range(n_threads)]
    for t in ts:
        t.start()
    deadline = time.monotonic() + timeout
    for t in ts:
        t.join(max(0.0, deadline - time.monotonic()))
    assert not any(t.is_alive() for t in ts), "threads did not finish: deadlock?"
    if errors:
        raise errors[0]


@pytest.mark.parametrize("nthreads_pool", [1, 2])
def test_eight_python_threads_bit_identical_to_serial(nthreads_pool):
    old = pycnnrnn.get_num_threads()
    pycnnrnn.set_num_threads(nthreads_pool)
    try:
        calls = make_calls()
        ref = {k: fn() for k, fn in calls.items()}
        # serial calls are themselves deterministic
        for k, fn in calls.items():
            assert _same(fn(), ref[k]), f"{k}: two serial calls differ"
        names = sorted(calls)
        mismatches = []

        def worker(i):
            order = names[i % len(names) :] + names[: i % len(names)]  # threads start on different ops
            for rep in range(4):
                for k in order if rep % 2 == 0 else reversed(order):
                    if not _same(calls[k](), ref[k]):
                        mismatches.append((i, rep, k))

        _run_threads(worker, 8)
        assert not mismatches, f"results differ from serial under 8 threads: {mismatches[:10]}"
    finally:
        pycnnrnn.set_num_threads(old)


def _main_thread_progress_during(fn):
    """Run fn once in a worker thread while the main thread spins recording timestamps.
    Returns (main-thread iterations in the middle 80% of the call, call duration)."""
    stamps = []
    span = {}

    def work():
        span["t0"] = time.perf_counter()
        fn()
        span["t1"] = time.perf_counter()

    t = threading.Thread(target=work, daemon=True)
    t.start()
    while t.is_alive():
        stamps.append(time.perf_counter())
    t.join()
    t0, t1 = span["t0"], span["t1"]
    d = t1 - t0
    return sum(1 for s in stamps if t0 + 0.1 * d < s < t1 - 0.1 * d), d


def _gil_workload(op, f):
    """A call of `op` whose work grows with the factor f."""
    r = _rng(3)
    if op == "conv2d":
        x, w = _f(r, 2 * f, 32, 40, 40), _f(r, 32, 32, 3, 3)
        return lambda: F.conv2d(x, w, None, padding=1)
    if op == "conv2d_backward":
        x, w, gy = _f(r, 2 * f, 32, 40, 40), _f(r, 32, 32, 3, 3), _f(r, 2 * f, 32, 40, 40)
        return lambda: F.conv2d_backward(gy, x, w, padding=1)
    if op == "max_pool2d":
        x = _f(r, 4 * f, 32, 64, 64)
        return lambda: F.max_pool2d(x, 3, 1, 1, return_indices=True)
    if op == "matmul":
        n = int(256 * f ** (1 / 3))
        a, b = _f(r, n, n), _f(r, n, n)
        return lambda: F.matmul(a, b)
    from pycnnrnn.conformance import rnn_param_shapes

    params = [_f(r, *s) * 0.1 for s in rnn_param_shapes("lstm", 32, 64, 1)]
    xs = _f(r, 50 * f, 4, 32)
    return lambda: F.rnn_forward("lstm", xs, None, params)


@pytest.mark.parametrize("op", ["conv2d", "conv2d_backward", "max_pool2d", "matmul", "lstm"])
def test_gil_released_during_kernels(op):
    """Heuristic (testing.md T2): while a long kernel runs in another thread the main thread keeps
    running Python. With the GIL held through the kernel, the main thread could not execute a
    single bytecode in the middle of the call."""
    f = 1
    while True:
        fn = _gil_workload(op, f)
        t0 = time.perf_counter()
        fn()
        if time.perf_counter() - t0 >= 0.2 or f >= 64:
            break
        f *= 2
    old = pycnnrnn.get_num_threads()
    pycnnrnn.set_num_threads(1)  # leave a core to the main thread
    try:
        n_inside, dur = _main_thread_progress_during(fn)
    finally:
        pycnnrnn.set_num_threads(old)
    assert n_inside >= 10, (
        f"{op}: the main thread ran {n_inside} iterations during the middle of a {dur * 1e3:.0f} ms call: is the GIL held?"
    )


def test_set_num_threads_while_other_threads_run_ops():
    """Workers call ops in a loop while the main thread changes the thread count: no crash, no
    deadlock, and every result equals the serial result for one of the counts used."""
    old = pycnnrnn.get_num_threads()
    counts = [1, 2, 3]
    calls = make_calls()
    names = [k for k in ("conv2d", "conv2d_backward", "max_pool2d", "matmul", "linear_backward",
                         "lstm_forward", "gru_backward") if k in calls]  # fmt: skip
    refs = {}
    try:
        for n in counts:
            pycnnrnn.set_num_threads(n)
            refs[n] = {k: calls[k]() for k in names}
        stop = threading.Event()
        bad = []
        done = [0] * 4

        def worker(i):
            while not stop.is_set():
                k = names[(i + done[i]) % len(names)]
                got = calls[k]()
                if not any(_same(got, refs[n][k]) for n in counts):
                    bad.append((i, k))
                done[i] += 1

        t_run = threading.Thread(target=lambda: _run_threads(worker, 4, timeout=60), daemon=True)
        t_run.start()
        t_end = time.monotonic() + 2.0
        j = 0
        while time.monotonic() < t_end:
            pycnnrnn.set_num_threads(counts[j % len(counts)])
            assert pycnnrnn.get_num_threads() == counts[j % len(counts)]
            j += 1
            time.sleep(0.002)
        stop.set()
        t_run.join(60)
        assert not t_run.is_alive(), "workers did not stop: deadlock after set_num_threads?"
        assert sum(done) >= 4, f"workers made no progress: {done}"
        assert not bad, f"results matching no thread count: {bad[:10]}"
        assert j > 50
    finally:
        pycnnrnn.set_num_threads(old)
    # still usable
    assert _same(calls["conv2d"](), refs[old if old in refs else 1]["conv2d"]) or old not in refs


@pytest.mark.parametrize("pool", [1, 2])
def test_parallel_run_keeps_every_part_when_the_pool_is_smaller(pool):
    """A kernel picks its partition from get_num_threads(); if another Python thread lowers the
    count before the region starts, the region must still run every part with the same nthreads
    (the CI run that found it: a grad_weight summed in 2 parts, which no thread count gives)."""
    old = pycnnrnn.get_num_threads()
    try:
        pycnnrnn.set_num_threads(pool)
        for nt in (1, 3, 5):
            assert _C._parallel_parts(nt) == [(t, nt) for t in range(nt)]
    finally:
        pycnnrnn.set_num_threads(old)
