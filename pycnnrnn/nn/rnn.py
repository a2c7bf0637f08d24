"""Recurrent modules mirroring torch.nn: LSTM, GRU, RNN and LSTMCell, GRUCell, RNNCell.

Same constructor arguments, parameter names (weight_ih_l0, weight_hh_l0_reverse, bias_ih_l1,
weight_hr_l0 ...), shapes and init (U(-1/sqrt(H), 1/sqrt(H))) as torch, so a torch state_dict
loads as it is. forward runs pycnnrnn.functional's fused kernels (the whole sequence in one
C++ call per layer and direction); ``lengths=`` plays the role of a PackedSequence."""

from __future__ import annotations

import math
import numbers
import warnings

import numpy as np

from ..ops import rnn as _rnn
from . import init
from .module import Module

__all__ = ["GRU", "GRUCell", "LSTM", "LSTMCell", "RNN", "RNNBase", "RNNCell", "RNNCellBase"]


def _int(v, name, min_value=1):
    if isinstance(v, bool) or not isinstance(v, numbers.Integral):
        raise TypeError(f"{name} should be of type int, got: {type(v).__name__}")
    if v < min_value:
        raise ValueError(
            f"{name} must be greater than zero"
            if min_value == 1
            else f"{name} must be >= {min_value}, got {v}"
        )
    return int(v)


def _bool(v, name):
    if not isinstance(v, (bool, np.bool_)):
        raise TypeError(f"{name} should be of type bool, got: {type(v).__name__}")
    return bool(v)


class RNNBase(Module):
    """torch.nn.RNNBase: the stacked, optionally bidirectional recurrent layer."""

    def __init__(self, mode, input_size, hidden_size, num_layers=1, bias=True, batch_first=False, dropout=0.0,
                 bidirectional=False, proj_size=0, dtype=np.float32):  # fmt: skip
        super().__init__()
        self.mode = mode
        self.input_size = _int(input_size, "input_size")
        self.hidden_size = _int(hidden_size, "hidden_size")
        self.num_layers = _int(num_layers, "num_layers")
        self.bias = _bool(bias, "bias")
        self.batch_first = _bool(batch_first, "batch_first")
        self.bidirectional = _bool(bidirectional, "bidirectional")
        if isinstance(dropout, bool) or not isinstance(dropout, numbers.Number) or not 0 <= dropout <= 1:
            raise ValueError(
                "dropout should be a number in range [0, 1] representing the probability of an element being zeroed"
            )
        self.dropout = float(dropout)
        if dropout > 0 and num_layers == 1:
            warnings.warn(
                "dropout option adds dropout after all but last recurrent layer, so non-zero dropout expects "
                f"num_layers greater than 1, but got dropout={dropout} and num_layers={num_layers}",
                stacklevel=2,
            )
        if isinstance(proj_size, bool) or not isinstance(proj_size, numbers.Integral):
            raise TypeError(f"proj_size should be of type int, got: {type(proj_size).__name__}")
        if proj_size < 0:
            raise ValueError("proj_size should be a positive integer or zero to disable projections")
        if proj_size >= hidden_size:
            raise ValueError("proj_size has to be smaller than hidden_size")
        if proj_size and mode != "lstm":
            raise ValueError("proj_size argument is only supported for LSTM, not RNN or GRU")
        self.proj_size = int(proj_size)
        G = _rnn.GATES[mode]
        D = 2 if self.bidirectional else 1
        K = self.proj_size or self.hidden_size
        dt = np.dtype(dtype)
        names = []
        for layer in range(self.num_layers):
            for d in range(D):
                sfx = f"_l{layer}" + ("_reverse" if d else "")
                in_size = self.input_size if layer == 0 else K * D
                shapes = {"weight_ih": (G * hidden_size, in_size), "weight_hh": (G * hidden_size, K)}
                if self.bias:
                    shapes.update(bias_ih=(G * hidden_size,), bias_hh=(G * hidden_size,))
                if self.proj_size:
                    shapes["weight_hr"] = (self.proj_size, hidden_size)
                for base, shape in shapes.items():
                    setattr(self, base + sfx, np.empty(shape, dt))
                    names.append(base + sfx)
        self._flat_weights_names = names
        self.reset_parameters()

    def reset_parameters(self) -> None:
        stdv = 1.0 / math.sqrt(self.hidden_size)
        for name in self._flat_weights_names:
            init.uniform_(getattr(self, name), -stdv, stdv)

    @property
    def _flat_weights(self):
        """The weights in torch's order; a weight_ih/weight_hh prepared by prepack() as its
        PreparedRnnWeight while it still is this layer's weight (no new array assigned since)."""
        prepared = getattr(self, "_prepared", {})
        out = []
        for n in self._flat_weights_names:
            w = getattr(self, n)
            p = prepared.get(n)
            out.append(p if p is not None and p.weight is w else w)
        return out

    def _prepack(self) -> None:
        # every weight_ih and weight_hh: a read-only snapshot with its packed form
        # (ops.rnn.PreparedRnnWeight)
        self._prepared = {}
        for n in self._flat_weights_names:
            if n.startswith(("weight_ih", "weight_hh")):
                p = _rnn.prepare_rnn_weight(getattr(self, n))
                self._prepared[n] = p
                setattr(self, n, p.weight)  # the snapshot is the parameter now

    def forward(self, input, hx=None, lengths=None):
        out, h_n, c_n, _ = _rnn.rnn_forward(
            self.mode, input, hx, self._flat_weights, self.num_layers, self.bias, self.dropout, self.training,
            self.bidirectional, self.batch_first, self.proj_size, lengths, dropout_seed=init.generator().integers(2**63),
        )  # fmt: skip
        return (out, (h_n, c_n)) if self.mode == "lstm" else (out, h_n)

    def extra_repr(self) -> str:
        s = f"{self.input_size}, {self.hidden_size}"
        if self.proj_size != 0:
            s += f", proj_size={self.proj_size}"
        if self.num_layers != 1:
            s += f", num_layers={self.num_layers}"
        if self.bias is not True:
            s += f", bias={self.bias}"
        if self.batch_first is not False:
            s += f", batch_first={self.batch_first}"
        if self.dropout != 0:
            s += f", dropout={self.dropout}"
        if self.bidirectional is not False:
            s += f", bidirectional={self.bidirectional}"
        return s


class LSTM(RNNBase):
    """torch.nn.LSTM: forward(input, hx=None, lengths=None) -> (output, (h_n, c_n))."""

    def __init__(self, input_size, hidden_size, num_layers=1, bias=True, batch_first=False, dropout=0.0,
                 bidirectional=False, proj_size=0, dtype=np.float32):  # fmt: skip
        super().__init__("lstm", input_size, hidden_size, num_layers, bias, batch_first, dropout, bidirectional,
                         proj_size, dtype)  # fmt: skip


class GRU(RNNBase):
    """torch.nn.GRU: forward(input, hx=None, lengths=None) -> (output, h_n)."""

    def __init__(self, input_size, hidden_size, num_layers=1, bias=True, batch_first=False, dropout=0.0,
                 bidirectional=False, dtype=np.float32):  # fmt: skip
        super().__init__("gru", input_size, hidden_size, num_layers, bias, batch_first, dropout, bidirectional, 0,
                         dtype)  # fmt: skip


class RNN(RNNBase):
    """torch.nn.RNN (nonlinearity 'tanh' or 'relu'): forward(input, hx=None, lengths=None) -> (output, h_n)."""

    def __init__(self, input_size, hidden_size, num_layers=1, nonlinearity="tanh", bias=True, batch_first=False,
                 dropout=0.0, bidirectional=False, dtype=np.float32):  # fmt: skip
        if nonlinearity not in ("tanh", "relu"):
            raise ValueError(f"Unknown nonlinearity '{nonlinearity}'. Select from 'tanh' or 'relu'.")
        self.__dict__["nonlinearity"] = nonlinearity
        super().__init__("rnn_" + nonlinearity, input_size, hidden_size, num_layers, bias, batch_first, dropout,
                         bidirectional, 0, dtype)  # fmt: skip
        self.nonlinearity = nonlinearity


class RNNCellBase(Module):
    """torch.nn.RNNCellBase: weight_ih (G*H, I), weight_hh (G*H, H), bias_ih, bias_hh."""

    def __init__(self, mode, input_size, hidden_size, bias=True, dtype=np.float32):
        super().__init__()
        self.mode = mode
        self.input_size = _int(input_size, "input_size")
        self.hidden_size = _int(hidden_size, "hidden_size")
        self.bias = _bool(bias, "bias")
        G = _rnn.GATES[mode]
        dt = np.dtype(dtype)
        self.weight_ih = np.empty((G * hidden_size, input_size), dt)
        self.weight_hh = np.empty((G * hidden_size, hidden_size), dt)
        if self.bias:
            self.bias_ih = np.empty((G * hidden_size,), dt)
            self.bias_hh = np.empty((G * hidden_size,), dt)
        else:
            self.register_parameter("bias_ih", None)
            self.register_parameter("bias_hh", None)
        self.reset_parameters()

    def reset_parameters(self) -> None:
        stdv = 1.0 / math.sqrt(self.hidden_size)
        for _, p in self.named_parameters():
            init.uniform_(p, -stdv, stdv)

    def forward(self, input, hx=None):
        fn = {"lstm": _rnn.lstm_cell, "gru": _rnn.gru_cell, "rnn_tanh": _rnn.rnn_tanh_cell,
              "rnn_relu": _rnn.rnn_relu_cell}[self.mode]  # fmt: skip
        return fn(input, hx, self.weight_ih, self.weight_hh, self.bias_ih, self.bias_hh)

    def extra_repr(self) -> str:
        s = f"{self.input_size}, {self.hidden_size}"
        if self.bias is not True:
            s += f", bias={self.bias}"
        nl = self.__dict__.get("nonlinearity", "tanh")
        if nl != "tanh":
            s += f", nonlinearity={nl}"
        return s


class LSTMCell(RNNCellBase):
    """torch.nn.LSTMCell: forward(input, hx=None) -> (h_1, c_1)."""

    def __init__(self, input_size, hidden_size, bias=True, dtype=np.float32):
        super().__init__("lstm", input_size, hidden_size, bias, dtype)


class GRUCell(RNNCellBase):
    """torch.nn.GRUCell: forward(input, hx=None) -> h_1."""

    def __init__(self, input_size, hidden_size, bias=True, dtype=np.float32):
        super().__init__("gru", input_size, hidden_size, bias, dtype)


class RNNCell(RNNCellBase):
    """torch.nn.RNNCell: forward(input, hx=None) -> h_1."""

    def __init__(self, input_size, hidden_size, bias=True, nonlinearity="tanh", dtype=np.float32):
        if nonlinearity not in ("tanh", "relu"):
            raise ValueError(f"Unknown nonlinearity: {nonlinearity}")
        self.__dict__["nonlinearity"] = nonlinearity
        super().__init__("rnn_" + nonlinearity, input_size, hidden_size, bias, dtype)
        self.nonlinearity = nonlinearity
