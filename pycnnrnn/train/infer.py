"""Answer questions about a scene with the shipped VQA weights, numpy only (no torch).

    >>> from pycnnrnn.train import infer, scenes
    >>> image, objects, qa = scenes.demo_scene()
    >>> infer.answer_questions(image, [q for q, _ in qa])  # doctest: +SKIP
    ['purple', 'square', 'three', 'yes', 'yes']

The forward pass mirrors pycnnrnn.train.model.VqaModel in eval mode, on pycnnrnn's numpy
kernels (pycnnrnn.functional: conv2d, max_pool2d, linear, lstm).
"""

from __future__ import annotations

import json
from functools import lru_cache
from pathlib import Path

import numpy as np

from .. import functional as F
from . import scenes

WEIGHTS = Path(__file__).resolve().parent.parent / "data" / "vqa_small.npz"


class VqaNumpy:
    """The small VQA model from an .npz written by pycnnrnn.train.vqa.save_weights."""

    def __init__(self, path: str | Path = WEIGHTS):
        with np.load(path) as z:
            self.meta = json.loads(bytes(z["__meta__"]).decode())
            self.w = {k: z[k] for k in z.files if k != "__meta__"}
        cfg = self.meta["config"]
        self.num_layers = cfg["num_layers"]
        self.n_conv = len(cfg["channels"])
        self.vocab = {w: i for i, w in enumerate(self.meta["vocab"])}
        self.answers = self.meta["answers"]
        self.max_len = self.meta["max_len"]
        conv_keys = sorted(
            {k.rsplit(".", 1)[0] for k in self.w if k.startswith("img_encoder.features.")},
            key=lambda k: int(k.split(".")[-1]),
        )
        self.conv_layers = [(self.w[k + ".weight"], self.w[k + ".bias"]) for k in conv_keys]
        self.lstm_params = []
        for layer in range(self.num_layers):
            for name in ("weight_ih", "weight_hh", "bias_ih", "bias_hh"):
                self.lstm_params.append(self.w[f"qst_encoder.lstm.{name}_l{layer}"])

    def encode(self, question: str) -> np.ndarray:
        ids = [self.vocab.get(t, 1) for t in scenes.tokenize(question)][: self.max_len]
        out = np.zeros(self.max_len, dtype=np.int64)
        out[: len(ids)] = ids
        return out

    def image_features(self, images: np.ndarray) -> np.ndarray:
        x = scenes.normalize_images(images)
        for w, b in self.conv_layers:
            x = F.max_pool2d(np.maximum(F.conv2d(x, w, b, padding=1), 0), 2)
        f = F.linear(
            x.reshape(x.shape[0], -1), self.w["img_encoder.fc.weight"], self.w["img_encoder.fc.bias"]
        )
        scale = np.float32(np.sqrt(f.shape[1]))
        return f * (scale / np.maximum(np.linalg.norm(f, axis=1, keepdims=True), 1e-12))

    def question_features(self, questions: np.ndarray) -> np.ndarray:
        emb = np.tanh(self.w["qst_encoder.word2vec.weight"][questions])  # [B, L, E]
        x = np.ascontiguousarray(emb.transpose(1, 0, 2))
        _, (h, c) = F.lstm(x, None, self.lstm_params, num_layers=self.num_layers)
        feat = np.concatenate([h, c], axis=2).transpose(1, 0, 2).reshape(questions.shape[0], -1)
        return F.linear(np.tanh(feat), self.w["qst_encoder.fc.weight"], self.w["qst_encoder.fc.bias"])

    def logits(self, images: np.ndarray, questions: np.ndarray) -> np.ndarray:
        """images: uint8 (B, 3, H, W); questions: int64 token ids (B, max_len)."""
        img, qst = self.image_features(images), self.question_features(questions)
        fused = (
            img * qst
            if self.meta["config"].get("fusion", "product") == "product"
            else np.concatenate([img, qst], 1)
        )
        combined = np.tanh(fused)
        combined = np.tanh(F.linear(combined, self.w["fc1.weight"], self.w["fc1.bias"]))
        return F.linear(combined, self.w["fc2.weight"], self.w["fc2.bias"])

    def answer(self, image: np.ndarray, questions: list[str]) -> list[str]:
        """Answers to several questions about one uint8 (3, H, W) image."""
        image = np.asarray(image)
        if image.ndim != 3 or image.shape[0] != 3:
            raise ValueError(f"image must be a uint8 array of shape (3, H, W), got {image.shape}")
        q = np.stack([self.encode(s) for s in questions])
        imgs = np.broadcast_to(image, (len(questions), *image.shape))
        return [self.answers[i] for i in self.logits(np.ascontiguousarray(imgs), q).argmax(1)]


@lru_cache(maxsize=2)
def load_model(path: str | None = None) -> VqaNumpy:
    """The shipped model (pycnnrnn/data/vqa_small.npz) or the .npz at ``path``, cached."""
    return VqaNumpy(WEIGHTS if path is None else path)


def answer_questions(image: np.ndarray, questions: list[str], weights: str | None = None) -> list[str]:
    """Answer each question about ``image`` (uint8, (3, 32, 32), e.g. from scenes.demo_scene())."""
    return load_model(weights).answer(image, list(questions))


def demo(seed: int = 7, weights: str | None = None) -> str:
    """A printable demo: a generated scene, questions, the model's answers and the truth."""
    image, objects, qa = scenes.demo_scene(seed)
    answers = answer_questions(image, [q for q, _ in qa], weights)
    lines = [f"scene: {scenes.describe(objects)}"]
    for (q, truth), a in zip(qa, answers):
        mark = "ok" if a == truth else f"wrong, truth: {truth}"
        lines.append(f"  Q: {q:<48} A: {a:<8} ({mark})")
    return "\n".join(lines)
