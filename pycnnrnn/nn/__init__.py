"""numpy neural-network modules mirroring torch.nn (constructors, parameter names, state_dict
keys, initialisation, repr); the heavy layers run on pycnnrnn's C++ kernels."""

from __future__ import annotations

from . import init
from .activation import Dropout, ReLU, Sigmoid, Tanh
from .container import ModuleList, Sequential
from .conv import Conv2d
from .linear import Flatten, Identity, Linear
from .module import IncompatibleKeys, Module, RemovableHandle
from .pooling import AdaptiveAvgPool2d, MaxPool2d, MaxUnpool2d
from .rnn import GRU, LSTM, RNN, GRUCell, LSTMCell, RNNCell
from .sparse import Embedding

__all__ = [
    "AdaptiveAvgPool2d",
    "Conv2d",
    "Dropout",
    "Embedding",
    "Flatten",
    "GRU",
    "GRUCell",
    "Identity",
    "IncompatibleKeys",
    "LSTM",
    "LSTMCell",
    "Linear",
    "MaxPool2d",
    "MaxUnpool2d",
    "Module",
    "ModuleList",
    "RNN",
    "RNNCell",
    "ReLU",
    "RemovableHandle",
    "Sequential",
    "Sigmoid",
    "Tanh",
    "init",
]
