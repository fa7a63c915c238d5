"""Wall time of one training step per loss, as a ratio to cross-entropy in the same run.

One step = forward, loss, backward and an SGD step of a torchvision ResNet at
batch 64. The losses' repeats are interleaved (CE, focal, ISDA, ... then again)
in a rotating order; each ratio is the median over repeats of the paired ratio
t_loss / t_CE within one repeat, so drift on a shared machine cancels.

    python -m bench.loss_overhead            # full: resnet18 + resnet50
    python -m bench.loss_overhead --quick    # a few seconds, for the demo and CI
"""

from __future__ import annotations

import argparse
from collections.abc import Callable
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from bench.common import median, print_table, timed, write_results
from models.backbones import build_classifier
from models.losses import GMSampledLoss, IGMSDAExactLoss, IGMSDALoss, ISDALoss, focal_loss

# (loss, baseline) -> the largest paired ratio allowed, on ResNet50.
TARGETS = {
    "igmsda_vs_ce": 1.03,
    "igmsda_vs_isda": 1.02,
    "igmsda-exact_vs_isda": 1.05,
    "gm_s1000_vs_isda": 1.10,
}
LossStep = Callable[[torch.Tensor, torch.Tensor, nn.Linear], torch.Tensor]


def loss_steps(num_classes: int, feature_dim: int, device: torch.device) -> dict[str, LossStep]:
    """Each loss as a function of (features, labels, head), at progress t/T = 0.5."""
    steps: dict[str, LossStep] = {
        "ce": lambda f, y, head: F.cross_entropy(head(f), y),
        "focal": lambda f, y, head: focal_loss(head(f), y),
        "isda": _at_half(ISDALoss(num_classes, feature_dim).to(device)),
        "igmsda": _at_half(IGMSDALoss(num_classes, feature_dim).to(device)),
        "igmsda-exact": _at_half(IGMSDAExactLoss(num_classes, feature_dim).to(device)),
    }
    for samples in (10, 100, 1000):
        steps[f"gm_s{samples}"] = _at_half(
            GMSampledLoss(num_classes, feature_dim, samples=samples).to(device)
        )
    return steps


def _at_half(loss: nn.Module) -> LossStep:
    return lambda f, y, head: loss(f, y, head, 0.5)


def bench_backbone(
    name: str, image_size: int, batch: int, repeats: int, device: torch.device
) -> list[dict[str, Any]]:
    torch.manual_seed(0)
    model = build_classifier(name, num_classes=2).to(device)
    model = model.to(memory_format=torch.channels_last)
    optimizer = torch.optim.SGD(model.parameters(), lr=1e-3, momentum=0.9, weight_decay=1e-4)
    x = torch.randn(batch, 3, image_size, image_size, device=device)
    x = x.contiguous(memory_format=torch.channels_last)
    y = torch.arange(batch, device=device) % 2
    steps = loss_steps(2, model.feature_dim, device)

    def step(loss_fn: LossStep) -> None:
        optimizer.zero_grad(set_to_none=True)
        loss = loss_fn(model.forward_features(x), y, model.head)
        loss.backward()
        optimizer.step()

    for loss_fn in steps.values():  # warm-up: allocator, estimator, kernels
        step(loss_fn)
    times: dict[str, list[float]] = {key: [] for key in steps}
    keys = list(steps)
    for r in range(repeats):
        # Rotate the order every repeat so no loss always runs right after another.
        for key in keys[r % len(keys) :] + keys[: r % len(keys)]:
            times[key].append(timed(lambda fn=steps[key]: step(fn), device))

    def paired_ratio(key: str, base: str) -> float:
        """Median over repeats of t_key / t_base within the same repeat: robust to drift."""
        return median([a / b for a, b in zip(times[key], times[base], strict=True)])

    rows: list[dict[str, Any]] = []
    for key, values in times.items():
        m = median(values)
        rows.append(
            {
                "backbone": name,
                "loss": key,
                "image_size": image_size,
                "batch": batch,
                "median_s": m,
                "tiles_per_s": batch / m,
                "ratio_vs_ce": paired_ratio(key, "ce"),
                "ratio_vs_isda": paired_ratio(key, "isda"),
                "samples_s": values,
            }
        )
    return rows


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="resnet18 only, small, 3 repeats")
    parser.add_argument("--repeats", type=int, default=15)
    parser.add_argument("--batch", type=int, default=64)
    parser.add_argument(
        "--image-size", type=int, default=None, help="default 64 on CPU, 224 on GPU"
    )
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    args = parser.parse_args(argv)
    device = torch.device(args.device)
    size = args.image_size or (224 if device.type == "cuda" else 64)
    backbones = ["resnet18"] if args.quick else ["resnet18", "resnet50"]
    repeats = 3 if args.quick else args.repeats
    if args.quick:
        size = args.image_size or 32
    print(
        f"loss overhead: batch {args.batch}, {size}x{size} inputs, {repeats} interleaved repeats, {device}"
    )
    rows = [r for b in backbones for r in bench_backbone(b, size, args.batch, repeats, device)]
    print_table(
        ["backbone", "loss", "median s/step", "tiles/s", "x CE", "x ISDA"],
        [
            [
                r["backbone"],
                r["loss"],
                r["median_s"],
                r["tiles_per_s"],
                r["ratio_vs_ce"],
                r["ratio_vs_isda"],
            ]
            for r in rows
        ],
    )
    name = "loss_overhead_quick" if args.quick else "loss_overhead"
    path = write_results(
        name,
        {
            "command": "python -m bench.loss_overhead" + (" --quick" if args.quick else ""),
            "device": str(device),
            "image_size": size,
            "batch": args.batch,
            "repeats": repeats,
            "targets": TARGETS,
            "rows": rows,
        },
    )
    print(f"wrote {path}")


if __name__ == "__main__":
    main()
