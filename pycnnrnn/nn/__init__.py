"""numpy neural-network modules mirroring torch.nn (constructors, parameter names, state_dict
keys, initialisation, repr); the heavy layers run on pycnnrnn's C++ kernels."""

from __future__ import annotations

from .module import IncompatibleKeys, Module, RemovableHandle

__all__ = ["IncompatibleKeys", "Module", "RemovableHandle"]
