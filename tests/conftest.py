"""Shared pytest setup: seeded RNG, the cuda marker's skip, torch thread count."""

from __future__ import annotations

import os

import numpy as np
import pytest

import pycnnrnn


def pytest_configure(config):
    # Reference comparisons with torch run torch on the same thread count as ours.
    try:
        import torch  # noqa: F401
    except ImportError:
        return
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
    if _cuda_ok():
        return
    skip = pytest.mark.skip(reason="no CUDA GPU here (pycnnrnn.cuda_available() is False)")
    for item in items:
        if "cuda" in item.keywords:
            item.add_marker(skip)


@pytest.fixture
def rng(request):
    """A numpy Generator seeded from the test's name: reproducible, different per test."""
    seed = abs(hash(request.node.nodeid)) % (2**32) if os.environ.get("PYTHONHASHSEED") else 1234
    return np.random.default_rng(seed)
