"""The training loop, split as torchvision's reference: train_one_epoch / predict_logits / fit."""

from __future__ import annotations

import copy
import os
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import torch
from torch import nn

from models.backbones import Classifier, build_classifier
from models.checkpoint import Checkpoint
from models.data import (
    IMAGENET_MEAN,
    IMAGENET_STD,
    LabelledSet,
    epoch_batches,
    load_tiles,
    normalise,
)
from models.device import amp_dtype, autocast, select_device
from models.metrics import evaluation_report
from models.training.config import TrainConfig
from models.training.criterion import build_criterion, estimator_of
from models.training.report import final_report

ProgressFn = Callable[[int, int, dict[str, Any]], None]  # (epoch, step, info)
CancelFn = Callable[[], bool]
EpochEndFn = Callable[[dict[str, Any], Checkpoint, bool], None]  # (record, last ckpt, is best)


@dataclass
class TrainResult:
    checkpoint: Checkpoint
    history: list[dict[str, Any]]
    cancelled: bool = False
    metrics: dict[str, Any] = field(default_factory=dict)


class Cancelled(Exception):
    """Raised inside an epoch when the cancellation check says stop."""


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
    total, steps, images = 0.0, 0, 0
    for raw, labels in batches:
        x = normalise(raw.to(device, non_blocking=True), IMAGENET_MEAN, IMAGENET_STD)
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
) -> torch.Tensor:
    """(N, 3, S, S) uint8 -> (N, C) float32 logits on the CPU."""
    model.eval()
    out = []
    for start in range(0, images.shape[0], batch_size):
        x = normalise(images[start : start + batch_size].to(device), IMAGENET_MEAN, IMAGENET_STD)
        with autocast(device, True, cpu_bf16):
            out.append(model(x.contiguous(memory_format=torch.channels_last)).float().cpu())
    if not out:
        return torch.zeros(0, model.num_classes)
    return torch.cat(out)


def _spill_dir(data: LabelledSet, config: TrainConfig) -> str | None:
    """Where decoded tiles go when they exceed config.ram_cache_mb: a mapped file, not RAM."""
    n = sum(len(v) for v in data.splits.values())
    need = n * 3 * config.image_size * config.image_size
    if need <= config.ram_cache_mb << 20:
        return None
    return config.cache_dir or tempfile.gettempdir()


def _check_given_tiles(
    data: LabelledSet, tiles: dict[str, tuple[torch.Tensor, torch.Tensor]], size: int
) -> None:
    for split, samples in data.splits.items():
        if split not in tiles:
            raise ValueError(f"tiles lack the {split!r} split")
        images, labels = tiles[split]
        if tuple(images.shape) != (len(samples), 3, size, size) or images.dtype != torch.uint8:
            raise ValueError(
                f"{split} tiles must be ({len(samples)}, 3, {size}, {size}) uint8, "
                f"got {tuple(images.shape)} {images.dtype}"
            )
        if labels.tolist() != [s.label for s in samples]:
            raise ValueError(f"{split} tile labels differ from the set's labels")


def fit(
    config: TrainConfig,
    data: LabelledSet,
    init: Checkpoint | None = None,
    resume: Checkpoint | None = None,
    progress: ProgressFn | None = None,
    should_cancel: CancelFn | None = None,
    on_epoch_end: EpochEndFn | None = None,
    tiles: dict[str, tuple[torch.Tensor, torch.Tensor]] | None = None,
) -> TrainResult:
    """Train, keep the best epoch by validation macro F, calibrate, and test.

    Args:
        config: the recipe.
        data: a loaded labelled set (train / val / test).
        init: fine-tune from this checkpoint (same classes; its estimator is kept).
        resume: continue an interrupted run from its last checkpoint.
        progress: called with (epoch, step, info) during training.
        should_cancel: polled every step; True stops the run (result.cancelled).
        on_epoch_end: called with (record, last checkpoint, improved) after each epoch.
        tiles: the splits already decoded at config.image_size, {split: ((N, 3, S, S) uint8,
            (N,) int64)}, in data.splits' order; by default they are decoded here.
    """
    device = select_device(config.device)
    torch.manual_seed(config.seed)
    if tiles is None:
        threads = config.num_workers or os.cpu_count() or 1
        spill = _spill_dir(data, config)
        tiles = {
            s: load_tiles(data.source, data.splits[s], config.image_size, threads, spill)
            for s in data.splits
        }
    else:
        _check_given_tiles(data, tiles, config.image_size)
    num_classes = len(data.classes)
    model = build_classifier(config.backbone, num_classes, config.weights)
    criterion = build_criterion(config, num_classes, model.feature_dim)
    estimator = estimator_of(criterion)
    base = resume or init
    if base is not None:
        if list(base.classes) != list(data.classes):
            raise ValueError(
                f"the checkpoint's classes {base.classes} differ from the data's {data.classes}"
            )
        if base.backbone != config.backbone:
            raise ValueError(f"the checkpoint is a {base.backbone}, not a {config.backbone}")
        model.load_state_dict(base.model_state)
        if estimator is not None and base.estimator_state is not None:
            estimator.load_state_dict(base.estimator_state)
    memory = torch.channels_last if config.channels_last else torch.contiguous_format
    model = model.to(device).to(memory_format=memory)
    criterion.to(device)
    optimizer = torch.optim.SGD(
        model.parameters(), lr=config.lr, momentum=config.momentum, weight_decay=config.weight_decay
    )
    state = _RunState(history=[], best_f1=-1.0, best_state=None, start_epoch=0)
    if resume is not None:
        state = _restore(resume, optimizer)
    train_images, train_labels = tiles["train"]
    n_train = train_images.shape[0]
    per_epoch = n_train // config.batch_size if n_train >= config.batch_size else 1
    total_steps = per_epoch * config.epochs
    cancelled = False
    for epoch in range(state.start_epoch, config.epochs):
        lr = config.lr_at(epoch)
        for group in optimizer.param_groups:
            group["lr"] = lr
        batches = epoch_batches(
            train_images,
            train_labels,
            config.batch_size,
            epoch_generator(config.seed, epoch),
            config.augment,
        )

        def on_step(step: int, loss: float, epoch: int = epoch) -> None:
            if progress is not None:
                done = (epoch * per_epoch + step) / max(1, total_steps)
                progress(epoch, step, {"phase": "train", "loss": loss, "percent": 100.0 * done})
            if should_cancel is not None and should_cancel():
                raise Cancelled

        started = time.perf_counter()
        try:
            train_loss, steps, seen = train_one_epoch(
                model,
                criterion,
                optimizer,
                batches,
                config,
                device,
                epoch * per_epoch,
                total_steps,
                on_step,
            )
        except Cancelled:
            cancelled = True
            break
        seconds = time.perf_counter() - started
        val = evaluation_report(
            predict_logits(model, tiles["val"][0], device, config.eval_batch_size, config.cpu_bf16),
            tiles["val"][1],
            data.classes,
        )
        record = {
            "epoch": epoch + 1,
            "lr": lr,
            "train_loss": train_loss,
            "train_seconds": seconds,
            "train_images_per_s": seen / seconds if seconds > 0 else 0.0,
            "val_macro_f1": val["macro_f1"],
            "val_accuracy": val["accuracy"],
            "val_ece": val["ece"],
            "val_nll": val["nll"],
        }
        state.history.append(record)
        improved = val["macro_f1"] > state.best_f1
        if improved:
            state.best_f1 = val["macro_f1"]
            state.best_state = {k: v.detach().cpu().clone() for k, v in model.state_dict().items()}
            state.best_epoch = epoch + 1
        if progress is not None:
            progress(
                epoch,
                steps,
                {"phase": "epoch_end", "percent": 100.0 * (epoch + 1) / config.epochs, **record},
            )
        if on_epoch_end is not None:
            last = _snapshot(
                config, data, model, estimator, state.history, optimizer, epoch + 1, state
            )
            on_epoch_end(record, last, improved)
    final = _finish(config, data, model, estimator, tiles, device, state, optimizer, cancelled)
    return TrainResult(final, state.history, cancelled, final.metrics)


@dataclass
class _RunState:
    history: list[dict[str, Any]]
    best_f1: float
    best_state: dict[str, torch.Tensor] | None
    start_epoch: int
    best_epoch: int = 0


def _restore(resume: Checkpoint, optimizer: torch.optim.Optimizer) -> _RunState:
    ts = resume.training_state
    if not ts:
        raise ValueError("this checkpoint is final: it holds no training state to resume from")
    optimizer.load_state_dict(ts["optimizer"])
    torch.set_rng_state(ts["rng_cpu"])
    if torch.cuda.is_available() and ts.get("rng_cuda") is not None:
        torch.cuda.set_rng_state_all(ts["rng_cuda"])
    return _RunState(
        history=list(resume.history),
        best_f1=float(ts["best_f1"]),
        best_state=ts["best_state"],
        start_epoch=int(ts["epoch"]),
        best_epoch=int(ts.get("best_epoch", 0)),
    )


def _snapshot(
    config: TrainConfig,
    data: LabelledSet,
    model: Classifier,
    estimator: nn.Module | None,
    history: list[dict[str, Any]],
    optimizer: torch.optim.Optimizer,
    epoch: int,
    state: _RunState,
) -> Checkpoint:
    """A resumable checkpoint of the run as it stands after `epoch` epochs."""
    training_state = {
        "epoch": epoch,
        "optimizer": copy.deepcopy(optimizer.state_dict()),
        "rng_cpu": torch.get_rng_state(),
        "rng_cuda": torch.cuda.get_rng_state_all() if torch.cuda.is_available() else None,
        "best_f1": state.best_f1,
        "best_epoch": state.best_epoch,
        "best_state": state.best_state,
    }
    return _checkpoint(config, data, model.state_dict(), estimator, list(history), training_state)


def _checkpoint(
    config: TrainConfig,
    data: LabelledSet,
    weights: dict[str, torch.Tensor],
    estimator: nn.Module | None,
    history: list[dict[str, Any]],
    training_state: dict[str, Any] | None,
    temperature: float = 1.0,
    metrics: dict[str, Any] | None = None,
    threshold: float | None = None,
) -> Checkpoint:
    return Checkpoint(
        backbone=config.backbone,
        classes=list(data.classes),
        defect_classes=list(data.defect_classes),
        input_size=config.image_size,
        mean=list(IMAGENET_MEAN),
        std=list(IMAGENET_STD),
        model_state={k: v.detach().cpu().clone() for k, v in weights.items()},
        temperature=temperature,
        estimator_state=None
        if estimator is None
        else {k: v.detach().cpu().clone() for k, v in estimator.state_dict().items()},
        config=config.to_dict(),
        metrics=metrics or {},
        history=history,
        training_state=training_state,
        threshold=threshold,
        tile_px=data.tile_px,
    )


def _finish(
    config: TrainConfig,
    data: LabelledSet,
    model: Classifier,
    estimator: nn.Module | None,
    tiles: dict[str, tuple[torch.Tensor, torch.Tensor]],
    device: torch.device,
    state: _RunState,
    optimizer: torch.optim.Optimizer,
    cancelled: bool,
) -> Checkpoint:
    """Load the best epoch, calibrate and choose the threshold on val, report val and test."""
    if state.best_state is not None:
        model.load_state_dict(state.best_state)
    report = final_report(
        predict_logits(model, tiles["val"][0], device, config.eval_batch_size),
        tiles["val"][1],
        predict_logits(model, tiles["test"][0], device, config.eval_batch_size),
        tiles["test"][1],
        data.classes,
        data.defect_classes,
        config.target_precision,
    )
    metrics = {
        "best_epoch": state.best_epoch,
        "epochs_run": len(state.history),
        "loss_hparams": {"loss": config.loss, "lam0": config.lam0, "alpha0": config.alpha0},
        **report.metrics,
        "data": data.summary(),
        "cancelled": cancelled,
    }
    training_state = None
    if cancelled:  # keep what is needed to resume the cancelled run
        last = _snapshot(
            config, data, model, estimator, state.history, optimizer, len(state.history), state
        )
        training_state = last.training_state
    return _checkpoint(
        config,
        data,
        model.state_dict(),
        estimator,
        state.history,
        training_state,
        report.temperature,
        metrics,
        report.threshold,
    )
