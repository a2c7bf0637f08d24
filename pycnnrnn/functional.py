"""numpy functional API mirroring torch.nn.functional (float32 and float64, numpy in/out).

Each op lives in pycnnrnn/ops/<op>.py (validation + the C++ call); this module is the one
public surface and re-exports them."""

from __future__ import annotations

from .ops.conv2d import *  # noqa: F403
from .ops.conv2d import __all__ as _conv_all
from .ops.linear import *  # noqa: F403
from .ops.linear import __all__ as _linear_all
from .ops.pool2d import *  # noqa: F403
from .ops.pool2d import __all__ as _pool_all
from .ops.rnn import *  # noqa: F403
from .ops.rnn import __all__ as _rnn_all

__all__ = [*_linear_all, *_conv_all, *_pool_all, *_rnn_all]
