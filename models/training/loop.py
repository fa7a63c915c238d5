"""fit(): the training run, epoch by epoch, as torchvision's reference splits it.

Each epoch: train_one_epoch (models/training/steps.py), then the defect tiles' F1 on
validation at their best threshold (macro F where that is undefined); the best epoch's weights
are kept. After the last epoch, models/training/snapshots.finish loads them,
fits the temperature T and the operating threshold on validation, and reports on test.
"""

from __future__ import annotations

import dataclasses
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
from models.data import LabelledSet, epoch_batches, load_tiles
from models.device import select_device
from models.metrics import evaluation_report
from models.threshold import choose_threshold, defect_scores
from models.training.config import TrainConfig
from models.training.criterion import build_criterion, estimator_of
from models.training.snapshots import RunState, finish, restore, snapshot
from models.training.steps import epoch_generator, predict_logits, train_one_epoch

ProgressFn = Callable[[int, int, dict[str, Any]], None]  # (epoch, step, info)
CancelFn = Callable[[], bool]
EpochEndFn = Callable[[dict[str, Any], Checkpoint, bool], None]  # (record, last ckpt, is best)
Tiles = dict[str, tuple[torch.Tensor, torch.Tensor]]  # split -> ((N, 3, S, S) uint8, (N,) int64)

__all__ = ["TrainResult", "fit", "predict_logits", "train_one_epoch"]


@dataclass
class TrainResult:
    checkpoint: Checkpoint
    history: list[dict[str, Any]]
    cancelled: bool = False
    metrics: dict[str, Any] = field(default_factory=dict)


class Cancelled(Exception):
    """Raised inside an epoch when the cancellation check says stop."""


@dataclass
class _Parts:
    """What one run trains: the network, its loss (with the ISDA estimator, if any), SGD."""

    model: Classifier
    criterion: nn.Module
    estimator: nn.Module | None
    optimizer: torch.optim.Optimizer


def fit(
    config: TrainConfig,
    data: LabelledSet,
    init: Checkpoint | None = None,
    resume: Checkpoint | None = None,
    progress: ProgressFn | None = None,
    should_cancel: CancelFn | None = None,
    on_epoch_end: EpochEndFn | None = None,
    tiles: Tiles | None = None,
) -> TrainResult:
    """Train, keep the best epoch by the defect tiles' validation F1, calibrate, and test.

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
    config, data = _inherit(config, data, resume or init)
    torch.manual_seed(config.seed)  # before the weights are drawn: the run is a function of it
    tiles = _decoded_tiles(config, data, tiles, progress)
    parts = _build(config, data, resume or init, device)
    state = RunState(history=[], best_f1=-1.0, best_state=None, start_epoch=0)
    if resume is not None:
        state = restore(resume, parts.optimizer)
    n_train = config.tiles_per_epoch or tiles["train"][0].shape[0]
    per_epoch = n_train // config.batch_size if n_train >= config.batch_size else 1
    total_steps = per_epoch * config.epochs
    cancelled = False
    for epoch in range(state.start_epoch, config.epochs):
        lr = config.lr_at(epoch)
        for group in parts.optimizer.param_groups:
            group["lr"] = lr
        on_step = _step_hook(
            progress, should_cancel, epoch, per_epoch, total_steps, config.batch_size
        )
        try:
            train_loss, steps, seen, seconds = _train_epoch(
                parts, tiles, config, device, epoch, per_epoch * epoch, total_steps, on_step
            )
        except Cancelled:
            cancelled = True
            break
        record = _validate(parts.model, tiles, data, config, device)
        record = {"epoch": epoch + 1, "lr": lr, **_rates(train_loss, seconds, seen), **record}
        state.history.append(record)
        improved = _keep_if_best(state, parts.model, _selection_score(record), epoch + 1)
        if progress is not None:
            percent = 100.0 * (epoch + 1) / config.epochs
            progress(epoch, steps, {"phase": "epoch_end", "percent": percent, **record})
        if on_epoch_end is not None:
            last = snapshot(
                config, data, parts.model, parts.estimator, state.history, parts.optimizer,
                epoch + 1, state,
            )  # fmt: skip
            on_epoch_end(record, last, improved)
    final = finish(
        config, data, parts.model, parts.estimator, tiles, device, state, parts.optimizer,
        cancelled,
    )  # fmt: skip
    return TrainResult(final, state.history, cancelled, final.metrics)


def _inherit(
    config: TrainConfig, data: LabelledSet, base: Checkpoint | None
) -> tuple[TrainConfig, LabelledSet]:
    """The run's normalisation and tile size made explicit: the base model's when it
    fine-tunes one and the config or the data leave them open, else ImageNet's statistics
    and the data's tile size. The checkpoint records what was used."""
    mean, std = config.normalisation()
    if base is not None:
        mean = tuple(config.mean or base.mean)
        std = tuple(config.std or base.std)
    config = dataclasses.replace(config, mean=[float(v) for v in mean], std=[float(v) for v in std])
    if data.tile_px is None and base is not None and base.tile_px is not None:
        data = dataclasses.replace(data, tile_px=int(base.tile_px))
    return config, data


def _decoded_tiles(
    config: TrainConfig, data: LabelledSet, tiles: Tiles | None, progress: ProgressFn | None
) -> Tiles:
    """The given tiles once checked against the set, or every split decoded now (reported
    to `progress` as phase "decode" with the tiles done and their total)."""
    if tiles is not None:
        _check_given_tiles(data, tiles, config.image_size)
        return tiles
    threads = config.num_workers or os.cpu_count() or 1
    spill = _spill_dir(data, config)
    total = sum(len(v) for v in data.splits.values())
    done = 0

    def decoded(n: int) -> None:
        nonlocal done
        done += n
        if progress is not None:
            progress(0, 0, {"phase": "decode", "done": done, "total": total})

    return {
        s: load_tiles(data.source, data.splits[s], config.image_size, threads, spill, decoded)
        for s in data.splits
    }


def _build(
    config: TrainConfig, data: LabelledSet, base: Checkpoint | None, device: torch.device
) -> _Parts:
    """The network (from `base`'s weights when given), its criterion and the SGD optimizer."""
    num_classes = len(data.classes)
    model = build_classifier(config.backbone, num_classes, config.weights)
    criterion = build_criterion(config, num_classes, model.feature_dim)
    estimator = estimator_of(criterion)
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
    return _Parts(model, criterion, estimator, optimizer)


def _train_epoch(
    parts: _Parts,
    tiles: Tiles,
    config: TrainConfig,
    device: torch.device,
    epoch: int,
    step0: int,
    total_steps: int,
    on_step: Callable[[int, float], None],
) -> tuple[float, int, int, float]:
    """One epoch in its seeded order: (mean loss, steps, images, seconds)."""
    batches = epoch_batches(
        *tiles["train"],
        config.batch_size,
        epoch_generator(config.seed, epoch),
        config.augment,
        sample_size=config.tiles_per_epoch,
    )
    started = time.perf_counter()
    loss, steps, seen = train_one_epoch(
        parts.model,
        parts.criterion,
        parts.optimizer,
        batches,
        config,
        device,
        step0,
        total_steps,
        on_step,
    )
    return loss, steps, seen, time.perf_counter() - started


def _step_hook(
    progress: ProgressFn | None,
    should_cancel: CancelFn | None,
    epoch: int,
    per_epoch: int,
    total_steps: int,
    batch_size: int,
) -> Callable[[int, float], None]:
    """Called after every step: report the percentage and the epoch's tiles done, and stop
    when cancelled."""

    def on_step(step: int, loss: float) -> None:
        if progress is not None:
            done = (epoch * per_epoch + step) / max(1, total_steps)
            info = {
                "phase": "train",
                "loss": loss,
                "percent": 100.0 * done,
                "tiles_done": step * batch_size,
                "epoch_tiles": per_epoch * batch_size,
            }
            progress(epoch, step, info)
        if should_cancel is not None and should_cancel():
            raise Cancelled

    return on_step


def _rates(train_loss: float, seconds: float, seen: int) -> dict[str, float]:
    return {
        "train_loss": train_loss,
        "train_seconds": seconds,
        "train_images_per_s": seen / seconds if seconds > 0 else 0.0,
    }


def _validate(
    model: Classifier, tiles: Tiles, data: LabelledSet, config: TrainConfig, device: torch.device
) -> dict[str, float]:
    """The epoch's validation figures: macro F, accuracy, ECE, NLL and the defect tiles' F1
    at the best threshold (which picks the best epoch: _selection_score)."""
    logits = predict_logits(
        model,
        tiles["val"][0],
        device,
        config.eval_batch_size,
        config.cpu_bf16,
        *config.normalisation(),
    )
    labels = tiles["val"][1]
    val = evaluation_report(logits, labels, data.classes)
    record = {
        "val_macro_f1": val["macro_f1"],
        "val_accuracy": val["accuracy"],
        "val_ece": val["ece"],
        "val_nll": val["nll"],
    }
    defect_index = [data.classes.index(c) for c in data.defect_classes]
    score, truth = defect_scores(torch.softmax(logits.double(), 1), labels, defect_index)
    if 0 < int(truth.sum()) < truth.numel():  # both kinds of tile: a defect F1 is defined
        record["val_tile_f1"] = choose_threshold(score, truth)["val"]["f1"]
    return record


def _selection_score(record: dict[str, Any]) -> float:
    """What picks the best epoch: the defect tiles' F1 on validation at that epoch's best
    threshold, which is the operating point the model will get (the temperature does not
    change the ranking); macro F where validation lacks a kind of tile. Macro F at argmax
    picked an early epoch of a bounded run whose test tile F1 was 0.06 below the last's."""
    return float(record.get("val_tile_f1", record["val_macro_f1"]))


def _keep_if_best(state: RunState, model: Classifier, val_f1: float, epoch: int) -> bool:
    """Keep a copy of the weights when this epoch's selection score is the best so far."""
    if val_f1 <= state.best_f1:
        return False
    state.best_f1 = val_f1
    state.best_state = {k: v.detach().cpu().clone() for k, v in model.state_dict().items()}
    state.best_epoch = epoch
    return True


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
