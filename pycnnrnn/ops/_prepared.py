"""The common part of the prepared weights (PreparedConv2dWeight, PreparedRnnWeight): a
read-only snapshot of the array plus the C++ object that builds what the kernels derive from it
on first use and keeps it."""

from __future__ import annotations

import numpy as np

from ._validate import as_float_array, check_ndim


class PreparedWeight:
    """``weight``: a read-only copy of the array this was made from; changes to the original are
    not seen (prepare again after changing weights). Subclasses set NDIM, SHAPE_NAMES (for the
    error message) and C_TYPE (the C++ holder, built from the snapshot)."""

    __slots__ = ("weight", "_c")
    NDIM: int
    SHAPE_NAMES: str
    C_TYPE: type

    def __init__(self, weight):
        w = as_float_array(weight, "weight")
        check_ndim(w, "weight", (self.NDIM,), f" {self.SHAPE_NAMES}")
        snapshot = np.array(w, copy=True, order="C")
        snapshot.flags.writeable = False
        self.weight = snapshot
        self._c = self.C_TYPE(snapshot)

    @property
    def shape(self):
        return self.weight.shape

    @property
    def dtype(self):
        return self.weight.dtype

    def __reduce__(self):  # pickle / copy.deepcopy: prepare the copied weights afresh
        return (type(self), (self.weight,))

    def __repr__(self) -> str:
        return f"{type(self).__name__}(shape={self.weight.shape}, dtype={self.weight.dtype})"
