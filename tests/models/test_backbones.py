"""Every registered backbone: forward and backward on tiny inputs, features of the stated size."""

from __future__ import annotations

import pytest
import torch

from models.backbones import BACKBONES, backbone_spec, build_classifier


@pytest.mark.parametrize("name", BACKBONES)
def test_backbone_splits_into_features_and_head(name):
    torch.manual_seed(0)
    model = build_classifier(name, num_classes=3)
    x = torch.randn(2, 3, 32, 32)
    feats = model.forward_features(x)
    assert feats.shape == (2, backbone_spec(name).feature_dim) == (2, model.feature_dim)
    logits = model.head(feats)
    assert logits.shape == (2, 3)
    logits.sum().backward()
    assert model.head.weight.grad is not None


def test_unknown_backbone_and_missing_weights_are_clear_errors(tmp_path):
    with pytest.raises(ValueError, match="resnet18"):
        build_classifier("alexnet9000", 2)
    with pytest.raises(ValueError, match="does not exist"):
        build_classifier("resnet18", 2, weights=tmp_path / "missing.pth")


def test_local_weights_file_is_loaded(tmp_path):
    import torchvision

    net = torchvision.models.resnet18()
    path = tmp_path / "resnet18.pth"
    torch.save(net.state_dict(), path)
    model = build_classifier("resnet18", 2, weights=path)
    torch.testing.assert_close(model.extractor[0].weight, net.conv1.weight)
    bad = tmp_path / "bad.pth"
    torch.save({"nope": torch.zeros(1)}, bad)
    with pytest.raises(ValueError, match="state_dict"):
        build_classifier("resnet18", 2, weights=bad)
