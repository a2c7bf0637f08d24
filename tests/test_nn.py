"""pycnnrnn.nn against torch.nn: the Module machinery, then every layer with the same
state_dict over random configurations (outputs judged by the float64 error gate)."""

from __future__ import annotations

import copy
import math
from collections import OrderedDict

import numpy as np
import pytest
from helpers import assert_error_gate

from pycnnrnn import nn

torch = pytest.importorskip("torch")
tnn = torch.nn

pytestmark = pytest.mark.torch


# --------------------------------------------------------------------------- helpers
def twin(ours: nn.Module, theirs: torch.nn.Module) -> torch.nn.Module:
    """Give the torch module our weights (strict load) and the same train/eval mode."""
    sd = OrderedDict((k, torch.from_numpy(np.ascontiguousarray(v))) for k, v in ours.state_dict().items())
    theirs.load_state_dict(sd, strict=True)
    theirs.train(ours.training)
    return theirs


def compare(ours: nn.Module, theirs: torch.nn.Module, *inputs: np.ndarray, what: str = ""):
    """ours(*inputs) vs torch float32 and a float64 torch reference, through the error gate."""
    twin(ours, theirs)
    out = ours(*inputs)
    t_in = [torch.from_numpy(np.ascontiguousarray(x)) for x in inputs]
    with torch.no_grad():
        t32 = theirs(*t_in)
        ref = copy.deepcopy(theirs).double()
        r64 = ref(*[x.double() if x.is_floating_point() else x for x in t_in])
    assert out.shape == tuple(t32.shape), f"{what}: shape {out.shape} != torch {tuple(t32.shape)}"
    assert out.dtype == inputs[0].dtype
    return assert_error_gate(out, r64.numpy(), t32.numpy(), what=what)


def randn(rng, *shape, dtype=np.float32):
    return rng.standard_normal(shape).astype(dtype)


class Net(nn.Module):
    """A small nested model exercising every registration path."""

    def __init__(self):
        super().__init__()
        self.conv = nn.Conv2d(3, 4, 3, padding=1)
        self.body = nn.Sequential(nn.ReLU(), nn.MaxPool2d(2), nn.Flatten())
        self.register_buffer("scale", np.ones(4, dtype=np.float32))
        self.register_buffer("scratch", np.zeros(2, dtype=np.float32), persistent=False)
        self.head = nn.Linear(4 * 4 * 4, 5)
        self.tied = self.head  # shared module: its parameters must be counted once

    def forward(self, x):
        return self.head(self.body(self.conv(x) * self.scale[:, None, None]))


class TorchNet(tnn.Module):
    def __init__(self):
        super().__init__()
        self.conv = tnn.Conv2d(3, 4, 3, padding=1)
        self.body = tnn.Sequential(tnn.ReLU(), tnn.MaxPool2d(2), tnn.Flatten())
        self.register_buffer("scale", torch.ones(4))
        self.register_buffer("scratch", torch.zeros(2), persistent=False)
        self.head = tnn.Linear(4 * 4 * 4, 5)
        self.tied = self.head

    def forward(self, x):
        return self.head(self.body(self.conv(x) * self.scale[:, None, None]))


# --------------------------------------------------------------------------- Module machinery
def test_registration_and_traversal_match_torch():
    ours, theirs = Net(), TorchNet()
    assert list(ours.state_dict()) == list(theirs.state_dict())
    assert [n for n, _ in ours.named_parameters()] == [n for n, _ in theirs.named_parameters()]
    assert [n for n, _ in ours.named_modules()] == [n for n, _ in theirs.named_modules()]
    assert [n for n, _ in ours.named_children()] == [n for n, _ in theirs.named_children()]
    assert [n for n, _ in ours.named_buffers()] == [n for n, _ in theirs.named_buffers()]
    assert sum(p.size for p in ours.parameters()) == sum(p.numel() for p in theirs.parameters())
    assert repr(ours).replace("Net", "X") == repr(theirs).replace("TorchNet", "X")
    assert ours.get_submodule("body.1") is ours.body[1]
    with pytest.raises(AttributeError, match="no submodule 'nope'"):
        ours.get_submodule("body.nope")


def test_forward_matches_torch_and_modes(rng):
    ours, theirs = Net(), TorchNet()
    ours.scale[...] = rng.uniform(0.5, 2, 4)
    compare(ours, theirs, randn(rng, 2, 3, 8, 8), what="Net")
    assert ours.eval() is ours and not any(m.training for m in ours.modules())
    ours.train()
    assert all(m.training for m in ours.modules())


def test_setattr_semantics():
    m = nn.Linear(3, 2)
    m.bias = None  # stays registered as an absent parameter, like torch
    assert "bias" in m._parameters and m.bias is None
    assert list(m.state_dict()) == ["weight"]
    m.extra = np.zeros(3)  # a public ndarray attribute is a parameter
    assert [n for n, _ in m.named_parameters()] == ["weight", "extra"]
    m._cache = np.zeros(3)  # underscore names are plain attributes
    assert "_cache" not in dict(m.named_parameters())
    del m.extra
    assert not hasattr(m, "extra")
    m.note = "text"
    assert m.note == "text"
    with pytest.raises(AttributeError, match="no attribute 'missing'"):
        _ = m.missing
    with pytest.raises(TypeError, match="numpy array or None"):
        m.register_parameter("p", [1.0])
    with pytest.raises(KeyError, match="contain '.'"):
        m.register_buffer("a.b", np.zeros(1))

    class Bad(nn.Module):
        def __init__(self):
            self.w = np.zeros(1)

    with pytest.raises(AttributeError, match="before Module.__init__"):
        Bad()


def test_load_state_dict_accepts_torch_tensors_and_casts(rng):
    ours, theirs = Net(), TorchNet()
    for p in theirs.parameters():
        p.data.normal_()
    sd = theirs.state_dict()
    sd["conv.weight"] = sd["conv.weight"].double().requires_grad_(True)  # float64 + grad: cast in place
    before = ours.conv.weight
    assert ours.load_state_dict(sd) == ([], [])
    assert ours.conv.weight is before and before.dtype == np.float32
    np.testing.assert_array_equal(ours.conv.weight, theirs.conv.weight.detach().numpy())
    np.testing.assert_array_equal(ours.head.bias, theirs.head.bias.detach().numpy())
    assert ours.tied.weight is ours.head.weight  # ties survive loading
    ours.load_state_dict({k: v.numpy().tolist() for k, v in theirs.state_dict().items()})  # lists too


def test_load_state_dict_errors():
    m = Net()
    sd = {k: v.copy() for k, v in m.state_dict().items()}
    missing = dict(sd)
    del missing["conv.bias"]
    with pytest.raises(KeyError, match=r"missing keys: 'conv\.bias'"):
        m.load_state_dict(missing)
    extra = dict(sd, **{"head.gamma": np.zeros(1)})
    with pytest.raises(KeyError, match=r"unexpected keys: 'head\.gamma'"):
        m.load_state_dict(extra)
    assert m.load_state_dict(extra, strict=False) == ([], ["head.gamma"])
    assert m.load_state_dict(missing, strict=False).missing_keys == ["conv.bias"]
    bad = dict(sd, **{"head.weight": np.zeros((5, 3))})
    before = m.conv.weight.copy()
    sd["conv.weight"] += 1
    bad["conv.weight"] = sd["conv.weight"]
    with pytest.raises(ValueError, match=r"head\.weight: expected shape \(5, 64\), got \(5, 3\)"):
        m.load_state_dict(bad)
    np.testing.assert_array_equal(m.conv.weight, before)  # nothing half-loaded
    with pytest.raises(ValueError, match="numeric"):
        m.load_state_dict(dict(sd, **{"conv.bias": np.array(["a"] * 4)}))
    with pytest.raises(TypeError, match="mapping"):
        m.load_state_dict([1, 2])


def test_dtype_conversion_keeps_ties(rng):
    m = Net().double()
    assert all(p.dtype == np.float64 for p in m.parameters())
    assert m.tied.weight is m.head.weight
    assert m.scale.dtype == np.float64
    out = m(randn(rng, 1, 3, 8, 8, dtype=np.float64))
    assert out.dtype == np.float64
    assert m.float().conv.weight.dtype == np.float32
    with pytest.raises(TypeError, match="float32 or float64"):
        m.to(np.int32)


def test_forward_hooks():
    m = nn.Sequential(nn.Tanh(), nn.ReLU())
    seen = []
    h1 = m[0].register_forward_hook(lambda mod, args, out: seen.append((type(mod).__name__, out.shape)))
    h2 = m[1].register_forward_hook(lambda mod, args, out: out + 1)  # replaces the output
    h3 = m.register_forward_pre_hook(lambda mod, args: (args[0] * 0,))  # replaces the input
    out = m(np.ones((2, 3), dtype=np.float32))
    assert seen == [("Tanh", (2, 3))]
    np.testing.assert_array_equal(out, np.ones((2, 3)))
    for h in (h1, h2, h3):
        h.remove()
    np.testing.assert_allclose(m(np.ones((1, 2), dtype=np.float32)), np.tanh(np.ones((1, 2))), rtol=1e-6)


def test_sequential_container():
    layers = [nn.Linear(3, 4), nn.ReLU(), nn.Linear(4, 2)]
    s = nn.Sequential(*layers)
    assert len(s) == 3 and list(s) == layers
    assert s[-1] is layers[2] and s[0] is layers[0]
    sub = s[1:]
    assert isinstance(sub, nn.Sequential) and list(sub._modules) == ["1", "2"]
    with pytest.raises(IndexError, match="out of range"):
        s[3]
    named = nn.Sequential(OrderedDict([("fc", nn.Linear(3, 2)), ("act", nn.Tanh())]))
    assert list(named.state_dict()) == ["fc.weight", "fc.bias"]
    del s[1]
    assert list(s._modules) == ["0", "1"] and s[1] is layers[2]
    s.append(nn.Sigmoid())
    assert len(s) == 3
    t = tnn.Sequential(tnn.Linear(3, 4), tnn.Linear(4, 2), tnn.Sigmoid())
    assert repr(s) == repr(t)


def test_requires_grad_marks_trainable():
    m = Net()
    m.conv.requires_grad_(False)
    names = [n for n, _ in m.named_trainable_parameters()]
    assert names == ["head.weight", "head.bias"]


# --------------------------------------------------------------------------- layers vs torch
CONV_CONFIGS = [
    dict(in_channels=3, out_channels=8, kernel_size=3),
    dict(in_channels=4, out_channels=6, kernel_size=(3, 5), stride=(2, 1), padding=(1, 2)),
    dict(in_channels=4, out_channels=8, kernel_size=3, dilation=2, groups=2, bias=False),
    dict(in_channels=6, out_channels=6, kernel_size=3, padding=1, groups=6),
    dict(in_channels=3, out_channels=5, kernel_size=4, padding="same"),
    dict(in_channels=3, out_channels=5, kernel_size=(2, 3), padding="same", dilation=(2, 1)),
    dict(in_channels=3, out_channels=4, kernel_size=3, padding="valid", stride=2),
    dict(in_channels=2, out_channels=4, kernel_size=3, padding=2, padding_mode="reflect"),
    dict(in_channels=2, out_channels=4, kernel_size=3, padding=(1, 2), padding_mode="replicate"),
    dict(in_channels=2, out_channels=4, kernel_size=(3, 2), padding=1, padding_mode="circular", stride=2),
    dict(in_channels=2, out_channels=2, kernel_size=3, padding="same", padding_mode="reflect"),
    dict(in_channels=64, out_channels=32, kernel_size=1),
]


@pytest.mark.filterwarnings("ignore:Using padding='same' with even kernel")
@pytest.mark.parametrize("cfg", CONV_CONFIGS, ids=lambda c: ",".join(f"{k}={v}" for k, v in c.items()))
def test_conv2d(rng, cfg):
    ours, theirs = nn.Conv2d(**cfg), tnn.Conv2d(**cfg)
    assert repr(ours) == repr(theirs)
    h, w = rng.integers(5, 12, size=2)
    n = int(rng.integers(1, 4))
    x = randn(rng, n, cfg["in_channels"], h, w)
    compare(ours, theirs, x, what=f"conv {cfg}")
    compare(ours, theirs, x[0], what=f"conv unbatched {cfg}")
    ours.double()
    compare(ours, theirs.double(), x.astype(np.float64), what=f"conv float64 {cfg}")


def test_conv2d_random_configs(rng):
    for _ in range(8):
        groups = int(rng.choice([1, 2]))
        cin, cout = groups * int(rng.integers(1, 5)), groups * int(rng.integers(1, 5))
        k = tuple(int(v) for v in rng.integers(1, 4, size=2))
        cfg = dict(
            in_channels=cin,
            out_channels=cout,
            kernel_size=k,
            stride=tuple(int(v) for v in rng.integers(1, 3, size=2)),
            padding=tuple(int(v) for v in rng.integers(0, 3, size=2)),
            dilation=tuple(int(v) for v in rng.integers(1, 3, size=2)),
            groups=groups,
            bias=bool(rng.integers(2)),
        )
        x = randn(rng, int(rng.integers(1, 3)), cin, *(int(v) for v in rng.integers(6, 11, size=2)))
        compare(nn.Conv2d(**cfg), tnn.Conv2d(**cfg), x, what=str(cfg))


def test_conv2d_init_distribution():
    nn.init.manual_seed(1)
    m = nn.Conv2d(16, 32, 3)
    bound = 1 / math.sqrt(16 * 9)
    assert np.abs(m.weight).max() <= bound and np.abs(m.bias).max() <= bound
    assert abs(m.weight.std() - bound / math.sqrt(3)) < 0.05 * bound  # U(-b, b) has std b/sqrt(3)
    assert m.weight.dtype == np.float32


@pytest.mark.parametrize(
    ("kwargs", "exc", "match"),
    [
        (
            dict(in_channels=4, out_channels=4, kernel_size=3, groups=0),
            ValueError,
            "groups must be a positive integer",
        ),
        (
            dict(in_channels=3, out_channels=4, kernel_size=3, groups=2),
            ValueError,
            "in_channels must be divisible",
        ),
        (
            dict(in_channels=4, out_channels=3, kernel_size=3, groups=2),
            ValueError,
            "out_channels must be divisible",
        ),
        (
            dict(in_channels=3, out_channels=4, kernel_size=3, padding="full"),
            ValueError,
            "Invalid padding string",
        ),
        (dict(in_channels=3, out_channels=4, kernel_size=3, padding="same", stride=2), ValueError, "strided"),
        (
            dict(in_channels=3, out_channels=4, kernel_size=3, padding_mode="mirror"),
            ValueError,
            "padding_mode",
        ),
        (dict(in_channels=3.0, out_channels=4, kernel_size=3), TypeError, "in_channels must be an int"),
        (dict(in_channels=3, out_channels=4, kernel_size=(3, 3, 3)), ValueError, "kernel_size"),
        (dict(in_channels=3, out_channels=4, kernel_size=0), ValueError, "kernel_size must be >= 1, got 0"),
        (dict(in_channels=3, out_channels=4, kernel_size=3, bias=1), TypeError, "bias must be a bool"),
    ],
)
def test_conv2d_constructor_errors(kwargs, exc, match):
    with pytest.raises(exc, match=match):
        nn.Conv2d(**kwargs)


def test_conv2d_forward_errors(rng):
    m = nn.Conv2d(3, 4, 3)
    with pytest.raises(ValueError, match="channels"):
        m(randn(rng, 1, 2, 8, 8))
    with pytest.raises(TypeError, match="dtype"):
        m(np.zeros((1, 3, 8, 8), dtype=np.int64))


POOL_CONFIGS = [
    dict(kernel_size=2),
    dict(kernel_size=3, stride=2, padding=1),
    dict(kernel_size=3, stride=2, ceil_mode=True),
    dict(kernel_size=(2, 3), stride=(1, 2), dilation=(2, 1)),
    dict(kernel_size=3, stride=1, padding=1, return_indices=True),
    dict(kernel_size=2, ceil_mode=True, return_indices=True),
]


@pytest.mark.parametrize("cfg", POOL_CONFIGS, ids=str)
def test_max_pool2d_is_exact(rng, cfg):
    ours, theirs = nn.MaxPool2d(**cfg), tnn.MaxPool2d(**cfg)
    assert repr(ours) == repr(theirs)
    for dtype in (np.float32, np.float64):
        x = randn(rng, 2, 3, int(rng.integers(5, 11)), int(rng.integers(5, 11)), dtype=dtype)
        x[0, 0, 1, :3] = np.nan
        got = ours(x)
        want = theirs(torch.from_numpy(x))
        if cfg.get("return_indices"):
            np.testing.assert_array_equal(got[1], want[1].numpy())
            got, want = got[0], want[0]
        np.testing.assert_array_equal(got, want.numpy())
        assert got.dtype == dtype


def test_max_unpool2d(rng):
    pool, tpool = (
        nn.MaxPool2d(2, stride=2, return_indices=True),
        tnn.MaxPool2d(2, stride=2, return_indices=True),
    )
    unpool, tunpool = nn.MaxUnpool2d(2), tnn.MaxUnpool2d(2)
    assert repr(unpool) == repr(tunpool)
    x = randn(rng, 2, 3, 8, 10)
    y, idx = pool(x)
    ty, tidx = tpool(torch.from_numpy(x))
    np.testing.assert_array_equal(unpool(y, idx), tunpool(ty, tidx).numpy())
    x = randn(rng, 2, 3, 7, 9)  # odd sizes need output_size
    y, idx = pool(x)
    ty, tidx = tpool(torch.from_numpy(x))
    np.testing.assert_array_equal(
        unpool(y, idx, output_size=(7, 9)), tunpool(ty, tidx, output_size=[7, 9]).numpy()
    )


@pytest.mark.parametrize(
    ("shape", "cfg"),
    [
        ((2, 5), dict(in_features=5, out_features=3)),
        ((4,), dict(in_features=4, out_features=7, bias=False)),
        ((2, 3, 6), dict(in_features=6, out_features=2)),
        ((3, 300), dict(in_features=300, out_features=129)),
    ],
)
def test_linear(rng, shape, cfg):
    ours, theirs = nn.Linear(**cfg), tnn.Linear(**cfg)
    assert repr(ours) == repr(theirs)
    x = randn(rng, *shape)
    compare(ours, theirs, x, what=f"linear {cfg}")
    compare(ours.double(), theirs.double(), x.astype(np.float64), what=f"linear float64 {cfg}")


def test_linear_init_and_errors(rng):
    nn.init.manual_seed(2)
    m = nn.Linear(100, 50)
    assert np.abs(m.weight).max() <= 0.1 and np.abs(m.bias).max() <= 0.1
    assert abs(m.weight.std() - 0.1 / math.sqrt(3)) < 0.005
    with pytest.raises(ValueError, match="in_features must be >= 0"):
        nn.Linear(-1, 3)
    with pytest.raises(ValueError, match="5"):
        m(randn(rng, 2, 5))


@pytest.mark.parametrize("name", ["ReLU", "Tanh", "Sigmoid"])
def test_activations(rng, name):
    x = randn(rng, 3, 4, 5) * 30
    x[0, 0, :3] = [np.nan, np.inf, -np.inf]
    ours, theirs = getattr(nn, name)(), getattr(tnn, name)()
    assert repr(ours) == repr(theirs)
    for dtype in (np.float32, np.float64):
        got = ours(x.astype(dtype))
        want = theirs(torch.from_numpy(x.astype(dtype))).numpy()
        assert got.dtype == dtype
        np.testing.assert_allclose(got, want, rtol=2e-7 if dtype == np.float32 else 1e-15, atol=0)


def test_relu_inplace():
    assert repr(nn.ReLU(inplace=True)) == repr(tnn.ReLU(inplace=True))
    x = np.array([-1.0, 2.0], dtype=np.float32)
    out = nn.ReLU(inplace=True)(x)
    assert out is x and x.tolist() == [0.0, 2.0]
    y = np.array([-1.0, 2.0], dtype=np.float32)
    nn.ReLU()(y)
    assert y.tolist() == [-1.0, 2.0]


def test_dropout(rng):
    d = nn.Dropout(0.3)
    assert repr(d) == repr(tnn.Dropout(0.3))
    x = rng.uniform(1, 2, size=(200, 500)).astype(np.float32)
    out = d(x)
    zero = out == 0
    assert abs(zero.mean() - 0.3) < 0.01
    np.testing.assert_allclose(out[~zero], x[~zero] / 0.7, rtol=1e-6)
    assert not np.array_equal(d(x) == 0, zero)  # a fresh mask each call
    d.eval()
    np.testing.assert_array_equal(d(x), x)
    assert d(x) is not x
    np.testing.assert_array_equal(nn.Dropout(1.0)(x), np.zeros_like(x))
    np.testing.assert_array_equal(nn.Dropout(0.0)(x), x)
    for p in (-0.1, 1.5, True):
        with pytest.raises(ValueError, match="between 0 and 1"):
            nn.Dropout(p)


def test_dropout_seeded():
    x = np.ones((10, 10), dtype=np.float32)
    nn.init.manual_seed(5)
    a = nn.Dropout()(x)
    nn.init.manual_seed(5)
    np.testing.assert_array_equal(nn.Dropout()(x), a)


@pytest.mark.parametrize(("start", "end"), [(1, -1), (0, -1), (2, 3), (-3, -2), (1, 1)])
def test_flatten(rng, start, end):
    x = randn(rng, 2, 3, 4, 5)
    ours, theirs = nn.Flatten(start, end), tnn.Flatten(start, end)
    assert repr(ours) == repr(theirs)
    np.testing.assert_array_equal(ours(x), theirs(torch.from_numpy(x)).numpy())
    with pytest.raises(ValueError, match="out of range"):
        nn.Flatten(5)(x)


@pytest.mark.parametrize(
    "cfg",
    [
        dict(),
        dict(padding_idx=0),
        dict(padding_idx=-2),
        dict(max_norm=1.5),
        dict(max_norm=0.5, norm_type=1.0),
    ],
    ids=str,
)
def test_embedding(rng, cfg):
    ours, theirs = nn.Embedding(10, 6, **cfg), tnn.Embedding(10, 6, **cfg)
    assert repr(ours) == repr(theirs)
    if "padding_idx" in cfg:
        assert not ours.weight[cfg["padding_idx"]].any()
    twin(ours, theirs)
    ids = rng.integers(0, 10, size=(3, 7))
    with torch.no_grad():
        want = theirs(torch.from_numpy(ids)).numpy()
    np.testing.assert_allclose(ours(ids), want, rtol=1e-6, atol=1e-7)
    np.testing.assert_allclose(ours.weight, theirs.weight.detach().numpy(), rtol=1e-6, atol=1e-7)  # renorm


def test_embedding_errors():
    e = nn.Embedding(5, 2)
    with pytest.raises(ValueError, match=r"input ids must be in \[0, 5\) \(num_embeddings\), got 5"):
        e(np.array([1, 5]))
    with pytest.raises(ValueError, match="got -1"):
        e(np.array([-1, 2]))
    with pytest.raises(TypeError, match="integer dtype"):
        e(np.array([1.0]))
    with pytest.raises(TypeError, match="numpy array"):
        e([1, 2])
    with pytest.raises(ValueError, match="padding_idx must be within num_embeddings"):
        nn.Embedding(5, 2, padding_idx=5)
    nn.init.manual_seed(3)
    w = nn.Embedding(1000, 100).weight
    assert abs(w.mean()) < 0.01 and abs(w.std() - 1) < 0.01


@pytest.mark.parametrize(
    ("size", "out"),
    [
        ((7, 7), (7, 7)),
        ((14, 21), (7, 7)),
        ((10, 9), (3, 4)),
        ((5, 13), 6),
        ((3, 3), (7, 7)),
        ((8, 6), (None, 4)),
    ],
)
def test_adaptive_avg_pool2d(rng, size, out):
    ours, theirs = nn.AdaptiveAvgPool2d(out), tnn.AdaptiveAvgPool2d(out)
    assert repr(ours) == repr(theirs)
    for shape in ((2, 3, *size), (3, *size)):
        x = randn(rng, *shape)
        t = torch.from_numpy(x)
        assert_error_gate(
            ours(x), theirs(t.double()).numpy(), theirs(t).numpy(), what=f"adaptive {size}->{out}"
        )


def test_adaptive_avg_pool2d_errors(rng):
    with pytest.raises(ValueError, match="output_size"):
        nn.AdaptiveAvgPool2d((1, 2, 3))
    with pytest.raises(ValueError, match="3-D"):
        nn.AdaptiveAvgPool2d(2)(randn(rng, 4, 4))


# --------------------------------------------------------------------------- kernels and re-exports
def test_heavy_layers_run_on_the_kernels(monkeypatch, rng):
    import pycnnrnn.functional as F

    calls = []
    for name in ("conv2d", "linear", "max_pool2d", "max_unpool2d"):
        real = getattr(F, name)

        def spy(*args, _real=real, _name=name, **kwargs):
            calls.append(_name)
            return _real(*args, **kwargs)

        monkeypatch.setattr(F, name, spy)
    x = randn(rng, 1, 3, 8, 8)
    y, idx = nn.MaxPool2d(2, return_indices=True)(nn.Conv2d(3, 4, 3, padding=1)(x))
    nn.MaxUnpool2d(2)(y, idx)
    nn.Linear(4, 2)(y.reshape(-1, 4))
    assert calls == ["conv2d", "max_pool2d", "max_unpool2d", "linear"]


@pytest.mark.parametrize(
    ("name", "args", "kwargs"),
    [
        ("LSTM", (5, 7), dict(num_layers=2)),
        ("GRU", (5, 7), dict(batch_first=True)),
        ("RNN", (5, 7), {}),
        ("LSTMCell", (5, 7), {}),
        ("GRUCell", (5, 7), {}),
        ("RNNCell", (5, 7), dict(nonlinearity="relu")),
    ],
)
def test_recurrent_modules_reexported(rng, name, args, kwargs):
    ours, theirs = getattr(nn, name)(*args, **kwargs), getattr(tnn, name)(*args, **kwargs)
    assert repr(ours) == repr(theirs)
    twin(ours, theirs)
    x = randn(rng, 3, 4, 5) if not name.endswith("Cell") else randn(rng, 4, 5)
    out = ours(x)
    with torch.no_grad():
        ref = theirs(torch.from_numpy(x))
    flat = lambda o: [a for v in o for a in flat(v)] if isinstance(o, tuple) else [o]  # noqa: E731
    for a, b in zip(flat(out), flat(ref), strict=True):
        np.testing.assert_allclose(a, b.numpy(), rtol=1e-4, atol=1e-5)


def test_sequential_fuses_conv_relu_only_without_hooks():
    """Sequential(Conv2d, ReLU) runs the ReLU fused into the convolution: the same array as
    running them one by one; a hook on either module (which could observe the conv output)
    turns the fusion off for that pair."""
    rng = np.random.default_rng(3)
    seq = nn.Sequential(nn.Conv2d(4, 8, 3, padding=1), nn.ReLU(inplace=True), nn.Conv2d(8, 8, 3), nn.ReLU())
    x = rng.standard_normal((2, 4, 9, 9)).astype(np.float32)
    step = x
    for m in seq:
        step = m(step)
    np.testing.assert_array_equal(seq(x), step)
    seen = []
    handle = seq[0].register_forward_hook(lambda mod, args, out: seen.append(out.copy()))
    np.testing.assert_array_equal(seq(x), step)
    assert len(seen) == 1 and (seen[0] < 0).any()  # the hook saw the raw conv output
    handle.remove()
    calls = []
    seq[0].forward_relu = lambda inp: calls.append(1) or nn.Conv2d.forward_relu(seq[0], inp)
    seq(x)
    assert calls == [1]  # fused again once the hook is gone


def test_sequential_fuses_conv_relu_max_pool2x2():
    """Sequential(Conv2d, ReLU, MaxPool2d(2)) runs as one call (the pool taken in the
    convolution's output stage): the same array as the modules one by one; not with a hook on any
    of the three, nor for another pool geometry; an output below 2x2 is left to MaxPool2d."""
    rng = np.random.default_rng(5)

    def one_by_one(seq, x):
        for m in seq:
            x = m(x)
        return x

    calls = []
    fused = nn.Conv2d._forward_relu_max_pool2x2

    def spy(self, inp):
        calls.append(1)
        return fused(self, inp)

    nn.Conv2d._forward_relu_max_pool2x2 = spy
    try:
        seq = nn.Sequential(
            nn.Conv2d(4, 8, 3, padding=1), nn.ReLU(inplace=True), nn.MaxPool2d(2), nn.Conv2d(8, 8, 3)
        )
        x = rng.standard_normal((2, 4, 11, 10)).astype(np.float32)
        np.testing.assert_array_equal(seq(x), one_by_one(seq, x))
        assert calls == [1]
        handle = seq[2].register_forward_hook(lambda mod, args, out: None)
        np.testing.assert_array_equal(seq(x), one_by_one(seq, x))
        assert calls == [1]  # the hook on the pool turned the fusion off
        handle.remove()
        for pool in (
            nn.MaxPool2d(2, ceil_mode=True),
            nn.MaxPool2d(3, 2),
            nn.MaxPool2d(2, 1),
            nn.MaxPool2d(2, padding=1),
        ):
            seq = nn.Sequential(nn.Conv2d(4, 8, 3, padding=1), nn.ReLU(), pool)
            np.testing.assert_array_equal(seq(x), one_by_one(seq, x))
        assert calls == [1]
        seq = nn.Sequential(nn.Conv2d(4, 8, 3), nn.ReLU(), nn.MaxPool2d(2))
        small = rng.standard_normal((1, 4, 3, 9)).astype(np.float32)  # a 1x7 conv output
        with pytest.raises(ValueError) as fused_error:
            seq(small)
        with pytest.raises(ValueError) as plain_error:
            one_by_one(seq, small)
        assert str(fused_error.value) == str(plain_error.value)
    finally:
        nn.Conv2d._forward_relu_max_pool2x2 = fused


def test_prepack_snapshot_semantics(rng):
    """Module.prepack(): eval mode, bit-identical outputs, Conv2d weights become read-only
    snapshots (in-place writes raise); assigning a new array or load_state_dict() takes
    effect exactly as without prepack."""
    nn.init.manual_seed(0)
    model = nn.Sequential(
        nn.Conv2d(32, 32, 3, padding=1), nn.ReLU(), nn.Conv2d(32, 8, 3, padding=2, dilation=2)
    )
    x = rng.standard_normal((2, 32, 24, 23)).astype(np.float32)
    ref = model.eval()(x)
    state = {k: v.copy() for k, v in model.state_dict().items()}
    assert model.train().prepack() is model and not model.training
    conv = model[0]
    assert not conv.weight.flags.writeable and conv._weight_arg() is conv._prepared
    np.testing.assert_array_equal(model(x), ref)
    np.testing.assert_array_equal(model(x), ref)  # second call: the kept Winograd matrices
    assert list(model.state_dict()) == list(state)
    with pytest.raises(ValueError, match="read-only"):
        conv.weight[...] = 0
    last = model[2]
    last.weight = np.zeros_like(last.weight)  # a new array: the prepared form is dropped
    assert last._weight_arg() is last.weight
    np.testing.assert_array_equal(model(x), np.broadcast_to(last.bias[None, :, None, None], ref.shape))
    model.prepack()
    model.load_state_dict(state)  # replaces the read-only snapshots with writable arrays
    assert conv.weight.flags.writeable and conv._weight_arg() is conv.weight
    np.testing.assert_array_equal(model(x), ref)
    clone = copy.deepcopy(model.prepack())
    np.testing.assert_array_equal(clone(x), ref)
    np.testing.assert_array_equal(clone.double()(x.astype(np.float64)), model.double()(x.astype(np.float64)))
