"""The VQA model of tbmoon/basic_vqa (models.py): a VGG image encoder, an LSTM question
encoder and a two-layer answer head. Attribute names match the original, so its checkpoints'
state_dicts load as they are (img_encoder.model.*, img_encoder.fc, qst_encoder.word2vec /
.lstm / .fc, fc1, fc2)."""

from __future__ import annotations

import numpy as np

from .. import nn
from .vgg import VGG, vgg16, vgg19

__all__ = ["ImgEncoder", "QstEncoder", "VqaModel"]

_BACKBONES = {"vgg16": vgg16, "vgg19": vgg19}


class ImgEncoder(nn.Module):
    """VGG without its last Linear -> [B, 4096] -> fc -> [B, embed_size], L2-normalised per row.

    backbone: 'vgg16' (the tutorial) or 'vgg19' (the original repository), or a VGG instance
    whose features and classifier layers are shared (not copied), e.g. to reuse loaded weights."""

    def __init__(self, embed_size: int, backbone: str | VGG = "vgg16"):
        super().__init__()
        if isinstance(backbone, VGG):
            model = VGG.__new__(VGG)  # a VGG sharing backbone's layers; no new weights drawn
            nn.Module.__init__(model)
            model.features, model.avgpool = backbone.features, backbone.avgpool
            model.classifier = nn.Sequential(*list(backbone.classifier))
        elif backbone in _BACKBONES:
            model = _BACKBONES[backbone]()
        else:
            raise ValueError(f"backbone must be one of {sorted(_BACKBONES)} or a VGG, got {backbone!r}")
        in_features = model.classifier[-1].in_features
        model.classifier = nn.Sequential(*list(model.classifier)[:-1])
        self.model = model
        self.fc = nn.Linear(in_features, embed_size)

    def forward(self, image: np.ndarray) -> np.ndarray:
        feature = self.fc(self.model(image))
        return feature / np.linalg.norm(feature, axis=1, keepdims=True)


class QstEncoder(nn.Module):
    """Embedding -> tanh -> LSTM over all (padded) steps, seq-first -> [h_l0|c_l0|h_l1|c_l1]
    -> tanh -> fc -> [B, embed_size]. question: int ids [B, L]."""

    def __init__(
        self,
        qst_vocab_size: int,
        word_embed_size: int = 300,
        embed_size: int = 1024,
        num_layers: int = 2,
        hidden_size: int = 512,
    ):
        super().__init__()
        self.word2vec = nn.Embedding(qst_vocab_size, word_embed_size)
        self.tanh = nn.Tanh()
        self.lstm = nn.LSTM(word_embed_size, hidden_size, num_layers)
        self.fc = nn.Linear(2 * num_layers * hidden_size, embed_size)

    def forward(self, question: np.ndarray) -> np.ndarray:
        if not isinstance(question, np.ndarray) or question.ndim != 2:
            shape = getattr(question, "shape", type(question).__name__)
            raise ValueError(f"question must be a 2-D integer array [batch, length], got {shape}")
        qst_vec = self.tanh(self.word2vec(question))  # [B, L, word_embed]
        qst_vec = np.ascontiguousarray(qst_vec.transpose(1, 0, 2))  # [L, B, word_embed]
        _, (hidden, cell) = self.lstm(qst_vec)  # [num_layers, B, hidden] each
        feature = np.concatenate((hidden, cell), axis=2).transpose(1, 0, 2)  # [B, num_layers, 2*hidden]
        feature = self.tanh(feature.reshape(feature.shape[0], -1))
        return self.fc(feature)


class VqaModel(nn.Module):
    """img_feature * qst_feature -> tanh -> dropout -> fc1 -> tanh -> dropout -> fc2 (logits)."""

    def __init__(
        self,
        embed_size: int,
        qst_vocab_size: int,
        ans_vocab_size: int = 1000,
        word_embed_size: int = 300,
        num_layers: int = 2,
        hidden_size: int = 512,
        backbone: str | VGG = "vgg16",
    ):
        super().__init__()
        self.img_encoder = ImgEncoder(embed_size, backbone)
        self.qst_encoder = QstEncoder(qst_vocab_size, word_embed_size, embed_size, num_layers, hidden_size)
        self.tanh = nn.Tanh()
        self.dropout = nn.Dropout(0.5)
        self.fc1 = nn.Linear(embed_size, ans_vocab_size)
        self.fc2 = nn.Linear(ans_vocab_size, ans_vocab_size)

    def forward(self, img: np.ndarray, qst: np.ndarray) -> np.ndarray:
        combined = self.img_encoder(img) * self.qst_encoder(qst)
        combined = self.dropout(self.tanh(combined))
        combined = self.dropout(self.tanh(self.fc1(combined)))
        return self.fc2(combined)
