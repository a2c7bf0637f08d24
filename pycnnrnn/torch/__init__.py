"""torch integration: pycnnrnn kernels as torch operators with autograd, drop-in modules, convert.

    import pycnnrnn.torch as pt
    model = pt.convert(model)[0]      # swap nn.Conv2d/MaxPool2d/Linear/LSTM/... for pycnnrnn's

- ``torch.ops.pycnnrnn.*`` (registered on import of this package): conv2d, conv2d_backward,
  max_pool2d_with_indices, max_pool2d_backward, max_unpool2d, linear, linear_backward, rnn,
  rnn_backward; functional wrappers in ``pycnnrnn.torch.ops``.
- ``pycnnrnn.torch.nn``: Conv2d, MaxPool2d, MaxUnpool2d, Linear, LSTM, GRU, RNN, LSTMCell,
  GRUCell, RNNCell: subclasses of the torch.nn modules (same constructor, parameters and
  state_dict) whose forward runs on pycnnrnn's kernels.
- ``pycnnrnn.torch.convert(model)``: swaps those modules into an existing model in place.
- ``pycnnrnn.torch.threads``: on import the kernels' parallel regions move onto torch's OpenMP
  threads (one set of threads for both; ``share_torch_threads(False)`` or
  ``PYCNNRNN_SHARE_TORCH_THREADS=0`` keeps pycnnrnn's own pool).

No libtorch is linked: the ops hand tensor memory to the C++ kernels through numpy views.
"""

from __future__ import annotations

from . import nn, ops, threads
from .convert import ConvertReport, convert
from .threads import share_torch_threads

__all__ = ["ConvertReport", "convert", "nn", "ops", "share_torch_threads", "threads"]
