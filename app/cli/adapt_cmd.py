"""`crackscan adapt`: a model for a survey, made from the survey's own unlabelled photos."""

from __future__ import annotations

import argparse
import json
import sys
from functools import partial
from pathlib import Path
from typing import Any


def register(sub: Any) -> None:
    from models.adaptation import ADAPT_METHODS, AdaptConfig

    defaults = AdaptConfig()
    p = sub.add_parser(
        "adapt",
        help="adapt a model to a survey from its unlabelled photos (no labels needed)",
        description="Re-estimate the model's normalisation statistics on the survey's tiles "
        "(AdaBN) and move its threshold with it, as models/adaptation describes; the new "
        "checkpoint records what was done, on how many tiles of how many photos.",
    )
    p.add_argument("model", type=Path, help="the base checkpoint")
    p.add_argument("photos", type=Path, nargs="+", help="the survey's photos (JPEG, PNG, TIFF)")
    p.add_argument("--out", type=Path, required=True, help="the adapted checkpoint to write")
    p.add_argument(
        "--method",
        choices=ADAPT_METHODS,
        default=defaults.method,
        help=f"what to adapt (default {defaults.method}; docs/RESULTS.md, new surveys)",
    )
    p.add_argument(
        "--max-tiles",
        type=int,
        default=defaults.max_tiles,
        help="survey tiles drawn, an equal share per photo (default %(default)s)",
    )
    p.add_argument(
        "--blend",
        type=float,
        default=defaults.blend,
        help="AdaBN weight of the survey's statistics, 0..1 (default %(default)s: replace)",
    )
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--device", default="auto")
    p.add_argument("--cpu-bf16", action=argparse.BooleanOptionalAction, default=True)
    p.add_argument("--max-pixels", type=int, default=250_000_000)
    p.add_argument("--json", action="store_true", help="print the adaptation report as JSON")
    p.set_defaults(run=run)


def _decode(path: Path, max_pixels: int) -> Any:
    from models.inference.intake import open_image

    return open_image(path.read_bytes(), max_pixels)


def run(args: argparse.Namespace) -> int:
    from models.adaptation import AdaptConfig, adapt
    from models.checkpoint import load_checkpoint, save_checkpoint

    missing = [str(p) for p in args.photos if not p.is_file()]
    if missing:
        raise FileNotFoundError(f"no such photo: {', '.join(missing[:5])}")
    if args.out.resolve() == args.model.resolve():
        raise ValueError("--out must not be the base checkpoint: write the adapted model beside it")
    base = load_checkpoint(args.model)
    if base.training_state is not None:
        raise ValueError(f"{args.model} is a resumable snapshot, not a finished model")
    config = AdaptConfig(
        method=args.method,
        max_tiles=args.max_tiles,
        blend=args.blend,
        seed=args.seed,
        device=args.device,
        cpu_bf16=args.cpu_bf16,
    )
    print(
        f"adapting {args.model.name} to {len(args.photos)} photos ({config.method})",
        file=sys.stderr,
    )
    result = adapt(base, [partial(_decode, p, args.max_pixels) for p in args.photos], config)
    save_checkpoint(result.checkpoint, args.out)
    r = result.report
    if args.json:
        print(json.dumps(r, indent=1))
    else:
        print(
            f"{args.out}: {r['method']} on {r['tiles']} tiles of {r['photos']} photos; "
            f"threshold {r['base_threshold']:.3f} -> {r['threshold']:.3f}; survey tiles flagged "
            f"{100 * r['base_flagged_share']:.1f}% -> {100 * r['flagged_share']:.1f}%"
        )
    return 0
