"""pycnnrnn kernels as torch operators: ``torch.ops.pycnnrnn.*`` with fake and autograd kernels.

Every op is a ``torch.library.custom_op`` whose CPU implementation hands the tensors' memory to
the numpy API (``t.detach().numpy()`` is a view, ``torch.from_numpy`` wraps the result: no
copies unless a layout needs one), a ``register_fake`` that computes the output shapes with the
same formulas as the C++ (``pycnnrnn._C.conv_output_size`` / ``pool_output_size`` /
``unpool_output_size``, mirrored in Python only for symbolic sizes), and a
``register_autograd`` whose backward calls the matching backward op:

=================================== ===========================================================
op                                  backward
=================================== ===========================================================
pycnnrnn::conv2d                    pycnnrnn::conv2d_backward (output_mask from needs_input_grad)
pycnnrnn::max_pool2d_with_indices   pycnnrnn::max_pool2d_backward
pycnnrnn::max_unpool2d              gather of grad_output at the indices (torch op)
pycnnrnn::linear                    pycnnrnn::linear_backward (output_mask from needs_input_grad)
pycnnrnn::rnn                       pycnnrnn::rnn_backward (BPTT from the saved workspaces)
=================================== ===========================================================

The backward ops have no autograd formula of their own, so double backward raises torch's
"no autograd formula" error (the ops are once differentiable). Gradients arriving
non-contiguous are made contiguous; undefined ones are zeros (materialised by autograd for
conv2d and linear; pooling's indices and the RNN's workspaces get none, and the RNN makes
zeros only for the outputs its kernel reads).

The functions at the bottom (``conv2d``, ``max_pool2d``, ``max_unpool2d``, ``linear``, ``rnn``)
take torch.nn.functional-style arguments, normalise them and call the ops.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import torch
from torch import Tensor

from .. import _C
from ..ops import conv2d as _conv
from ..ops import linear as _lin
from ..ops import pool2d as _pool
from ..ops import rnn as _rnn

__all__ = ["conv2d", "conv2d_relu_pool", "linear", "max_pool2d", "max_unpool2d", "rnn"]

_lib = torch.library


def _np(t: Tensor) -> np.ndarray:
    """A numpy view of a CPU tensor (no copy; the numpy API copies only awkward layouts)."""
    return t.detach().numpy()


def _opt_np(t: Tensor | None) -> np.ndarray | None:
    return None if t is None else _np(t)


def _t(a: np.ndarray) -> Tensor:
    """Wrap a kernel's fresh output without copying."""
    return torch.from_numpy(a)


def _is_static(*vals) -> bool:
    return all(type(v) is int for v in vals)


# ---- shape formulas: the C++ ones (csrc/core/shapes.h); Python mirrors only for SymInts --------
def _conv_out(size, k, stride, pad_l, pad_r, dilation):
    if _is_static(size, k):
        return _C.conv_output_size(size, k, stride, pad_l, pad_r, dilation)
    return (size + pad_l + pad_r - dilation * (k - 1) - 1) // stride + 1


def _pool_out(size, k, stride, pad, dilation, ceil_mode):
    if _is_static(size):
        return _C.pool_output_size(size, k, stride, pad, dilation, ceil_mode)
    out = (size + 2 * pad - dilation * (k - 1) - 1 + (stride - 1 if ceil_mode else 0)) // stride + 1
    if ceil_mode and (out - 1) * stride >= size + pad:
        out = out - 1
    return out


def _unpool_out(size, k, stride, pad):
    if _is_static(size):
        return _C.unpool_output_size(size, k, stride, pad)
    return (size - 1) * stride - 2 * pad + k


def _empty_like_none(ref: Tensor) -> Tensor:
    """Placeholder for an output that output_mask switched off (ops cannot return None)."""
    return ref.new_empty((0,))


def _check_mask(output_mask: Sequence[bool]) -> list[bool]:
    if len(output_mask) != 3:
        raise ValueError(f"output_mask must have 3 entries, got {list(output_mask)}")
    return [bool(m) for m in output_mask]


# ================================ the eager fast path =============================================
# A custom op called from Python goes through torch's dispatcher and the custom-op wrappers
# both ways: measured 150-180 us per conv/pool layer forward+backward on top of the kernels
# (torch's own conv: about 60 us in all), a tenth of a small model's training step. A plain
# eager call on CPU tensors (no torch.compile, tracing, functorch transform or dispatch/
# function mode that should see the op) therefore runs the same implementation, setup and
# backward functions through a torch.autograd.Function instead; everything else calls
# torch.ops.pycnnrnn.* (and the tests run both).
_PLAIN = (torch.Tensor, torch.nn.Parameter)


def _eager_ok(*tensors) -> bool:
    if (
        torch.compiler.is_compiling()
        or torch.jit.is_tracing()
        or torch._C._len_torch_dispatch_stack()
        or torch._C._len_torch_function_stack()
        or torch._C._are_functorch_transforms_active()
    ):
        return False
    return all(t is None or (type(t) in _PLAIN and t.device.type == "cpu") for t in tensors)


def _eager_ctx(ctx) -> bool:
    """True in the backward of a call that took the eager path: the backward kernels are called
    directly, except under create_graph, where the backward op records torch's "no autograd
    formula" node on the inputs (a second derivative then raises, as on the op path)."""
    return getattr(ctx, "pycnnrnn_eager", False) and not torch.is_grad_enabled()


def _eager_function(name: str, impl, setup_context, backward):
    """torch.autograd.Function running `impl` with the custom op's own setup_context/backward
    (ctx-style forward: the separate setup_context style binds arguments with inspect on every
    call, which cost as much as the dispatcher round trip it replaces)."""

    def forward(ctx, *inputs):
        output = impl(*inputs)
        ctx.pycnnrnn_eager = True
        setup_context(ctx, inputs, output)
        return output

    return type(
        name,
        (torch.autograd.Function,),
        {"forward": staticmethod(forward), "backward": staticmethod(backward)},
    )


# ================================ conv2d ==========================================================
def _conv_padding_arg(padding: Sequence[int], weight_hw, dilation):
    """The op's padding [top, bottom, left, right] -> what ops.conv2d accepts: a symmetric
    (h, w) pair, or "same" for torch's asymmetric 'same' split."""
    pt, pb, pl, pr = (int(p) for p in padding)
    if pt == pb and pl == pr:
        return (pt, pl)
    th, tw = dilation[0] * (weight_hw[0] - 1), dilation[1] * (weight_hw[1] - 1)
    if (pt, pb, pl, pr) == (th // 2, th - th // 2, tw // 2, tw - tw // 2):
        return "same"
    raise ValueError(f"conv2d: asymmetric padding {list(padding)} is only supported as padding='same'")


def _conv2d_cpu(
    input: Tensor,
    weight: Tensor,
    bias: Tensor | None,
    stride: list[int],
    padding: list[int],
    dilation: list[int],
    groups: int,
    padding_mode: str,
) -> Tensor:
    pad = _conv_padding_arg(padding, weight.shape[2:], dilation)
    return _t(
        _conv.conv2d(_np(input), _np(weight), _opt_np(bias), stride, pad, dilation, groups, padding_mode)
    )


conv2d_op = torch.library.custom_op("pycnnrnn::conv2d", mutates_args=(), device_types="cpu")(_conv2d_cpu)


@conv2d_op.register_fake
def _(input, weight, bias, stride, padding, dilation, groups, padding_mode):
    torch._check(input.dim() in (3, 4), lambda: f"conv2d: input must be 3-D or 4-D, got {input.dim()}-D")
    kh, kw = weight.shape[2], weight.shape[3]
    oh = _conv_out(input.shape[-2], kh, stride[0], padding[0], padding[1], dilation[0])
    ow = _conv_out(input.shape[-1], kw, stride[1], padding[2], padding[3], dilation[1])
    return input.new_empty((*input.shape[:-3], weight.shape[0], oh, ow))


def _conv2d_backward_cpu(
    grad_output: Tensor,
    input: Tensor,
    weight: Tensor,
    stride: list[int],
    padding: list[int],
    dilation: list[int],
    groups: int,
    padding_mode: str,
    output_mask: list[bool],
) -> tuple[Tensor, Tensor, Tensor]:
    """(grad_input, grad_weight, grad_bias); an entry switched off by output_mask is empty."""
    mask = _check_mask(output_mask)
    pad = _conv_padding_arg(padding, weight.shape[2:], dilation)
    gx, gw, gb = _conv.conv2d_backward(
        _np(grad_output), _np(input), _np(weight), stride, pad, dilation, groups, padding_mode, mask
    )
    return tuple(_t(g) if g is not None else _empty_like_none(input) for g in (gx, gw, gb))


conv2d_backward_op = torch.library.custom_op(
    "pycnnrnn::conv2d_backward", mutates_args=(), device_types="cpu"
)(_conv2d_backward_cpu)


@conv2d_backward_op.register_fake
def _(grad_output, input, weight, stride, padding, dilation, groups, padding_mode, output_mask):
    mask = _check_mask(output_mask)
    shapes = (input.shape, weight.shape, (weight.shape[0],))
    return tuple(input.new_empty(s) if m else input.new_empty((0,)) for m, s in zip(mask, shapes))


def _conv2d_setup(ctx, inputs, output):
    input, weight, bias, stride, padding, dilation, groups, padding_mode = inputs
    ctx.save_for_backward(input, weight)
    ctx.args = (stride, padding, dilation, groups, padding_mode)
    ctx.has_bias = bias is not None


def _conv2d_backward(ctx, grad):
    input, weight = ctx.saved_tensors
    need = ctx.needs_input_grad
    mask = [need[0], need[1], ctx.has_bias and need[2]]
    gx = gw = gb = None
    if any(mask):
        backward = _conv2d_backward_cpu if _eager_ctx(ctx) else torch.ops.pycnnrnn.conv2d_backward
        gx, gw, gb = backward(grad.contiguous(), input, weight, *ctx.args, mask)
    return (
        gx if mask[0] else None,
        gw if mask[1] else None,
        gb if mask[2] else None,
        None,
        None,
        None,
        None,
        None,
    )


conv2d_op.register_autograd(_conv2d_backward, setup_context=_conv2d_setup)
_Conv2dEager = _eager_function("_Conv2dEager", _conv2d_cpu, _conv2d_setup, _conv2d_backward)


# ================================ max pooling =====================================================
def _max_pool2d_cpu(
    input: Tensor,
    kernel_size: list[int],
    stride: list[int],
    padding: list[int],
    dilation: list[int],
    ceil_mode: bool,
) -> tuple[Tensor, Tensor]:
    y, idx = _pool.max_pool2d(
        _np(input), kernel_size, stride, padding, dilation, ceil_mode, return_indices=True
    )
    return _t(y), _t(idx)


max_pool2d_with_indices_op = torch.library.custom_op(
    "pycnnrnn::max_pool2d_with_indices", mutates_args=(), device_types="cpu"
)(_max_pool2d_cpu)


@max_pool2d_with_indices_op.register_fake
def _(input, kernel_size, stride, padding, dilation, ceil_mode):
    torch._check(input.dim() in (3, 4), lambda: f"max_pool2d: input must be 3-D or 4-D, got {input.dim()}-D")
    oh = _pool_out(input.shape[-2], kernel_size[0], stride[0], padding[0], dilation[0], ceil_mode)
    ow = _pool_out(input.shape[-1], kernel_size[1], stride[1], padding[1], dilation[1], ceil_mode)
    shape = (*input.shape[:-2], oh, ow)
    return input.new_empty(shape), input.new_empty(shape, dtype=torch.int64)


def _max_pool2d_backward_cpu(
    grad_output: Tensor,
    input: Tensor,
    indices: Tensor,
    kernel_size: list[int],
    stride: list[int],
    padding: list[int],
    dilation: list[int],
    ceil_mode: bool,
) -> Tensor:
    return _t(
        _pool.max_pool2d_backward(
            _np(grad_output), _np(input), _np(indices), kernel_size, stride, padding, dilation, ceil_mode
        )
    )


max_pool2d_backward_op = torch.library.custom_op(
    "pycnnrnn::max_pool2d_backward", mutates_args=(), device_types="cpu"
)(_max_pool2d_backward_cpu)


@max_pool2d_backward_op.register_fake
def _(grad_output, input, indices, kernel_size, stride, padding, dilation, ceil_mode):
    return input.new_empty(input.shape)


def _pool_setup(ctx, inputs, output):
    input, kernel_size, stride, padding, dilation, ceil_mode = inputs
    ctx.save_for_backward(input, output[1])
    ctx.args = (kernel_size, stride, padding, dilation, ceil_mode)
    ctx.mark_non_differentiable(output[1])
    # no zero-filled int64 gradient for the indices output (it was a full-size fill_ per call)
    ctx.set_materialize_grads(False)


def _pool_backward(ctx, grad, _grad_indices):
    input, indices = ctx.saved_tensors
    gx = None
    if ctx.needs_input_grad[0] and grad is not None:
        backward = _max_pool2d_backward_cpu if _eager_ctx(ctx) else torch.ops.pycnnrnn.max_pool2d_backward
        gx = backward(grad.contiguous(), input, indices, *ctx.args)
    return gx, None, None, None, None, None


max_pool2d_with_indices_op.register_autograd(_pool_backward, setup_context=_pool_setup)
_MaxPool2dEager = _eager_function("_MaxPool2dEager", _max_pool2d_cpu, _pool_setup, _pool_backward)


# ================================ fused Conv2d -> ReLU (-> MaxPool2d) =================================
# What pycnnrnn.torch.convert(model, fuse=True) makes of those runs in an nn.Sequential (eager
# CPU calls only; everywhere else the same three ops run one after the other). Forward: the ReLU
# is the convolution's output stage (no pass of its own), the pooling reads its output. Backward:
# max(relu(z)) over a window is relu(max(z)) and its gradient reaches z only at the argmax and
# only where that maximum is positive, so the ReLU's mask is applied to the pooled gradient
# (a quarter of the elements for 2x2 pooling) before the pooling's scatter; without a pooling,
# to the full gradient. Results are bit-identical to the unfused modules.
class _ConvReluPoolEager(torch.autograd.Function):
    @staticmethod
    def forward(ctx, input, weight, bias, conv_args, pool_args):
        stride, padding, dilation, groups, padding_mode = conv_args
        pad = _conv_padding_arg(padding, weight.shape[2:], dilation)
        y = _conv.conv2d_relu(
            _np(input), _np(weight), _opt_np(bias), stride, pad, dilation, groups, padding_mode
        )
        ctx.conv_args, ctx.pool_args, ctx.has_bias = conv_args, pool_args, bias is not None
        if pool_args is None:
            out = _t(y)
            ctx.save_for_backward(input, weight, out)
            return out
        p, idx = _pool.max_pool2d(y, *pool_args, return_indices=True)
        out = _t(p)
        ctx.save_for_backward(input, weight, out, _t(y), _t(idx))
        return out

    @staticmethod
    def backward(ctx, grad):
        input, weight, out, *pool_saved = ctx.saved_tensors
        need = ctx.needs_input_grad
        mask = [need[0], need[1], ctx.has_bias and need[2]]
        if not any(mask):
            return None, None, None, None, None
        # the ReLU's backward (torch's threshold_backward: zero where the output is <= 0, so a NaN
        # output passes its gradient), on the pooled gradient. Under create_graph the backward ops
        # run through torch.ops.pycnnrnn.*, whose "no autograd formula" nodes make a second
        # derivative raise (as on the unfused path) instead of silently missing.
        eager = not torch.is_grad_enabled()
        if eager:
            g = _t(_C.relu_backward(_np(grad.contiguous()), _np(out)))
        else:
            g = torch.where(out <= 0, 0.0, grad).contiguous()
        if ctx.pool_args is not None:
            y, idx = pool_saved
            pool_bwd = _max_pool2d_backward_cpu if eager else torch.ops.pycnnrnn.max_pool2d_backward
            g = pool_bwd(g, y, idx, *ctx.pool_args)
        conv_bwd = _conv2d_backward_cpu if eager else torch.ops.pycnnrnn.conv2d_backward
        gx, gw, gb = conv_bwd(g, input, weight, *ctx.conv_args, mask)
        return (gx if mask[0] else None, gw if mask[1] else None, gb if mask[2] else None, None, None)


def conv2d_relu_pool(input, weight, bias, stride, padding, dilation, groups, padding_mode, pool=None):
    """relu(conv2d(...)), then max_pool2d(..., *pool) when pool = (kernel_size, stride, padding,
    dilation, ceil_mode) is given: one fused autograd node on eager CPU calls, the three ops
    otherwise. Arguments as nn.Conv2d / nn.MaxPool2d hold them."""
    if _eager_ok(input, weight, bias):
        conv_args = (*_conv_args(weight, stride, padding, dilation), groups, padding_mode)
        pool_args = None if pool is None else _pool_args(*pool)
        return _ConvReluPoolEager.apply(input, weight, bias, conv_args, pool_args)
    y = torch.relu(conv2d(input, weight, bias, stride, padding, dilation, groups, padding_mode))
    return y if pool is None else max_pool2d(y, *pool)


@torch.library.custom_op("pycnnrnn::max_unpool2d", mutates_args=(), device_types="cpu")
def max_unpool2d_op(
    input: Tensor,
    indices: Tensor,
    kernel_size: list[int],
    stride: list[int],
    padding: list[int],
    output_size: list[int],
) -> Tensor:
    """output_size: (H, W), or empty for the default (H_in - 1) * stride - 2 * padding + kernel."""
    return _t(
        _pool.max_unpool2d(_np(input), _np(indices), kernel_size, stride, padding, list(output_size) or None)
    )


@max_unpool2d_op.register_fake
def _(input, indices, kernel_size, stride, padding, output_size):
    if len(output_size) == 0:
        output_size = [
            _unpool_out(input.shape[-2 + d], kernel_size[d], stride[d], padding[d]) for d in range(2)
        ]
    return input.new_empty((*input.shape[:-2], *output_size))


def _unpool_setup(ctx, inputs, output):
    input, indices = inputs[:2]
    ctx.save_for_backward(indices)
    ctx.input_shape = input.shape


def _unpool_backward(ctx, grad):
    (indices,) = ctx.saved_tensors
    gx = None
    if ctx.needs_input_grad[0]:
        # d out[idx] / d input = 1: the gradient is grad_output read back at the indices
        g = grad.contiguous().flatten(-2)
        gx = torch.gather(g, -1, indices.flatten(-2)).reshape(ctx.input_shape)
    return gx, None, None, None, None, None


max_unpool2d_op.register_autograd(_unpool_backward, setup_context=_unpool_setup)


# ================================ linear ==========================================================
def _linear_cpu(input: Tensor, weight: Tensor, bias: Tensor | None) -> Tensor:
    return _t(_lin.linear(_np(input), _np(weight), _opt_np(bias)))


linear_op = torch.library.custom_op("pycnnrnn::linear", mutates_args=(), device_types="cpu")(_linear_cpu)


@linear_op.register_fake
def _(input, weight, bias):
    return input.new_empty((*input.shape[:-1], weight.shape[0]))


def _linear_backward_cpu(
    grad_output: Tensor, input: Tensor, weight: Tensor, output_mask: list[bool]
) -> tuple[Tensor, Tensor, Tensor]:
    """(grad_input, grad_weight, grad_bias); an entry switched off by output_mask is empty."""
    mask = _check_mask(output_mask)
    gs = _lin.linear_backward(_np(grad_output), _np(input), _np(weight), mask)
    return tuple(_t(g) if g is not None else _empty_like_none(input) for g in gs)


linear_backward_op = torch.library.custom_op(
    "pycnnrnn::linear_backward", mutates_args=(), device_types="cpu"
)(_linear_backward_cpu)


@linear_backward_op.register_fake
def _(grad_output, input, weight, output_mask):
    mask = _check_mask(output_mask)
    shapes = (input.shape, weight.shape, (weight.shape[0],))
    return tuple(input.new_empty(s) if m else input.new_empty((0,)) for m, s in zip(mask, shapes))


def _linear_setup(ctx, inputs, output):
    input, weight, bias = inputs
    ctx.save_for_backward(input, weight)
    ctx.has_bias = bias is not None


def _linear_backward(ctx, grad):
    input, weight = ctx.saved_tensors
    need = ctx.needs_input_grad
    mask = [need[0], need[1], ctx.has_bias and need[2]]
    if not any(mask):
        return None, None, None
    backward = _linear_backward_cpu if _eager_ctx(ctx) else torch.ops.pycnnrnn.linear_backward
    gx, gw, gb = backward(grad.contiguous(), input, weight, mask)
    return gx if mask[0] else None, gw if mask[1] else None, gb if mask[2] else None


linear_op.register_autograd(_linear_backward, setup_context=_linear_setup)
_LinearEager = _eager_function("_LinearEager", _linear_cpu, _linear_setup, _linear_backward)


# ================================ recurrent layers ================================================
def _rnn_sizes(mode, input, params, num_layers, bidirectional, batch_first, proj_size):
    """(T, B, D, H, K) from the input and weight shapes (batched or unbatched input)."""
    G = _rnn.GATES[mode]
    if input.dim() == 2:
        T, B = input.shape[0], 1
    elif batch_first:
        B, T = input.shape[0], input.shape[1]
    else:
        T, B = input.shape[0], input.shape[1]
    H = params[1].shape[0] // G
    K = proj_size or H
    return T, B, (2 if bidirectional else 1), H, K


def _workspace_size(mode, T, B, H, P):
    if _is_static(T, B, H):
        return _C.rnn_workspace_size(_rnn.MODES[mode], T, B, H, P)
    # csrc/cpu/rnn.cpp rnn_workspace_layout: gates, hprev, [cprev, tanhc], [hn], [hraw] per (t, b)
    per = _rnn.GATES[mode] * H + (P or H)
    per += 2 * H if mode == "lstm" else (H if mode == "gru" else 0)
    per += H if P else 0
    return T * B * per


def _user_seq(input, batch_first, T, B, F):
    if input.dim() == 2:
        return (T, F)
    return (B, T, F) if batch_first else (T, B, F)


def _user_state(input, LD, B, F):
    return (LD, F) if input.dim() == 2 else (LD, B, F)


def _rnn_cpu(
    mode: str,
    input: Tensor,
    h0: Tensor | None,
    c0: Tensor | None,
    params: list[Tensor],
    num_layers: int,
    bias: bool,
    dropout: float,
    training: bool,
    bidirectional: bool,
    batch_first: bool,
    proj_size: int,
    lengths: Tensor | None,
    dropout_seed: int,
    need_saved: bool,
) -> tuple[Tensor, Tensor, Tensor, list[Tensor]]:
    """A whole LSTM/GRU/RNN stack (mode "lstm", "gru", "rnn_tanh", "rnn_relu"): returns
    (output, h_n, c_n, saved); c_n is empty unless LSTM, saved (the training workspaces,
    consumed by rnn_backward) is empty unless need_saved."""
    if mode == "lstm":
        hx = None if h0 is None and c0 is None else (_opt_np(h0), _opt_np(c0))
    else:
        hx = _opt_np(h0)
    out, h_n, c_n, saved = _rnn.rnn_forward(
        mode, _np(input), hx, [_np(p) for p in params], num_layers, bias, dropout, training, bidirectional,
        batch_first, proj_size, _opt_np(lengths), dropout_seed=dropout_seed, need_saved=need_saved,
    )  # fmt: skip
    # outputs must not alias each other or the inputs: the last layer's output may be saved too
    saved = (
        [] if saved is None else [np.array(s, copy=True) if np.shares_memory(s, out) else s for s in saved]
    )
    c = _t(c_n) if c_n is not None else input.new_empty((0,))
    return _t(np.ascontiguousarray(out)), _t(h_n), c, [_t(s) for s in saved]


rnn_op = torch.library.custom_op("pycnnrnn::rnn", mutates_args=(), device_types="cpu")(_rnn_cpu)


@rnn_op.register_fake
def _(mode, input, h0, c0, params, num_layers, bias, dropout, training, bidirectional, batch_first, proj_size,
      lengths, dropout_seed, need_saved):  # fmt: skip
    T, B, D, H, K = _rnn_sizes(mode, input, params, num_layers, bidirectional, batch_first, proj_size)
    LD = num_layers * D
    out = input.new_empty(_user_seq(input, batch_first, T, B, D * K))
    h_n = input.new_empty(_user_state(input, LD, B, K))
    c_n = input.new_empty(_user_state(input, LD, B, H)) if mode == "lstm" else input.new_empty((0,))
    saved = []
    if need_saved:
        ws = _workspace_size(mode, T, B, H, proj_size)
        saved = [input.new_empty((ws,)) for _ in range(LD)]
        saved += [input.new_empty((T, B, D * K)) for _ in range(num_layers - 1)]
        if training and dropout > 0 and num_layers > 1:
            saved += [input.new_empty((T, B, D * K)) for _ in range(num_layers - 1)]
    return out, h_n, c_n, saved


def _rnn_backward_cpu(
    mode: str,
    grad_output: Tensor,
    grad_h_n: Tensor,
    grad_c_n: Tensor | None,
    input: Tensor,
    h0: Tensor | None,
    c0: Tensor | None,
    params: list[Tensor],
    saved: list[Tensor],
    num_layers: int,
    bias: bool,
    bidirectional: bool,
    batch_first: bool,
    proj_size: int,
    lengths: Tensor | None,
) -> tuple[Tensor, Tensor, Tensor, list[Tensor]]:
    """BPTT: (grad_input, grad_h0, grad_c0, grad_params); grad_c0 is empty unless LSTM."""
    if mode == "lstm":
        hx = None if h0 is None and c0 is None else (_opt_np(h0), _opt_np(c0))
    else:
        hx = _opt_np(h0)
    gx, gh0, gc0, gp = _rnn.rnn_backward(
        mode, _np(grad_output), _np(grad_h_n), _opt_np(grad_c_n), _np(input), hx, [_np(p) for p in params],
        [_np(s) for s in saved], num_layers, bias, bidirectional, batch_first, proj_size, _opt_np(lengths),
    )  # fmt: skip
    gc = _t(gc0) if gc0 is not None else input.new_empty((0,))
    return _t(np.ascontiguousarray(gx)), _t(gh0), gc, [_t(g) for g in gp]


rnn_backward_op = torch.library.custom_op("pycnnrnn::rnn_backward", mutates_args=(), device_types="cpu")(
    _rnn_backward_cpu
)


@rnn_backward_op.register_fake
def _(mode, grad_output, grad_h_n, grad_c_n, input, h0, c0, params, saved, num_layers, bias, bidirectional,
      batch_first, proj_size, lengths):  # fmt: skip
    T, B, D, H, K = _rnn_sizes(mode, input, params, num_layers, bidirectional, batch_first, proj_size)
    LD = num_layers * D
    gh0 = input.new_empty(_user_state(input, LD, B, K))
    gc0 = input.new_empty(_user_state(input, LD, B, H)) if mode == "lstm" else input.new_empty((0,))
    return input.new_empty(input.shape), gh0, gc0, [p.new_empty(p.shape) for p in params]


def _rnn_setup(ctx, inputs, output):
    (mode, input, h0, c0, params, num_layers, bias, _dropout, _training, bidirectional, batch_first, proj_size,
     lengths, _seed, need_saved) = inputs  # fmt: skip
    saved = output[3]
    ctx.mark_non_differentiable(*saved)
    # Gradients are not zero-filled for outputs the loss does not use: the saved workspaces
    # (never) and often `output` or h_n; _rnn_backward makes zeros only where the kernel reads.
    ctx.set_materialize_grads(False)
    ctx.output_like = [(t.shape, t.dtype) for t in output[:3]]
    ctx.args = (num_layers, bias, bidirectional, batch_first, proj_size)
    ctx.mode = mode
    ctx.need_saved = need_saved
    ctx.n_params = len(params)
    ctx.has_h0, ctx.has_c0, ctx.has_lengths = h0 is not None, c0 is not None, lengths is not None
    ctx.save_for_backward(
        input,
        *(t for t in (h0, c0, lengths) if t is not None),
        *params,
        *saved,
    )


def _rnn_backward(ctx, grad_out, grad_h_n, grad_c_n, _grad_saved):
    return _rnn_grads(ctx, ctx.needs_input_grad, grad_out, grad_h_n, grad_c_n)


def _rnn_grads(ctx, need, grad_out, grad_h_n, grad_c_n):
    """BPTT for either path. need: needs-grad flags in the op's argument order (mode, input,
    h0, c0, params, ...); returns one gradient per op argument (params: a list, or None)."""
    if not (need[1] or need[2] or need[3] or need[4]):
        return (None,) * 15
    if not ctx.need_saved:
        raise RuntimeError(
            "pycnnrnn::rnn was called with need_saved=False (no training workspace), so it cannot be "
            "differentiated; call it with need_saved=True"
        )
    tensors = list(ctx.saved_tensors)
    input = tensors.pop(0)
    h0 = tensors.pop(0) if ctx.has_h0 else None
    c0 = tensors.pop(0) if ctx.has_c0 else None
    lengths = tensors.pop(0) if ctx.has_lengths else None
    params, saved = tensors[: ctx.n_params], tensors[ctx.n_params :]
    grad_out, grad_h_n, grad_c_n = (
        g.contiguous() if g is not None else input.new_zeros(shape, dtype=dtype)
        for g, (shape, dtype) in zip((grad_out, grad_h_n, grad_c_n), ctx.output_like)
    )
    backward = _rnn_backward_cpu if _eager_ctx(ctx) else torch.ops.pycnnrnn.rnn_backward
    gx, gh0, gc0, gp = backward(
        ctx.mode, grad_out, grad_h_n, grad_c_n if ctx.mode == "lstm" else None,
        input, h0, c0, params, saved, *ctx.args, lengths,
    )  # fmt: skip
    return (
        None,
        gx if need[1] else None,
        gh0 if need[2] else None,
        gc0 if need[3] else None,
        list(gp) if need[4] else None,
        *(None,) * 10,
    )


rnn_op.register_autograd(_rnn_backward, setup_context=_rnn_setup)

_RNN_FIXED = 14  # the op's arguments after params: (mode, input, h0, c0) + 10 scalars/tensors


class _RnnEager(torch.autograd.Function):
    """The eager path of pycnnrnn::rnn (see _eager_ok). autograd tracks tensors passed as
    arguments, not inside a list, so the parameters come last, one argument each, and the
    saved workspaces are returned flat after (output, h_n, c_n)."""

    @staticmethod
    def forward(ctx, mode, input, h0, c0, *rest):
        scalars, params = rest[: _RNN_FIXED - 4], list(rest[_RNN_FIXED - 4 :])
        inputs = (mode, input, h0, c0, params, *scalars)
        out, h_n, c_n, saved = _rnn_cpu(*inputs)
        ctx.pycnnrnn_eager = True
        _rnn_setup(ctx, inputs, (out, h_n, c_n, saved))
        return (out, h_n, c_n, *saved)

    @staticmethod
    def backward(ctx, grad_out, grad_h_n, grad_c_n, *_grad_saved):
        need = ctx.needs_input_grad  # one flag per parameter tensor: folded into the op's order
        grads = _rnn_grads(
            ctx, (False, need[1], need[2], need[3], any(need[_RNN_FIXED:])), grad_out, grad_h_n, grad_c_n
        )
        gp = grads[4] if grads[4] is not None else [None] * ctx.n_params
        return (*grads[:4], *(None,) * (_RNN_FIXED - 4), *gp)


# ================================ functional API ==================================================
def _pair(v, name: str) -> list[int]:
    if isinstance(v, (list, tuple)):
        if len(v) == 1:
            return [int(v[0])] * 2
        if len(v) != 2:
            raise ValueError(f"{name} must be an int or a tuple of 2 ints, got {tuple(v)!r}")
        return [int(v[0]), int(v[1])]
    return [int(v), int(v)]


def _conv_args(weight, stride, padding, dilation) -> tuple[list[int], list[int], list[int]]:
    """(stride, [top, bottom, left, right] padding, dilation) as the conv2d op takes them, from
    torch.nn.functional.conv2d's arguments ('same' / 'valid' included)."""
    stride, dilation = _pair(stride, "stride"), _pair(dilation, "dilation")
    if isinstance(padding, str):
        if padding == "valid":
            pads = [0, 0, 0, 0]
        elif padding == "same":
            if stride != [1, 1]:
                raise ValueError(
                    f"padding='same' is not supported for strided convolutions, got stride {stride}"
                )
            th, tw = dilation[0] * (weight.shape[2] - 1), dilation[1] * (weight.shape[3] - 1)
            pads = [th // 2, th - th // 2, tw // 2, tw - tw // 2]
        else:
            raise ValueError(f"padding must be 'valid', 'same', an int or a tuple of 2 ints, got {padding!r}")
    else:
        ph, pw = _pair(padding, "padding")
        pads = [ph, ph, pw, pw]
    return stride, pads, dilation


def _pool_args(kernel_size, stride, padding, dilation, ceil_mode) -> tuple:
    """(kernel, stride, padding, dilation, ceil_mode) as the pooling ops take them (stride
    defaults to the kernel, like torch)."""
    k = _pair(kernel_size, "kernel_size")
    s = (
        k
        if stride is None or (isinstance(stride, (list, tuple)) and len(stride) == 0)
        else _pair(stride, "stride")
    )
    return k, s, _pair(padding, "padding"), _pair(dilation, "dilation"), bool(ceil_mode)


def conv2d(input, weight, bias=None, stride=1, padding=0, dilation=1, groups=1, padding_mode="zeros"):
    """torch.nn.functional.conv2d (plus nn.Conv2d's padding_mode) on pycnnrnn's kernel."""
    stride, pads, dilation = _conv_args(weight, stride, padding, dilation)
    if _eager_ok(input, weight, bias):
        return _Conv2dEager.apply(input, weight, bias, stride, pads, dilation, groups, padding_mode)
    return torch.ops.pycnnrnn.conv2d(input, weight, bias, stride, pads, dilation, groups, padding_mode)


def max_pool2d(input, kernel_size, stride=None, padding=0, dilation=1, ceil_mode=False, return_indices=False):
    """torch.nn.functional.max_pool2d on pycnnrnn's kernel."""
    args = (input, *_pool_args(kernel_size, stride, padding, dilation, ceil_mode))
    if _eager_ok(input):
        y, idx = _MaxPool2dEager.apply(*args)
    else:
        y, idx = torch.ops.pycnnrnn.max_pool2d_with_indices(*args)
    return (y, idx) if return_indices else y


def max_unpool2d(input, indices, kernel_size, stride=None, padding=0, output_size=None):
    """torch.nn.functional.max_unpool2d on pycnnrnn's kernel."""
    k = _pair(kernel_size, "kernel_size")
    s = k if stride is None else _pair(stride, "stride")
    size = [] if output_size is None else [int(v) for v in tuple(output_size)[-2:]]
    return torch.ops.pycnnrnn.max_unpool2d(input, indices, k, s, _pair(padding, "padding"), size)


def linear(input, weight, bias=None):
    """torch.nn.functional.linear on pycnnrnn's GEMM."""
    if _eager_ok(input, weight, bias):
        return _LinearEager.apply(input, weight, bias)
    return torch.ops.pycnnrnn.linear(input, weight, bias)


def rnn(mode, input, hx, params, num_layers=1, bias=True, dropout=0.0, training=False, bidirectional=False,
        batch_first=False, proj_size=0, lengths=None):  # fmt: skip
    """A recurrent stack on pycnnrnn's kernels: returns (output, h_n, c_n); c_n is None unless
    mode == "lstm". hx: None, h_0, or (h_0, c_0) for LSTM. The training workspace is kept only
    when autograd will need it."""
    h0, c0 = (hx if hx is not None else (None, None)) if mode == "lstm" else (hx, None)
    params = list(params)
    need_saved = torch.is_grad_enabled() and any(
        t is not None and t.requires_grad for t in (input, h0, c0, *params)
    )
    seed = 0
    if training and dropout > 0 and num_layers > 1:
        seed = int(torch.randint(0, 2**62, (), dtype=torch.int64).item())
    scalars = (num_layers, bias, float(dropout), bool(training), bidirectional, batch_first, proj_size, lengths,
               seed, need_saved)  # fmt: skip
    if _eager_ok(input, h0, c0, lengths, *params):
        out, h_n, c_n = _RnnEager.apply(mode, input, h0, c0, *scalars, *params)[:3]
    else:
        out, h_n, c_n, _ = torch.ops.pycnnrnn.rnn(mode, input, h0, c0, params, *scalars)
    return out, h_n, (c_n if mode == "lstm" else None)


# ================================ CUDA tensors ====================================================
# CUDA tensors go to pycnnrnn.cuda's hand-written kernels (imported on first use, so the CPU
# path never needs the CUDA backend). Recurrent layers and max_unpool2d have no CUDA kernels
# registered here yet: torch reports those as not implemented for CUDA.
def _cuda():
    import pycnnrnn

    if not pycnnrnn.cuda_available():
        raise RuntimeError(
            "pycnnrnn: a CUDA tensor was passed but pycnnrnn's CUDA backend is not available "
            "(built without CUDA, or no usable GPU/driver); move the tensors to CPU"
        )
    from .. import cuda

    return cuda


@conv2d_op.register_kernel("cuda")
def _(input, weight, bias, stride, padding, dilation, groups, padding_mode):
    pt, pb, pl, pr = padding
    if padding_mode != "zeros" or pt != pb or pl != pr:
        raise NotImplementedError(
            f"pycnnrnn CUDA conv2d supports zeros padding, symmetric only; got padding_mode={padding_mode!r}, "
            f"padding={list(padding)}"
        )
    return _cuda().conv2d(input, weight, bias, stride, (pt, pl), dilation, groups)


@conv2d_backward_op.register_kernel("cuda")
def _(grad_output, input, weight, stride, padding, dilation, groups, padding_mode, output_mask):
    pt, pb, pl, pr = padding
    if padding_mode != "zeros" or pt != pb or pl != pr:
        raise NotImplementedError("pycnnrnn CUDA conv2d_backward supports zeros padding, symmetric only")
    gs = _cuda().conv2d_backward(
        grad_output.contiguous(), input, weight, stride, (pt, pl), dilation, groups, _check_mask(output_mask)
    )
    return tuple(g if g is not None else _empty_like_none(input) for g in gs)


@max_pool2d_with_indices_op.register_kernel("cuda")
def _(input, kernel_size, stride, padding, dilation, ceil_mode):
    return _cuda().max_pool2d(input, kernel_size, stride, padding, dilation, ceil_mode, return_indices=True)


@max_pool2d_backward_op.register_kernel("cuda")
def _(grad_output, input, indices, kernel_size, stride, padding, dilation, ceil_mode):
    return _cuda().max_pool2d_backward(
        grad_output.contiguous(),
        indices,
        tuple(input.shape),
        kernel_size,
        stride,
        padding,
        dilation,
        ceil_mode,
    )


@linear_op.register_kernel("cuda")
def _(input, weight, bias):
    x2 = input.reshape(-1, input.shape[-1]).contiguous()
    y = _cuda().gemm(x2, weight.contiguous(), trans_b=True)
    if bias is not None:
        y = y + bias
    return y.reshape(*input.shape[:-1], weight.shape[0])


@linear_backward_op.register_kernel("cuda")
def _(grad_output, input, weight, output_mask):
    mask = _check_mask(output_mask)
    cu = _cuda()
    g2 = grad_output.reshape(-1, weight.shape[0]).contiguous()
    x2 = input.reshape(-1, input.shape[-1]).contiguous()
    gx = cu.gemm(g2, weight.contiguous()).reshape(input.shape) if mask[0] else _empty_like_none(input)
    gw = cu.gemm(g2, x2, trans_a=True) if mask[1] else _empty_like_none(input)
    gb = g2.sum(0) if mask[2] else _empty_like_none(input)
    return gx, gw, gb
