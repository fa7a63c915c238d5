"""`crackscan inspect` writes a valid crackmap.json, overlay.png and defects.geojson per image."""

from __future__ import annotations

import json
import subprocess
import sys

import numpy as np
from PIL import Image

from app.schemas.crackmap import SCHEMA_VERSION, CrackMapRead
from models.checkpoint import save_checkpoint
from tests.models.inference.test_predictor import constant_checkpoint


def test_inspect_writes_maps_and_reports_bad_files(tmp_path):
    model = tmp_path / "constant.ckpt"
    save_checkpoint(constant_checkpoint([2.0, 0.0]), model)
    photo = tmp_path / "wall.jpg"
    Image.fromarray(np.random.default_rng(0).integers(0, 255, (200, 300, 3), dtype=np.uint8)).save(
        photo
    )
    broken = tmp_path / "broken.png"
    broken.write_bytes(b"\x89PNG not really")
    out = tmp_path / "maps"
    done = subprocess.run(
        [
            sys.executable,
            "-m",
            "app.cli",
            "inspect",
            str(photo),
            str(broken),
            "--model",
            str(model),
            "--tile",
            "64",
            "--stride",
            "32",
            "--threshold",
            "0.6",
            "--out",
            str(out),
        ],
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert done.returncode == 1  # one image failed, the other was mapped
    assert "broken.png: error: not a readable image" in done.stderr
    document = CrackMapRead.model_validate_json((out / "wall" / "crackmap.json").read_text())
    assert document.schema_version == SCHEMA_VERSION
    assert (document.tiling.tile, document.tiling.stride) == (64, 32)
    assert len(document.tiles) == document.tiling.rows * document.tiling.cols == 6 * 9
    assert document.summary.defect_tiles == 54  # p(crack) = 0.88 >= 0.6 everywhere
    assert document.model.content_hash and document.model.backbone == "resnet18"
    tile = document.tiles[0].model_dump()
    assert {"row", "col", "x", "y", "w", "h", "probs", "defect"} <= set(tile)
    assert Image.open(out / "wall" / "overlay.png").format == "PNG"
    features = json.loads((out / "wall" / "defects.geojson").read_text())["features"]
    assert len(features) == 54
