"""Training configuration: the paper's recipe as defaults, every part configurable."""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import Any

from models.backbones import backbone_spec
from models.data.augment import check_augment

LOSSES = ("ce", "focal", "isda", "gm", "igmsda", "igmsda-exact")
DEFAULT_LOSS = "igmsda"  # of new runs, jobs and the demo; docs/RESULTS.md says why
# The paper divides the lr by 10 after epochs 65, 95 and 125 of 150.
PAPER_MILESTONE_FRACTIONS = (65 / 150, 95 / 150, 125 / 150)


@dataclass
class TrainConfig:
    """How to train one classifier (defaults: the IGMSDA paper's recipe)."""

    backbone: str = "resnet18"
    loss: str = DEFAULT_LOSS
    epochs: int = 150
    batch_size: int = 64
    image_size: int = 224
    lr: float = 0.01
    momentum: float = 0.9
    weight_decay: float = 1e-4
    lr_milestones: list[int] | None = None  # None: 65/95/125 of 150, scaled to `epochs`
    lr_gamma: float = 0.1
    lam0: float = 0.5
    alpha0: float = 2.5
    gm_samples: int = 100
    focal_gamma: float = 2.0
    diagonal_cov: bool = False
    augment: str = "survey"  # none | flip (the paper's) | survey (models.data.augment)
    seed: int = 0
    weights: str | None = None  # None, "imagenet" or a torchvision weights file
    device: str = "auto"
    amp: bool = True  # CUDA only; the loss stays in float32
    cpu_bf16: bool = False  # bf16 autocast on CPUs with native bf16 (AVX512-BF16, AMX)
    channels_last: bool = True
    num_workers: int = 0  # threads that decode the tiles once, before training (0: one per CPU)
    eval_batch_size: int = 256
    ram_cache_mb: int = 4096  # decoded tiles beyond this go to a memory-mapped file
    cache_dir: str | None = None  # where that file goes (None: the system's temp folder)
    target_precision: float | None = None  # None: the threshold that maximises val F1

    def __post_init__(self) -> None:
        backbone_spec(self.backbone)
        if self.loss not in LOSSES:
            raise ValueError(f"loss must be one of {LOSSES}, got {self.loss!r}")
        for name in ("epochs", "batch_size", "image_size", "gm_samples", "eval_batch_size"):
            if int(getattr(self, name)) < 1:
                raise ValueError(f"{name} must be >= 1, got {getattr(self, name)!r}")
        if self.image_size < 32:
            raise ValueError(f"image_size must be >= 32, got {self.image_size}")
        if self.lr <= 0 or self.weight_decay < 0 or not 0 <= self.momentum < 1:
            raise ValueError("lr must be > 0, weight_decay >= 0 and momentum in [0, 1)")
        if self.lam0 < 0 or self.alpha0 < 0:
            raise ValueError("lam0 and alpha0 must be >= 0")
        if self.target_precision is not None and not 0 < self.target_precision <= 1:
            raise ValueError(f"target_precision must lie in (0, 1], got {self.target_precision}")
        check_augment(self.augment)
        if self.num_workers < 0:
            raise ValueError("num_workers must be >= 0")
        if self.ram_cache_mb < 0:
            raise ValueError("ram_cache_mb must be >= 0")

    def milestones(self) -> list[int]:
        """Epochs after which the lr is multiplied by lr_gamma."""
        if self.lr_milestones is not None:
            return sorted(int(m) for m in self.lr_milestones)
        return sorted({max(1, round(f * self.epochs)) for f in PAPER_MILESTONE_FRACTIONS})

    def lr_at(self, epoch: int) -> float:
        """The learning rate used during (0-based) epoch `epoch`."""
        drops = sum(1 for m in self.milestones() if epoch >= m)
        return self.lr * self.lr_gamma**drops

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> TrainConfig:
        known = {f.name for f in dataclasses.fields(cls)}
        values = {k: v for k, v in data.items() if k in known}
        if "augment" not in data and "hflip" in data:  # configs from before `augment`
            values["augment"] = "flip" if data["hflip"] else "none"
        return cls(**values)
