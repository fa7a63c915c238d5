"""The checkpoint file: round trip, weights_only, content hash, and clear errors."""

from __future__ import annotations

import pytest
import torch

from models.backbones import build_classifier
from models.checkpoint import (
    Checkpoint,
    CheckpointError,
    load_checkpoint,
    save_checkpoint,
    to_bytes,
)
from models.losses import ClassCovariance


def make_checkpoint() -> Checkpoint:
    torch.manual_seed(0)
    model = build_classifier("mobilenet_v3_small", 3)
    est = ClassCovariance(3, model.feature_dim, diagonal=True)
    est.update(torch.randn(6, model.feature_dim), torch.tensor([0, 1, 2, 0, 1, 2]))
    return Checkpoint(
        backbone="mobilenet_v3_small",
        classes=["crack", "no_crack", "scratch"],
        defect_classes=["crack"],
        input_size=64,
        mean=[0.5, 0.5, 0.5],
        std=[0.25, 0.25, 0.25],
        model_state=model.state_dict(),
        temperature=0.4,
        estimator_state=est.state_dict(),
        config={"loss": "igmsda", "lam0": 0.5, "alpha0": 2.5},
        metrics={"test": {"macro_f1": 0.9, "per_class": {"crack": {"f1": 0.8}}}},
        history=[{"epoch": 1, "train_loss": 0.7}],
    )


def test_round_trip_and_weights_only(tmp_path):
    ckpt = make_checkpoint()
    path = tmp_path / "m.ckpt"
    digest = save_checkpoint(ckpt, path)
    raw = torch.load(path, weights_only=True)  # no pickled code inside
    assert raw["format"] == "crackscan.checkpoint" and raw["format_version"] == 1
    loaded = load_checkpoint(path)
    assert loaded.content_hash == digest == ckpt.compute_hash()
    assert loaded.classes == ckpt.classes and loaded.defect_classes == ["crack"]
    assert loaded.temperature == 0.4 and loaded.input_size == 64
    assert loaded.config == ckpt.config and loaded.metrics == ckpt.metrics
    torch.testing.assert_close(loaded.estimator_state["cov"], ckpt.estimator_state["cov"])
    model = loaded.build_model()
    x = torch.randn(1, 3, 64, 64)
    reference = build_classifier("mobilenet_v3_small", 3)
    reference.load_state_dict(ckpt.model_state)
    torch.testing.assert_close(model(x), reference.eval()(x))
    assert load_checkpoint(to_bytes(ckpt)).content_hash == digest


def test_not_a_checkpoint_is_a_clear_error(tmp_path):
    junk = tmp_path / "junk.ckpt"
    junk.write_bytes(b"definitely not torch")
    with pytest.raises(CheckpointError, match="not a crackscan checkpoint"):
        load_checkpoint(junk)
    other = tmp_path / "other.pt"
    torch.save({"weights": torch.zeros(2)}, other)
    with pytest.raises(CheckpointError, match="marker"):
        load_checkpoint(other)
    with pytest.raises(FileNotFoundError):
        load_checkpoint(tmp_path / "missing.ckpt")


def test_tampered_weights_fail_the_hash(tmp_path):
    ckpt = make_checkpoint()
    path = tmp_path / "m.ckpt"
    save_checkpoint(ckpt, path)
    payload = torch.load(path, weights_only=True)
    key = next(iter(payload["model_state"]))
    payload["model_state"][key] = payload["model_state"][key] + 1
    torch.save(payload, path)
    with pytest.raises(CheckpointError, match="hash"):
        load_checkpoint(path)


def odd_checkpoints() -> dict[str, tuple[Checkpoint, str]]:
    """Checkpoints with a sound hash and format whose contents cannot be mapped with (#27
    item 17), each with words its refusal must hold."""
    from tests.models.inference.test_predictor import constant_checkpoint

    def odd(**change: object) -> Checkpoint:
        ckpt = constant_checkpoint([1.0, 0.0])
        for key, value in change.items():
            setattr(ckpt, key, value)
        return ckpt

    other = build_classifier("mobilenet_v3_small", 2).state_dict()
    return {
        "temperature 0": (odd(temperature=0.0), "temperature"),
        "temperature inf": (odd(temperature=float("inf")), "temperature"),
        "threshold NaN": (odd(threshold=float("nan")), "threshold"),
        "threshold 1.5": (odd(threshold=1.5), "threshold"),
        "input size 100000": (odd(input_size=100_000), "input size"),
        "input size 0": (odd(input_size=0), "input size"),
        "weights of another backbone": (odd(model_state=other), "do not fit a resnet18"),
        "a head for 3 classes": (odd(classes=["crack", "no_crack", "scratch"]), "another shape"),
        "unknown backbone": (odd(backbone="vgg99"), "backbone"),
        "one class": (odd(classes=["crack"]), "two distinct"),
        "a class that is a path": (odd(classes=["../x", "no_crack"]), "class name"),
        "defect class not a class": (odd(defect_classes=["rust"]), "defect classes"),
        "std 0": (odd(std=[0.0, 0.2, 0.2]), "std"),
        "tile_px 1": (odd(tile_px=1), "tile_px"),
    }


@pytest.mark.parametrize("case", list(odd_checkpoints()))
def test_an_odd_checkpoint_is_refused_on_load(tmp_path, case):
    ckpt, words = odd_checkpoints()[case]
    path = tmp_path / "odd.ckpt"
    save_checkpoint(ckpt, path)
    with pytest.raises(CheckpointError, match=words):
        load_checkpoint(path)
