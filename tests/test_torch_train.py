"""The VQA training job: the generated data, the model on pycnnrnn kernels vs plain torch, the
weights file and the numpy-only inference, the PNG writer."""

from __future__ import annotations

import zlib

import numpy as np
import pytest

from pycnnrnn.train import scenes
from pycnnrnn.train.png import line_chart, write_png


# ---- data (numpy only) -------------------------------------------------------------------------
def test_dataset_is_deterministic_and_answers_are_consistent():
    a = scenes.make_dataset(40, seed=3)
    b = scenes.make_dataset(40, seed=3)
    assert np.array_equal(a.images, b.images) and np.array_equal(a.questions, b.questions)
    assert np.array_equal(a.answers, b.answers)
    c = scenes.make_dataset(40, seed=4)
    assert not np.array_equal(a.images, c.images)
    assert a.images.shape == (40, 3, 32, 32) and a.images.dtype == np.uint8
    assert a.questions.shape == (len(a), scenes.MAX_LEN)
    assert set(np.unique(a.family)) == set(range(len(scenes.FAMILIES)))
    # every token known, questions round-trip through the vocabulary
    for text, q in zip(a.texts, a.questions):
        words = [scenes.VOCAB[i] for i in q if i != 0]
        assert words == scenes.tokenize(text)
        assert 1 not in q


def test_answers_follow_from_the_scene():
    rng = np.random.default_rng(0)
    for _ in range(200):
        objs = scenes.random_scene(rng)
        assert 1 <= len(objs) <= scenes.MAX_OBJECTS
        assert len({o.colour for o in objs}) == len(objs)
        assert len({(o.row, o.col) for o in objs}) == len(objs)
        for fam in scenes.FAMILIES:
            qa = scenes.ask(objs, fam, rng)
            if qa is None:
                continue
            q, ans = qa
            assert ans in scenes.ANSWERS
            if q.startswith("how many objects"):
                assert ans == scenes.NUMBERS[len(objs)]
            elif q.startswith("how many"):
                shape = q.split()[2][:-1]
                assert ans == scenes.NUMBERS[sum(o.shape == shape for o in objs)]
            elif q.startswith("is there a"):
                c, s = q[:-1].split()[3:5]
                assert (ans == "yes") == any(o.colour == c and o.shape == s for o in objs)
            elif q.startswith("what color"):
                shape = q[:-1].split()[-1]
                (o,) = [o for o in objs if o.shape == shape]
                assert ans == o.colour


def test_render_draws_each_object_in_its_colour_and_cell():
    objs = [scenes.SceneObject("square", "red", 0, 0), scenes.SceneObject("circle", "blue", 2, 2)]
    img = scenes.render(objs, 32, np.random.default_rng(0)).astype(int)
    cell = 32 // 3
    red = img[:, 5, 5]
    blue = img[:, 2 * cell + 5, 2 * cell + 5]
    assert red[0] > 150 and red[2] < 100
    assert blue[2] > 150 and blue[0] < 100
    assert img[:, 16, 16].max() < 80  # the empty centre cell is background


def test_png_writer(tmp_path):
    rgb = np.zeros((4, 5, 3), np.uint8)
    rgb[1, 2] = (255, 0, 0)
    p = tmp_path / "x.png"
    write_png(p, rgb)
    data = p.read_bytes()
    assert data[:8] == b"\x89PNG\r\n\x1a\n"
    i = data.index(b"IDAT")
    n = int.from_bytes(data[i - 4 : i], "big")
    raw = zlib.decompress(data[i + 4 : i + 4 + n])
    rows = np.frombuffer(raw, np.uint8).reshape(4, 1 + 5 * 3)
    assert np.array_equal(rows[:, 1:].reshape(4, 5, 3), rgb)
    line_chart(tmp_path / "c.png", {"a": [0.1, 0.5, 0.9], "b": [0.3, 0.3, 0.2]})
    assert (tmp_path / "c.png").read_bytes()[:4] == b"\x89PNG"


# ---- the model on pycnnrnn kernels (torch) -----------------------------------------------------


def _batch(n=16):
    import torch

    d = scenes.make_dataset(n // 5 + 1, seed=9)
    idx = np.arange(n)
    img = torch.from_numpy(scenes.normalize_images(d.images))[torch.from_numpy(d.scene[idx])]
    return img, torch.from_numpy(d.questions[idx]), torch.from_numpy(d.answers[idx])


@pytest.mark.torch
@pytest.mark.parametrize("fusion", ["product", "concat"])
def test_pycnnrnn_model_trains_like_torch(fusion):
    torch = pytest.importorskip("torch")
    import pycnnrnn.torch.nn as pnn
    from pycnnrnn.train.model import VqaConfig
    from pycnnrnn.train.vqa import build_model

    cfg = VqaConfig(fusion=fusion)
    ours, ref = build_model("pycnnrnn", cfg, seed=1), build_model("torch", cfg, seed=1)
    # every conv, pool, linear and LSTM runs on pycnnrnn's kernels (each Conv2d -> ReLU ->
    # MaxPool2d run of the image encoder fused into its Conv2d)
    kinds = {type(m) for m in ours.modules()}
    assert {pnn.Conv2d, pnn.Linear, pnn.LSTM} <= kinds
    assert not kinds & {torch.nn.Conv2d, torch.nn.MaxPool2d, torch.nn.ReLU, torch.nn.Linear, torch.nn.LSTM}
    convs = [m for m in ours.modules() if isinstance(m, pnn.Conv2d)]
    assert len(convs) == 3 and all(c.fused_relu and c.fused_pool == (2, 2, 0, 1, False) for c in convs)
    img, q, a = _batch()
    opts = [torch.optim.Adam(m.parameters(), lr=1e-3) for m in (ours, ref)]
    for step in range(3):
        losses = []
        for m, opt in zip((ours, ref), opts):
            torch.manual_seed(step)  # same dropout masks
            loss = torch.nn.functional.cross_entropy(m(img, q), a)
            opt.zero_grad()
            loss.backward()
            opt.step()
            losses.append(loss.item())
        assert losses[0] == pytest.approx(losses[1], rel=1e-4, abs=1e-5)
    for (name, p), r in zip(ours.named_parameters(), ref.parameters()):
        torch.testing.assert_close(p, r, rtol=1e-3, atol=1e-4, msg=name)


@pytest.mark.torch
def test_evaluate_runs_without_autograd_and_the_optimizer_is_fused_adam():
    torch = pytest.importorskip("torch")
    from pycnnrnn.train.vqa import Split, build_model, evaluate, make_optimizer

    model = build_model("pycnnrnn", seed=2)
    grad_modes = []
    model.register_forward_hook(lambda m, inputs, out: grad_modes.append(torch.is_grad_enabled()))
    acc, fam = evaluate(model, Split.make(3, seed=12), batch_size=8)
    assert grad_modes and not any(grad_modes) and 0.0 <= acc <= 1.0 and fam
    assert torch.is_grad_enabled()  # restored for the training loop
    opt = make_optimizer(model.parameters(), 1e-3)
    assert isinstance(opt, torch.optim.Adam) and opt.defaults["fused"] and opt.defaults["lr"] == 1e-3


@pytest.mark.torch
@pytest.mark.parametrize("fusion", ["product", "concat"])
def test_saved_weights_numpy_inference_matches_torch(tmp_path, fusion):
    torch = pytest.importorskip("torch")
    from pycnnrnn.train import infer
    from pycnnrnn.train.model import VqaConfig
    from pycnnrnn.train.vqa import build_model, save_weights

    cfg = VqaConfig(fusion=fusion)
    model = build_model("torch", cfg, seed=2).eval()
    path = save_weights(model, tmp_path / "w.npz", cfg, accuracy=0.5)
    np_model = infer.VqaNumpy(path)
    d = scenes.make_dataset(4, seed=11)
    img_t = torch.from_numpy(scenes.normalize_images(d.images))[torch.from_numpy(d.scene)]
    with torch.no_grad():
        want = model(img_t, torch.from_numpy(d.questions)).numpy()
    got = np_model.logits(d.images[d.scene], d.questions)
    np.testing.assert_allclose(got, want, rtol=1e-4, atol=1e-5)
    answers = np_model.answer(d.images[0], [t for t, s in zip(d.texts, d.scene) if s == 0])
    assert answers == [scenes.ANSWERS[i] for i in want[d.scene == 0].argmax(1)]


@pytest.mark.torch
def test_train_command_end_to_end(tmp_path, capsys):
    pytest.importorskip("torch")
    import json

    from pycnnrnn import cli
    from pycnnrnn.train import infer

    argv = ["train", "--scenes", "30", "--test-scenes", "10", "--epochs", "1", "--out", str(tmp_path)]
    assert cli.main(argv) == 0
    out = capsys.readouterr().out
    assert "[pycnnrnn] epoch 1: loss" in out and "[torch] epoch 1: loss" in out
    assert "wall-clock ratio torch / pycnnrnn" in out
    hist = json.loads((tmp_path / "history.json").read_text())
    # same initial weights and batches: the two backends end at the same accuracy and loss
    assert hist[0]["accuracy"] == pytest.approx(hist[1]["accuracy"], abs=0.02)
    assert hist[0]["loss"] == pytest.approx(hist[1]["loss"], rel=1e-3)
    assert (tmp_path / "vqa_curves.png").read_bytes()[:4] == b"\x89PNG"
    m = infer.VqaNumpy(tmp_path / "vqa_small.npz")
    image, _, qa = scenes.demo_scene()
    assert all(a in scenes.ANSWERS for a in m.answer(image, [q for q, _ in qa]))


# ---- the shipped weights (numpy only) ----------------------------------------------------------
def test_shipped_model_answers_fresh_scenes_numpy_only():
    from pycnnrnn.train import infer

    m = infer.load_model()
    assert m.meta["held_out_accuracy"] >= 0.9
    assert infer.WEIGHTS.stat().st_size < 2 * 1024 * 1024
    d = scenes.make_dataset(200, seed=4321)  # scenes the model never saw
    pred = m.logits(d.images[d.scene], d.questions).argmax(1)
    assert (pred == d.answers).mean() >= 0.85
    image, _, qa = scenes.demo_scene()
    answers = infer.answer_questions(image, [q for q, _ in qa])
    assert sum(a == t for a, (_, t) in zip(answers, qa)) >= len(qa) - 1
