"""Crash safety: garbage arguments, in a child interpreter, never end in a signal.

Each test runs a seeded stream of garbage calls (public API and, as the second line of defence,
the private pybind11 bindings) in a subprocess whose address space is capped (RLIMIT_AS), so a
missing size check turns into MemoryError instead of thrashing the machine. Exceptions are fine
(the child swallows them); a segfault/abort/bus error is not: the return code must be 0 or 1,
never negative. The child prints each case before running it, so a crash names its case."""

from __future__ import annotations

import textwrap

import pytest
from helpers import run_python

# The child's prelude: RLIMIT_AS cap, value pools, and a runner that prints each case first.
PRELUDE = r"""
import itertools, random, resource, sys
import numpy as np

soft, hard = resource.getrlimit(resource.RLIMIT_AS)
cap = 6 << 30
if hard == resource.RLIM_INFINITY or hard > cap:
    resource.setrlimit(resource.RLIMIT_AS, (cap, hard))

import pycnnrnn
from pycnnrnn import _C
from pycnnrnn import functional as F

R = random.Random(SEED)

class BadIndex:
    def __index__(self):
        raise RuntimeError("__index__ explodes")

class LyingSeq:
    def __len__(self):
        return 2
    def __getitem__(self, i):
        raise IndexError(i)
    def __iter__(self):
        return iter(())

class HugeLen(list):
    def __len__(self):
        return 2**62

INTS = [-(2**63), -(2**62), -(2**31), -(2**31) + 1, -3, -1, 0, 1, 2, 3, 5, 7, 2**31 - 1, 2**31, 2**32, 2**62, 2**63 - 1,
        2**63, 2**64, 10**40]
INTS64 = [i for i in INTS if -(2**63) <= i < 2**63]
def rint():
    return R.choice(INTS) if R.random() < 0.6 else R.randint(-4, 9)

def rint64():
    return R.choice(INTS64) if R.random() < 0.6 else R.randint(-4, 9)

def rscalar():
    c = R.random()
    if c < 0.45:
        return rint()
    if c < 0.55:
        return (rint(), rint())
    if c < 0.6:
        return (rint(), rint(), rint(), rint())
    return R.choice([None, 1.5, float("nan"), float("inf"), -0.0, "same", "valid", "x", b"1", [], (), [1], (1,),
                     {}, object(), 1j, True, False, np.int64(2), np.uint64(2**64 - 1), np.float32(1), BadIndex(),
                     LyingSeq(), HugeLen(), np.array([1, 2]), np.array(3), np.ones((2, 2))])

DTYPES = [np.float32, np.float32, np.float64, np.int64, np.int32, np.float16, np.complex64, bool, object, ">f4", "<f8"]
def rarray(ndim=None, maxside=5):
    ndim = R.randint(0, 5) if ndim is None else ndim
    shape = tuple(R.choice([0, 1, 1, 2, 3, 4, maxside]) for _ in range(ndim))
    dt = R.choice(DTYPES)
    a = np.zeros(shape, dt) if dt is object else (np.arange(int(np.prod(shape))) % 7 - 3).astype(dt).reshape(shape)
    c = R.random()
    if c < 0.15 and a.ndim:
        a = a[..., ::-1]
    elif c < 0.25 and a.ndim:
        a = np.asfortranarray(a)
    elif c < 0.3 and a.ndim and a.size:
        a = np.broadcast_to(a[..., :1], a.shape)
    elif c < 0.35 and a.dtype.kind == "f" and a.size:
        buf = np.zeros(a.nbytes + 1, np.uint8)
        m = np.ndarray(a.shape, a.dtype, buffer=buf, offset=1)
        m[...] = a
        a = m
    elif c < 0.4:
        a = a.copy()
        a.flags.writeable = False
    return a

def rarg(ndim=None):
    c = R.random()
    if c < 0.75:
        return rarray(ndim)
    return rscalar()

def desc(v):
    if isinstance(v, np.ndarray):
        flags = "" if v.flags.c_contiguous else " noncontig"
        return f"arr{v.shape}:{v.dtype}{flags}"
    if isinstance(v, (list, tuple)):
        return "(" + ", ".join(desc(e) for e in v) + ")"
    return repr(v)[:60]

n_ok = n_err = 0
def run(name, fn, *args, **kwargs):
    global n_ok, n_err
    print("CASE", name, desc(args), {k: desc(v) for k, v in kwargs.items()}, flush=True)
    try:
        fn(*args, **kwargs)
        n_ok += 1
    except (MemoryError, RecursionError):
        n_err += 1
    except Exception:
        n_err += 1
"""


def _run_child(body: str, seed: int, n: int, timeout: float = 240):
    code = PRELUDE.replace("SEED", str(seed)) + MUTATE + textwrap.dedent(body).replace("N_CASES", str(n))
    code += "\nprint('DONE', n_ok, n_err, flush=True)\n"
    r = run_python(code, timeout=timeout, check=False, PYCNNRNN_BLOCK_TORCH="1")
    last = [ln for ln in r.stdout.splitlines() if ln.strip()][-3:]
    assert r.returncode in (0, 1), (
        f"child died with signal {-r.returncode} (rc={r.returncode}); last cases:\n"
        + "\n".join(last)
        + "\n"
        + r.stderr[-3000:]
    )
    assert r.returncode == 0 and "DONE" in r.stdout, r.stderr[-3000:]
    done = [ln for ln in r.stdout.splitlines() if ln.startswith("DONE")][0].split()
    return int(done[1]), int(done[2])  # calls that succeeded, calls that raised


# ------------------------------------------------------------------------- public API
# Each case starts from a random *valid* call and replaces 0-2 arguments with garbage, so the
# calls get past the first check and reach the deeper ones (and sometimes the kernels).
MUTATE = r"""
def garbage_like(v):
    if isinstance(v, np.ndarray) and R.random() < 0.8:
        c = R.random()
        shape = list(v.shape)
        if c < 0.35 and shape:
            i = R.randrange(len(shape))
            shape[i] = R.choice([0, 1, shape[i] + 1, max(shape[i] - 1, 0), 2 * shape[i] + 1])
            return np.ones(shape, v.dtype)
        if c < 0.55:
            return v.astype(R.choice([np.float64 if v.dtype == np.float32 else np.float32, np.int64, np.float16,
                                      np.complex64, bool, ">f4"]))
        if c < 0.7:
            return np.ones(shape + [1] if R.random() < 0.5 else shape[1:], v.dtype)
        return rarray(v.ndim)
    if isinstance(v, (list, tuple)) and v and R.random() < 0.5:
        v = list(v)
        i = R.randrange(len(v))
        v[i] = garbage_like(v[i])
        return v
    return rscalar()

def call(name, fn, args, kw, k=None):
    args, kw = list(args), dict(kw)
    k = R.choice([0, 1, 1, 2]) if k is None else k
    slots = [("a", i) for i in range(len(args))] + [("k", key) for key in kw]
    for kind, key in R.sample(slots, min(k, len(slots))):
        if kind == "a":
            args[key] = garbage_like(args[key])
        else:
            kw[key] = garbage_like(kw[key])
    run(name, fn, *args, **kw)

def f(*shape, dt=None):
    return np.random.default_rng(R.randrange(1 << 30)).standard_normal(shape).astype(dt or DT)
"""

PUBLIC = {
    "conv2d": """
        for i in range(N_CASES):
            DT = R.choice([np.float32, np.float64])
            g, cig, cog, kh, kw_ = R.randint(1, 2), R.randint(1, 3), R.randint(1, 3), R.randint(1, 3), R.randint(1, 3)
            d, p, st = R.randint(1, 2), R.randint(0, 1), R.randint(1, 2)
            N, H, W = R.choice([0, 1, 2]), d * (kh - 1) + 1 + R.randint(1, 4), d * (kw_ - 1) + 1 + R.randint(1, 4)
            x, w = f(N, g * cig, H, W), f(g * cog, cig, kh, kw_)
            mode = R.choice(["zeros", "replicate", "circular", "reflect"])
            kw = dict(stride=st, padding=p, dilation=d, groups=g, padding_mode=mode)
            call("conv2d", F.conv2d, (x, w, R.choice([None, f(g * cog)])), kw)
            y = F.conv2d(x, w, None, **kw)
            call("conv2d_backward", F.conv2d_backward, (f(*y.shape), x, w), dict(kw, output_mask=(True, True, R.random() < 0.5)))
    """,
    "pool": """
        for i in range(N_CASES):
            DT = R.choice([np.float32, np.float64])
            k, st, d = R.randint(1, 3), R.choice([None, 1, 2, 3]), R.randint(1, 2)
            p = R.randint(0, k // 2)
            H, W = d * (k - 1) + 1 + R.randint(0, 5), d * (k - 1) + 1 + R.randint(0, 30)
            x = f(*R.choice([(R.randint(1, 3), H, W), (R.randint(0, 2), R.randint(1, 3), H, W)]))
            kw = dict(stride=st, padding=p, dilation=d, ceil_mode=R.random() < 0.5)
            call("max_pool2d", F.max_pool2d, (x, k), dict(kw, return_indices=R.random() < 0.5))
            y, idx = F.max_pool2d(x, k, return_indices=True, **kw)
            call("max_pool2d_backward", F.max_pool2d_backward, (f(*y.shape), x, idx, k), kw)
            call("max_unpool2d", F.max_unpool2d, (y, idx, k), dict(stride=st, padding=p, output_size=R.choice([None, (H, W)])))
    """,
    "linear": """
        for i in range(N_CASES):
            DT = R.choice([np.float32, np.float64])
            m, k, n = R.randint(0, 9), R.randint(1, 40), R.randint(1, 40)
            call("matmul", F.matmul, (f(*R.choice([(m, k), (2, m, k)])), f(*R.choice([(k, n), (2, k, n), (1, k, n)]))), {})
            x, w, b = f(*R.choice([(k,), (m, k), (2, m, k)])), f(n, k), f(n)
            call("linear", F.linear, (x, w, R.choice([None, b])), {})
            call("linear_backward", F.linear_backward, (f(*x.shape[:-1], n), x, w), dict(output_mask=(True, R.random() < 0.5, True)))
    """,
    "rnn": """
        from pycnnrnn.conformance import rnn_param_shapes
        for i in range(N_CASES):
            DT = R.choice([np.float32, np.float64])
            mode = R.choice(["lstm", "gru", "rnn_tanh", "rnn_relu"])
            T, B, I, H = R.randint(1, 4), R.randint(1, 3), R.randint(1, 5), R.randint(1, 6)
            L, bi = R.randint(1, 2), R.random() < 0.5
            P = R.randint(0, H - 1) if mode == "lstm" and H > 1 and R.random() < 0.3 else 0
            D, K = 1 + bi, P or H
            params = [f(*s) for s in rnn_param_shapes(mode, I, H, L, True, bi, P)]
            x = f(T, B, I)
            h0 = f(L * D, B, K)
            hx = (h0, f(L * D, B, H)) if mode == "lstm" else h0
            kw = dict(num_layers=L, bidirectional=bi, proj_size=P, lengths=R.choice([None, [T] + [R.randint(1, T) for _ in range(B - 1)]]))
            call("rnn_forward", F.rnn_forward, (mode, x, hx, params), dict(kw, need_saved=True))
            out, hn, cn, saved = F.rnn_forward(mode, x, hx, params, need_saved=True, **kw)
            call("rnn_backward", F.rnn_backward, (mode, f(*out.shape), f(*hn.shape), None if cn is None else f(*cn.shape), x, hx, params, saved), kw)
            cell = {"lstm": F.lstm_cell, "gru": F.gru_cell, "rnn_tanh": F.rnn_tanh_cell, "rnn_relu": F.rnn_relu_cell}[mode]
            G = {"lstm": 4, "gru": 3}.get(mode, 1)
            hc = (f(B, H), f(B, H)) if mode == "lstm" else f(B, H)
            call(cell.__name__, cell, (f(B, I), hc, f(G * H, I), f(G * H, H), f(G * H), f(G * H)), {})
    """,
}


@pytest.mark.parametrize("op", sorted(PUBLIC))
def test_public_api_garbage_never_crashes(op):
    ok, err = _run_child(PUBLIC[op], seed=sum(map(ord, op)), n=250)
    assert ok > 0, f"no call got through ({err} raised): the fuzzer never reached a kernel"


def test_garbage_with_valid_shapes_and_hostile_numbers_never_crashes():
    """Shapes right, numbers hostile: the checks on stride/padding/dilation/kernel/groups overflow."""
    body = """
        x = np.ones((1, 2, 5, 6), np.float32); w = np.ones((4, 2, 3, 3), np.float32)
        for i in range(N_CASES):
            kw = dict(stride=R.choice([1, rint(), (rint(), 1)]), padding=R.choice([0, rint(), (1, rint())]),
                      dilation=R.choice([1, rint(), (rint(), 1)]), groups=R.choice([1, rint()]))
            run("conv2d", F.conv2d, x, w, **kw)
            run("conv2d_backward", F.conv2d_backward, np.ones((1, 4, 3, 4), np.float32), x, w, **kw)
            pk = dict(kernel_size=R.choice([2, rint(), (rint(), 2)]), stride=R.choice([None, rint(), (1, rint())]),
                      padding=R.choice([0, rint()]), dilation=R.choice([1, rint(), (rint(), 1)]), ceil_mode=R.random() < 0.5)
            run("max_pool2d", F.max_pool2d, x, **pk)
            run("max_unpool2d", F.max_unpool2d, x, np.zeros(x.shape, np.int64) + rint() % 97, R.choice([2, rint()]),
                stride=R.choice([None, rint()]), padding=R.choice([0, rint()]),
                output_size=R.choice([None, (rint(), rint()), (5, 6)]))
    """
    ok, err = _run_child(body, seed=7, n=300)
    assert ok > 0, f"no call got through ({err} raised): the fuzzer never reached a kernel"


# ------------------------------------------------------------------------- private bindings
BINDINGS = """
    fns = [("conv2d_forward", 10), ("conv2d_backward", 9), ("max_pool2d_forward", 11), ("max_pool2d_backward", 13),
           ("max_unpool2d", 4), ("linear", 3), ("linear_backward", 6), ("matmul", 2), ("gemm", 6),
           ("conv_output_size", 6), ("pool_output_size", 6), ("unpool_output_size", 4), ("rnn_workspace_size", 5),
           ("rnn_layer_forward", 17), ("rnn_layer_backward", 21)]
    fns = [(n, a) for n, a in fns if hasattr(_C, n)]
    for i in range(N_CASES):
        name, nargs = R.choice(fns)
        args = []
        for j in range(nargs):
            c = R.random()
            if c < 0.45:
                args.append(rarray())
            elif c < 0.8:
                args.append(rint())
            elif c < 0.9:
                args.append((rint(), rint()) if R.random() < 0.5 else (rint(), rint(), rint(), rint()))
            else:
                args.append(rscalar())
        run("_C." + name, getattr(_C, name), *args)
"""


def test_private_bindings_garbage_never_crashes():
    """The bindings are the second line of defence: they re-check dtype/shape/contiguity."""
    ok, err = _run_child(BINDINGS, seed=11, n=1500)
    assert ok > 0, f"no call got through ({err} raised): the fuzzer never reached a kernel"


BINDINGS_TYPED = """
    # Valid binding calls with 1-3 arguments mutated: shapes that disagree with the scalar
    # arguments, so a missing check would read or write out of bounds.
    for i in range(N_CASES):
        DT = R.choice([np.float32, np.float64])
        which = R.randint(0, 4)
        k = R.choice([1, 1, 2, 3])
        if which == 0:
            ci, co, kh, kw_, H, W = R.randint(1, 3), R.randint(1, 3), R.randint(1, 3), R.randint(1, 3), R.randint(3, 6), R.randint(3, 6)
            x, w = f(R.randint(1, 2), ci, H, W), f(co, ci, kh, kw_)
            args = (x, w, R.choice([None, f(co)]), (1, 1), (1, 1, 0, 0), (1, 1), 1, R.choice([0, 1, 2, 3]), R.choice([0, 1]))
            call("_C.conv2d_forward", _C.conv2d_forward, args, {}, k)
            y = _C.conv2d_forward(*args[:-1], 1)
            call("_C.conv2d_backward", _C.conv2d_backward, (f(*y.shape), x, w) + args[3:8] + ((True, True, True),), {}, k)
        elif which == 1:
            P, H, W = R.randint(1, 3), R.randint(2, 7), R.randint(2, 20)
            x = f(P, H, W)
            args = (x, 2, 2, 2, 2, 1, 0, 1, 1, R.random() < 0.5, True)
            call("_C.max_pool2d_forward", _C.max_pool2d_forward, args, {}, k)
            y, idx = _C.max_pool2d_forward(*args)
            call("_C.max_pool2d_backward", _C.max_pool2d_backward, (f(*y.shape), idx, H, W) + args[1:10], {}, k)
            call("_C.max_unpool2d", _C.max_unpool2d, (y, idx, H, W), {}, k)
        elif which == 2:
            m, kk, n = R.randint(1, 9), R.randint(1, 30), R.randint(1, 30)
            call("_C.matmul", _C.matmul, (f(m, kk), f(kk, n)), {}, k)
            call("_C.linear", _C.linear, (f(m, kk), f(n, kk), f(n)), {}, k)
            call("_C.linear_backward", _C.linear_backward, (f(m, n), f(m, kk), f(n, kk), True, True, True), {}, k)
        else:
            mode = R.randint(0, 3)
            G = (4, 3, 1, 1)[mode]
            T, B, I, H = R.randint(1, 4), R.randint(1, 3), R.randint(1, 5), R.randint(1, 6)
            ws = np.empty(_C.rnn_workspace_size(mode, T, B, H, 0), DT)
            lstm = mode == 0
            args = (mode, R.random() < 0.5, f(T, B, I), f(B, H), f(B, H) if lstm else None, f(G * H, I), f(G * H, H),
                    f(G * H), f(G * H), None, R.choice([None, np.full(B, T, np.int64)]), np.empty((T, B, H), DT), 0,
                    np.empty((B, H), DT), np.empty((B, H), DT) if lstm else None, ws)
            call("_C.rnn_layer_forward", _C.rnn_layer_forward, args, {}, k)
"""


def test_private_bindings_near_valid_sizes_never_crash():
    ok, err = _run_child(BINDINGS_TYPED, seed=13, n=1500)
    assert ok > 0, f"no call got through ({err} raised): the fuzzer never reached a kernel"
