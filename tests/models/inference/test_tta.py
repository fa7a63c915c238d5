"""Test-time augmentation: the views, their average, and maps with and without it."""

from __future__ import annotations

import io

import numpy as np
import pytest
import torch
from PIL import Image
from torch import nn

from models.inference import InferenceConfig, Predictor
from models.inference.tta import TTA_MODES, VIEWS_PER_TILE, averaged, views
from tests.models.inference.test_predictor import random_checkpoint


def test_views_are_the_square_symmetries():
    batch = torch.arange(2 * 3 * 4 * 4, dtype=torch.float64).reshape(2, 3, 4, 4)
    for mode in TTA_MODES:
        copies = views(batch, mode)
        assert len(copies) == VIEWS_PER_TILE[mode]
        assert torch.equal(copies[0], batch)
        distinct = {tuple(c[0, 0].flatten().tolist()) for c in copies}
        assert len(distinct) == len(copies)  # no view twice
    d4 = views(batch, "d4")
    # Closed under the group: each view of a view is one of the views.
    keys = {tuple(c.flatten().tolist()) for c in d4}
    for c in d4:
        for again in views(c, "d4"):
            assert tuple(again.flatten().tolist()) in keys
    with pytest.raises(ValueError, match="tta must be one of"):
        views(batch, "rot")


def test_the_average_is_the_mean_over_views_by_hand():
    g = torch.Generator().manual_seed(0)
    weights = torch.randn(3 * 5 * 5, 2, generator=g, dtype=torch.float64)

    def probs(x: torch.Tensor) -> torch.Tensor:
        return torch.softmax(x.double().flatten(1) @ weights, 1)

    batch = torch.randint(0, 256, (4, 3, 5, 5), generator=g, dtype=torch.uint8)
    by_hand = sum(
        probs(torch.rot90(b, k, (-2, -1))) for b in (batch, batch.flip(-1)) for k in range(4)
    )
    torch.testing.assert_close(averaged(probs, batch, "d4").double(), by_hand / 8)
    by_hand = (probs(batch) + probs(batch.flip(-1))) / 2
    torch.testing.assert_close(averaged(probs, batch, "flip").double(), by_hand)
    torch.testing.assert_close(averaged(probs, batch, "none"), probs(batch))


def _photo_bytes(seed: int, size: tuple[int, int] = (160, 96)) -> bytes:
    rng = np.random.default_rng(seed)
    pixels = rng.integers(0, 256, (size[1], size[0], 3), dtype=np.uint8)
    buffer = io.BytesIO()
    Image.fromarray(pixels).save(buffer, format="PNG")
    return buffer.getvalue()


def test_an_invariant_model_maps_the_same_with_every_tta():
    checkpoint = random_checkpoint()
    predictor = Predictor(checkpoint, InferenceConfig(device="cpu", cpu_bf16=False))
    # Mean colour -> linear: invariant to every flip and rotation of the tile.
    torch.manual_seed(0)
    predictor.model = nn.Sequential(nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(3, 2)).eval()
    data = _photo_bytes(1)
    plain = predictor.inspect_bytes(data)
    for mode in ("flip", "d4"):
        mapped = predictor.inspect_bytes(data, tta=mode)
        np.testing.assert_allclose(mapped.table.probs, plain.table.probs, atol=1e-6)
        assert mapped.model["tta"] == mode
    assert plain.model["tta"] == "none"


def test_tta_changes_a_model_that_is_not_invariant_and_groups_requests_by_mode():
    from models.inference import PhotoRequest

    predictor = Predictor(random_checkpoint(), InferenceConfig(device="cpu", cpu_bf16=False))
    data = _photo_bytes(2)
    plain = predictor.inspect_bytes(data)
    d4 = predictor.inspect_bytes(data, tta="d4")
    assert not np.allclose(d4.table.probs, plain.table.probs, atol=1e-4)
    mixed = predictor.map_photos(
        [PhotoRequest(data, tta="d4"), PhotoRequest(data), PhotoRequest(b"not a photo", tta="flip")]
    )
    assert not isinstance(mixed[0], Exception) and not isinstance(mixed[1], Exception)
    np.testing.assert_allclose(mixed[0].crack_map.table.probs, d4.table.probs, atol=1e-5)
    np.testing.assert_allclose(mixed[1].crack_map.table.probs, plain.table.probs, atol=1e-5)
    assert isinstance(mixed[2], ValueError)
    configured = Predictor(
        random_checkpoint(), InferenceConfig(device="cpu", cpu_bf16=False, tta="flip")
    )
    assert configured.inspect_bytes(data).model["tta"] == "flip"
    with pytest.raises(ValueError, match="tta must be one of"):
        InferenceConfig(tta="d8")
