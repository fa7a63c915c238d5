"""One pass of training and one pass of prediction, as torchvision's reference splits them.

train_one_epoch: for each batch, x = normalise(uint8 tiles), features = f(x) under autocast,
loss = criterion(features, y, head, progress), one SGD step. predict_logits: (N, 3, S, S)
uint8 -> (N, C) logits.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import torch
from torch import nn

from models.backbones import Classifier
from models.data import IMAGENET_MEAN, IMAGENET_STD, normalise
from models.device import amp_dtype, autocast
from models.training.config import TrainConfig


def epoch_generator(seed: int, epoch: int) -> torch.Generator:
    """The RNG of one epoch's order and flips: a function of (seed, epoch) only."""
    return torch.Generator().manual_seed(seed * 1_000_003 + epoch)


def train_one_epoch(
    model: Classifier,
    criterion: nn.Module,
    optimizer: torch.optim.Optimizer,
    batches: Any,
    config: TrainConfig,
    device: torch.device,
    step0: int,
    total_steps: int,
    on_step: Callable[[int, float], None] | None = None,
) -> tuple[float, int, int]:
    """One pass over the training batches; returns (mean loss, steps, images)."""
    model.train()
    memory = torch.channels_last if config.channels_last else torch.contiguous_format
    scaler = torch.amp.GradScaler(enabled=amp_dtype(device) == torch.float16 and config.amp)
    mean, std = config.normalisation()
    total, steps, images = 0.0, 0, 0
    for raw, labels in batches:
        x = normalise(raw.to(device, non_blocking=True), mean, std)
        x = x.contiguous(memory_format=memory)
        y = labels.to(device, non_blocking=True)
        progress = min(1.0, (step0 + steps) / max(1, total_steps))
        with autocast(device, config.amp, config.cpu_bf16):
            features = model.forward_features(x)
        loss = criterion(features.float(), y, model.head, progress)
        optimizer.zero_grad(set_to_none=True)
        scaler.scale(loss).backward()
        scaler.step(optimizer)
        scaler.update()
        value = float(loss.detach())
        if not torch.isfinite(torch.tensor(value)):
            raise FloatingPointError(
                f"the {config.loss} loss became {value} at step {step0 + steps}"
            )
        total += value * y.shape[0]
        images += y.shape[0]
        steps += 1
        if on_step is not None:
            on_step(steps, value)
    return total / max(1, images), steps, images


@torch.inference_mode()
def predict_logits(
    model: Classifier,
    images: torch.Tensor,
    device: torch.device,
    batch_size: int = 256,
    cpu_bf16: bool = False,
    mean: tuple[float, ...] = IMAGENET_MEAN,
    std: tuple[float, ...] = IMAGENET_STD,
) -> torch.Tensor:
    """(N, 3, S, S) uint8 -> (N, C) float32 logits on the CPU, the inputs normalised as
    (x / 255 − mean) / std."""
    model.eval()
    out = []
    for start in range(0, images.shape[0], batch_size):
        x = normalise(images[start : start + batch_size].to(device), mean, std)
        with autocast(device, True, cpu_bf16):
            out.append(model(x.contiguous(memory_format=torch.channels_last)).float().cpu())
    if not out:
        return torch.zeros(0, model.num_classes)
    return torch.cat(out)
