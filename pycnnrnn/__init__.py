"""pycnnrnn: hand-written C++ kernels for conv2d, max pooling and recurrent layers.

numpy in, numpy out; torch is optional (``pycnnrnn.torch`` plugs the kernels into autograd).

    >>> import numpy as np, pycnnrnn as pc
    >>> x = np.random.rand(1, 3, 32, 32).astype(np.float32)
    >>> w = np.random.rand(8, 3, 3, 3).astype(np.float32)
    >>> pc.F.conv2d(x, w, padding=1).shape
    (1, 8, 32, 32)
"""

from __future__ import annotations


def _find_built_package() -> None:
    """Running from a source checkout (``pip install . && python -m pycnnrnn`` in the checkout
    root puts the checkout first on sys.path): its pycnnrnn/ has no compiled _C. Load the
    package's modules from the installed copy instead; error clearly when there is none."""
    import glob
    import os
    import sys

    def built(d: str) -> bool:
        return bool(glob.glob(os.path.join(d, "_C*.so")) or glob.glob(os.path.join(d, "_C*.pyd")))

    here = os.path.dirname(os.path.abspath(__file__))
    if built(here):
        return
    for entry in sys.path:
        cand = os.path.join(os.path.abspath(entry or os.getcwd()), "pycnnrnn")
        if cand != here and built(cand):
            __path__[:] = [cand]  # submodules (and _C) come from the built copy
            return
    raise ImportError(
        f"pycnnrnn's compiled extension (_C) is not in {here} and no built pycnnrnn is installed: "
        "run `pip install .` in the checkout (or .ci/dev-build NAME for a staged development build)"
    )


_find_built_package()

from . import _C  # noqa: E402

__version__ = getattr(_C, "__version__", "0.0.0")


def cpu_isa() -> str:
    """The CPU kernel path in use: 'avx512', 'avx2' or 'scalar' (``PYCNNRNN_ISA`` lowers it)."""
    return _C.cpu_isa()


def get_num_threads() -> int:
    """Threads the kernels use (default: the process's CPU affinity count)."""
    return _C.get_num_threads()


def set_num_threads(n: int) -> None:
    """Set the number of threads the kernels use (n >= 1). Safe while other threads run ops."""
    if isinstance(n, bool) or not isinstance(n, int):
        raise TypeError(f"set_num_threads: n must be an int, got {type(n).__name__}")
    if not 1 <= n <= 255:
        raise ValueError(f"set_num_threads: n must be in [1, 255], got {n}")
    _C.set_num_threads(n)


def cuda_available() -> bool:
    """True when the CUDA backend was built and a usable GPU and driver are present."""
    try:
        return bool(_C.built_with_cuda) and _C.cuda_device_count() > 0
    except Exception:
        return False


def roofline(fma_iters: int = 20_000_000, copy_bytes: int = 256 << 20) -> dict:
    """Measure this machine's ceilings: float32 FMA peak (GFLOP/s) and copy bandwidth (GB/s,
    read + written) on the current thread count, each the best of five timed passes (one pass
    of the FMA loop read 314 GFLOP/s once where the machine gives 516-536). Benchmarks quote
    their fraction of these."""
    return {
        "fma_peak_gflops": max(_C.measure_fma_peak_gflops(fma_iters) for _ in range(5)),
        "copy_bandwidth_gbs": _C.measure_copy_bandwidth_gbs(copy_bytes, 5),
        "threads": _C.get_num_threads(),
        "isa": _C.cpu_isa(),
    }


def __getattr__(name: str):
    # Submodules load on first use so `import pycnnrnn` stays fast and never imports torch.
    import importlib

    if name in ("functional", "F"):
        mod = importlib.import_module(".functional", __name__)
        globals()["functional"] = globals()["F"] = mod
        return mod
    if name in ("nn", "models", "torch", "testing", "io"):
        mod = importlib.import_module("." + name, __name__)
        globals()[name] = mod
        return mod
    if name == "summary":
        from .nn.summary import summary

        globals()["summary"] = summary
        return summary
    raise AttributeError(f"module 'pycnnrnn' has no attribute {name!r}")


__all__ = [
    "F",
    "cpu_isa",
    "cuda_available",
    "functional",
    "get_num_threads",
    "models",
    "nn",
    "roofline",
    "set_num_threads",
    "summary",
]
