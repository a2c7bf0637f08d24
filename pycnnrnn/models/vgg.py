"""VGG 11/13/16/19 with torchvision's architecture, initialisation and state_dict keys, so
torchvision weights (features.N.*, classifier.N.*) load as they are. No pretrained weights are
downloaded: load them with model.load_state_dict(pycnnrnn.io.load(path))."""

from __future__ import annotations

import numpy as np

from .. import nn
from ..nn import init

__all__ = ["VGG", "cfgs", "make_layers", "vgg11", "vgg13", "vgg16", "vgg19"]

cfgs: dict[str, list] = {
    "vgg11": [64, "M", 128, "M", 256, 256, "M", 512, 512, "M", 512, 512, "M"],
    "vgg13": [64, 64, "M", 128, 128, "M", 256, 256, "M", 512, 512, "M", 512, 512, "M"],
    "vgg16": [64, 64, "M", 128, 128, "M", 256, 256, 256, "M", 512, 512, 512, "M", 512, 512, 512, "M"],
    "vgg19": [
        64,
        64,
        "M",
        128,
        128,
        "M",
        256,
        256,
        256,
        256,
        "M",
        512,
        512,
        512,
        512,
        "M",
        512,
        512,
        512,
        512,
        "M",
    ],
}


def make_layers(cfg: list) -> nn.Sequential:
    layers: list[nn.Module] = []
    in_channels = 3
    for v in cfg:
        if v == "M":
            layers.append(nn.MaxPool2d(kernel_size=2, stride=2))
        else:
            layers += [nn.Conv2d(in_channels, v, kernel_size=3, padding=1), nn.ReLU(inplace=True)]
            in_channels = v
    return nn.Sequential(*layers)


class VGG(nn.Module):
    """features -> AdaptiveAvgPool2d((7, 7)) -> flatten -> classifier (torchvision.models.VGG)."""

    def __init__(
        self, features: nn.Sequential, num_classes: int = 1000, init_weights: bool = True, dropout=0.5
    ):
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
        if init_weights:
            for m in self.modules():
                if isinstance(m, nn.Conv2d):
                    init.kaiming_normal_(m.weight, mode="fan_out", nonlinearity="relu")
                    if m.bias is not None:
                        init.constant_(m.bias, 0)
                elif isinstance(m, nn.Linear):
                    init.normal_(m.weight, 0, 0.01)
                    init.constant_(m.bias, 0)

    def forward(self, x: np.ndarray) -> np.ndarray:
        x = self.features(x)
        x = self.avgpool(x)
        x = x.reshape(x.shape[0], -1)
        return self.classifier(x)


def _vgg(name: str, num_classes: int, init_weights: bool = True, **kwargs) -> VGG:
    if not init_weights:
        return VGG(make_layers(cfgs[name]), num_classes=num_classes, init_weights=False, **kwargs)
    with init.skip_default_init():  # VGG's own init overwrites every weight anyway
        return VGG(make_layers(cfgs[name]), num_classes=num_classes, init_weights=True, **kwargs)


def vgg11(num_classes: int = 1000, **kwargs) -> VGG:
    """VGG 11-layer (configuration "A"), randomly initialised like torchvision."""
    return _vgg("vgg11", num_classes, **kwargs)


def vgg13(num_classes: int = 1000, **kwargs) -> VGG:
    """VGG 13-layer (configuration "B"), randomly initialised like torchvision."""
    return _vgg("vgg13", num_classes, **kwargs)


def vgg16(num_classes: int = 1000, **kwargs) -> VGG:
    """VGG 16-layer (configuration "D"), randomly initialised like torchvision."""
    return _vgg("vgg16", num_classes, **kwargs)


def vgg19(num_classes: int = 1000, **kwargs) -> VGG:
    """VGG 19-layer (configuration "E"), randomly initialised like torchvision."""
    return _vgg("vgg19", num_classes, **kwargs)
