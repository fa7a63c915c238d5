"""The review loop simulated on CrackForest, with its masks as the inspector.

Start: a resnet18 trained on the ccic-dev wall tiles only. CrackForest's 118 pavement photos
are split, seeded by photo, into a pool (60%) and test photos (40%). Each round maps the
pool with the current model, picks K tiles by the strategy, has the masks answer them, and
fine-tunes as a feedback job does: every label so far, cut from the photos, split by photo
(models.data.feedback), starting from the current model. After each round the test photos
are mapped and scored per tile.

- Picks: `uncertainty` takes the tiles whose defect probability is closest to the model's
  operating threshold, `random` a seeded random order, `mixed` the two interleaved; all
  skip labelled tiles and never take two overlapping tiles of one photo
  (models.inference.review ranks them, over the whole pool here).
- The oracle: a tile is crack when it holds at least 64 crack pixels (its side), else no crack.
- Scores: tiles of 64 px at stride 32, labelled by the masks rule (crack >= 64 crack pixels,
  no crack = none, left out in between), at the model's own operating threshold.

    python -m bench.active_learning                  # 3 seeds, 3 rounds of 50
    python -m bench.active_learning --seeds 0 --rounds 1   # a quick look
"""

from __future__ import annotations

import argparse
import dataclasses
import hashlib
import json
import statistics
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image

from bench.common import print_table, write_results
from models.checkpoint import Checkpoint, load_checkpoint, save_checkpoint
from models.data import load_labelled_set
from models.data.feedback import LabelledPhoto, photo_splits, write_feedback_set
from models.inference import InferenceConfig, Predictor, TileTable, make_grid
from models.inference.review import STRATEGIES, review_order
from models.inference.tiling import TileGrid
from models.threshold import detection_metrics
from models.training import TrainConfig, fit

TILE, STRIDE = 64, 32
CACHE = Path(__file__).resolve().parent / "cache" / "active_learning"
TARGET_GAIN = 0.25  # F1 after 150 labels over the start model's
TARGET_MARGIN = 0.03  # uncertainty over random at 150 labels


@dataclass
class Photo:
    name: str
    image: Image.Image
    grid: TileGrid
    crack_pixels: np.ndarray  # (rows, cols) crack pixels under each tile

    def oracle(self, row: int, col: int) -> str:
        return "crack" if self.crack_pixels[row, col] >= TILE else "no_crack"


def load_cfd(root: Path) -> list[Photo]:
    photos = []
    for path in sorted((root / "image").glob("*.jpg")):
        image = Image.open(path).convert("RGB")
        mask = np.asarray(Image.open(root / "mask" / f"{path.stem}.png").convert("L")) > 127
        grid = make_grid(image.height, image.width, TILE, STRIDE)
        table = np.zeros((mask.shape[0] + 1, mask.shape[1] + 1), dtype=np.int64)
        table[1:, 1:] = mask.cumsum(0).cumsum(1)
        ys, xs = np.asarray(grid.ys)[:, None], np.asarray(grid.xs)[None, :]
        pixels = (
            table[ys + TILE, xs + TILE]
            - table[ys, xs + TILE]
            - table[ys + TILE, xs]
            + table[ys, xs]
        )
        photos.append(Photo(path.stem, image, grid, pixels))
    return photos


def split_pool(photos: list[Photo], seed: int) -> tuple[list[Photo], list[Photo]]:
    order = np.random.default_rng(seed).permutation(len(photos))
    cut = round(0.6 * len(photos))
    return [photos[i] for i in order[:cut]], [photos[i] for i in order[cut:]]


def start_model(args: argparse.Namespace) -> Checkpoint:
    """The walls-only model, trained once and cached by its recipe."""
    config = TrainConfig(
        backbone="resnet18",
        loss=args.loss,
        epochs=args.start_epochs,
        image_size=TILE,
        batch_size=64,
        lr=0.01,
        seed=0,
        device="cpu",
        augment="survey",
        cpu_bf16=True,
    )
    recipe = json.dumps([config.to_dict(), args.start_tiles], sort_keys=True)
    path = CACHE / f"start-{hashlib.sha256(recipe.encode()).hexdigest()[:12]}.ckpt"
    if path.exists():
        return load_checkpoint(path)
    data = load_labelled_set(Path(args.data) / "ccic-dev", seed=0, verify_images=False)
    rng = np.random.default_rng(0)
    splits = dict(data.splits)
    for split, cap in (("train", args.start_tiles), ("val", args.start_tiles // 3)):
        keep = sorted(rng.permutation(len(splits[split]))[:cap].tolist())
        splits[split] = [splits[split][i] for i in keep]
    started = time.perf_counter()
    checkpoint = fit(config, dataclasses.replace(data, splits=splits)).checkpoint
    print(f"start model: {time.perf_counter() - started:.0f} s on ccic-dev", flush=True)
    CACHE.mkdir(parents=True, exist_ok=True)
    save_checkpoint(checkpoint, path)
    return checkpoint


def map_photos(checkpoint: Checkpoint, photos: list[Photo]) -> list[TileTable]:
    predictor = Predictor(checkpoint, InferenceConfig(device="cpu", batch_size=256))
    return [predictor.inspect_image(p.image, TILE, STRIDE).table for p in photos]


def score(tables: list[TileTable], photos: list[Photo]) -> dict[str, float]:
    """Tile detection on the test photos, masks rule (tiles in between are left out)."""
    import torch

    probs, truth = [], []
    for table, photo in zip(tables, photos, strict=True):
        pixels = photo.crack_pixels.reshape(-1)
        kept = (pixels >= TILE) | (pixels == 0)
        probs.append(table.defect_probs[kept])
        truth.append(pixels[kept] >= TILE)
    found = detection_metrics(
        torch.from_numpy(np.concatenate(probs)).double(),
        torch.from_numpy(np.concatenate(truth)),
        tables[0].threshold,
    )
    return {k: float(v) for k, v in found.items()}


def pick(
    strategy: str,
    tables: list[TileTable],
    labelled: dict[str, set[tuple[int, int]]],
    names: list[str],
    k: int,
    seed: int,
) -> list[tuple[int, int, int]]:
    """K (photo index, row, col) over the whole pool, as the review route ranks one map's
    tiles (models.inference.review.review_order), skipping labelled and overlapping tiles."""
    offsets = np.cumsum([0] + [len(t) for t in tables])
    probs = np.concatenate([t.defect_probs for t in tables])
    taken: dict[int, list[tuple[int, int]]] = {}
    picked: list[tuple[int, int, int]] = []
    for flat in review_order(probs, strategy, tables[0].threshold, seed):
        n = int(np.searchsorted(offsets, flat, side="right") - 1)
        grid = tables[n].grid
        row, col, y, x = grid.position(int(flat - offsets[n]))
        if (row, col) in labelled.get(names[n], set()):
            continue
        if any(
            abs(y - y0) < grid.tile_h and abs(x - x0) < grid.tile_w for y0, x0 in taken.get(n, [])
        ):
            continue
        taken.setdefault(n, []).append((y, x))
        picked.append((n, row, col))
        if len(picked) == k:
            break
    return picked


def fine_tune(
    checkpoint: Checkpoint,
    pool: list[Photo],
    labelled: dict[str, set[tuple[int, int]]],
    args: argparse.Namespace,
    seed: int,
) -> Checkpoint:
    """A feedback job's fine-tune: the labels cut from the photos, split by photo."""
    by_name = {p.name: p for p in pool}
    crack = checkpoint.defect_classes[0]  # the answers in the model's own class names
    clear = next(c for c in checkpoint.classes if c not in checkpoint.defect_classes)
    photos = []
    for name, cells in sorted(labelled.items()):
        photo = by_name[name]
        answers = [
            (r, c, crack if photo.oracle(r, c) == "crack" else clear) for r, c in sorted(cells)
        ]
        photos.append((LabelledPhoto(name, photo.grid, answers), photo.image))
    with tempfile.TemporaryDirectory() as folder:
        path = Path(folder) / "labels.zip"
        write_feedback_set(path, photos, photo_splits(labelled, seed))
        data = load_labelled_set(path, defect_classes=[crack], seed=seed, partial=True)
        config = TrainConfig(
            backbone=checkpoint.backbone,
            loss=args.loss,
            epochs=args.tune_epochs,
            image_size=TILE,
            batch_size=32,
            lr=args.tune_lr,
            lr_milestones=[],
            seed=seed,
            device="cpu",
            augment="survey",
            cpu_bf16=True,
        )
        return fit(config, data.in_class_order(checkpoint.classes), init=checkpoint).checkpoint


def run_loop(
    strategy: str,
    seed: int,
    start: Checkpoint,
    start_score: dict[str, float],
    photos: list[Photo],
    args: argparse.Namespace,
) -> list[dict[str, Any]]:
    pool, test = split_pool(photos, seed)
    model, labelled = start, {}
    rows = [{"strategy": strategy, "seed": seed, "labels": 0, **start_score}]
    for round_ in range(1, args.rounds + 1):
        started = time.perf_counter()
        tables, names = map_photos(model, pool), [p.name for p in pool]
        for n, row, col in pick(strategy, tables, labelled, names, args.k, seed * 100 + round_):
            labelled.setdefault(pool[n].name, set()).add((row, col))
        model = fine_tune(model, pool, labelled, args, seed)
        found = score(map_photos(model, test), test)
        rows.append(
            {
                "strategy": strategy,
                "seed": seed,
                "labels": round_ * args.k,
                **found,
                "seconds": time.perf_counter() - started,
            }
        )
        print(json.dumps(rows[-1]), flush=True)
    return rows


def summarise(rows: list[dict[str, Any]], args: argparse.Namespace) -> list[dict[str, Any]]:
    table = []
    for strategy in args.strategies:
        for labels in range(0, args.rounds * args.k + 1, args.k):
            found = [r for r in rows if r["strategy"] == strategy and r["labels"] == labels]
            f1 = [r["f1"] for r in found]
            table.append(
                {
                    "strategy": strategy,
                    "labels": labels,
                    "f1_mean": statistics.mean(f1),
                    "f1_sd": statistics.stdev(f1) if len(f1) > 1 else 0.0,
                    "false_alarm_mean": statistics.mean(r["false_alarm_rate"] for r in found),
                    "threshold_mean": statistics.mean(r["threshold"] for r in found),
                    "seeds": len(found),
                }
            )
    return table


def targets_of(table: list[dict[str, Any]], args: argparse.Namespace) -> dict[str, Any]:
    """Each strategy's F1 gain over the start model after the last round, and its margin
    over random; the issue's targets are on uncertainty (gain >= 0.25, margin >= 0.03)."""
    last = args.rounds * args.k
    at = {r["strategy"]: r["f1_mean"] for r in table if r["labels"] == last}
    begin = next(r["f1_mean"] for r in table if r["labels"] == 0)
    targets: dict[str, Any] = {"labels": last, "start_f1": begin}
    for strategy, f1 in at.items():
        targets[f"{strategy}_gain"] = f1 - begin
        if strategy != "random" and "random" in at:
            targets[f"{strategy}_minus_random"] = f1 - at["random"]
    if "uncertainty" in at:
        targets["gain_met"] = targets["uncertainty_gain"] >= TARGET_GAIN
    if "uncertainty_minus_random" in targets:
        targets["margin_met"] = targets["uncertainty_minus_random"] >= TARGET_MARGIN
    return targets


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--data", default=str(Path(__file__).resolve().parents[2] / "shared" / "data")
    )
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--k", type=int, default=50, help="labels per round")
    parser.add_argument(
        "--strategies",
        nargs="+",
        default=list(STRATEGIES),
        choices=STRATEGIES,
    )
    parser.add_argument("--loss", default="isda")
    parser.add_argument("--start-tiles", type=int, default=3000, help="ccic-dev training tiles")
    parser.add_argument("--start-epochs", type=int, default=4)
    parser.add_argument("--tune-epochs", type=int, default=10)
    parser.add_argument("--tune-lr", type=float, default=0.003)
    args = parser.parse_args(argv)
    if not (Path(args.data) / "cfd").is_dir():
        print(
            f"no CrackForest photos under {args.data}/cfd: ../shared/data is not beside the repository"
        )
        return 2
    started = time.perf_counter()
    photos = load_cfd(Path(args.data) / "cfd")
    start = start_model(args)
    rows: list[dict[str, Any]] = []
    for seed in args.seeds:
        _, test = split_pool(photos, seed)
        start_score = score(map_photos(start, test), test)
        for strategy in args.strategies:
            rows += run_loop(strategy, seed, start, start_score, photos, args)
    table = summarise(rows, args)
    print_table(
        ["strategy", "labels", "tile F1 (mean)", "sd", "crack-free flagged", "threshold", "seeds"],
        [
            [
                r["strategy"],
                r["labels"],
                r["f1_mean"],
                r["f1_sd"],
                r["false_alarm_mean"],
                r["threshold_mean"],
                r["seeds"],
            ]
            for r in table
        ],
    )
    targets = targets_of(table, args)
    print(json.dumps(targets))
    path = write_results(
        "active_learning",
        {
            "settings": vars(args),
            "rows": rows,
            "table": table,
            "targets": targets,
            "seconds": time.perf_counter() - started,
        },
    )
    print(f"wrote {path}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
