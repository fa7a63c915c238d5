"""Sliding-window inference: intake, tiling, the predictor, crack maps and overlays."""

from models.inference.crackmap import CrackMap, cell_heatmap, geojson, geojson_of, heatmap_cell
from models.inference.inspection_grid import inspection_grid
from models.inference.intake import (
    DEFAULT_MAX_PIXELS,
    ImageTooLargeError,
    check_complete,
    open_image,
    oriented_size,
    probe,
    read_image,
)
from models.inference.overlay import render_overlay
from models.inference.predictor import InferenceConfig, MappedPhoto, PhotoRequest, Predictor
from models.inference.tile_table import TileResult, TileTable
from models.inference.tiling import TileGrid, axis_starts, make_grid, tile_batches

__all__ = [
    "DEFAULT_MAX_PIXELS",
    "CrackMap",
    "ImageTooLargeError",
    "InferenceConfig",
    "MappedPhoto",
    "PhotoRequest",
    "Predictor",
    "TileGrid",
    "TileResult",
    "TileTable",
    "axis_starts",
    "check_complete",
    "cell_heatmap",
    "geojson",
    "geojson_of",
    "heatmap_cell",
    "inspection_grid",
    "make_grid",
    "open_image",
    "oriented_size",
    "probe",
    "read_image",
    "render_overlay",
    "tile_batches",
]
