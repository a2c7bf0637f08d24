"""torch's own error inputs, mirrored: OpInfo ``error_inputs_conv2d`` / ``error_inputs_max_pool2d``
(torch/testing/_internal/common_methods_invocations.py) and the ATen shape checks behind them.

pycnnrnn's contract (DESIGN.md): where torch raises RuntimeError we raise ValueError (bad shape
or value) or TypeError (bad type/dtype); the message names the argument. Every case also checks
that nothing was written to the inputs. The numpy side runs without torch; the ``torch``-marked
twin confirms torch itself rejects the same input (so the mirror stays honest when torch changes)."""

from __future__ import annotations

import re

import numpy as np
import pytest

from pycnnrnn import functional as F


def _f64(*shape):
    return np.random.default_rng(0).standard_normal(shape)


def _f32(*shape):
    return _f64(*shape).astype(np.float32)


def _i64(*shape):
    return np.random.default_rng(0).integers(-9, 9, size=shape, dtype=np.int64)


# (id, args, kwargs, expected exception types, regex on our message, torch regex or None)
# Arrays are created fresh per test via the lambda.
CONV_ERRORS = [
    # --- error_inputs_conv2d ---
    (
        "int64_input_float_bias",
        lambda: ((_i64(2, 4, 4), _i64(3, 2, 3, 3), _f64(3)), {}),
        TypeError,
        r"input.*dtype|dtype.*int64",
        "should be the same",
    ),
    (
        "complex_bias",
        lambda: ((_f64(2, 4, 4), _f64(3, 2, 3, 3), _f64(3).astype(np.complex128)), {}),
        TypeError,
        r"bias.*dtype.*complex",
        "should be the same",
    ),
    (
        "negative_stride",
        lambda: ((_f64(1, 1, 4, 4), _f64(1, 2, 2, 3), _f64(1)), {"stride": (-1,)}),
        ValueError,
        r"stride",
        "non-positive stride is not supported",
    ),
    (
        "negative_padding",
        lambda: ((_f64(1, 1, 4, 3), _f64(1, 2, 2, 4), _f64(1)), {"padding": (-1,)}),
        ValueError,
        r"padding|channels",  # torch's sample also has a channel mismatch; the order differs
        "negative padding is not supported",
    ),
    (
        "negative_dilation",
        lambda: ((_f64(1, 1, 4, 2), _f64(1, 1, 2, 5), _f64(1)), {"dilation": (-1,)}),
        ValueError,
        r"dilation|channels",
        "dilation should be greater than zero",
    ),
    (
        # torch's FIXME (pytorch#85656): bias length != out_channels; we reject it
        "bias_length",
        lambda: ((_f64(1, 1, 4, 4), _f64(1, 1, 3, 2), _f64(2)), {}),
        ValueError,
        r"bias.*\(1,\).*\(2,\)",
        None,
    ),
    (
        "weight_3d_padding_same",
        lambda: ((_f64(1, 1, 4, 3), _f64(1, 2, 2), _f64(1)), {"padding": "same"}),
        ValueError,
        r"weight.*4-D.*3-D",
        "Expected 3-dimensional input for 3-dimensional weight",
    ),
    (
        "groups_gt_out_channels",
        lambda: ((_f64(2, 2, 4, 3), _f64(2, 2, 1, 3), _f64(2)), {"groups": 3}),
        ValueError,
        r"groups",
        "expected weight to be at least 3 at dimension 0",
    ),
    (
        "groups_gt_out_channels_same",
        lambda: ((_f64(2, 2, 4, 3), _f64(2, 2, 1, 3), _f64(2)), {"padding": "same", "groups": 3}),
        ValueError,
        r"groups",
        "expected weight to be at least 3 at dimension 0",
    ),
    (
        "groups_negative",
        lambda: ((_f64(2, 2, 4, 5), _f64(2, 2, 1, 4), _f64(2)), {"padding": "same", "groups": -1}),
        ValueError,
        r"groups.*-1",
        "non-positive groups is not supported",
    ),
    (
        "groups_zero",
        lambda: ((_f64(2, 2, 4, 3), _f64(2, 2, 4, 3), _f64(2)), {"padding": "same", "groups": 0}),
        ValueError,
        r"groups.*0",
        "non-positive groups is not supported",
    ),
    # --- ATen shape checks (ConvUtils.h) ---
    (
        "kernel_larger_than_padded_input",
        lambda: ((_f32(1, 2, 3, 3), _f32(4, 2, 5, 5), None), {"padding": 0}),
        ValueError,
        r"[Kk]ernel size can't be greater than actual input size",
        "Kernel size can't be greater than actual input size",
    ),
    (
        "dilated_kernel_larger_than_input",
        lambda: ((_f32(1, 2, 6, 6), _f32(4, 2, 3, 3), None), {"dilation": 3}),
        ValueError,
        r"[Kk]ernel size",
        "Kernel size can't be greater than actual input size",
    ),
    (
        "channel_mismatch",
        lambda: ((_f32(1, 3, 6, 6), _f32(4, 2, 3, 3), None), {}),
        ValueError,
        r"3 channels.*2",
        r"expected input\[1, 3, 6, 6\] to have 2 channels, but got 3 channels instead",
    ),
    (
        "out_channels_not_divisible_by_groups",
        lambda: ((_f32(1, 4, 6, 6), _f32(3, 2, 3, 3), None), {"groups": 2}),
        ValueError,
        r"divisible by groups",
        r"expected weight to be divisible by 2 at dimension 0",
    ),
    (
        "input_2d",
        lambda: ((_f32(6, 6), _f32(4, 2, 3, 3), None), {}),
        ValueError,
        r"input.*3-D or 4-D",
        r"Expected 3D \(unbatched\) or 4D \(batched\) input",
    ),
    (
        "input_5d",
        lambda: ((_f32(1, 1, 2, 6, 6), _f32(4, 2, 3, 3), None), {}),
        ValueError,
        r"input.*3-D or 4-D",
        r"Expected 3D \(unbatched\) or 4D \(batched\) input",
    ),
    (
        "mixed_float_dtypes",
        lambda: ((_f32(1, 2, 6, 6), _f64(4, 2, 3, 3), None), {}),
        TypeError,
        r"weight.*dtype",
        "should be the same|expected scalar type",
    ),
    (
        "same_with_stride",
        lambda: ((_f32(1, 2, 6, 6), _f32(4, 2, 3, 3), None), {"padding": "same", "stride": 2}),
        ValueError,
        r"same.*stride",
        r"padding='same' is not supported for strided convolutions",
    ),
    (
        "bad_padding_string",
        lambda: ((_f32(1, 2, 6, 6), _f32(4, 2, 3, 3), None), {"padding": "full"}),
        ValueError,
        r"padding",
        r"Invalid padding string",
    ),
    (
        "zero_channels",
        lambda: ((_f32(1, 0, 6, 6), _f32(4, 0, 3, 3), None), {}),
        ValueError,
        r"input|weight",
        None,  # torch accepts C=0 (returns bias-only output); we reject it, documented
    ),
    (
        "zero_width",
        lambda: ((_f32(1, 2, 6, 0), _f32(4, 2, 3, 3), None), {}),
        ValueError,
        r"input",
        r"Kernel size can't be greater|non-zero|size",
    ),
]


def _call_conv(case):
    _, make, exc, regex, _ = case
    (x, w, b), kw = make()
    copies = [None if a is None else a.copy() for a in (x, w, b)]
    with pytest.raises(exc, match=regex):
        F.conv2d(x, w, b, **kw)
    for a, c in zip((x, w, b), copies):
        if a is not None:
            np.testing.assert_array_equal(a, c)


@pytest.mark.parametrize("case", CONV_ERRORS, ids=[c[0] for c in CONV_ERRORS])
def test_conv2d_error_inputs_rejected(case):
    _call_conv(case)


_BWD_CASES = [c for c in CONV_ERRORS if c[0] not in ("bias_length", "complex_bias")]  # backward has no bias


@pytest.mark.parametrize("case", _BWD_CASES, ids=[c[0] for c in _BWD_CASES])
def test_conv2d_backward_rejects_the_same_arguments(case):
    """conv2d_backward validates through the same path: the same input must be rejected."""
    _, make, exc, regex, _ = case
    (x, w, b), kw = make()
    go = np.zeros((1, 1, 1, 1), dtype=x.dtype if x.dtype.kind == "f" else np.float64)
    with pytest.raises((ValueError, TypeError)):
        F.conv2d_backward(go, x, w, **kw)


@pytest.mark.torch
@pytest.mark.parametrize("case", [c for c in CONV_ERRORS if c[4]], ids=[c[0] for c in CONV_ERRORS if c[4]])
def test_torch_rejects_the_same_conv2d_inputs(case):
    import torch

    _, make, _, _, torch_regex = case
    (x, w, b), kw = make()
    t = [None if a is None else torch.from_numpy(a) for a in (x, w, b)]
    with pytest.raises((RuntimeError, ValueError, TypeError), match=torch_regex):
        torch.nn.functional.conv2d(t[0], t[1], t[2], **kw)


# --- error_inputs_max_pool2d (+ Pool.h checks) ---
POOL_ERRORS = [
    (
        "negative_pad",
        lambda: (_f32(0, 1, 49), {"kernel_size": 2, "stride": 50, "padding": -1, "return_indices": True}),
        ValueError,
        r"pad must be non-negative|input",  # (0,1,49) is unbatched C=0: either check may fire first
        "pad must be non-negative",
    ),
    (
        "negative_pad_batched",
        lambda: (
            _f32(1, 1, 1, 49),
            {"kernel_size": (3, 2), "stride": 50, "padding": -1, "return_indices": True},
        ),
        ValueError,
        r"pad must be non-negative",
        "pad must be non-negative",
    ),
    (
        "pad_gt_half_kernel",
        lambda: (_f32(1, 1, 1, 49), {"kernel_size": 2, "stride": 50, "padding": 4, "return_indices": True}),
        ValueError,
        r"pad should be at most half of",
        "pad should be at most half of effective kernel size",
    ),
    (
        "pad_gt_half_kernel_tuple",
        lambda: (
            _f32(1, 1, 1, 49),
            {"kernel_size": (3, 2), "stride": 50, "padding": 4, "return_indices": True},
        ),
        ValueError,
        r"pad should be at most half of",
        "pad should be at most half of effective kernel size",
    ),
    (
        "unbatched_zero_dim",
        lambda: (_f32(1, 0, 10), {"kernel_size": 1}),
        ValueError,
        r"3D.*4D|non-zero",
        r"Expected 3D or 4D \(batch mode\) tensor with optional 0 dim batch size for input",
    ),
    (
        "batched_zero_dim",
        lambda: (_f32(2, 1, 10, 0), {"kernel_size": 1}),
        ValueError,
        r"3D.*4D|non-zero",
        r"Expected 3D or 4D \(batch mode\) tensor with optional 0 dim batch size for input",
    ),
    (
        "output_too_small",
        lambda: (_f32(1, 1, 4), {"kernel_size": 2}),
        ValueError,
        r"Output size is too small",
        "Output size is too small",
    ),
    (
        "stride_zero",
        lambda: (_f32(1, 1, 4, 4), {"kernel_size": 2, "stride": 0}),
        ValueError,
        r"stride should not be zero",
        "stride should not be zero",
    ),
    (
        "kernel_zero",
        lambda: (_f32(1, 1, 4, 4), {"kernel_size": 0, "stride": 1}),
        ValueError,
        r"kernel_size should be greater than zero",
        "kernel.size should be greater than zero",
    ),
    (
        "dilation_zero",
        lambda: (_f32(1, 1, 4, 4), {"kernel_size": 2, "dilation": 0}),
        ValueError,
        r"dilation should be greater than zero",
        "dilation should be greater than zero",
    ),
    (
        "input_2d",
        lambda: (_f32(4, 4), {"kernel_size": 2}),
        ValueError,
        r"3D.*4D",
        r"non-empty 3D or 4D|Expected 3D or 4D",
    ),
    (
        "int_input",
        lambda: (_i64(1, 1, 4, 4), {"kernel_size": 2}),
        TypeError,
        r"input.*dtype",
        None,  # torch pools int64 tensors; pycnnrnn is float32/float64 only (TypeError)
    ),
    (
        "kernel_three_values",
        lambda: (_f32(1, 1, 4, 4), {"kernel_size": (2, 2, 2)}),
        ValueError,
        r"kernel_size",
        r"kernel_size must either be a single int, or a tuple of two ints",
    ),
]


@pytest.mark.parametrize("case", POOL_ERRORS, ids=[c[0] for c in POOL_ERRORS])
def test_max_pool2d_error_inputs_rejected(case):
    _, make, exc, regex, _ = case
    x, kw = make()
    x0 = x.copy()
    with pytest.raises(exc, match=regex):
        F.max_pool2d(x, **kw)
    np.testing.assert_array_equal(x, x0)


@pytest.mark.torch
@pytest.mark.parametrize("case", [c for c in POOL_ERRORS if c[4]], ids=[c[0] for c in POOL_ERRORS if c[4]])
def test_torch_rejects_the_same_max_pool2d_inputs(case):
    import torch

    _, make, _, _, torch_regex = case
    x, kw = make()
    with pytest.raises((RuntimeError, ValueError, TypeError), match=torch_regex):
        torch.nn.functional.max_pool2d(torch.from_numpy(x), **kw)


def test_messages_name_the_argument():
    """The contract: a message names the argument and both the expected and actual value."""
    x, w = _f32(1, 3, 6, 6), _f32(4, 2, 3, 3)
    with pytest.raises(ValueError) as ei:
        F.conv2d(x, w)
    msg = str(ei.value)
    assert re.search(r"\b3\b", msg) and re.search(r"\b2\b", msg), msg
    with pytest.raises(ValueError, match=r"bias.*\(4,\)") as ei:
        F.conv2d(_f32(1, 2, 6, 6), w, _f32(5))
    with pytest.raises(TypeError, match=r"input") as ei:
        F.max_pool2d([[1.0]], 1)


# --- ModuleInfo error inputs for the recurrent modules (common_modules.py:
# module_error_inputs_torch_nn_RNN_GRU_Cell / _LSTMCell / _RNN_GRU) ---
def _z(*shape, dtype=np.float32):
    return np.zeros(shape, dtype)


def _rnn_case(id_, cls, ctor_args, ctor_kw, forward, exc, regex, torch_regex, stage="forward"):
    return (id_, cls, ctor_args, ctor_kw, forward, exc, regex, torch_regex, stage)


RNN_ERRORS = []
for _cls in ("RNNCell", "GRUCell"):
    RNN_ERRORS += [
        _rnn_case(f"{_cls}_input_size", _cls, (10, 20), {}, lambda: (_z(3, 11), _z(3, 20)), ValueError,
                  "input has inconsistent input_size: got 11 expected 10", "input has inconsistent input_size"),
        _rnn_case(f"{_cls}_hidden_size", _cls, (10, 20), {}, lambda: (_z(3, 10), _z(3, 21)), ValueError,
                  "hidden0 has inconsistent hidden_size: got 21, expected 20", "hidden0 has inconsistent hidden_size"),
        _rnn_case(f"{_cls}_batch", _cls, (10, 20), {}, lambda: (_z(3, 10), _z(5, 20)), ValueError,
                  "Input batch size 3 doesn't match hidden0 batch size 5", "Input batch size 3 doesn't match"),
        _rnn_case(f"{_cls}_hidden_4d", _cls, (10, 20), {}, lambda: (_z(3, 10), _z(3, 1, 1, 20)), ValueError,
                  "4D", "Expected hidden to be 1D or 2D, got 4D instead"),
    ]  # fmt: skip
for _nl in ("relu", "tanh"):
    # torch passes the nonlinearity positionally into RNNCell's `bias` slot (FunctionInput(10, 20, 'relu'))
    # and then fails on the hidden size; pycnnrnn rejects the non-bool bias already (TypeError).
    RNN_ERRORS.append(
        _rnn_case(f"RNNCell_{_nl}_positional", "RNNCell", (10, 20, _nl), {}, lambda: (_z(3, 10), _z(3, 21)),
                  (TypeError, ValueError), "bias should be of type bool|hidden0 has inconsistent hidden_size",
                  "hidden0 has inconsistent hidden_size", stage="any")
    )  # fmt: skip
RNN_ERRORS += [
    _rnn_case("LSTMCell_input_size", "LSTMCell", (10, 20), {}, lambda: (_z(3, 11), (_z(3, 20), _z(3, 20))),
              ValueError, "input has inconsistent input_size: got 11 expected 10", "input has inconsistent input_size"),
    _rnn_case("LSTMCell_hidden_size", "LSTMCell", (10, 20), {}, lambda: (_z(3, 10), (_z(3, 21), _z(3, 21))),
              ValueError, "hidden0 has inconsistent hidden_size: got 21, expected 20", "hidden0 has inconsistent"),
    _rnn_case("LSTMCell_batch", "LSTMCell", (10, 20), {}, lambda: (_z(3, 10), (_z(5, 20), _z(5, 20))),
              ValueError, "Input batch size 3 doesn't match hidden0 batch size 5", "Input batch size 3"),
    _rnn_case("LSTMCell_hidden_4d", "LSTMCell", (10, 20), {}, lambda: (_z(3, 10), (_z(3, 1, 1, 20),) * 2),
              ValueError, "4D", r"Expected hx\[0\] to be 1D or 2D, got 4D instead"),
    _rnn_case("LSTMCell_c_hidden_size", "LSTMCell", (10, 20), {}, lambda: (_z(3, 10), (_z(3, 20), _z(3, 21))),
              ValueError, "hidden1 has inconsistent hidden_size: got 21, expected 20", "hidden1 has inconsistent"),
]  # fmt: skip
for _cls in ("RNN", "GRU", "LSTM"):
    RNN_ERRORS += [
        _rnn_case(f"{_cls}_hidden_size_0", _cls, (10, 0, 1), {}, None, ValueError,
                  "hidden_size must be greater than zero", "hidden_size must be greater than zero", "construct"),
        _rnn_case(f"{_cls}_num_layers_0", _cls, (10, 10, 0), {}, None, ValueError,
                  "num_layers must be greater than zero", "num_layers must be greater than zero", "construct"),
        # torch: ValueError "RNN input dtype ... does not match weight dtype"; pycnnrnn: TypeError naming the dtypes
        _rnn_case(f"{_cls}_dtype_mismatch", _cls, (3, 5), {}, lambda: (_z(2, 4, 3, dtype=np.float64),),
                  (ValueError, TypeError), "dtype.*float(32|64)", r"RNN input dtype .* does not match weight dtype"),
        _rnn_case(f"{_cls}_input_size_float", _cls, (3.0, 5), {}, None, TypeError,
                  "input_size should be of type int, got: float", "input_size should be of type int", "construct"),
        _rnn_case(f"{_cls}_input_size_str", _cls, ("10", 5), {}, None, TypeError,
                  "input_size should be of type int, got: str", "input_size should be of type int", "construct"),
        _rnn_case(f"{_cls}_input_size_0", _cls, (0, 5), {}, None, ValueError,
                  "input_size must be greater than zero", "input_size must be greater than zero", "construct"),
        _rnn_case(f"{_cls}_input_size_neg", _cls, (-1, 5), {}, None, ValueError,
                  "input_size must be greater than zero", "input_size must be greater than zero", "construct"),
        _rnn_case(f"{_cls}_hidden_size_float", _cls, (3, 5.0), {}, None, TypeError,
                  "hidden_size should be of type int, got: float", "hidden_size should be of type int", "construct"),
        # rnn.py check_input / check_hidden_size
        _rnn_case(f"{_cls}_input_4d", _cls, (10, 20), {}, lambda: (_z(3, 2, 1, 10),), ValueError,
                  "input must be 2-D.*or 3-D", r"input must have 3 dimensions|Expected input to be 2D or 3D"),
        _rnn_case(f"{_cls}_feature_size", _cls, (10, 20), {}, lambda: (_z(3, 2, 11),), ValueError,
                  r"input.size\(-1\) must be equal to input_size. Expected 10, got 11",
                  r"input.size\(-1\) must be equal to input_size. Expected 10, got 11"),
        _rnn_case(f"{_cls}_hidden_shape", _cls, (10, 20), {},
                  lambda c=_cls: (_z(3, 2, 10), (_z(1, 2, 21), _z(1, 2, 20)) if c == "LSTM" else _z(1, 2, 21)),
                  ValueError, r"\(1, 2, 20\).*\(1, 2, 21\)", r"Expected hidden(\[0\])? size \(1, 2, 20\), got \[1, 2, 21\]"),
    ]  # fmt: skip
    for _kw, _t in ((("bias", 0), "int"), (("bias", 1), "int"), (("bias", "True"), "str"),
                    (("batch_first", 0), "int"), (("batch_first", 1), "int"), (("batch_first", "False"), "str")):  # fmt: skip
        RNN_ERRORS.append(
            _rnn_case(f"{_cls}_{_kw[0]}_{_kw[1]!r}", _cls, (3, 5), {_kw[0]: _kw[1]}, None, TypeError,
                      f"{_kw[0]} should be of type bool, got: {_t}", f"{_kw[0]} should be of type bool", "construct")
        )  # fmt: skip


@pytest.mark.parametrize("case", RNN_ERRORS, ids=[c[0] for c in RNN_ERRORS])
def test_recurrent_module_error_inputs_rejected(case):
    from pycnnrnn import nn

    _, cls, args, kw, forward, exc, regex, _, stage = case
    make = getattr(nn, cls)
    if stage == "construct":
        with pytest.raises(exc, match=regex):
            make(*args, **kw)
        return
    inputs = forward()
    flat = [a for i in inputs for a in (i if isinstance(i, tuple) else (i,))]
    copies = [a.copy() for a in flat]
    if stage == "forward":  # construction must succeed, the forward must raise
        m = make(*args, **kw)
        with pytest.raises(exc, match=regex):
            m(*inputs)
    else:
        with pytest.raises(exc, match=regex):
            make(*args, **kw)(*inputs)
    for a, c in zip(flat, copies):
        np.testing.assert_array_equal(a, c)


@pytest.mark.torch
@pytest.mark.parametrize("case", RNN_ERRORS, ids=[c[0] for c in RNN_ERRORS])
def test_torch_rejects_the_same_recurrent_inputs(case):
    import torch

    _, cls, args, kw, forward, _, _, torch_regex, _ = case
    make = getattr(torch.nn, cls)

    def t(x):
        return tuple(t(e) for e in x) if isinstance(x, tuple) else torch.from_numpy(x)

    with pytest.raises((RuntimeError, ValueError, TypeError), match=torch_regex):
        m = make(*args, **kw)
        if forward is not None:
            m(*t(forward()))
