"""The same models in plain torch, written out by hand (torchvision is not needed): VGG with
torchvision's exact architecture and state_dict keys, and tbmoon/basic_vqa's VqaModel. Used as
references in tests, the benchmarks and ``python -m pycnnrnn``. Importing this module imports
torch."""

from __future__ import annotations

from collections import OrderedDict

import numpy as np
import torch
from torch import nn

from .vgg import cfgs

__all__ = ["VGG", "ImgEncoder", "QstEncoder", "VqaModel", "load_from_numpy", "twin_of", "vgg"]


class VGG(nn.Module):
    def __init__(self, features: nn.Module, num_classes: int = 1000, dropout: float = 0.5):
        super().__init__()
        self.features = features
        self.avgpool = nn.AdaptiveAvgPool2d((7, 7))
        self.classifier = nn.Sequential(
            nn.Linear(512 * 7 * 7, 4096),
            nn.ReLU(True),
            nn.Dropout(p=dropout),
            nn.Linear(4096, 4096),
            nn.ReLU(True),
            nn.Dropout(p=dropout),
            nn.Linear(4096, num_classes),
        )

    def forward(self, x):
        x = self.features(x)
        x = self.avgpool(x)
        x = torch.flatten(x, 1)
        return self.classifier(x)


def vgg(name: str, num_classes: int = 1000) -> VGG:
    """torchvision.models.<name>() architecture (weights left at torch's default init)."""
    layers: list[nn.Module] = []
    in_channels = 3
    for v in cfgs[name]:
        if v == "M":
            layers.append(nn.MaxPool2d(kernel_size=2, stride=2))
        else:
            layers += [nn.Conv2d(in_channels, v, kernel_size=3, padding=1), nn.ReLU(inplace=True)]
            in_channels = v
    return VGG(nn.Sequential(*layers), num_classes)


class ImgEncoder(nn.Module):
    def __init__(self, embed_size: int, backbone: str = "vgg16"):
        super().__init__()
        model = vgg(backbone)
        in_features = model.classifier[-1].in_features
        model.classifier = nn.Sequential(*list(model.classifier.children())[:-1])
        self.model = model
        self.fc = nn.Linear(in_features, embed_size)

    def forward(self, image):
        with torch.no_grad():
            img_feature = self.model(image)
        img_feature = self.fc(img_feature)
        l2_norm = img_feature.norm(p=2, dim=1, keepdim=True).detach()
        return img_feature.div(l2_norm)


class QstEncoder(nn.Module):
    def __init__(self, qst_vocab_size, word_embed_size=300, embed_size=1024, num_layers=2, hidden_size=512):
        super().__init__()
        self.word2vec = nn.Embedding(qst_vocab_size, word_embed_size)
        self.tanh = nn.Tanh()
        self.lstm = nn.LSTM(word_embed_size, hidden_size, num_layers)
        self.fc = nn.Linear(2 * num_layers * hidden_size, embed_size)

    def forward(self, question):
        qst_vec = self.tanh(self.word2vec(question))
        qst_vec = qst_vec.transpose(0, 1)
        _, (hidden, cell) = self.lstm(qst_vec)
        qst_feature = torch.cat((hidden, cell), 2)
        qst_feature = qst_feature.transpose(0, 1)
        qst_feature = qst_feature.reshape(qst_feature.size()[0], -1)
        qst_feature = self.tanh(qst_feature)
        return self.fc(qst_feature)


class VqaModel(nn.Module):
    def __init__(
        self,
        embed_size,
        qst_vocab_size,
        ans_vocab_size=1000,
        word_embed_size=300,
        num_layers=2,
        hidden_size=512,
        backbone="vgg16",
    ):
        super().__init__()
        self.img_encoder = ImgEncoder(embed_size, backbone)
        self.qst_encoder = QstEncoder(qst_vocab_size, word_embed_size, embed_size, num_layers, hidden_size)
        self.tanh = nn.Tanh()
        self.dropout = nn.Dropout(0.5)
        self.fc1 = nn.Linear(embed_size, ans_vocab_size)
        self.fc2 = nn.Linear(ans_vocab_size, ans_vocab_size)

    def forward(self, img, qst):
        img_feature = self.img_encoder(img)
        qst_feature = self.qst_encoder(qst)
        combined = self.tanh(torch.mul(img_feature, qst_feature))
        combined = self.dropout(combined)
        combined = self.tanh(self.fc1(combined))
        combined = self.dropout(combined)
        return self.fc2(combined)


def load_from_numpy(model: nn.Module, state_dict, *, copy: bool = True) -> nn.Module:
    """Load a pycnnrnn (numpy) state_dict into a torch model, strictly, keeping its dtype.

    copy=False makes the torch parameters share the numpy arrays' memory (no copy; works on a
    model built under ``torch.device("meta")``, which skips torch's own initialisation)."""
    ref = model.state_dict()
    # a read-only array (a prepack() snapshot) is copied: torch may write to what it shares
    tensors = OrderedDict(
        (
            k,
            torch.from_numpy(np.ascontiguousarray(v if v.flags.writeable else v.copy())).to(
                ref[k].dtype if k in ref else torch.float32
            ),
        )
        for k, v in state_dict.items()
    )
    model.load_state_dict(tensors, strict=True, assign=not copy)
    return model


def twin_of(ours, build) -> nn.Module:
    """build() under the meta device (no init cost), then our weights shared in, same mode."""
    with torch.device("meta"):
        model = build()
    return load_from_numpy(model, ours.state_dict(), copy=False).train(ours.training)
