"""CPU bf16 inference against fp32: do tile decisions on real photos agree, and what does it gain?

bf16 autocast is offered on CPUs with native bf16 (AVX512-BF16 or AMX). It becomes the default
only if, on the real sets, at least 99.5% of tile decisions (p_defect >= the model's operating
threshold) are the ones fp32 makes. This trains a resnet18 on ../shared/data as bench.real_maps
does (its "today" recipe with ISDA; cached under bench/cache/cpu_bf16/), then runs every test
tile of cfd (CrackForest) and crackmix through the service's Predictor in fp32 and in bf16, and
times the bare forward of resnet18 and resnet50 at 224 px in both precisions.

    python -m bench.cpu_bf16                   # trains once (about 6 minutes on 2 cores)
    python -m bench.cpu_bf16 --model m.ckpt    # your own model (trained on the same classes)
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Any

import numpy as np
import torch

from bench.common import median, print_table, write_results
from bench.inference import bare_forward
from bench.inference import random_checkpoint as random_224
from bench.real_maps import SHARED, config_for, load_sets, study_set, train
from models.checkpoint import load_checkpoint, save_checkpoint
from models.data import load_tiles
from models.device import cpu_has_native_bf16
from models.inference import InferenceConfig, Predictor
from models.threshold import defect_scores, detection_metrics

CACHE = Path(__file__).resolve().parent / "cache" / "cpu_bf16"
TARGET_AGREEMENT = 0.995


def trained_model(args: argparse.Namespace) -> Path:
    """The model to compare with: --model, or a resnet18 trained once and cached."""
    if args.model:
        return Path(args.model)
    path = CACHE / f"resnet18_isda_{args.epochs}ep_{args.train_tiles}.ckpt"
    if not path.exists():
        print(f"training resnet18 (ISDA, {args.epochs} epochs) on {args.data} ...", flush=True)
        data = study_set(load_sets(args), args)
        ckpt, seconds = train(config_for("isda", args), data)
        print(f"trained in {seconds:.0f} s", flush=True)
        CACHE.mkdir(parents=True, exist_ok=True)
        save_checkpoint(ckpt, path)
    return path


def probabilities(predictor: Predictor, tiles: torch.Tensor, batch: int = 256) -> torch.Tensor:
    return torch.cat(
        [predictor.predict_batch(tiles[i : i + batch]) for i in range(0, len(tiles), batch)]
    )


def agreement_rows(args: argparse.Namespace, model_path: Path) -> list[dict[str, Any]]:
    ckpt = load_checkpoint(model_path)
    fp32 = Predictor(ckpt, InferenceConfig(device="cpu"))
    bf16 = Predictor(ckpt, InferenceConfig(device="cpu", cpu_bf16=True))
    sets = load_sets(args)
    defect_index = [ckpt.classes.index(c) for c in ckpt.defect_classes]
    threshold = ckpt.operating_threshold
    rows = []
    for name in ("cfd", "crackmix"):
        data = sets[name].in_class_order(ckpt.classes)
        tiles, labels = load_tiles(data.source, data.splits["test"], ckpt.input_size)
        p32, p16 = probabilities(fp32, tiles), probabilities(bf16, tiles)
        d32 = p32[:, defect_index].sum(1) >= threshold
        d16 = p16[:, defect_index].sum(1) >= threshold
        s32, truth = defect_scores(p32.double(), labels, defect_index)
        s16, _ = defect_scores(p16.double(), labels, defect_index)
        rows.append(
            {
                "set": name,
                "tiles": len(labels),
                "agreement": float((d32 == d16).float().mean()),
                "changed": int((d32 != d16).sum()),
                "max_abs_diff": float((p32 - p16).abs().max()),
                "f1_fp32": detection_metrics(s32, truth, threshold)["f1"],
                "f1_bf16": detection_metrics(s16, truth, threshold)["f1"],
            }
        )
        print(f"{name}: {rows[-1]}", flush=True)
    return rows


def speed_rows(repeats: int) -> list[dict[str, Any]]:
    rows = []
    for backbone in ("resnet18", "resnet50"):
        ckpt = random_224(backbone, 224)
        rates = {}
        for label, bf16 in (("fp32", False), ("bf16", True)):
            predictor = Predictor(ckpt, InferenceConfig(device="cpu", cpu_bf16=bf16))
            predictor.warm_up()
            rates[label] = median(bare_forward(predictor, 32, repeats))
        rows.append(
            {"backbone": backbone, "fp32_tiles_per_s": rates["fp32"], "bf16_tiles_per_s": rates["bf16"],
             "speedup": rates["bf16"] / rates["fp32"]}
        )  # fmt: skip
        print(f"{backbone}: {rows[-1]}", flush=True)
    return rows


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", help="a checkpoint trained on the real sets' classes")
    parser.add_argument("--data", default=str(SHARED))
    parser.add_argument("--epochs", type=int, default=6)
    parser.add_argument("--train-tiles", type=int, default=4000, help="per set, sampled")
    parser.add_argument("--repeats", type=int, default=5)
    args = parser.parse_args(argv)
    if not cpu_has_native_bf16():
        print("skipped: this CPU has no native bf16 (AVX512-BF16 or AMX): bf16 would be slower")
        return 0
    if not all((Path(args.data) / n).is_dir() for n in ("ccic-dev", "cfd", "crackmix")):
        print(f"skipped: the real photos are not in {args.data}")
        return 0
    # bench.real_maps' study settings: 64 px tiles of the masks at stride 32, split by photo
    args.sets, args.seed, args.tile, args.val_tiles = ["ccic", "cfd", "crackmix"], 0, 64, 1500
    args.backbone, args.image_size, args.lr, args.device = "resnet18", 64, 0.01, "cpu"
    args.augment, args.cpu_bf16 = "survey", True
    torch.manual_seed(0)
    model_path = trained_model(args)
    agreement = agreement_rows(args, model_path)
    speed = speed_rows(args.repeats)
    print("tile decisions on the real test photos, bf16 against fp32 (the model's threshold):")
    print_table(
        ["set", "tiles", "agreement", "changed", "max |dp|", "F1 fp32", "F1 bf16"],
        [[r["set"], r["tiles"], r["agreement"], r["changed"], r["max_abs_diff"], r["f1_fp32"], r["f1_bf16"]]
         for r in agreement],
    )  # fmt: skip
    print(f"bare forward at 224 px, batch 32, tiles/s (medians of {args.repeats}):")
    print_table(
        ["backbone", "fp32", "bf16", "bf16/fp32"],
        [
            [r["backbone"], r["fp32_tiles_per_s"], r["bf16_tiles_per_s"], r["speedup"]]
            for r in speed
        ],
    )
    worst = min(r["agreement"] for r in agreement)
    verdict = worst >= TARGET_AGREEMENT
    print(
        f"lowest agreement {100 * worst:.2f}% (target {100 * TARGET_AGREEMENT:.1f}%): "
        + ("bf16 may be the default on such CPUs" if verdict else "fp32 stays the default")
    )
    path = write_results(
        "cpu_bf16",
        {
            "command": "python -m bench.cpu_bf16 "
            + " ".join(argv if argv is not None else sys.argv[1:]),
            "model": str(model_path),
            "agreement": agreement,
            "speed": speed,
            "target_agreement": TARGET_AGREEMENT,
            "bf16_default_justified": verdict,
            "decisions_changed_total": int(np.sum([r["changed"] for r in agreement])),
        },
    )
    print(f"wrote {path}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
