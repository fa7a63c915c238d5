"""`crackscan evaluate`: metrics of a checkpoint on a labelled set."""

from __future__ import annotations

import argparse
import json
from pathlib import Path
from typing import Any

import torch


def register(sub: Any) -> None:
    p = sub.add_parser("evaluate", help="evaluate a checkpoint on a labelled set")
    p.add_argument("checkpoint", type=Path)
    p.add_argument(
        "data", type=Path, help="folder or .zip; its test/ split when it has split folders"
    )
    p.add_argument("--json", action="store_true", help="print one JSON object")
    p.add_argument(
        "--threshold",
        type=float,
        default=None,
        help="defect threshold (default: the model's operating threshold)",
    )
    p.add_argument(
        "--mask-tile",
        type=int,
        default=None,
        help="masks sets: tile side in photo pixels (default: the model's, else 64)",
    )
    p.add_argument("--device", default="auto")
    p.add_argument("--batch-size", type=int, default=256)
    p.set_defaults(run=run)


def run(args: argparse.Namespace) -> int:
    from models.checkpoint import load_checkpoint
    from models.data import DEFAULT_MASK_TILE, load_labelled_set, load_tiles
    from models.evaluation import photo_report
    from models.metrics import evaluation_report
    from models.threshold import defect_scores
    from models.training import predict_logits, select_device

    ckpt = load_checkpoint(args.checkpoint)
    data = load_labelled_set(
        args.data,
        defect_classes=ckpt.defect_classes,  # where the set lacks them, its naming rule
        mask_tile=args.mask_tile or ckpt.tile_px or DEFAULT_MASK_TILE,
        partial=True,
    )
    samples = (
        data.splits["test"] if data.split_given else [s for v in data.splits.values() for s in v]
    )
    images, local = load_tiles(data.source, samples, ckpt.input_size)
    device = select_device(args.device)
    logits = predict_logits(
        ckpt.build_model(device),
        images,
        device,
        args.batch_size,
        False,
        tuple(ckpt.mean),
        tuple(ckpt.std),
    )
    probs = torch.softmax(logits.double() / ckpt.temperature, 1)
    defect_index = [ckpt.classes.index(c) for c in ckpt.defect_classes]
    score, _ = defect_scores(probs, local, defect_index)
    truth = torch.tensor([data.classes[i] in data.defect_classes for i in local.tolist()])
    threshold = ckpt.operating_threshold if args.threshold is None else args.threshold
    report: dict[str, Any] = {}
    if set(data.classes) <= set(ckpt.classes):  # class metrics need the model's classes
        remap = [ckpt.classes.index(c) for c in data.classes]
        labels = local.new_tensor([remap[i] for i in local.tolist()])
        report = evaluation_report(logits, labels, ckpt.classes, ckpt.temperature)
    report["detection"] = photo_report(samples, score, truth, threshold)
    if data.tile_px is None:
        report["detection"].pop("photos")  # tile sets: one file per tile, no photos
        report["detection"].pop("photo_f1_median")
        report["detection"].pop("clean_photos_flagged")
    report["checkpoint"] = str(args.checkpoint)
    report["content_hash"] = ckpt.content_hash
    report["data"] = str(args.data)
    report["evaluated"] = "test split" if data.split_given else "all"
    if args.json:
        print(json.dumps(report))
        return 0
    _print_report(report, len(samples), args.data)
    return 0


def _print_report(report: dict[str, Any], n: int, source: Path) -> None:
    print(f"{n} tiles from {source} ({report['evaluated']})")
    if "accuracy" in report:
        print(
            f"accuracy {report['accuracy']:.4f}  macro P {report['macro_precision']:.4f}  "
            f"R {report['macro_recall']:.4f}  F {report['macro_f1']:.4f}"
        )
        for name, row in report["per_class"].items():
            print(
                f"  {name:>16}: P {row['precision']:.4f}  R {row['recall']:.4f}  "
                f"F {row['f1']:.4f}  n={row['support']}"
            )
        print(
            f"ECE {report['ece']:.4f} before calibration, {report['ece_calibrated']:.4f} after "
            f"(T={report['temperature']:.3f})"
        )
        print("confusion (rows true, columns predicted):", report["confusion"])
    det = report["detection"]
    tiles = det["tiles"]
    print(
        f"defect tiles at threshold {tiles['threshold']:.3f}: P {tiles['precision']:.4f}  "
        f"R {tiles['recall']:.4f}  F1 {tiles['f1']:.4f}  "
        f"false alarms {100 * tiles['false_alarm_rate']:.1f}% of crack-free tiles"
    )
    if "photos" in det:
        median = det["photo_f1_median"]
        print(
            f"{len(det['photos'])} photos: median F1 {'-' if median is None else f'{median:.3f}'}"
            " over photos with cracks"
        )
        for photo in det["photos"]:
            print(
                f"  {photo['photo']}: {photo['defect_tiles']}/{photo['tiles']} crack tiles, "
                f"F1 {photo['f1']:.3f}, false alarms {100 * photo['false_alarm_rate']:.1f}%"
            )
