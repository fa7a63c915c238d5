"""The compact tile table and the array maths of the crack map, against per-pixel references."""

from __future__ import annotations

import io
import time

import numpy as np
import pytest

from models.inference import TileTable, cell_heatmap, heatmap_cell, make_grid
from models.inference.crackmap import CrackMap, defect_area_fraction


def random_table(height: int, width: int, tile: int, stride: int, seed: int = 0) -> TileTable:
    grid = make_grid(height, width, tile, stride)
    rng = np.random.default_rng(seed)
    crack = rng.beta(0.5, 0.5, len(grid)).astype(np.float32)
    probs = np.stack([crack, 1 - crack], axis=1)
    return TileTable(grid, ["crack", "no_crack"], ["crack"], 0.5, probs, probs[:, 0].copy())


def painted(table: TileTable) -> np.ndarray:
    """(H, W) bool: pixels under at least one defect tile, painted tile by tile."""
    grid = table.grid
    image = np.zeros((grid.height, grid.width), dtype=bool)
    for t in table.tiles(table.select(defect=True)):
        image[t.y : t.y + t.h, t.x : t.x + t.w] = True
    return image


def looped_heatmap(table: TileTable, cell: int) -> np.ndarray:
    """The heatmap as a loop over tiles, in float64: the reference for the array version."""
    grid = table.grid
    ny, nx = -(-grid.height // cell), -(-grid.width // cell)
    total, count = np.zeros((ny, nx)), np.zeros((ny, nx))
    for t in table.tiles():
        rows = slice(t.y // cell, -(-(t.y + t.h) // cell))
        cols = slice(t.x // cell, -(-(t.x + t.w) // cell))
        total[rows, cols] += t.defect_prob
        count[rows, cols] += 1
    return total / np.maximum(count, 1)


@pytest.mark.parametrize(
    ("height", "width", "tile", "stride", "cell"),
    [(97, 131, 32, 16, 16), (97, 131, 32, 11, 7), (40, 300, 64, 48, 48), (64, 64, 64, 64, 64)],
)
def test_array_maths_match_the_per_tile_and_per_pixel_references(height, width, tile, stride, cell):
    table = random_table(height, width, tile, stride)
    assert defect_area_fraction(table) == pytest.approx(painted(table).mean(), abs=1e-12)
    heat = cell_heatmap(table.grid, table.defect_probs, cell)
    assert np.allclose(heat, looped_heatmap(table, cell), atol=1e-6)


def test_summary_counts_each_tile_once():
    table = random_table(97, 131, 32, 16, seed=3)
    grid = table.grid
    crack_map = CrackMap(table, 32, cell_heatmap(grid, table.defect_probs, 16), 16, {})
    summary = crack_map.summary()
    tiles = crack_map.tiles()
    assert summary["tiles"] == len(tiles) == grid.rows * grid.cols
    assert summary["defect_tiles"] == sum(t.defect for t in tiles)
    assert summary["class_counts"]["crack"] == sum(
        t.probs["crack"] > t.probs["no_crack"] for t in tiles
    )
    assert summary["max_defect_prob"] == pytest.approx(max(t.defect_prob for t in tiles))


def test_tiles_lie_where_the_grid_puts_them_and_select_filters():
    table = random_table(97, 131, 32, 16, seed=1)
    grid = table.grid
    for index, t in enumerate(table.tiles()):
        assert (t.row, t.col, t.y, t.x) == grid.position(index)
        assert (t.w, t.h) == (32, 32) and t.defect == (t.defect_prob >= 0.5)
    picked = table.select(defect=True, min_prob=0.8)
    assert all(table.tile(int(i)).defect_prob >= 0.8 for i in picked)
    assert len(picked) == int((table.defect_probs >= 0.8).sum())
    assert len(table.select(defect=False)) + len(table.select(defect=True)) == len(table)


def npy_bytes() -> bytes:
    buffer = io.BytesIO()
    np.save(buffer, np.zeros(3))
    return buffer.getvalue()


def npz_bytes(**arrays: np.ndarray) -> bytes:
    buffer = io.BytesIO()
    np.savez(buffer, **arrays)
    return buffer.getvalue()


def test_npz_round_trip_is_exact_and_junk_is_refused():
    table = random_table(97, 131, 32, 16, seed=2)
    back = TileTable.from_npz(table.to_npz())
    assert back.grid == table.grid and back.classes == table.classes
    assert back.defect_classes == ["crack"] and back.threshold == 0.5
    assert np.array_equal(back.probs, table.probs)
    assert np.array_equal(back.defect_probs, table.defect_probs)
    for junk in (b"not an npz archive", b"", npy_bytes(), npz_bytes(probs=np.zeros(3))):
        with pytest.raises(ValueError, match="tile table"):
            TileTable.from_npz(junk)
    with pytest.raises(ValueError, match="need probs"):
        TileTable(table.grid, ["crack"], ["crack"], 0.5, table.probs, table.defect_probs)


def test_a_quarter_million_tiles_stay_compact_and_quick():
    """The tile cap's worth of tiles: arrays, not objects; a small archive; a bounded heatmap."""
    table = random_table(4000, 4000, 16, 8, seed=4)  # 499 x 499 = 249,001 tiles
    assert len(table) == 499 * 499
    started = time.perf_counter()
    cell = heatmap_cell(table.grid)
    heat = cell_heatmap(table.grid, table.defect_probs, cell)
    crack_map = CrackMap(table, 16, heat, cell, {})
    summary = crack_map.summary()
    data = table.to_npz()
    seconds = time.perf_counter() - started
    assert heat.size <= 65_536 and cell > table.grid.stride
    assert summary["tiles"] == len(table)
    assert len(data) < 4 << 20, len(data)  # 2 float32 + 1 per tile, compressed
    assert seconds < 10, seconds
    assert TileTable.from_npz(data).probs.shape == (len(table), 2)
