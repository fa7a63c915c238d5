"""`crackscan train`: train or fine-tune a crack classifier on a labelled set."""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import TYPE_CHECKING, Any

from app.cli.progress import LINE_INTERVAL_S, TrainingBar
from models.backbones import BACKBONES
from models.data.augment import AUGMENTS
from models.data.mask_set import DEFAULT_MASK_TILE
from models.training.config import DEFAULT_LOSS, LOSSES

if TYPE_CHECKING:
    from models.checkpoint import Checkpoint
    from models.training import TrainConfig


def register(sub: Any) -> None:
    p = sub.add_parser("train", help="train (or fine-tune with --init) a crack classifier")
    p.add_argument(
        "data", type=Path, nargs="+", help="labelled sets (folders or .zips), trained as one"
    )
    p.add_argument(
        "--mask-tile",
        type=int,
        default=DEFAULT_MASK_TILE,
        help="masks layout: tile side in photo pixels, cut at stride tile/2",
    )
    # The recipe's fields default to None: a fine-tune (--init) then takes its base model's,
    # a new model TrainConfig's defaults.
    p.add_argument("--backbone", default=None, choices=BACKBONES, help="default: resnet18")
    p.add_argument("--loss", default=None, choices=LOSSES, help=f"default: {DEFAULT_LOSS}")
    p.add_argument("--epochs", type=int, default=150)
    p.add_argument(
        "--tiles-per-epoch",
        type=int,
        default=None,
        help="train each epoch on a seeded, class-balanced sample of this many training tiles "
        "(another sample every epoch; validation and test stay whole); default: every tile",
    )
    p.add_argument("--image-size", type=int, default=None, help="default: 224")
    p.add_argument("--batch-size", type=int, default=None, help="default: 64")
    p.add_argument("--lr", type=float, default=0.01)
    p.add_argument(
        "--lr-milestones",
        type=int,
        nargs="*",
        default=None,
        help="epochs after which the lr drops 10x (default: 65/95/125 of 150, scaled)",
    )
    p.add_argument("--weight-decay", type=float, default=1e-4)
    p.add_argument("--lam0", type=float, default=None, help="ISDA/IGMSDA augmentation λ0 (0.5)")
    p.add_argument("--alpha0", type=float, default=None, help="IGMSDA modulation α0 (2.5)")
    p.add_argument(
        "--gm-samples", type=int, default=None, help="samples S of the explicit GM loss (100)"
    )
    p.add_argument("--weights", default=None, help="'imagenet' or a torchvision weights file")
    p.add_argument("--defect-classes", nargs="+", default=None, help="class names that are defects")
    p.add_argument(
        "--target-precision",
        type=float,
        default=None,
        help="operating threshold: the lowest reaching this val precision (default: best F1)",
    )
    p.add_argument(
        "--augment",
        default=None,
        choices=AUGMENTS,
        help="none, flip (the paper's) or survey (the default): rotations, flips, scale, "
        "colour, blur, JPEG",
    )
    p.add_argument("--device", default="auto")
    p.add_argument(
        "--cpu-bf16",
        action=argparse.BooleanOptionalAction,
        default=True,
        help="on a CPU with native bf16 (AVX512-BF16, AMX), train in bf16 autocast (~1.5x "
        "faster; the default); fp32 on other CPUs either way",
    )
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--init", type=Path, default=None, help="fine-tune from this checkpoint")
    p.add_argument("--resume", type=Path, default=None, help="continue from a .partial checkpoint")
    p.add_argument("--out", type=Path, required=True, help="where to write the checkpoint")
    p.add_argument("--metrics-out", type=Path, default=None, help="write the metrics as JSON here")
    p.add_argument(
        "--log-every",
        type=float,
        default=LINE_INTERVAL_S,
        metavar="SECONDS",
        help="with stderr not a terminal, a progress line at least this often "
        f"(default {LINE_INTERVAL_S:.0f})",
    )
    p.set_defaults(run=run)


def run(args: argparse.Namespace) -> int:
    from models.checkpoint import load_checkpoint, save_checkpoint
    from models.data import load_labelled_sets
    from models.training import fit

    base = load_checkpoint(args.init) if args.init else None
    resume = load_checkpoint(args.resume) if args.resume else None
    config = _config(args, base)
    known = base or resume
    data = load_labelled_sets(
        args.data,
        defect_classes=args.defect_classes or (known.defect_classes if known else None),
        classes=known.classes if known else None,
        seed=args.seed,
        mask_tile=args.mask_tile,
    )
    for part in data.parts or [data.summary()]:
        print(_describe(part), file=sys.stderr)
    partial = args.out.with_name(args.out.name + ".partial")
    bar = TrainingBar(config.epochs, interval_s=args.log_every)

    def keep_last(record: dict[str, Any], last: Checkpoint, improved: bool) -> None:
        save_checkpoint(last, partial)  # what --resume continues from if this run stops

    try:
        result = fit(config, data, init=base, resume=resume, progress=bar, on_epoch_end=keep_last)
    finally:
        bar.close()
    digest = save_checkpoint(result.checkpoint, args.out)
    partial.unlink(missing_ok=True)
    print(_result_line(args.out, digest, result.metrics))
    if args.metrics_out:
        args.metrics_out.parent.mkdir(parents=True, exist_ok=True)
        args.metrics_out.write_text(
            json.dumps({**result.metrics, "history": result.history}, indent=2)
        )
    return 0


def _config(args: argparse.Namespace, base: Checkpoint | None) -> TrainConfig:
    """The run's TrainConfig: what the flags give, then (fine-tuning) the base model's
    recipe, then the defaults."""
    from models.training import TrainConfig
    from models.training.config import inherited_from

    given = {
        "backbone": args.backbone,
        "loss": args.loss,
        "image_size": args.image_size,
        "batch_size": args.batch_size,
        "lam0": args.lam0,
        "alpha0": args.alpha0,
        "augment": args.augment,
        "gm_samples": args.gm_samples,
        "target_precision": args.target_precision,
    }
    inherited = inherited_from(base.backbone, base.input_size, base.config) if base else {}
    chosen = {k: v for k, v in given.items() if v is not None}
    return TrainConfig(
        **{**inherited, **chosen},
        epochs=args.epochs,
        tiles_per_epoch=args.tiles_per_epoch,
        lr=args.lr,
        lr_milestones=args.lr_milestones,
        weight_decay=args.weight_decay,
        weights=args.weights,
        device=args.device,
        seed=args.seed,
        cpu_bf16=args.cpu_bf16,
    )


def _result_line(out: Path, digest: str, metrics: dict[str, Any]) -> str:
    """One line: the checkpoint written, its test figures and its operating point."""
    test = metrics["test"]
    found = test["detection"]
    return (
        f"wrote {out} (sha256 {digest[:12]}): test macro F {test['macro_f1']:.4f}, "
        f"accuracy {test['accuracy']:.4f}, ECE {test['ece']:.4f} -> {test['ece_calibrated']:.4f} "
        f"at T={test['temperature']:.3f}; operating threshold {found['threshold']:.3f} "
        f"({metrics['operating_point']['rule']}): defect P {found['precision']:.3f}, "
        f"R {found['recall']:.3f}, F1 {found['f1']:.3f}, "
        f"false alarms {100 * found['false_alarm_rate']:.1f}%"
    )


def _describe(summary: dict[str, Any]) -> str:
    counts = ", ".join(
        f"{split}: " + "/".join(f"{n}" for n in per.values())
        for split, per in summary["counts"].items()
    )
    tiles = ""
    if "tiles" in summary:
        t, photos = summary["tiles"], summary["photos"]
        tiles = (
            f"; {sum(photos.values())} photos cut into {summary['tile_px']}-px tiles: "
            f"{t['crack']} crack, {t['no_crack']} no crack, {t['left_out']} left out"
        )
    return (
        f"{summary['source']}: {summary['layout']} layout, classes {summary['classes']} "
        f"(defects {summary['defect_classes']}), {counts}; skipped {summary['skipped']} unreadable, "
        f"removed {summary['duplicates_removed']} duplicates{tiles}"
    )
