"""The state of a run between epochs: what resumes it exactly, and the checkpoints it yields.

_snapshot is a resumable checkpoint after an epoch (optimizer, RNG, best weights so far);
_finish loads the best epoch, calibrates on validation and reports on test.
"""

from __future__ import annotations

import copy
from dataclasses import dataclass
from typing import Any

import torch
from torch import nn

from models.backbones import Classifier
from models.checkpoint import Checkpoint
from models.data import LabelledSet
from models.training.config import TrainConfig
from models.training.report import final_report
from models.training.steps import predict_logits


@dataclass
class RunState:
    history: list[dict[str, Any]]
    best_f1: float
    best_state: dict[str, torch.Tensor] | None
    start_epoch: int
    best_epoch: int = 0


def restore(resume: Checkpoint, optimizer: torch.optim.Optimizer) -> RunState:
    ts = resume.training_state
    if not ts:
        raise ValueError("this checkpoint is final: it holds no training state to resume from")
    optimizer.load_state_dict(ts["optimizer"])
    torch.set_rng_state(ts["rng_cpu"])
    if torch.cuda.is_available() and ts.get("rng_cuda") is not None:
        torch.cuda.set_rng_state_all(ts["rng_cuda"])
    return RunState(
        history=list(resume.history),
        best_f1=float(ts["best_f1"]),
        best_state=ts["best_state"],
        start_epoch=int(ts["epoch"]),
        best_epoch=int(ts.get("best_epoch", 0)),
    )


def snapshot(
    config: TrainConfig,
    data: LabelledSet,
    model: Classifier,
    estimator: nn.Module | None,
    history: list[dict[str, Any]],
    optimizer: torch.optim.Optimizer,
    epoch: int,
    state: RunState,
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
        mean=list(config.normalisation()[0]),
        std=list(config.normalisation()[1]),
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


def finish(
    config: TrainConfig,
    data: LabelledSet,
    model: Classifier,
    estimator: nn.Module | None,
    tiles: dict[str, tuple[torch.Tensor, torch.Tensor]],
    device: torch.device,
    state: RunState,
    optimizer: torch.optim.Optimizer,
    cancelled: bool,
) -> Checkpoint:
    """Load the best epoch, calibrate and choose the threshold on val, report val and test.

    A run on class-balanced epochs (tiles_per_epoch) learnt the balanced prior; its head's
    bias is moved back to the training split's class prior first (undo_balanced_prior), so
    that the temperature fitted on validation calibrates probabilities for the photos'
    own class shares.
    """
    if state.best_state is not None:
        model.load_state_dict(state.best_state)
    training_state = None
    if cancelled:  # keep what is needed to resume the cancelled run, before any correction
        last = snapshot(
            config, data, model, estimator, state.history, optimizer, len(state.history), state
        )
        training_state = last.training_state
    shift = None
    if config.tiles_per_epoch is not None:
        shift = undo_balanced_prior(model.head, tiles["train"][1])
    mean, std = config.normalisation()
    report = final_report(
        predict_logits(model, tiles["val"][0], device, config.eval_batch_size, False, mean, std),
        tiles["val"][1],
        predict_logits(model, tiles["test"][0], device, config.eval_batch_size, False, mean, std),
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
        "prior_correction": shift,
    }
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


@torch.no_grad()
def undo_balanced_prior(head: nn.Linear, train_labels: torch.Tensor) -> list[float]:
    """Post-hoc logit adjustment of a model trained on class-balanced samples.

    Training drew the K classes present in equal shares, so the logits estimate
    log p(y | x) under the prior 1/K. Adding log π_c − log(1/K) to the bias of class c,
    where π_c is class c's share of the training split, moves them to the split's prior:

        z_c ← z_c + log π_c + log K        (classes absent from the split: unchanged)

    For two classes this shifts the defect margin by a constant, so a threshold chosen
    afterwards makes the same decisions; what changes is the calibration.

    Args:
        head: the (C, F) linear head; its bias is changed in place.
        train_labels: (N,) int64 training labels.

    Returns:
        The C added values.
    """
    counts = torch.bincount(train_labels.to(torch.int64), minlength=head.out_features).double()
    present = counts > 0
    shift = torch.zeros_like(counts)
    shift[present] = torch.log(counts[present] / counts.sum()) + torch.log(present.sum().double())
    head.bias.add_(shift.to(head.bias.dtype).to(head.bias.device))
    return [float(v) for v in shift]
