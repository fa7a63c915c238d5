"""Survey augmentations: seeded, exactly reproducible, and the right kind of change."""

from __future__ import annotations

import pytest
import torch

from models.data import epoch_batches
from models.data.augment import check_augment, survey_augment


def _tiles(n: int = 16, size: int = 32) -> torch.Tensor:
    g = torch.Generator().manual_seed(0)
    return torch.randint(40, 200, (n, 3, size, size), generator=g, dtype=torch.uint8)


def test_same_generator_same_batches_other_seed_other_batches():
    images, labels = _tiles(), torch.arange(16) % 2

    def run(seed):
        return [
            b
            for b, _ in epoch_batches(
                images, labels, 8, torch.Generator().manual_seed(seed), "survey"
            )
        ]

    first, again, other = run(5), run(5), run(6)
    assert all(torch.equal(a, b) for a, b in zip(first, again, strict=True))
    assert not all(torch.equal(a, b) for a, b in zip(first, other, strict=True))
    assert first[0].dtype == torch.uint8 and first[0].shape == (8, 3, 32, 32)


def test_labels_follow_their_tiles():
    images = _tiles()
    labels = torch.arange(16)
    for batch, y in epoch_batches(images, labels, 4, torch.Generator().manual_seed(1), "none"):
        assert torch.equal(batch, images[y])


def test_survey_changes_geometry_and_colour_within_bounds():
    images = _tiles(64)
    out = survey_augment(images, torch.Generator().manual_seed(2))
    assert not torch.equal(out, images)
    ratio = out.double().mean((1, 2, 3)) / images.double().mean((1, 2, 3))
    assert float(ratio.min()) > 0.5 and float(ratio.max()) < 1.6


def test_flip_mode_matches_the_papers_recipe_draws():
    """`flip` draws the order and then one flip per tile, as the recorded studies did."""
    images, labels = _tiles(), torch.arange(16)
    g = torch.Generator().manual_seed(3)
    order = torch.randperm(16, generator=g)
    flips = torch.rand(16, generator=g) < 0.5
    batches = list(epoch_batches(images, labels, 16, torch.Generator().manual_seed(3), "flip"))
    want = images[order].clone()
    want[flips[order]] = want[flips[order]].flip(-1)
    assert torch.equal(batches[0][0], want)


def test_unknown_mode_is_refused():
    with pytest.raises(ValueError, match="augment must be one of"):
        check_augment("mixup")
