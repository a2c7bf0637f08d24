"""Training step of the small VQA model (pycnnrnn.train): pycnnrnn modules vs plain torch.

One step = forward + cross-entropy + backward + Adam update (the training loop's
make_optimizer) on a batch of 64 (32x32 images, 10-token questions), same weights and batch
for both, torch and pycnnrnn on the same thread count. The issue's speed floor (pycnnrnn step
at least 1.5x faster than the torch step) is read off the ratio column; timings are measured,
never asserted. The two run in alternating blocks of steps (bench/conftest.py, interleaved).

    PYTHONPATH=build/dev-torch/stage pytest bench/bench_train.py --benchmark-enable -p no:cacheprovider
"""

from __future__ import annotations

import pytest

torch = pytest.importorskip("torch")


import numpy as np  # noqa: E402

from pycnnrnn.train import scenes  # noqa: E402
from pycnnrnn.train.vqa import build_model, make_optimizer  # noqa: E402

BATCH = 64


def _flops(model, batch: int) -> float:
    """2 * MACs of conv + linear + LSTM, times 3 for forward + backward (data and weights)."""
    cfg = model.cfg
    macs, c_in, side = 0, 3, cfg.image_size
    for c in cfg.channels:
        macs += side * side * c * c_in * 9
        c_in, side = c, side // 2
    macs += c_in * side * side * cfg.embed_size
    macs += scenes.MAX_LEN * 4 * cfg.hidden_size * (cfg.word_embed_size + cfg.hidden_size) * cfg.num_layers
    macs += 2 * cfg.num_layers * cfg.hidden_size * cfg.embed_size
    macs += cfg.embed_size * cfg.fc1_size + cfg.fc1_size * cfg.ans_vocab_size
    return 2.0 * 3 * macs * batch


@pytest.fixture(scope="module")
def batch():
    d = scenes.make_dataset(BATCH // 5 + 1, seed=5)
    idx = np.arange(BATCH)
    img = torch.from_numpy(scenes.normalize_images(d.images))[torch.from_numpy(d.scene[idx])]
    return img, torch.from_numpy(d.questions[idx]), torch.from_numpy(d.answers[idx])


def _train_step(impl, batch):
    """One training step (forward, cross-entropy, backward, Adam) of a fresh model on `impl`."""
    model = build_model(impl, seed=0)
    model.train()
    opt = make_optimizer(model.parameters(), 1e-3)
    img, q, a = batch

    def step():
        loss = torch.nn.functional.cross_entropy(model(img, q), a)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        return loss

    return model, step


def test_vqa_train_step(benchmark, interleaved, batch):
    ours_model, ours = _train_step("pycnnrnn", batch)
    _, theirs = _train_step("torch", batch)
    benchmark.group = f"vqa-train-step-B{BATCH}"
    benchmark.extra_info["flops"] = _flops(ours_model, BATCH)
    interleaved({"pycnnrnn": ours, "torch": theirs}, rounds=30)
    assert torch.isfinite(ours()) and torch.isfinite(theirs())
