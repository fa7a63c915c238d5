"""Crack maps of real photos: train on walls and masked photos, score held-out photos per tile.

Trains resnet18 from scratch on the CPU on ../shared/data: the ccic-dev wall tiles plus
the training photos of cfd (CrackForest) and crackmix, each masks set cut into 64-px
tiles at stride 32 and split 3:1:1 by photo with one seed. The training and
validation tiles are sampled (seeded, per set) to fit the time budget; the test split
is every tile of the held-out test photos of cfd and crackmix. The operating
threshold is chosen on validation; the table reports tile precision, recall and F1 of
"crack" at that threshold, and the share of crack-free tiles flagged.

    python -m bench.real_maps                       # every loss (ce, isda, igmsda, igmsda-exact)
    python -m bench.real_maps --losses igmsda-exact # one row
    python -m bench.real_maps --stage transfer      # leave one crackmix source out, per source
    python -m bench.real_maps --stage transfer --resume   # go on after a run cut short
    python -m bench.real_maps --stage overlays      # before / after overlays into docs/
    python -m bench.real_maps --stage recipes --device cuda   # the recipe study (RECIPES)

Targets: tile F1 >= 0.80 with at most 10% of crack-free tiles flagged, each training
run within 30 minutes on 2 cores.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import sys
import time
from pathlib import Path
from typing import Any

import torch

from bench.common import RESULTS_DIR, print_table, write_results
from models.checkpoint import Checkpoint
from models.data import LabelledSet, Sample, load_labelled_set, merge_sets
from models.evaluation import detection_on
from models.training import TrainConfig, fit

ROOT = Path(__file__).resolve().parents[1]
SHARED = ROOT.parent / "shared" / "data"
SET_FOLDERS = {"ccic": "ccic-dev", "cfd": "cfd", "crackmix": "crackmix"}
DOCS = ROOT / "docs"
CACHE = ROOT / "bench" / "cache" / "real_maps"
LOSSES = ("ce", "isda", "igmsda", "igmsda-exact")
CRACKMIX_SOURCES = (
    "Rissbilder_for_Florian",
    "Volker",
    "DeepCrack",
    "cracktree",
    "Sylvie_Chambon",
    "Eugen_Muller",
    "noncrack",
)
TARGET_F1, TARGET_FALSE_ALARMS, TARGET_SECONDS = 0.80, 0.10, 1800.0
# Training cost on the 2-core CPU, tiles per second (batch 64, forward and backward, median
# of 5 steps; `python -m bench.real_maps --stage cpu-rates` measures it again).
# The recipe study below runs on any device and reports the CPU seconds each recipe would
# take, so that a GPU can search what fits the 30-minute CPU budget.
RECIPES: dict[str, dict[str, Any]] = {
    "today": {"epochs": 6, "train_tiles": 4000},
    "r18-64-long": {"epochs": 12, "train_tiles": 12000},
    "r18-64-long-lr0.05": {"epochs": 12, "train_tiles": 12000, "lr": 0.05},
    "r18-96": {"epochs": 6, "train_tiles": 12000, "image_size": 96},
    "r18-64-long-no-walls": {"epochs": 12, "train_tiles": 12000, "sets": ["cfd", "crackmix"]},
    "mnv3l-128": {
        "epochs": 7,
        "train_tiles": 12000,
        "image_size": 128,
        "backbone": "mobilenet_v3_large",
    },
    "effb0-96": {
        "epochs": 7,
        "train_tiles": 12000,
        "image_size": 96,
        "backbone": "efficientnet_b0",
    },
    "r18-64-long-flip": {"epochs": 12, "train_tiles": 12000, "augment": "flip"},
    "r18-64-long-exact": {"epochs": 12, "train_tiles": 12000, "losses": ["igmsda-exact"]},
    "r18-64-long-isda": {"epochs": 12, "train_tiles": 12000, "losses": ["isda"]},
    "r18-96-unbounded": {"epochs": 20, "train_tiles": 30000, "image_size": 96},
}


def source_of(name: str) -> str:
    """The crackmix source of a photo, from its file-name prefix."""
    stem = name.rsplit("/", 1)[-1]
    return next((s for s in CRACKMIX_SOURCES if stem.startswith(s)), "other")


def sample_split(samples: list[Sample], cap: int, seed: int) -> list[Sample]:
    """At most `cap` tiles, drawn uniformly with the seed (classes keep their shares on average)."""
    if len(samples) <= cap:
        return samples
    g = torch.Generator().manual_seed(seed)
    keep = torch.randperm(len(samples), generator=g)[:cap].sort().values.tolist()
    return [samples[i] for i in keep]


# Bare training speed on the 2-core CPU, tiles/s (batch 64, forward, backward and SGD step,
# channels_last; median of 5 steps after a warm-up), by (backbone, image size). The full run
# adds augmentation and validation: "today" trained 66k tiles in 456 s (145 tiles/s at 189).
CPU_TRAIN_RATES = {
    ("resnet18", 64): 189.0,
    ("resnet18", 96): 88.0,
    ("resnet18", 128): 44.0,
    ("resnet34", 64): 111.0,
    ("mobilenet_v3_large", 128): 105.0,
    ("efficientnet_b0", 96): 116.0,
}
CPU_OVERHEAD = 456.0 / (66000 / 189.0)  # augmentation and validation, measured on "today"


def set_paths(args: argparse.Namespace) -> dict[str, Path]:
    return {name: Path(args.data) / SET_FOLDERS[name] for name in args.sets}


def load_sets(args: argparse.Namespace) -> dict[str, LabelledSet]:
    return {
        name: load_labelled_set(path, seed=args.seed, verify_images=False, mask_tile=args.tile)
        for name, path in set_paths(args).items()
    }


def cpu_seconds_estimate(args: argparse.Namespace, train_tiles: int) -> float | None:
    """What training this recipe would take on the 2-core CPU (None: rate not measured)."""
    rate = CPU_TRAIN_RATES.get((args.backbone, args.image_size))
    if rate is None:
        return None
    return CPU_OVERHEAD * args.epochs * train_tiles / rate


def study_set(
    sets: dict[str, LabelledSet], args: argparse.Namespace, held_out: str | None = None
) -> LabelledSet:
    """The merged set: sampled train and val tiles, and every test tile of the test photos.

    With held_out (a crackmix source), that source's photos leave train and val and all
    of them, whatever their split, are the test split.
    """
    parts = []
    for name, data in sets.items():
        index = list(SET_FOLDERS).index(name)  # the sampling seed stays with the set
        splits = dict(data.splits)
        if name == "crackmix" and held_out is not None:
            every = [s for v in data.splits.values() for s in v]
            splits = {k: [s for s in v if source_of(s.name) != held_out] for k, v in splits.items()}
            splits["test"] = [s for s in every if source_of(s.name) == held_out]
        elif held_out is not None:
            splits["test"] = []
        if name == "ccic":
            splits["test"] = []  # wall tiles, not photos: the maps are scored on photos
        splits["train"] = sample_split(splits["train"], args.train_tiles, args.seed + index)
        splits["val"] = sample_split(splits["val"], args.val_tiles, args.seed + 100 + index)
        parts.append(dataclasses.replace(data, splits=splits))
    return merge_sets(parts)


def train(config: TrainConfig, data: LabelledSet) -> tuple[Checkpoint, float]:
    started = time.perf_counter()
    result = fit(config, data)
    return result.checkpoint, time.perf_counter() - started


def row_of(label: str, ckpt: Checkpoint, seconds: float) -> dict[str, Any]:
    found = ckpt.metrics["test"]["detection"]
    return {
        **transfer_row(label, found, seconds),
        "raw_ece": ckpt.metrics["test"]["ece"],
        "meets_targets": found["f1"] >= TARGET_F1
        and found["false_alarm_rate"] <= TARGET_FALSE_ALARMS
        and seconds <= TARGET_SECONDS,
    }


def config_for(loss: str, args: argparse.Namespace) -> TrainConfig:
    return TrainConfig(
        backbone=args.backbone,
        loss=loss,
        epochs=args.epochs,
        image_size=args.image_size,
        batch_size=64,
        lr=args.lr,
        seed=args.seed,
        device=args.device,
        augment=args.augment,
        cpu_bf16=args.cpu_bf16,
    )


def run_losses(args: argparse.Namespace) -> list[dict[str, Any]]:
    sets = load_sets(args)
    data = study_set(sets, args)
    counts = data.counts()
    print(f"training tiles {counts['train']}, val {counts['val']}, test {counts['test']}")
    rows = []
    for loss in args.losses:
        ckpt, seconds = train(config_for(loss, args), data)
        rows.append(row_of(loss, ckpt, seconds))
        print(f"{loss}: {rows[-1]}", flush=True)
        write_results("real_maps", {"settings": vars(args), "rows": rows, "partial": True})
        if args.keep_models:
            CACHE.mkdir(parents=True, exist_ok=True)
            from models.checkpoint import save_checkpoint

            save_checkpoint(ckpt, CACHE / f"{loss}.ckpt")
    return rows


RECIPE_KEYS = ("sets", "backbone", "image_size", "epochs", "train_tiles", "lr", "augment")


def run_recipes(args: argparse.Namespace) -> list[dict[str, Any]]:
    """Each recipe of RECIPES (or --recipes), with its estimated CPU training time.

    Results are written after every recipe, so a run cut short keeps what it measured.
    """
    loaded: dict[tuple[str, ...], dict[str, LabelledSet]] = {}
    rows: list[dict[str, Any]] = []
    for label in args.recipes or list(RECIPES):
        recipe = argparse.Namespace(**{**vars(args), **RECIPES[label]})
        key = tuple(recipe.sets)
        if key not in loaded:
            loaded[key] = load_sets(recipe)
        data = study_set(loaded[key], recipe)
        n_train = len(data.splits["train"])
        for loss in recipe.losses:
            ckpt, seconds = train(config_for(loss, recipe), data)
            row = row_of(f"{label} {loss}", ckpt, seconds)
            row["settings"] = {k: RECIPES[label].get(k, getattr(args, k)) for k in RECIPE_KEYS}
            row["train_tiles"] = n_train
            estimate = cpu_seconds_estimate(recipe, n_train)
            row["cpu_seconds_estimate"] = estimate
            row["meets_targets"] = bool(
                row["tile_f1"] >= TARGET_F1
                and row["false_alarm_rate"] <= TARGET_FALSE_ALARMS
                and estimate is not None
                and estimate <= TARGET_SECONDS
            )
            rows.append(row)
            print(f"{label} {loss}: {row}", flush=True)
            write_results("real_maps_recipes", {"rows": rows, "settings": vars(args)})
    return rows


def transfer_row(label: str, found: dict[str, Any], seconds: float) -> dict[str, Any]:
    """A table row from detection metrics; the transfer report has no ECE and no target."""
    return {
        "run": label,
        "tile_f1": found["f1"],
        "precision": found["precision"],
        "recall": found["recall"],
        "false_alarm_rate": found["false_alarm_rate"],
        "threshold": found["threshold"],
        "test_tiles": found["tiles"],
        "test_crack_tiles": found["defect_tiles"],
        "raw_ece": None,
        "train_seconds": seconds,
        "meets_targets": None,  # no target: the report says how the model carries
    }


def run_transfer(args: argparse.Namespace) -> list[dict[str, Any]]:
    """Leave one crackmix source out, per source, against a reference trained on all of them.

    The reference model (same recipe, every source in training) is scored on each source's
    test-split photos: how well the source is mapped when its kind of surface was seen.
    Each "without" model never saw the source, and is scored on all of that source's photos.
    Results are written after every model, so a run cut short keeps what it measured, and
    --resume goes on from there (same recipe only).
    """
    sets = load_sets(args)
    loss = args.losses[0]
    rows = earlier_transfer_rows(args)
    done = {r["run"] for r in rows}

    def record(row: dict[str, Any]) -> None:
        rows.append(row)
        print(row, flush=True)
        write_results("real_maps_transfer", {"settings": vars(args), "rows": rows, "partial": True})

    if not any(run.endswith(": seen in training") for run in done):
        reference_data = study_set(sets, args)
        reference, seconds = train(config_for(loss, args), reference_data)
        prefix = f"{list(sets).index('crackmix')}:"  # merge_sets names samples "index:name"
        test = [s for s in reference_data.splits["test"] if s.name.startswith(prefix)]
        for source in CRACKMIX_SOURCES:
            own = [s for s in test if source_of(s.name) == source]
            if own:
                found = detection_on(reference, reference_data, own)
                record(transfer_row(f"{source}: seen in training", found, seconds))
    for source in CRACKMIX_SOURCES:
        if f"{source}: left out" in done:
            continue
        data = study_set(sets, args, held_out=source)
        if not data.splits["test"]:
            continue
        ckpt, seconds = train(config_for(loss, args), data)
        found = ckpt.metrics["test"]["detection"]
        record(transfer_row(f"{source}: left out", found, seconds))
    return rows


TRANSFER_RECIPE = (
    "sets", "backbone", "losses", "epochs", "image_size", "tile", "train_tiles", "val_tiles",
    "lr", "augment", "seed", "cpu_bf16",
)  # fmt: skip


def earlier_transfer_rows(args: argparse.Namespace) -> list[dict[str, Any]]:
    """With --resume, the rows that an earlier run of the same recipe wrote; else none."""
    path = RESULTS_DIR / "real_maps_transfer.json"
    if not args.resume or not path.is_file():
        return []
    earlier = json.loads(path.read_text())
    changed = [k for k in TRANSFER_RECIPE if earlier["settings"].get(k) != getattr(args, k)]
    if changed:
        raise SystemExit(f"{path} was run with other {', '.join(changed)}: run without --resume")
    return list(earlier["rows"])


def run_overlays(args: argparse.Namespace) -> list[dict[str, Any]]:
    """Before (today's recipe: ccic-dev tiles, 3 epochs, flips, threshold 0.5) and after (a
    model of this bench, --keep-models) on held-out CrackForest test photos, into docs/."""
    from PIL import Image

    from models.checkpoint import load_checkpoint
    from models.inference import Predictor, render_overlay

    after_path = CACHE / f"{args.losses[0]}.ckpt"
    if not after_path.is_file():
        raise SystemExit(f"{after_path} is missing: run `--losses {args.losses[0]} --keep-models`")
    after = load_checkpoint(after_path)
    sets = load_sets(args)
    walls = sets["ccic"]
    before_config = dataclasses.replace(
        config_for("igmsda", args), epochs=3, augment="flip", lr_milestones=[]
    )
    before, _ = train(before_config, walls)
    before.threshold = None  # today's maps cut at 0.5
    photos = sorted({s.name for s in sets["cfd"].splits["test"]})[: args.overlays]
    rows = []
    for label, ckpt, tile in (("before", before, None), ("after", after, None)):
        predictor = Predictor(ckpt)
        for index, name in enumerate(photos):
            image = Image.open(set_paths(args)["cfd"] / name).convert("RGB")
            crack_map = predictor.inspect_image(image, tile, None if tile is None else tile // 2)
            path = DOCS / f"real_maps_{label}_{index}.png"
            path.write_bytes(render_overlay(image, crack_map))
            rows.append({"run": label, "photo": name, "overlay": str(path.relative_to(ROOT))})
            print(rows[-1], flush=True)
    return rows


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--stage", choices=("losses", "transfer", "overlays", "recipes"), default="losses"
    )
    parser.add_argument("--recipes", nargs="+", choices=list(RECIPES), help="--stage recipes")
    parser.add_argument("--data", default=str(SHARED), help="folder holding the three sets")
    parser.add_argument("--sets", nargs="+", choices=list(SET_FOLDERS), default=list(SET_FOLDERS))
    parser.add_argument("--backbone", default="resnet18")
    parser.add_argument("--device", default="cpu", help="cpu, cuda or auto")
    parser.add_argument(
        "--cpu-bf16",
        action=argparse.BooleanOptionalAction,
        default=True,
        help="bf16 autocast when the CPU has native bf16 (AVX512-BF16, AMX); fp32 elsewhere",
    )
    parser.add_argument("--overlays", type=int, default=2, help="photos drawn by --stage overlays")
    parser.add_argument(
        "--losses", nargs="+", choices=LOSSES, help="default: all four; ce for --stage recipes"
    )
    parser.add_argument("--epochs", type=int, default=14)
    parser.add_argument("--image-size", type=int, default=64)
    parser.add_argument("--tile", type=int, default=64, help="mask tile side in photo pixels")
    parser.add_argument("--train-tiles", type=int, default=12000, help="per set, sampled")
    parser.add_argument("--val-tiles", type=int, default=1500, help="per set, sampled")
    parser.add_argument("--lr", type=float, default=0.01)
    parser.add_argument("--augment", default="survey", choices=("none", "flip", "survey"))
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--keep-models", action="store_true", help="save to bench/cache/real_maps")
    parser.add_argument(
        "--resume", action="store_true", help="--stage transfer: go on from the last run's rows"
    )
    args = parser.parse_args(argv)
    if args.losses is None:
        args.losses = ["ce"] if args.stage == "recipes" else list(LOSSES)
    missing = [str(p) for p in set_paths(args).values() if not p.is_dir()]
    if missing:
        print(f"skipped: {', '.join(missing)} absent (the real photos live in ../shared/data)")
        return 0
    if args.stage == "overlays":
        run_overlays(args)
        return 0
    runs = {"losses": run_losses, "transfer": run_transfer, "recipes": run_recipes}
    rows = runs[args.stage](args)
    print_table(
        [
            "run",
            "tile F1",
            "P",
            "R",
            "crack-free flagged",
            "threshold",
            "raw ECE",
            "train s",
            "CPU s (est.)",
            "targets",
        ],
        [
            [
                r["run"],
                r["tile_f1"],
                r["precision"],
                r["recall"],
                r["false_alarm_rate"],
                r["threshold"],
                r["raw_ece"],
                r["train_seconds"],
                r.get("cpu_seconds_estimate", r["train_seconds"]),
                {True: "met", False: "missed", None: "-"}[r["meets_targets"]],
            ]
            for r in rows
        ],
    )
    command = "python -m bench.real_maps " + " ".join(argv if argv is not None else sys.argv[1:])
    name = {"losses": "real_maps", "transfer": "real_maps_transfer"}.get(
        args.stage, "real_maps_recipes"
    )
    path = write_results(
        name,
        {
            "command": command.strip(),
            "settings": vars(args),
            "targets": {
                "tile_f1": TARGET_F1,
                "false_alarm_rate": TARGET_FALSE_ALARMS,
                "train_seconds": TARGET_SECONDS,
            },
            "rows": rows,
        },
    )
    print(f"wrote {path}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
