"""Test helpers shared by every op's tests: the float64 error gate and layout variants.

Error gate (DESIGN.md): on the same float32 inputs, max|ours - ref64| may not exceed twice
torch's own max|torch - ref64|, plus a tiny absolute floor scaled by the reference."""

from __future__ import annotations

import numpy as np

try:  # torch is a test dependency but the numpy-only tests must run without it
    import torch
except ImportError:  # pragma: no cover
    torch = None


def max_err(a, ref) -> float:
    a = np.asarray(a, dtype=np.float64)
    ref = np.asarray(ref, dtype=np.float64)
    assert a.shape == ref.shape, f"shape {a.shape} != reference {ref.shape}"
    if a.size == 0:
        return 0.0
    assert not np.isnan(a).any() or np.isnan(ref).any(), "NaN in output (unwritten element?)"
    return float(np.max(np.abs(a - ref)))


def assert_error_gate(
    ours, ref64, torch_out=None, *, factor: float = 2.0, floor: float = 1e-6, what: str = ""
):
    """max|ours - ref64| <= factor * max|torch_out - ref64| + floor * max(1, max|ref64|)."""
    ours = np.asarray(ours)
    ref64 = np.asarray(ref64, dtype=np.float64)
    e_ours = max_err(ours, ref64)
    scale = max(1.0, float(np.max(np.abs(ref64)))) if ref64.size else 1.0
    if torch_out is None:
        bound = floor * scale
        e_torch = float("nan")
    else:
        e_torch = max_err(torch_out, ref64)
        bound = factor * e_torch + floor * scale
    assert e_ours <= bound, f"{what}: error {e_ours:.3e} > bound {bound:.3e} (torch error {e_torch:.3e})"
    return e_ours, e_torch


def layouts(x: np.ndarray):
    """Yield (name, view) pairs holding the same values as x in awkward memory layouts:
    non-contiguous, negative strides, Fortran order, misaligned, read-only."""
    yield "contiguous", x
    # non-contiguous: every other element of a 2x bigger buffer along the last axis
    big = np.full(x.shape[:-1] + (2 * x.shape[-1],), np.nan, dtype=x.dtype)
    big[..., ::2] = x
    yield "strided", big[..., ::2]
    # negative strides
    yield "reversed", np.flip(np.flip(x, -1).copy(), -1)
    yield "fortran", np.asfortranarray(x)
    # misaligned: offset by one byte inside a bytes buffer
    buf = np.zeros(x.nbytes + x.itemsize, dtype=np.uint8)
    mis = np.frombuffer(buf.data, dtype=x.dtype, count=x.size, offset=1).reshape(x.shape) if x.size else x
    if x.size:
        mis = np.ndarray(x.shape, dtype=x.dtype, buffer=buf, offset=1)
        mis[...] = x
    yield "misaligned", mis
    ro = x.copy()
    ro.flags.writeable = False
    yield "readonly", ro


def nan_like(shape, dtype):
    return np.full(shape, np.nan, dtype=dtype)


def to_torch(x):
    return torch.from_numpy(np.ascontiguousarray(x))


def child_env(**env) -> dict:
    """Environment for a child interpreter that imports the same pycnnrnn as this process
    (PYTHONPATH made absolute; extra variables such as PYCNNRNN_ISA=avx2 added)."""
    import os

    import pycnnrnn

    e = dict(os.environ)
    pkg_parent = os.path.dirname(os.path.dirname(os.path.abspath(pycnnrnn.__file__)))
    e["PYTHONPATH"] = os.pathsep.join(p for p in (pkg_parent, e.get("PYTHONPATH", "")) if p)
    e.update({k: str(v) for k, v in env.items()})
    return e


def run_python(code: str, *, timeout: float = 300, check: bool = True, **env):
    """Run `code` in a fresh interpreter (outside the source tree, same pycnnrnn), e.g.
    run_python("...", PYCNNRNN_ISA="scalar"). Returns the CompletedProcess."""
    import subprocess
    import sys
    import tempfile

    r = subprocess.run(
        [sys.executable, "-c", code],
        capture_output=True,
        text=True,
        env=child_env(**env),
        timeout=timeout,
        cwd=tempfile.gettempdir(),
    )
    if check:
        assert r.returncode == 0, f"child failed ({r.returncode}):\n{r.stdout}\n{r.stderr}"
    return r
