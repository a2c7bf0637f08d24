"""Sharing torch's OpenMP threads: pycnnrnn's kernels run their parallel regions on the team
torch's own ops use, instead of on pycnnrnn's pool.

Two spinning thread pools on a small machine take turns on its cores: after each torch op its
OpenMP threads spin (libgomp: about 300k pauses) and after each pycnnrnn kernel our workers do,
so in a model that interleaves the two, each pool's parallel regions wait for the other's
spinners (a 2-core training step measured 20-40% slower, tiny torch ops at 100x their time).
On import, ``pycnnrnn.torch`` switches to torch's runtime when it can find it (the libgomp or
libiomp5 that torch loaded); ``PYCNNRNN_SHARE_TORCH_THREADS=0`` keeps the separate pool.
The thread count stays ``pycnnrnn.set_num_threads``'s; results are identical either way (the
kernels partition work by part index, not by which OS thread runs it).
"""

from __future__ import annotations

import os

from .. import _C

__all__ = ["share_torch_threads", "sharing_torch_threads", "torch_openmp_library"]


def torch_openmp_library() -> str | None:
    """Path of the OpenMP runtime torch has loaded (Linux: read from /proc/self/maps), or None
    when torch's parallel backend is not OpenMP or the runtime cannot be found."""
    import torch

    if "parallel backend: OpenMP" not in torch.__config__.parallel_info():
        return None
    try:
        with open("/proc/self/maps") as f:
            paths = {line.split(maxsplit=5)[-1].strip() for line in f if "/" in line}
    except OSError:
        return None
    candidates = sorted(
        p for p in paths if os.path.basename(p).startswith(("libgomp", "libiomp5")) and ".so" in p
    )
    torch_dir = os.path.dirname(os.path.abspath(torch.__file__))
    own = [p for p in candidates if p.startswith(torch_dir + os.sep)]
    if own:
        return own[0]
    return candidates[0] if len(candidates) == 1 else None


def share_torch_threads(enable: bool = True) -> bool:
    """Run pycnnrnn's parallel regions on torch's OpenMP threads (``enable=True``) or on
    pycnnrnn's own pool (``False``). Returns whether torch's threads are used afterwards."""
    if not enable:
        _C.use_openmp_runtime("")
        return False
    lib = torch_openmp_library()
    return bool(lib) and _C.use_openmp_runtime(lib)


def sharing_torch_threads() -> bool:
    return bool(_C.using_openmp_runtime())


if os.environ.get("PYCNNRNN_SHARE_TORCH_THREADS", "1") != "0":
    share_torch_threads(True)
