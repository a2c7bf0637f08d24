"""Signals: Ctrl-C (SIGINT) during a long computation raises KeyboardInterrupt promptly and the
library stays usable (same results afterwards, the thread pool not wedged).

Each scenario runs in a child interpreter: a timer thread sends SIGINT to the process while the
main thread is busy in pycnnrnn; the child measures the time from the signal to the
KeyboardInterrupt and then checks the library still works.

Python raises KeyboardInterrupt when control returns to the interpreter, so the latency is
bounded by the part of a kernel call still running when the signal lands (the kernels do not poll
PyErr_CheckSignals). The issue's scenario, VGG16 forward at N=8, holds because its longest single
call (the 64->64 conv at 224x224, Winograd) takes about 0.1-0.2 s here."""

from __future__ import annotations

import json

import pytest
from helpers import run_python

CHILD = r"""
import json, os, signal, threading, time
import numpy as np
import pycnnrnn
from pycnnrnn import functional as F

# A process started in the background by a non-interactive shell inherits SIGINT ignored, and
# Python then keeps it ignored; what is tested here is pycnnrnn under Ctrl-C as an interactive
# interpreter gets it.
signal.signal(signal.SIGINT, signal.default_int_handler)

def interrupt_after(delay, fn):
    sent = {}
    def fire():
        sent["t"] = time.perf_counter()
        os.kill(os.getpid(), signal.SIGINT)
    timer = threading.Timer(delay, fire)
    t0 = time.perf_counter()
    timer.start()
    try:
        fn()
    except KeyboardInterrupt:
        return time.perf_counter() - sent["t"]
    finally:
        timer.cancel()
    raise AssertionError(f"no KeyboardInterrupt (finished after {time.perf_counter() - t0:.2f} s)")

r = np.random.default_rng(0)
xs, ws = r.standard_normal((2, 8, 24, 24)).astype(np.float32), r.standard_normal((8, 8, 3, 3)).astype(np.float32)
def small_suite():
    y = F.conv2d(xs, ws, None, padding=1)
    g = F.conv2d_backward(np.ones_like(y), xs, ws, padding=1)
    p = F.max_pool2d(xs, 2, return_indices=True)
    return [y, *g, *p, F.matmul(xs[0, 0], xs[1, 0])]
ref = small_suite()

def still_usable():
    for _ in range(3):
        got = small_suite()
        assert all(np.array_equal(a, b) for a, b in zip(got, ref)), "results changed after the interrupt"
    # several Python threads still get through the pool
    out = []
    ts = [threading.Thread(target=lambda: out.append(small_suite())) for _ in range(4)]
    [t.start() for t in ts]
    [t.join(60) for t in ts]
    assert len(out) == 4 and all(all(np.array_equal(a, b) for a, b in zip(o, ref)) for o in out)
"""


def _child(body: str, timeout: float = 240) -> dict:
    r = run_python(CHILD + body, timeout=timeout, check=False, PYCNNRNN_BLOCK_TORCH="1")
    assert r.returncode == 0, f"rc={r.returncode}\n{r.stdout[-2000:]}\n{r.stderr[-3000:]}"
    return json.loads(r.stdout.strip().splitlines()[-1])


@pytest.mark.parametrize("threads", [1, 2])
def test_sigint_during_a_long_sequence_of_conv_calls(threads):
    res = _child(
        f"""
pycnnrnn.set_num_threads({threads})
ref = small_suite()  # grad_weight's batch reduction is deterministic per thread count
x = r.standard_normal((4, 32, 48, 48)).astype(np.float32)
w = r.standard_normal((32, 32, 3, 3)).astype(np.float32)
t = time.perf_counter(); F.conv2d(x, w, None, padding=1); call = time.perf_counter() - t
def long_run():
    end = time.perf_counter() + 30
    while time.perf_counter() < end:
        F.conv2d(x, w, None, padding=1)
        F.max_pool2d(x, 3, 1, 1)
lat = [interrupt_after(d, long_run) for d in (0.3, 0.45)]
still_usable()
print(json.dumps({{"latency": lat, "call": call}}))
"""
    )
    assert max(res["latency"]) < 1.0, res


def test_sigint_during_backward_and_rnn_calls():
    res = _child(
        """
from pycnnrnn.conformance import rnn_param_shapes
x = r.standard_normal((4, 16, 40, 40)).astype(np.float32)
w = r.standard_normal((16, 16, 3, 3)).astype(np.float32)
gy = np.ones((4, 16, 40, 40), np.float32)
params = [r.standard_normal(s).astype(np.float32) * 0.2 for s in rnn_param_shapes("lstm", 16, 32, 1)]
xr = r.standard_normal((200, 4, 16)).astype(np.float32)
def long_bwd():
    end = time.perf_counter() + 30
    while time.perf_counter() < end:
        F.conv2d_backward(gy, x, w, padding=1)
def long_rnn():
    end = time.perf_counter() + 30
    while time.perf_counter() < end:
        out, hn, cn, saved = F.rnn_forward("lstm", xr, None, params, need_saved=True)
        F.rnn_backward("lstm", np.ones_like(out), None, None, xr, None, params, saved)
lat = [interrupt_after(0.3, long_bwd), interrupt_after(0.3, long_rnn)]
still_usable()
print(json.dumps({"latency": lat}))
"""
    )
    assert max(res["latency"]) < 1.0, res


@pytest.mark.slow
def test_sigint_during_vgg16_forward_n8():
    res = _child(
        """
from pycnnrnn import models
from pycnnrnn.nn import init
init.manual_seed(0)
vgg = models.vgg16()
xi = r.standard_normal((8, 3, 224, 224)).astype(np.float32)
t = time.perf_counter(); vgg(xi); call = time.perf_counter() - t
def forever():
    end = time.perf_counter() + 60
    while time.perf_counter() < end:
        vgg(xi)
lat = [interrupt_after(d, forever) for d in (0.5, 1.0, 1.7)]
still_usable()
print(json.dumps({"latency": lat, "forward": call}))
""",
        timeout=400,
    )
    assert max(res["latency"]) < 1.0, res
