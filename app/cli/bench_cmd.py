"""`crackscan bench-loss`: the loss-overhead benchmark (bench/loss_overhead.py)."""

from __future__ import annotations

import argparse
from typing import Any


def register(sub: Any) -> None:
    p = sub.add_parser("bench-loss", help="time one training step per loss against cross-entropy")
    p.add_argument(
        "--quick", action="store_true", help="resnet18 only, small inputs, a few seconds"
    )
    p.set_defaults(run=run)


def run(args: argparse.Namespace) -> int:
    try:
        from bench import loss_overhead
    except ImportError as exc:  # bench/ ships with the repository, not the wheel
        raise ValueError("bench-loss runs from a crackscan source checkout") from exc
    loss_overhead.main(["--quick"] if args.quick else [])
    return 0
