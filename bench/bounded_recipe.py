"""The README's bounded training recipe on the real sets, timed on this machine.

Trains resnet18 from scratch on ../shared/data exactly as

    crackscan train ../shared/data/ccic-dev ../shared/data/cfd ../shared/data/crackmix \\
        --epochs 12 --tiles-per-epoch 22000 --image-size 64 --out real.ckpt

does (igmsda-exact, 64-px mask tiles at stride 32, split 3:1:1 by photo, each epoch a seeded,
class-balanced sample of the training tiles, validation and test whole), and reports the
wall time of the whole run (decoding, training, validation, calibration) and the tile F1 and
false alarms on every tile of the cfd + crackmix test photos, at the model's operating
threshold. With both precisions it is the bf16-against-fp32 check of bf16 training.

    python -m bench.bounded_recipe                          # the README's recipe, bf16
    python -m bench.bounded_recipe --precisions bf16 fp32   # bf16 against fp32
    python -m bench.bounded_recipe --epochs 6 --tiles-per-epoch 8000   # another recipe

Targets: tile F1 >= 0.80 with at most 10% of crack-free tiles flagged within 30 minutes on
2 cores (bench.real_maps' bar); bf16's test F1 within 0.01 of fp32's.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path
from typing import Any

from bench.common import print_table, write_results
from models.data import LabelledSet, load_labelled_sets
from models.device import cpu_has_native_bf16
from models.evaluation import detection_on
from models.training import TrainConfig, fit

SHARED = Path(__file__).resolve().parents[2] / "shared" / "data"
SETS = ("ccic-dev", "cfd", "crackmix")
PHOTO_SETS = ("cfd", "crackmix")  # scored: photos with masks, not wall tiles
TARGET_F1, TARGET_FALSE_ALARMS, TARGET_SECONDS, TARGET_BF16_GAP = 0.80, 0.10, 1800.0, 0.01


def recipe(args: argparse.Namespace, bf16: bool) -> TrainConfig:
    """The CLI's TrainConfig for the bench's flags (its defaults elsewhere)."""
    return TrainConfig(
        epochs=args.epochs,
        tiles_per_epoch=args.tiles_per_epoch,
        image_size=args.image_size,
        loss=args.loss,
        seed=args.seed,
        device=args.device,
        cpu_bf16=bf16,
    )


def photo_tiles(data: LabelledSet) -> list[Any]:
    """The test tiles of the photo sets (merge_sets names samples "index:name")."""
    prefixes = tuple(f"{SETS.index(name)}:" for name in PHOTO_SETS)
    return [s for s in data.splits["test"] if s.name.startswith(prefixes)]


def run_one(args: argparse.Namespace, precision: str) -> dict[str, Any]:
    started = time.perf_counter()
    data = load_labelled_sets([Path(args.data) / s for s in SETS], seed=args.seed, mask_tile=64)

    def epoch_end(epoch: int, step: int, info: dict[str, Any]) -> None:
        if info.get("phase") == "epoch_end":
            print(
                f"{precision} epoch {epoch + 1}: loss {info['train_loss']:.4f}, val macro F "
                f"{info['val_macro_f1']:.4f}, {info['train_images_per_s']:.0f} tiles/s, "
                f"{time.perf_counter() - started:.0f} s",
                flush=True,
            )

    result = fit(recipe(args, precision == "bf16"), data, progress=epoch_end)
    seconds = time.perf_counter() - started
    ckpt = result.checkpoint
    found = detection_on(ckpt, data, photo_tiles(data))
    test = ckpt.metrics["test"]
    row = {
        "precision": precision,
        "seconds": seconds,
        "tile_f1": found["f1"],
        "precision_tiles": found["precision"],
        "recall": found["recall"],
        "false_alarm_rate": found["false_alarm_rate"],
        "threshold": found["threshold"],
        "photo_test_tiles": found["tiles"],
        "photo_test_crack_tiles": found["defect_tiles"],
        "test_macro_f1": test["macro_f1"],
        "test_ece": test["ece"],
        "best_epoch": ckpt.metrics["best_epoch"],
        "epoch_train_seconds": [h["train_seconds"] for h in result.history],
    }
    row["meets_targets"] = bool(
        found["f1"] >= TARGET_F1
        and found["false_alarm_rate"] <= TARGET_FALSE_ALARMS
        and seconds <= TARGET_SECONDS
    )
    print(row, flush=True)
    return row


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", default=str(SHARED), help="folder holding the three sets")
    parser.add_argument("--epochs", type=int, default=12)
    parser.add_argument("--tiles-per-epoch", type=int, default=22000)
    parser.add_argument("--image-size", type=int, default=64)
    parser.add_argument("--loss", default=TrainConfig().loss)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--precisions", nargs="+", choices=("bf16", "fp32"), default=["bf16"])
    parser.add_argument("--name", default="bounded_recipe", help="bench/results/NAME.json")
    args = parser.parse_args(argv)
    missing = [s for s in SETS if not (Path(args.data) / s).is_dir()]
    if missing:
        print(f"skipped: {', '.join(missing)} absent from {args.data} (see ../shared/data)")
        return 0
    if "bf16" in args.precisions and not cpu_has_native_bf16() and args.device == "cpu":
        print("note: this CPU has no native bf16, so the bf16 row trains in fp32")
    rows = []
    for precision in args.precisions:
        rows.append(run_one(args, precision))
        write_results(args.name, {"settings": vars(args), "rows": rows, "partial": True})
    by = {r["precision"]: r for r in rows}
    gap = None
    if {"bf16", "fp32"} <= set(by):
        gap = {k: by["bf16"][k] - by["fp32"][k] for k in ("tile_f1", "test_macro_f1")}
        gap["speed_up"] = by["fp32"]["seconds"] / by["bf16"]["seconds"]
        gap["within_target"] = abs(gap["tile_f1"]) <= TARGET_BF16_GAP
    print_table(
        ["precision", "s", "tile F1", "P", "R", "crack-free flagged", "test macro F1", "targets"],
        [
            [
                r["precision"],
                r["seconds"],
                r["tile_f1"],
                r["precision_tiles"],
                r["recall"],
                r["false_alarm_rate"],
                r["test_macro_f1"],
                "met" if r["meets_targets"] else "missed",
            ]
            for r in rows
        ],
    )
    if gap is not None:
        print(
            f"bf16 - fp32: tile F1 {gap['tile_f1']:+.4f}, test macro F1 "
            f"{gap['test_macro_f1']:+.4f}, bf16 {gap['speed_up']:.2f}x as fast"
        )
    command = "python -m bench.bounded_recipe " + " ".join(
        argv if argv is not None else sys.argv[1:]
    )
    path = write_results(
        args.name,
        {
            "command": command.strip(),
            "settings": vars(args),
            "targets": {
                "tile_f1": TARGET_F1,
                "false_alarm_rate": TARGET_FALSE_ALARMS,
                "seconds": TARGET_SECONDS,
                "bf16_gap": TARGET_BF16_GAP,
            },
            "rows": rows,
            "bf16_minus_fp32": gap,
        },
    )
    print(f"wrote {path}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
