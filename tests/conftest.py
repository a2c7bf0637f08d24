"""Shared pytest setup: seeded RNG, the cuda marker's skip, torch thread count."""

from __future__ import annotations

import os
import sys

import numpy as np
import pytest


def _prefer_built_package() -> None:
    """`python -m pytest` puts the source tree first on sys.path; its pycnnrnn/ has no built
    extension. Drop that entry so the installed (or staged, via PYTHONPATH) package is tested."""
    import glob

    for entry in list(sys.path):
        path = os.path.abspath(entry or os.getcwd())
        src = os.path.join(path, "pycnnrnn")
        if os.path.isfile(os.path.join(src, "__init__.py")) and not glob.glob(os.path.join(src, "_C*.so")):
            sys.path.remove(entry)


_prefer_built_package()

if os.environ.get("PYCNNRNN_BLOCK_TORCH"):
    # The sanitizer job keeps torch (not built with ASan) out of the process: tests that
    # need torch skip there, the numpy/float64-oracle tests run.
    sys.modules["torch"] = None  # type: ignore[assignment]

import pycnnrnn  # noqa: E402

try:
    import torch as _torch  # noqa: F401

    HAVE_TORCH = True
except ImportError:
    HAVE_TORCH = False


def pytest_configure(config):
    # Reference comparisons with torch run torch on the same thread count as ours.
    if HAVE_TORCH:
        import torch

        torch.set_num_threads(pycnnrnn.get_num_threads())


def _cuda_ok() -> bool:
    try:
        if not pycnnrnn.cuda_available():
            return False
        import torch

        return torch.cuda.is_available()
    except Exception:
        return False


def pytest_collection_modifyitems(config, items):
    skip_cuda = pytest.mark.skip(reason="no CUDA GPU here (pycnnrnn.cuda_available() is False)")
    skip_torch = pytest.mark.skip(reason="torch is not installed (optional dependency)")
    cuda_ok = _cuda_ok()
    for item in items:
        if "cuda" in item.keywords and not cuda_ok:
            item.add_marker(skip_cuda)
        if "torch" in item.keywords and not HAVE_TORCH:
            item.add_marker(skip_torch)


@pytest.fixture
def rng(request):
    """A numpy Generator seeded from the test's name: reproducible, different per test."""
    seed = abs(hash(request.node.nodeid)) % (2**32) if os.environ.get("PYTHONHASHSEED") else 1234
    return np.random.default_rng(seed)
