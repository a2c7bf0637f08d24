"""VGG11-19 against torchvision's architecture (written out in pycnnrnn.models.torch_reference)
with the same weights, end to end through the float64 error gate."""

from __future__ import annotations

import copy
import warnings

import numpy as np
import pytest
from helpers import assert_error_gate

import pycnnrnn
from pycnnrnn import models, nn

torch = pytest.importorskip("torch")
R = pytest.importorskip("pycnnrnn.models.torch_reference")

pytestmark = pytest.mark.torch

VGG_PARAMS = {"vgg11": 132_863_336, "vgg13": 133_047_848, "vgg16": 138_357_544, "vgg19": 143_667_240}


def torch_twin(ours: nn.Module, build) -> torch.nn.Module:
    """The torch model build() with our weights (shared memory, no torch init), same mode."""
    return R.twin_of(ours, build)


def run_both(ours, theirs, *inputs):
    """(ours, torch float32, torch float64) outputs on the same inputs."""
    out = ours(*inputs)
    t_in = [torch.from_numpy(x) for x in inputs]
    with torch.no_grad():
        t32 = theirs(*t_in).numpy()
        t64 = (
            copy.deepcopy(theirs)
            .double()(*[x.double() if x.is_floating_point() else x for x in t_in])
            .numpy()
        )
    return out, t32, t64


@pytest.fixture(scope="module", params=list(VGG_PARAMS))
def vgg_pair(request):
    """(ours, torch twin) per VGG, built once and freed before the next (~0.5 GB each)."""
    name = request.param
    nn.init.manual_seed(0)
    ours = getattr(models, name)(num_classes=10).eval()
    yield name, ours, torch_twin(ours, lambda: R.vgg(name, num_classes=10)).eval()


def test_vgg_structure_and_init(vgg_pair):
    name, ours, theirs = vgg_pair
    assert repr(ours) == repr(theirs)
    assert [(k, v.shape) for k, v in ours.state_dict().items()] == [
        (k, tuple(v.shape)) for k, v in theirs.state_dict().items()
    ]
    full = VGG_PARAMS[name] - 4097 * (1000 - 10)  # num_classes=10 shrinks the last Linear
    assert sum(p.size for p in ours.parameters()) == full
    # torchvision's init: kaiming_normal_(fan_out, relu) convs, N(0, 0.01) linears, zero biases
    conv = ours.features[0]
    assert abs(conv.weight.std() - np.sqrt(2 / (64 * 9))) < 0.1 * np.sqrt(2 / (64 * 9))
    assert not conv.bias.any() and not ours.classifier[0].bias.any()
    assert abs(ours.classifier[0].weight.std() - 0.01) < 1e-4


def test_vgg_forward_small_input(vgg_pair, rng):
    # 32x32 input: every layer runs, the adaptive pool upsamples 1x1 -> 7x7.
    name, ours, theirs = vgg_pair
    x = rng.standard_normal((2, 3, 32, 32)).astype(np.float32)
    out, t32, t64 = run_both(ours, theirs, x)
    assert out.shape == (2, 10) and out.dtype == np.float32
    assert_error_gate(out, t64, t32, what=name)


@pytest.fixture(scope="module")
def vgg11_pair():
    nn.init.manual_seed(0)
    ours = models.vgg11(num_classes=10).eval()
    return ours, torch_twin(ours, lambda: R.vgg("vgg11", num_classes=10)).eval()


def test_vgg_train_mode(vgg11_pair, rng):
    ours, theirs = vgg11_pair
    x = rng.standard_normal((1, 3, 32, 32)).astype(np.float32)
    try:
        ours.train()
        theirs.train()
        nn.init.manual_seed(7)
        a = ours(x)
        nn.init.manual_seed(7)
        np.testing.assert_array_equal(ours(x), a)  # seeded dropout is reproducible
        assert not np.allclose(a, ours.eval()(x))  # and active in training
        # with the dropout disabled, training mode equals torch's training mode
        for m in (ours.classifier[2], ours.classifier[5], theirs.classifier[2], theirs.classifier[5]):
            m.p = 0.0
        ours.train()
        out, t32, t64 = run_both(ours, theirs, x)
        assert_error_gate(out, t64, t32, what="vgg11 train")
    finally:
        for m in (ours.classifier[2], ours.classifier[5], theirs.classifier[2], theirs.classifier[5]):
            m.p = 0.5
        ours.eval()
        theirs.eval()


@pytest.mark.slow
@pytest.mark.parametrize("name", ["vgg16", "vgg19"])
def test_vgg_forward_224(rng, name):
    nn.init.manual_seed(1)
    ours = getattr(models, name)().eval()
    theirs = torch_twin(ours, lambda: R.vgg(name)).eval()
    x = rng.random((1, 3, 224, 224), dtype=np.float32)
    out, t32, t64 = run_both(ours, theirs, x)
    assert_error_gate(out, t64, t32, what=f"{name} 224")


def test_vgg_loads_torch_weights_and_files(vgg11_pair, tmp_path, rng):
    _, theirs = vgg11_pair
    theirs = R.vgg("vgg11", num_classes=10).eval()  # torch's own init, real tensors
    ours = models.vgg11(num_classes=10, init_weights=False).eval()
    ours.load_state_dict(theirs.state_dict())  # torch tensors straight in
    torch.save(theirs.features.state_dict(), tmp_path / "features.pth")
    features = models.vgg11(num_classes=10, init_weights=False).features
    features.load_state_dict(pycnnrnn.io.load(tmp_path / "features.pth"))
    x = rng.standard_normal((1, 3, 32, 32)).astype(np.float32)
    np.testing.assert_array_equal(ours.features(x), features(x))
    out, t32, t64 = run_both(ours, theirs, x)
    assert_error_gate(out, t64, t32, what="vgg11 loaded")


# --------------------------------------------------------------------------- VQA
def test_qst_encoder_tutorial_sizes(rng):
    nn.init.manual_seed(3)
    ours = models.QstEncoder(qst_vocab_size=100).eval()  # word 300, embed 1024, LSTM(300, 512, 2)
    theirs = torch_twin(ours, lambda: R.QstEncoder(100))
    assert repr(ours) == repr(theirs)
    assert sum(p.size for p in ours.lstm.parameters()) == 3_768_320
    q = rng.integers(0, 100, size=(3, 30))
    q[:, 20:] = 0  # right-padded with <pad> = 0; the pads run through the LSTM too
    out, t32, t64 = run_both(ours, theirs, q)
    assert out.shape == (3, 1024)
    assert_error_gate(out, t64, t32, what="QstEncoder")
    with pytest.raises(ValueError, match="2-D integer array"):
        ours(q[0])


@pytest.fixture(scope="module", params=["vgg16", "vgg19"])
def vqa_pair(request):
    nn.init.manual_seed(4)
    cfg = dict(
        embed_size=64, qst_vocab_size=50, ans_vocab_size=20, word_embed_size=16, num_layers=2, hidden_size=8
    )
    ours = models.VqaModel(**cfg, backbone=request.param).eval()
    return ours, torch_twin(ours, lambda: R.VqaModel(**cfg, backbone=request.param)).eval()


def test_vqa_state_dict_names(vqa_pair):
    ours, theirs = vqa_pair
    keys = list(ours.state_dict())
    assert keys == list(theirs.state_dict())
    for key in (
        "img_encoder.model.features.0.weight",
        "img_encoder.model.classifier.3.bias",
        "img_encoder.fc.weight",
        "qst_encoder.word2vec.weight",
        "qst_encoder.lstm.weight_hh_l1",
        "qst_encoder.fc.bias",
        "fc1.weight",
        "fc2.bias",
    ):
        assert key in keys
    assert "img_encoder.model.classifier.6.weight" not in keys  # last Linear removed
    assert repr(ours) == repr(theirs)


def test_vqa_forward(vqa_pair, rng):
    ours, theirs = vqa_pair
    img = rng.random((2, 3, 32, 32), dtype=np.float32)
    qst = rng.integers(0, 50, size=(2, 30))
    out, t32, t64 = run_both(ours, theirs, img, qst)
    assert out.shape == (2, 20)
    assert_error_gate(out, t64, t32, what="VqaModel")
    feat = ours.img_encoder(img)
    np.testing.assert_allclose(np.linalg.norm(feat, axis=1), 1, rtol=1e-5)  # L2-normalised


def test_vqa_train_mode_dropout(vqa_pair, rng):
    ours, _ = vqa_pair
    img = rng.random((1, 3, 32, 32), dtype=np.float32)
    qst = rng.integers(0, 50, size=(1, 30))
    try:
        ours.train()
        nn.init.manual_seed(9)
        a = ours(img, qst)
        nn.init.manual_seed(9)
        np.testing.assert_array_equal(ours(img, qst), a)
        assert not np.allclose(a, ours.eval()(img, qst))
    finally:
        ours.eval()


def test_vqa_bad_backbone():
    with pytest.raises(
        ValueError, match=r"backbone must be one of \['vgg16', 'vgg19'\] or a VGG, got 'resnet'"
    ):
        models.ImgEncoder(8, backbone="resnet")


def test_img_encoder_shares_a_given_vgg(vgg11_pair, rng):
    vgg, _ = vgg11_pair
    enc = models.ImgEncoder(16, backbone=vgg)
    assert enc.model.features is vgg.features and enc.model.classifier[0] is vgg.classifier[0]
    assert len(enc.model.classifier) == 6 and len(vgg.classifier) == 7  # the given VGG keeps its head
    x = rng.standard_normal((1, 3, 32, 32)).astype(np.float32)
    feat = enc.model(x)
    np.testing.assert_array_equal(feat, vgg.classifier[:6](vgg.avgpool(vgg.features(x)).reshape(1, -1)))


def test_vgg_prepack_is_bit_identical(vgg11_pair, rng, tmp_path):
    """Module.prepack() on a whole VGG: the same output bit for bit, first call and after."""
    ours, _ = vgg11_pair
    x = rng.standard_normal((1, 3, 64, 64)).astype(np.float32)
    ref = ours(x)
    ours.prepack()
    try:
        assert all(not m.weight.flags.writeable for m in ours.modules() if isinstance(m, nn.Conv2d))
        np.testing.assert_array_equal(ours(x), ref)
        np.testing.assert_array_equal(ours(x), ref)
        with warnings.catch_warnings():  # read-only snapshots are copied, not shared, into torch
            warnings.simplefilter("error")
            twin = torch_twin(ours, lambda: R.vgg("vgg11", num_classes=10)).eval()
            pycnnrnn.io.save(ours.features.state_dict(), tmp_path / "features.pt")
        with torch.no_grad():
            np.testing.assert_allclose(twin(torch.from_numpy(x)).numpy(), ref, rtol=1e-4, atol=1e-5)
    finally:
        ours.load_state_dict(ours.state_dict())  # writable arrays again for the other tests
    assert all(m.weight.flags.writeable for m in ours.modules() if isinstance(m, nn.Conv2d))
