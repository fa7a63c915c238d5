"""`crackscan labels export`: the inspectors' tile labels as a labelled set (a zip)."""

from __future__ import annotations

import argparse
import json
from datetime import UTC, datetime
from pathlib import Path
from typing import Any


def register(sub: Any) -> None:
    labels = sub.add_parser("labels", help="the inspectors' tile labels")
    labels_sub = labels.add_subparsers(dest="labels_command", required=True)
    export = labels_sub.add_parser(
        "export",
        help="write every stored label as a labelled set: train|val|test/<class>/<tile>.png, "
        "tiles cut from the stored photos, split by photo",
    )
    export.add_argument("--out", type=Path, required=True, help="the .zip to write")
    export.add_argument(
        "--since",
        type=_utc_time,
        default=None,
        help="only labels given at or after this time (ISO 8601; without an offset, UTC)",
    )
    export.add_argument("--seed", type=int, default=0, help="seed of the split by photo")
    export.set_defaults(run=run_export)


def _utc_time(text: str) -> datetime:
    try:
        when = datetime.fromisoformat(text)
    except ValueError as exc:
        raise argparse.ArgumentTypeError(f"not an ISO 8601 time: {text!r}") from exc
    return when if when.tzinfo else when.replace(tzinfo=UTC)


def run_export(args: argparse.Namespace) -> int:
    from core.config import get_settings
    from core.db import transaction
    from core.feedback import export_labels

    if args.out.suffix.lower() != ".zip":
        raise ValueError(f"--out must name a .zip file, got {args.out}")
    settings = get_settings()
    args.out.parent.mkdir(parents=True, exist_ok=True)
    partial = args.out.with_name(args.out.name + ".part")
    try:
        with transaction(settings.db_url) as session:
            summary = export_labels(
                session, partial, args.seed, args.since, settings.max_image_pixels
            )
        partial.replace(args.out)  # a finished file or none: never half a set
    finally:
        partial.unlink(missing_ok=True)
    print(json.dumps({"out": str(args.out), **summary}))
    return 0
