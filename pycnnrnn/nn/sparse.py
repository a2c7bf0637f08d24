"""Embedding: a lookup table (numpy gather) with torch's padding_idx and max_norm."""

from __future__ import annotations

import numpy as np

from ..ops._validate import check_int
from . import init
from .module import Module

__all__ = ["Embedding"]


class Embedding(Module):
    """weight (num_embeddings, embedding_dim) ~ N(0, 1), the padding_idx row zeroed."""

    def __init__(
        self,
        num_embeddings: int,
        embedding_dim: int,
        padding_idx: int | None = None,
        max_norm: float | None = None,
        norm_type: float = 2.0,
        scale_grad_by_freq: bool = False,
        sparse: bool = False,
        _weight: np.ndarray | None = None,
        dtype=np.float32,
    ):
        super().__init__()
        self.num_embeddings = check_int(num_embeddings, "num_embeddings", min_value=0)
        self.embedding_dim = check_int(embedding_dim, "embedding_dim", min_value=0)
        if padding_idx is not None:
            padding_idx = check_int(padding_idx, "padding_idx")
            if not -num_embeddings <= padding_idx < num_embeddings:
                raise ValueError(
                    f"padding_idx must be within num_embeddings ([{-num_embeddings}, {num_embeddings})), "
                    f"got {padding_idx}"
                )
            padding_idx %= num_embeddings
        self.padding_idx = padding_idx
        self.max_norm = max_norm
        self.norm_type = norm_type
        self.scale_grad_by_freq = scale_grad_by_freq
        self.sparse = sparse
        if _weight is None:
            self.weight = np.empty((num_embeddings, embedding_dim), dtype=np.dtype(dtype))
            self.reset_parameters()
        else:
            w = np.asarray(_weight)
            if w.shape != (num_embeddings, embedding_dim):
                raise ValueError(
                    f"_weight must have shape {(num_embeddings, embedding_dim)} (num_embeddings, embedding_dim), "
                    f"got {w.shape}"
                )
            self.weight = np.array(w, dtype=np.dtype(dtype))

    def reset_parameters(self) -> None:
        init.normal_(self.weight)
        if self.padding_idx is not None:
            self.weight[self.padding_idx] = 0

    def forward(self, input: np.ndarray) -> np.ndarray:
        if not isinstance(input, np.ndarray):
            raise TypeError(f"input must be a numpy array of integer ids, got {type(input).__name__}")
        if input.dtype.kind not in "iu":
            raise TypeError(f"input must have an integer dtype (int64 ids), got {input.dtype}")
        if input.size:
            lo, hi = int(input.min()), int(input.max())
            if lo < 0 or hi >= self.num_embeddings:
                bad = lo if lo < 0 else hi
                raise ValueError(
                    f"input ids must be in [0, {self.num_embeddings}) (num_embeddings), got {bad}"
                )
        if self.max_norm is not None:
            self._renorm(np.unique(input))
        return self.weight[input]

    def _renorm(self, ids: np.ndarray) -> None:
        # torch.embedding_renorm_: rows used by this input with norm > max_norm are rescaled in place.
        rows = self.weight[ids]
        norms = np.linalg.norm(rows.astype(np.float64), ord=self.norm_type, axis=1)
        scale = np.where(norms > self.max_norm, self.max_norm / (norms + 1e-7), 1.0)
        self.weight[ids] = rows * scale[:, None].astype(rows.dtype)

    def extra_repr(self) -> str:
        s = f"{self.num_embeddings}, {self.embedding_dim}"
        if self.padding_idx is not None:
            s += f", padding_idx={self.padding_idx}"
        if self.max_norm is not None:
            s += f", max_norm={self.max_norm}"
        if self.norm_type != 2:
            s += f", norm_type={self.norm_type}"
        if self.scale_grad_by_freq is not False:
            s += f", scale_grad_by_freq={self.scale_grad_by_freq}"
        if self.sparse is not False:
            s += ", sparse=True"
        return s
