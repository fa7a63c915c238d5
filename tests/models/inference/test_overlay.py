"""The overlay of photos whose tiles shrink under a pixel at preview scale (#27 item 6)."""

from __future__ import annotations

import io

import numpy as np
from PIL import Image

from models.inference import CrackMap, Predictor, make_grid, render_overlay
from models.inference.crackmap import cell_heatmap, heatmap_cell
from models.inference.overlay import LEGEND_HEIGHT, preview_box
from models.inference.tile_table import TileTable
from tests.models.inference.test_predictor import constant_checkpoint


def every_tile_a_defect(height: int, width: int, tile: int, stride: int) -> CrackMap:
    grid = make_grid(height, width, tile, stride)
    defect = np.full(len(grid), 0.9, dtype=np.float32)
    table = TileTable(
        grid=grid,
        classes=["crack", "no_crack"],
        defect_classes=["crack"],
        threshold=0.5,
        probs=np.stack([defect, 1 - defect], 1),
        defect_probs=defect,
    )
    cell = heatmap_cell(grid)
    return CrackMap(table, 32, cell_heatmap(grid, defect, cell), cell, model={})


def test_a_60000x200_panorama_gets_an_overlay_with_its_boxes():
    crack_map = every_tile_a_defect(200, 60000, 32, 16)  # 44,988 tiles, each 0.85 px wide
    png = Image.open(io.BytesIO(render_overlay(np.zeros((200, 60000, 3), np.uint8), crack_map)))
    assert png.size == (1600, 5 + LEGEND_HEIGHT)
    picture = np.asarray(png.convert("RGB"))[:5]
    red = (picture[..., 0] == 255) & (picture[..., 1] == 0) & (picture[..., 2] == 0)
    assert red.all()  # every tile is a defect: its outline covers every preview pixel


def test_a_box_is_at_least_one_preview_pixel_and_inside_the_preview():
    scale = 1600 / 60000
    for x, w in ((0, 32), (59968, 32), (12345, 8), (100, 4000)):
        x0, y0, x1, y1 = preview_box(x, 0, w, 200, scale)
        assert 0 <= x0 <= x1 < 1600 and 0 <= y0 <= y1 < round(200 * scale) + 1
        assert x1 - x0 + 1 >= max(1, int(w * scale))
    assert preview_box(0, 0, 64, 64, 1.0) == (0, 0, 63, 63)  # unscaled: the tile's own pixels


def test_a_long_panorama_is_mapped_and_overlaid_by_the_predictor():
    predictor = Predictor(constant_checkpoint([2.0, 0.0]))
    image = np.full((8, 16000, 3), 90, dtype=np.uint8)  # tile 8 -> 0.8 px at preview scale
    crack_map = predictor.inspect_array(image, tile=8)
    assert len(crack_map.table) == 2000 and crack_map.summary()["defect_tiles"] == 2000
    png = Image.open(io.BytesIO(render_overlay(image, crack_map)))
    assert png.format == "PNG" and png.size[0] == 1600
