"""The predictor: a constant model's grid and heatmap, synthetic surveys, real photos, bad input."""

from __future__ import annotations

import io
import json
import math

import numpy as np
import pytest
import torch
from PIL import Image

from models.backbones import build_classifier
from models.checkpoint import Checkpoint, load_checkpoint
from models.imageio import ImageDecodeError
from models.inference import InferenceConfig, Predictor, geojson, make_grid, render_overlay
from models.synthetic import make_survey
from tests.conftest import shared_data


def constant_checkpoint(bias: list[float], temperature: float = 1.0) -> Checkpoint:
    """A resnet18 whose head ignores the features: logits = bias for every tile."""
    torch.manual_seed(0)
    model = build_classifier("resnet18", len(bias))
    with torch.no_grad():
        model.head.weight.zero_()
        model.head.bias.copy_(torch.tensor(bias))
    classes = ["crack", "no_crack", "scratch"][: len(bias)]
    return Checkpoint(
        backbone="resnet18",
        classes=classes,
        defect_classes=["crack"],
        input_size=32,
        mean=[0.485, 0.456, 0.406],
        std=[0.229, 0.224, 0.225],
        model_state=model.state_dict(),
        temperature=temperature,
    )


def random_checkpoint(seed: int = 0, head_scale: float = 20.0) -> Checkpoint:
    """A randomly initialised resnet18 whose head reads the features: every tile differs.

    The head is scaled up so that the crack probabilities spread over (0, 1), not all ~0.5.
    """
    torch.manual_seed(seed)
    model = build_classifier("resnet18", 2)
    with torch.no_grad():
        model.head.weight.mul_(head_scale)
    ckpt = constant_checkpoint([0.0, 0.0])
    ckpt.model_state = model.state_dict()
    return ckpt


def test_constant_predictor_gives_the_expected_grid_and_heatmap():
    predictor = Predictor(
        constant_checkpoint([1.0, 0.0, -1.0], temperature=2.0), InferenceConfig(batch_size=5)
    )
    image = np.random.default_rng(0).integers(0, 256, (100, 150, 3), dtype=np.uint8)
    crack_map = predictor.inspect_array(image, tile=40, stride=20, threshold=0.3)
    grid = make_grid(100, 150, 40, 20)
    assert (crack_map.rows, crack_map.cols) == (grid.rows, grid.cols) == (4, 7)
    expected = torch.softmax(torch.tensor([1.0, 0.0, -1.0]) / 2.0, 0)  # the temperature is applied
    for t in crack_map.tiles():
        assert (t.y, t.x, t.h, t.w) == (grid.ys[t.row], grid.xs[t.col], 40, 40)
        assert t.probs["crack"] == pytest.approx(float(expected[0]), abs=1e-6)
        assert t.defect  # 0.51 >= 0.3
    assert crack_map.heatmap.shape == (5, 8)
    assert np.allclose(crack_map.heatmap, float(expected[0]), atol=1e-6)
    summary = crack_map.summary()
    assert summary["tiles"] == summary["defect_tiles"] == 28
    assert summary["defect_area_fraction"] == pytest.approx(1.0)
    assert summary["class_counts"] == {"crack": 28, "no_crack": 0, "scratch": 0}
    none = predictor.inspect_array(image, tile=40, stride=20, threshold=0.9)
    assert none.summary()["defect_tiles"] == 0 and none.summary()["defect_area_fraction"] == 0.0
    assert len(geojson(crack_map)["features"]) == 28


def test_overlay_is_a_png_with_a_legend():
    predictor = Predictor(constant_checkpoint([0.0, 1.0]))
    image = np.full((300, 500, 3), 128, dtype=np.uint8)
    crack_map = predictor.inspect_array(image, threshold=0.2)
    png = Image.open(io.BytesIO(render_overlay(image, crack_map)))
    assert (
        png.format == "PNG" and png.size[0] == 640 and png.size[1] > 300
    )  # widened for the legend


def test_bad_input_is_a_clear_error():
    predictor = Predictor(constant_checkpoint([0.0, 1.0]))
    with pytest.raises(ImageDecodeError):
        predictor.inspect_bytes(b"\xff\xd8\xff\xe0 truncated jpeg")
    with pytest.raises(ValueError, match="threshold"):
        predictor.inspect_array(np.zeros((40, 40, 3), np.uint8), threshold=1.5)
    with pytest.raises(ValueError, match="stride"):
        predictor.inspect_array(np.zeros((40, 40, 3), np.uint8), tile=32, stride=2)


def tile_f1(crack_map, mask: np.ndarray, min_pixels: int) -> tuple[float, int]:
    """Tile-level F of the crack class against labels from the mask; ambiguous tiles skipped."""
    tp = fp = fn = skipped = 0
    for t in crack_map.tiles():
        pixels = int((mask[t.y : t.y + t.h, t.x : t.x + t.w] > 0).sum())
        if 0 < pixels < min_pixels:
            skipped += 1
            continue
        truth = pixels >= min_pixels
        tp += truth and t.defect
        fp += (not truth) and t.defect
        fn += truth and not t.defect
    return (2 * tp / (2 * tp + fp + fn) if tp else 0.0), skipped


@pytest.mark.slow
def test_synthetic_survey_tile_f_at_least_0_9(synthetic_model):
    predictor = Predictor(load_checkpoint(synthetic_model.path), InferenceConfig(batch_size=64))
    photo, mask = make_survey(
        1440, 960, seed=11, cracks=10, crack_width=(1.5, 4.0), crack_length=(0.3, 0.6)
    )
    buffer = io.BytesIO()
    photo.save(buffer, format="PNG")
    crack_map = predictor.inspect_bytes(buffer.getvalue())
    assert crack_map.tile == 48 and len(crack_map.table) == 30 * 20
    # Rule: a tile is a crack tile when it holds at least as many crack pixels as a 2-px-wide
    # crack crossing it (2 x 48 = 96); a tile with none is not; a crack that only clips a
    # corner (1-95 pixels) is ambiguous and left out.
    f1, skipped = tile_f1(crack_map, mask, min_pixels=2 * 48)
    assert f1 >= 0.9, (f1, skipped)


@pytest.mark.shared_data
def test_crackforest_photos_produce_maps(tmp_path):
    folder = shared_data("cfd") / "image"
    predictor = Predictor(constant_checkpoint([0.0, 0.0]))
    photos = sorted(folder.glob("*.jpg"))[:5]
    assert photos, f"no photos in {folder}"
    for path in photos:
        crack_map = predictor.inspect_bytes(path.read_bytes(), tile=64, stride=32)
        assert (crack_map.width, crack_map.height) == (480, 320)
        assert len(crack_map.table) == crack_map.rows * crack_map.cols == 9 * 14
        assert math.isclose(crack_map.tiles()[0].probs["crack"], 0.5, abs_tol=1e-6)
        json.dumps(geojson(crack_map))
