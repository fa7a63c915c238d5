"""`crackscan evaluate`: metrics of a checkpoint on a labelled set."""

from __future__ import annotations

import argparse
import json
from pathlib import Path
from typing import Any


def register(sub: Any) -> None:
    p = sub.add_parser("evaluate", help="evaluate a checkpoint on a labelled set")
    p.add_argument("checkpoint", type=Path)
    p.add_argument(
        "data", type=Path, help="folder or .zip; its test/ split when it has split folders"
    )
    p.add_argument("--json", action="store_true", help="print one JSON object")
    p.add_argument("--device", default="auto")
    p.add_argument("--batch-size", type=int, default=256)
    p.set_defaults(run=run)


def run(args: argparse.Namespace) -> int:
    from models.checkpoint import load_checkpoint
    from models.data import load_labelled_set, load_tiles
    from models.metrics import evaluation_report
    from models.training import predict_logits, select_device

    ckpt = load_checkpoint(args.checkpoint)
    data = load_labelled_set(args.data, defect_classes=ckpt.defect_classes, classes=None)
    unknown = sorted(set(data.classes) - set(ckpt.classes))
    if unknown:
        raise ValueError(
            f"the set has classes {unknown} that the model does not know ({ckpt.classes})"
        )
    samples = (
        data.splits["test"] if data.split_given else [s for v in data.splits.values() for s in v]
    )
    images, local = load_tiles(data.source, samples, ckpt.input_size)
    remap = [ckpt.classes.index(c) for c in data.classes]
    labels = local.new_tensor([remap[i] for i in local.tolist()])
    device = select_device(args.device)
    logits = predict_logits(ckpt.build_model(device), images, device, args.batch_size)
    report = evaluation_report(logits, labels, ckpt.classes, ckpt.temperature)
    report["checkpoint"] = str(args.checkpoint)
    report["content_hash"] = ckpt.content_hash
    report["data"] = str(args.data)
    if args.json:
        print(json.dumps(report))
        return 0
    print(f"{len(labels)} images from {args.data} ({'test split' if data.split_given else 'all'})")
    print(
        f"accuracy {report['accuracy']:.4f}  macro P {report['macro_precision']:.4f}  "
        f"R {report['macro_recall']:.4f}  F {report['macro_f1']:.4f}"
    )
    for name, row in report["per_class"].items():
        print(
            f"  {name:>16}: P {row['precision']:.4f}  R {row['recall']:.4f}  F {row['f1']:.4f}  n={row['support']}"
        )
    print(
        f"ECE {report['ece']:.4f} before calibration, {report['ece_calibrated']:.4f} after (T={ckpt.temperature:.3f})"
    )
    print("confusion (rows true, columns predicted):", report["confusion"])
    return 0
