"""Tiling properties over many sizes and strides, and exact reconstruction by an identity predictor."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from models.inference import axis_starts, cell_heatmap, make_grid, tile_batches


@st.composite
def layouts(draw):
    tile = draw(st.integers(8, 300))
    stride = draw(st.integers(-(-tile // 4), tile))
    height = draw(st.integers(1, 2500))
    width = draw(st.integers(1, 2500))
    return height, width, tile, stride


@settings(max_examples=300, deadline=None)
@given(layouts())
def test_every_pixel_covered_every_tile_inside_and_grid_consistent(layout):
    height, width, tile, stride = layout
    grid = make_grid(height, width, tile, stride)
    assert len(grid) == grid.rows * grid.cols
    for length, starts, extent in ((height, grid.ys, grid.tile_h), (width, grid.xs, grid.tile_w)):
        assert extent == min(tile, length)
        assert (
            starts[0] == 0 and starts[-1] + extent == length
        )  # first flush left, last flush right
        assert all(s >= 0 and s + extent <= length for s in starts)  # inside the image
        assert all(0 < b - a <= stride for a, b in zip(starts, starts[1:], strict=False))  # no gaps
        assert list(starts) == sorted(set(starts))
    for index in range(0, len(grid), max(1, len(grid) // 7)):
        row, col, y, x = grid.position(index)
        assert (y, x) == (grid.ys[row], grid.xs[col]) and index == row * grid.cols + col


def test_axis_starts_examples():
    assert axis_starts(10, 4, 4) == [0, 4, 6]
    assert axis_starts(8, 4, 2) == [0, 2, 4]
    assert axis_starts(3, 4, 4) == [0]
    with pytest.raises(ValueError):
        make_grid(100, 100, 64, 8)  # more than 75% overlap
    with pytest.raises(ValueError):
        make_grid(100, 100, 64, 65)  # gaps between tiles


@pytest.mark.parametrize(
    "shape, tile, stride", [((70, 101), 16, 16), ((70, 101), 16, 5), ((33, 40), 32, 8)]
)
def test_identity_predictor_reproduces_the_image_exactly(shape, tile, stride):
    rng = np.random.default_rng(0)
    image = torch.from_numpy(rng.integers(0, 256, (3, *shape), dtype=np.uint8))
    grid = make_grid(shape[0], shape[1], tile, stride)
    rebuilt = torch.zeros_like(image)
    seen = torch.zeros(shape, dtype=torch.bool)
    for first, batch in tile_batches(image, grid, batch_size=7, input_size=tile):
        assert batch.shape[0] <= 7 and batch.shape[1:] == (3, tile, tile)
        for k in range(batch.shape[0]):
            _, _, y, x = grid.position(first + k)
            assert torch.equal(batch[k], image[:, y : y + tile, x : x + tile])
            rebuilt[:, y : y + tile, x : x + tile] = batch[k]
            seen[y : y + tile, x : x + tile] = True
    assert bool(seen.all()) and torch.equal(rebuilt, image)


def test_small_images_become_one_resized_tile():
    image = torch.full((3, 9, 13), 77, dtype=torch.uint8)
    grid = make_grid(9, 13, 32)
    assert len(grid) == 1 and (grid.tile_h, grid.tile_w) == (9, 13)
    ((first, batch),) = list(tile_batches(image, grid, 4, 32))
    assert first == 0 and batch.shape == (1, 3, 32, 32) and bool((batch == 77).all())


def test_heatmap_averages_overlapping_tiles():
    grid = make_grid(16, 16, 8, 4)  # 3 x 3 tiles, 4 x 4 cells of 4 px
    values = np.arange(9, dtype=np.float64)
    heat = cell_heatmap(grid, values, 4)
    assert heat.shape == (4, 4)
    assert heat[0, 0] == 0  # only tile (0, 0)
    assert heat[1, 1] == pytest.approx(np.mean([0, 1, 3, 4]))  # four tiles overlap
    assert heat[3, 3] == 8
    constant = cell_heatmap(grid, np.full(9, 0.3), 4)
    assert np.allclose(constant, 0.3)
