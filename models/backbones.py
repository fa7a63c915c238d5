"""Backbone registry: torchvision CNNs split into a feature extractor and a linear head.

The features are what ISDA and IGMSDA augment: a = M_e(x), shape (N, F), taken
after the last ReLU and global average pooling; logits z = W a + b, shape (N, C).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import torch
import torchvision
from torch import nn


@dataclass(frozen=True)
class BackboneSpec:
    """What the registry knows about one backbone."""

    name: str
    feature_dim: int
    split: Callable[[nn.Module], nn.Module]
    cpu_friendly: bool


def _split_resnet(net: nn.Module) -> nn.Module:
    children = [m for name, m in net.named_children() if name != "fc"]
    return nn.Sequential(*children, nn.Flatten(1))


def _split_pooled(net: nn.Module) -> nn.Module:
    """VGG, MobileNetV3, EfficientNet: conv features, then global average pooling."""
    features = net.get_submodule("features")
    return nn.Sequential(features, nn.AdaptiveAvgPool2d(1), nn.Flatten(1))


_SPECS = {
    spec.name: spec
    for spec in (
        BackboneSpec("resnet18", 512, _split_resnet, True),
        BackboneSpec("resnet34", 512, _split_resnet, True),
        BackboneSpec("resnet50", 2048, _split_resnet, False),
        BackboneSpec("vgg16", 512, _split_pooled, False),
        BackboneSpec("vgg16_bn", 512, _split_pooled, False),
        BackboneSpec("mobilenet_v3_small", 576, _split_pooled, True),
        BackboneSpec("mobilenet_v3_large", 960, _split_pooled, True),
        BackboneSpec("efficientnet_b0", 1280, _split_pooled, True),
    )
}

BACKBONES: tuple[str, ...] = tuple(_SPECS)


def backbone_spec(name: str) -> BackboneSpec:
    """Look a backbone up by name; ValueError lists the known ones."""
    try:
        return _SPECS[name]
    except KeyError:
        raise ValueError(
            f"unknown backbone {name!r}; choose one of {', '.join(BACKBONES)}"
        ) from None


class Classifier(nn.Module):
    """Feature extractor M_e plus linear head M_c.

    forward_features: (N, 3, H, W) -> (N, F).  forward: (N, 3, H, W) -> (N, C) logits.
    """

    def __init__(self, backbone: str, extractor: nn.Module, feature_dim: int, num_classes: int):
        super().__init__()
        if num_classes < 2:
            raise ValueError(f"num_classes must be >= 2, got {num_classes}")
        self.backbone = backbone
        self.feature_dim = feature_dim
        self.num_classes = num_classes
        self.extractor = extractor
        self.head = nn.Linear(feature_dim, num_classes)

    def forward_features(self, x: torch.Tensor) -> torch.Tensor:
        return self.extractor(x)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.extractor(x))


def _torchvision_model(name: str, weights: str | Path | None) -> nn.Module:
    """Build the torchvision network: random, ImageNet weights enum, or a local weights file."""
    if weights is None:
        return torchvision.models.get_model(name, weights=None)
    if str(weights).lower() in ("imagenet", "default"):
        enum = torchvision.models.get_model_weights(name)
        return torchvision.models.get_model(name, weights=enum.DEFAULT)
    path = Path(weights)
    if not path.is_file():
        raise ValueError(
            f"weights must be None, 'imagenet' or a weights file; {path} does not exist"
        )
    net = torchvision.models.get_model(name, weights=None)
    state = torch.load(path, map_location="cpu", weights_only=True)
    if isinstance(state, dict) and "state_dict" in state:
        state = state["state_dict"]
    try:
        net.load_state_dict(state)
    except RuntimeError as exc:
        raise ValueError(f"{path} is not a torchvision {name} state_dict: {exc}") from exc
    return net


def build_classifier(name: str, num_classes: int, weights: str | Path | None = None) -> Classifier:
    """Build a registered backbone with a fresh (F -> num_classes) head.

    Args:
        name: one of BACKBONES.
        num_classes: C >= 2.
        weights: None (random init), "imagenet" (torchvision's weights enum; needs
            the internet or a warm torch hub cache), or a path to a torchvision
            ImageNet state_dict file.
    """
    spec = backbone_spec(name)
    net = _torchvision_model(name, weights)
    return Classifier(name, spec.split(net), spec.feature_dim, num_classes)
