"""`crackscan inspect`: crack maps of survey photos, written as crackmap.json and overlay.png."""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any

from app.cli.progress import TileBar


def register(sub: Any) -> None:
    p = sub.add_parser("inspect", help="map the cracks in survey photos")
    p.add_argument("images", type=Path, nargs="+", help="JPEG, PNG or TIFF files")
    p.add_argument("--model", type=Path, required=True, help="a crackscan checkpoint")
    p.add_argument(
        "--tile",
        type=int,
        default=None,
        help="tile size in px (default: the model's training tile, else its input size)",
    )
    p.add_argument(
        "--stride",
        type=int,
        default=None,
        help="step between tiles (default: tile/2 for a model trained on masks, else the tile)",
    )
    p.add_argument(
        "--threshold",
        type=float,
        default=None,
        help="defect probability threshold (default: the model's operating threshold)",
    )
    p.add_argument(
        "--batch-size",
        type=int,
        default=None,
        help="tiles per forward pass (default: 32 on the CPU, sized to free memory on CUDA)",
    )
    p.add_argument(
        "--cpu-bf16",
        action=argparse.BooleanOptionalAction,
        default=True,
        help="bf16 autocast on CPUs with AVX512-BF16 or AMX, fp32 on others (docs/RESULTS.md "
        "§9); --no-cpu-bf16: fp32",
    )
    p.add_argument(
        "--tta",
        choices=("none", "flip", "d4"),
        default="none",
        help="test-time augmentation: average each tile's probabilities over its mirror "
        "(flip, 2x the work) or its 8 rotations and mirrors (d4, 8x)",
    )
    p.add_argument("--device", default="auto")
    p.add_argument("--max-pixels", type=int, default=250_000_000)
    p.add_argument("--out", type=Path, required=True, help="folder: one subfolder per image")
    p.set_defaults(run=run)


def run(args: argparse.Namespace) -> int:
    from app.schemas.crackmap import crackmap_read
    from models.checkpoint import load_checkpoint
    from models.inference import InferenceConfig, PhotoRequest, Predictor, geojson, render_overlay

    predictor = Predictor(
        load_checkpoint(args.model),
        InferenceConfig(
            device=args.device,
            batch_size=args.batch_size,
            cpu_bf16=args.cpu_bf16,
            max_pixels=args.max_pixels,
            threshold=args.threshold,
            tta=args.tta,
        ),
    )
    failures = 0
    for path in args.images:
        try:
            request = PhotoRequest(path.read_bytes(), args.tile, args.stride, args.threshold)
        except OSError as exc:
            print(f"{path}: error: {exc}", file=sys.stderr)
            failures += 1
            continue
        with TileBar(path.name) as show:  # decoded on the GPU when the model runs there
            result = predictor.map_photos([request], show)[0]
        if isinstance(result, Exception):
            print(f"{path}: error: {result}", file=sys.stderr)
            failures += 1
            continue
        crack_map = result.crack_map
        folder = args.out / path.stem
        folder.mkdir(parents=True, exist_ok=True)
        document = crackmap_read(crack_map, name=path.name)
        (folder / "crackmap.json").write_text(document.model_dump_json(indent=1))
        (folder / "overlay.png").write_bytes(render_overlay(result.preview, crack_map))
        (folder / "defects.geojson").write_text(json.dumps(geojson(crack_map)))
        s = document.summary
        print(
            f"{path}: {s.defect_tiles}/{s.tiles} defect tiles, {100 * s.defect_area_fraction:.1f}% of the area, "
            f"max p {s.max_defect_prob:.2f}, {crack_map.timings['tiles_per_s']:.0f} tiles/s -> {folder}"
        )
    return 1 if failures else 0
