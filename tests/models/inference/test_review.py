"""Picking tiles to label: ranked by margin, spread out, labelled ones skipped; crops as inference sees them."""

from __future__ import annotations

import numpy as np
import pytest
from PIL import Image

from models.inference import tile_batches
from models.inference.review import pick_for_review, review_order, tile_crop
from tests.models.inference.test_tile_table import random_table


def overlaps(table, a: int, b: int) -> bool:  # type: ignore[no-untyped-def]
    _, _, ya, xa = table.grid.position(a)
    _, _, yb, xb = table.grid.position(b)
    return abs(ya - yb) < table.grid.tile_h and abs(xa - xb) < table.grid.tile_w


def test_uncertainty_takes_the_smallest_margins_that_do_not_overlap():
    table = random_table(300, 400, 32, 8, seed=5)  # stride tile/4: each tile overlaps 48 others
    picked = pick_for_review(table, 12, "uncertainty", threshold=0.3)
    assert len(picked) == 12
    assert not any(overlaps(table, a, b) for i, a in enumerate(picked) for b in picked[i + 1 :])
    margins = np.abs(table.defect_probs.astype(np.float64) - 0.3)
    assert picked[0] == int(np.argmin(margins))
    # greedy: every tile with a smaller margin than the last pick was taken or overlaps a pick
    for index in np.flatnonzero(margins < margins[picked[-1]]):
        assert index in picked or any(overlaps(table, int(index), p) for p in picked)


def test_labelled_tiles_are_skipped_and_random_is_seeded():
    table = random_table(300, 400, 32, 16, seed=6)
    first = pick_for_review(table, 5)
    labelled = {table.grid.position(i)[:2] for i in first}
    again = pick_for_review(table, 5, labelled=labelled)
    assert not set(first) & set(again) and len(again) == 5
    one = pick_for_review(table, 8, "random", seed=3)
    assert (
        one
        == pick_for_review(table, 8, "random", seed=3)
        != pick_for_review(table, 8, "random", seed=4)
    )
    probs = table.defect_probs
    assert sorted(review_order(probs, "random", 0.5, seed=1)) == list(range(len(table)))
    mixed = review_order(probs, "mixed", 0.5, seed=1)
    assert sorted(mixed) == list(range(len(table)))  # every tile once
    halves = set(review_order(probs, "uncertainty", 0.5)[:5]) | set(
        review_order(probs, "random", 0.5, seed=1)[:5]
    )
    assert set(mixed[: len(halves)]) == halves  # five of each lead, interleaved
    with pytest.raises(ValueError, match="strategy"):
        pick_for_review(table, 3, "entropy")


@pytest.mark.parametrize(("tile", "size"), [(48, 32), (16, 32), (32, 32)])
def test_a_crop_is_the_tile_inference_fed_the_network(tile, size):
    rng = np.random.default_rng(0)
    photo = Image.fromarray(rng.integers(0, 255, (100, 130, 3), dtype=np.uint8))
    table = random_table(100, 130, tile, tile // 2)
    batches = list(tile_batches(photo, table.grid, len(table), size))
    assert len(batches) == 1
    fed = batches[0][1]
    for index in (0, len(table) // 2, len(table) - 1):
        row, col, _, _ = table.grid.position(index)
        crop = np.asarray(tile_crop(photo, table.grid, row, col, size))
        assert np.array_equal(crop, fed[index].permute(1, 2, 0).numpy())
    with pytest.raises(ValueError, match="outside"):
        tile_crop(photo, table.grid, table.grid.rows, 0, size)
