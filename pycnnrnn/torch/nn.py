"""Drop-in torch.nn modules running on pycnnrnn's kernels.

Each class subclasses its torch.nn namesake and only replaces the computation: the
constructor, parameters, buffers, ``state_dict`` keys, ``repr`` and hooks are torch's, so a
checkpoint of the torch module loads as is (and back). The recurrent modules accept
PackedSequence input like torch (mapped to the kernels' per-row ``lengths``).
"""

from __future__ import annotations

import torch
from torch import Tensor, nn
from torch.nn.utils.rnn import PackedSequence, pad_packed_sequence

from . import ops

__all__ = [
    "GRU",
    "LSTM",
    "RNN",
    "Conv2d",
    "GRUCell",
    "LSTMCell",
    "Linear",
    "MaxPool2d",
    "MaxUnpool2d",
    "RNNCell",
]


class Conv2d(nn.Conv2d):
    """torch.nn.Conv2d on pycnnrnn's conv2d (all padding modes are fused into the kernel).

    ``convert(model, fuse=True)`` may fuse the ReLU (and MaxPool2d) that followed it in an
    nn.Sequential into it (``fused_pool``: None, or that pooling's (kernel_size, stride, padding,
    dilation, ceil_mode)); its forward then returns their output."""

    fused_relu: bool = False
    fused_pool: tuple | None = None

    def _conv_forward(self, input: Tensor, weight: Tensor, bias: Tensor | None) -> Tensor:
        args = (self.stride, self.padding, self.dilation, self.groups, self.padding_mode)
        if self.fused_relu:
            return ops.conv2d_relu_pool(input, weight, bias, *args, pool=self.fused_pool)
        return ops.conv2d(input, weight, bias, *args)

    def extra_repr(self) -> str:
        s = super().extra_repr()
        if self.fused_relu:
            s += ", fused=ReLU" + ("" if self.fused_pool is None else f"+MaxPool2d{tuple(self.fused_pool)}")
        return s


class MaxPool2d(nn.MaxPool2d):
    """torch.nn.MaxPool2d on pycnnrnn's max_pool2d (indices flat per (H, W) plane like torch)."""

    def forward(self, input: Tensor):
        return ops.max_pool2d(
            input,
            self.kernel_size,
            self.stride,
            self.padding,
            self.dilation,
            self.ceil_mode,
            self.return_indices,
        )


class MaxUnpool2d(nn.MaxUnpool2d):
    """torch.nn.MaxUnpool2d on pycnnrnn's max_unpool2d."""

    def forward(self, input: Tensor, indices: Tensor, output_size=None) -> Tensor:
        return ops.max_unpool2d(input, indices, self.kernel_size, self.stride, self.padding, output_size)


class Linear(nn.Linear):
    """torch.nn.Linear on pycnnrnn's GEMM."""

    def forward(self, input: Tensor) -> Tensor:
        return ops.linear(input, self.weight, self.bias)


# ---- recurrent layers -----------------------------------------------------------------------------
def _repack(out: Tensor, like: PackedSequence) -> PackedSequence:
    """Time-major padded output (original batch order) -> a PackedSequence with like's layout."""
    batch_sizes = like.batch_sizes
    valid = torch.arange(out.shape[1]).unsqueeze(0) < batch_sizes.unsqueeze(1)  # [T, B] in sorted order
    t_idx, j_idx = valid.nonzero(as_tuple=True)  # row-major = packed order
    rows = j_idx if like.sorted_indices is None else like.sorted_indices.to(j_idx.device)[j_idx]
    return PackedSequence(out[t_idx, rows], batch_sizes, like.sorted_indices, like.unsorted_indices)


class _RNNBase:
    """The shared forward of LSTM/GRU/RNN (mixed into the torch.nn classes)."""

    def _mode(self) -> str:
        return {"LSTM": "lstm", "GRU": "gru", "RNN_TANH": "rnn_tanh", "RNN_RELU": "rnn_relu"}[self.mode]

    def _run(self, input, hx):
        mode = self._mode()
        lengths = None
        packed = isinstance(input, PackedSequence)
        if packed:
            # padded in the caller's batch order; hx and h_n stay in that order too (torch's contract)
            x, lengths = pad_packed_sequence(input, batch_first=False)
            batch_first = False
        else:
            x, batch_first = input, self.batch_first
            if x.dim() not in (2, 3):
                raise ValueError(
                    f"{type(self).__name__}: Expected input to be 2D or 3D, got {x.dim()}D instead"
                )
            if x.shape[-1] != self.input_size:
                raise ValueError(
                    f"input.size(-1) must be equal to input_size. Expected {self.input_size}, got {x.shape[-1]}"
                )
        out, h_n, c_n = ops.rnn(
            mode, x, hx, self._flat_weights, self.num_layers, self.bias, self.dropout, self.training,
            self.bidirectional, batch_first, getattr(self, "proj_size", 0), lengths,
        )  # fmt: skip
        if packed:
            out = _repack(out, input)
        return out, h_n, c_n


class LSTM(_RNNBase, nn.LSTM):
    """torch.nn.LSTM on pycnnrnn's fused LSTM kernels (forward and BPTT)."""

    def forward(self, input, hx=None):
        out, h_n, c_n = self._run(input, hx)
        return out, (h_n, c_n)


class GRU(_RNNBase, nn.GRU):
    """torch.nn.GRU on pycnnrnn's fused GRU kernels."""

    def forward(self, input, hx=None):
        out, h_n, _ = self._run(input, hx)
        return out, h_n


class RNN(_RNNBase, nn.RNN):
    """torch.nn.RNN (tanh or relu) on pycnnrnn's kernels."""

    def forward(self, input, hx=None):
        out, h_n, _ = self._run(input, hx)
        return out, h_n


# ---- cells: one step of a one-layer stack ---------------------------------------------------------
class _CellBase:
    def _step(self, mode: str, input: Tensor, states: tuple[Tensor | None, ...]):
        if input.dim() not in (1, 2):
            raise ValueError(
                f"{type(self).__name__}: Expected input to be 1D or 2D, got {input.dim()}D instead"
            )
        batched = input.dim() == 2
        for i, s in enumerate(states):
            if s is not None and s.dim() != input.dim():
                raise ValueError(
                    f"{type(self).__name__}: Expected hidden[{i}] to be {input.dim()}D like the input, got {s.dim()}D"
                )

        def seq(t: Tensor | None):  # (B, F) or (F,) -> (1, B, F)
            return None if t is None else (t.unsqueeze(0) if batched else t.reshape(1, 1, -1))

        params = [self.weight_ih, self.weight_hh] + ([self.bias_ih, self.bias_hh] if self.bias else [])
        hx = (seq(states[0]), seq(states[1])) if mode == "lstm" else seq(states[0])
        if mode == "lstm" and states[0] is None and states[1] is None:
            hx = None
        _, h_n, c_n = ops.rnn(mode, seq(input), hx, params, 1, self.bias)
        h1 = h_n[0] if batched else h_n[0, 0]
        if mode != "lstm":
            return h1
        return h1, (c_n[0] if batched else c_n[0, 0])


class LSTMCell(_CellBase, nn.LSTMCell):
    def forward(self, input: Tensor, hx=None):
        h, c = (None, None) if hx is None else hx
        return self._step("lstm", input, (h, c))


class GRUCell(_CellBase, nn.GRUCell):
    def forward(self, input: Tensor, hx=None):
        return self._step("gru", input, (hx,))


class RNNCell(_CellBase, nn.RNNCell):
    def forward(self, input: Tensor, hx=None):
        return self._step("rnn_tanh" if self.nonlinearity == "tanh" else "rnn_relu", input, (hx,))
