"""`crackscan train` and `crackscan evaluate`, run as a user runs them."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from models.checkpoint import load_checkpoint

CLI = [sys.executable, "-m", "app.cli"]


def crackscan(*args: str, cwd: Path | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [*CLI, *map(str, args)], capture_output=True, text=True, cwd=cwd, timeout=600
    )


@pytest.mark.slow
def test_train_then_fine_tune_then_evaluate(tiny_set, tmp_path):
    out = tmp_path / "model.ckpt"
    metrics = tmp_path / "metrics.json"
    done = crackscan(
        "train",
        tiny_set,
        "--epochs",
        "2",
        "--tiles-per-epoch",
        "64",
        "--image-size",
        "32",
        "--batch-size",
        "16",
        "--augment",
        "flip",
        "--log-every",
        "0",
        "--out",
        out,
        "--metrics-out",
        metrics,
    )
    assert done.returncode == 0, done.stderr
    assert "wrote" in done.stdout and "test macro F" in done.stdout
    # A log, not a terminal: no redrawn bars, but a line per epoch and (with --log-every 0)
    # one per step in between, with the tiles done, the rate and both ETAs.
    assert "epoch 1/" in done.stderr and "\r" not in done.stderr
    assert "decoding tiles: 120/120" in done.stderr, done.stderr
    steps = [line for line in done.stderr.splitlines() if "tiles/s" in line]
    assert len(steps) == 2 * 64 // 16, done.stderr  # every step of both sampled epochs
    assert steps[0].startswith("epoch 1/2: 16/64 tiles, ") and "epoch ETA" in steps[0]
    assert "run ETA" in steps[-1] and steps[-1].startswith("epoch 2/2: 64/64 tiles")
    assert not out.with_name(out.name + ".partial").exists()
    ckpt = load_checkpoint(out)
    assert ckpt.classes == ["crack", "no_crack"] and ckpt.config["loss"] == "igmsda-exact"
    assert ckpt.config["tiles_per_epoch"] == 64
    saved = json.loads(metrics.read_text())
    assert 0 <= saved["test"]["macro_f1"] <= 1 and len(saved["history"]) == 2

    # A fine-tune names only what changes: the recipe comes from the base model.
    tuned = tmp_path / "tuned.ckpt"
    done = crackscan("train", tiny_set, "--epochs", "1", "--init", out, "--out", tuned)
    assert done.returncode == 0, done.stderr
    fine = load_checkpoint(tuned)
    assert fine.content_hash != ckpt.content_hash
    assert (fine.input_size, fine.config["batch_size"], fine.config["augment"]) == (32, 16, "flip")
    assert fine.config["loss"] == "igmsda-exact" and fine.mean == ckpt.mean
    assert fine.config["tiles_per_epoch"] is None  # the run's length is not inherited

    done = crackscan("evaluate", tuned, tiny_set, "--json")
    assert done.returncode == 0, done.stderr
    report = json.loads(done.stdout)
    assert 0.0 <= report["macro_f1"] <= 1.0 and report["count"] == 120
    done = crackscan("evaluate", tuned, tiny_set)
    assert "macro P" in done.stdout and "ECE" in done.stdout


def test_bad_inputs_give_clear_errors(tmp_path, tiny_set):
    junk = tmp_path / "junk.ckpt"
    junk.write_text("nope")
    done = crackscan("evaluate", junk, tiny_set)
    assert done.returncode == 2 and "not a crackscan checkpoint" in done.stderr
    done = crackscan("train", tmp_path / "missing", "--out", tmp_path / "m.ckpt")
    assert done.returncode == 2 and "no such dataset" in done.stderr
    done = crackscan("train", tiny_set, "--loss", "hinge", "--out", tmp_path / "m.ckpt")
    assert done.returncode == 2 and "invalid choice" in done.stderr


@pytest.mark.slow
def test_train_on_walls_and_photos_with_masks_then_evaluate_per_photo(tiny_set, tmp_path):
    from tests.models.test_masks import TILE, _naming_set

    masks = _naming_set(tmp_path / "photos")
    out = tmp_path / "model.ckpt"
    done = crackscan(
        "train",
        tiny_set,
        masks,
        "--mask-tile",
        str(TILE),
        "--epochs",
        "2",
        "--image-size",
        "32",
        "--batch-size",
        "16",
        "--target-precision",
        "0.5",
        "--out",
        out,
    )
    assert done.returncode == 0, done.stderr
    assert "masks layout" in done.stderr and "left out" in done.stderr  # each set described
    assert "operating threshold" in done.stdout and "false alarms" in done.stdout
    ckpt = load_checkpoint(out)
    assert ckpt.tile_px == TILE and ckpt.threshold is not None
    assert ckpt.config["augment"] == "survey"
    assert ckpt.metrics["operating_point"]["target_precision"] == 0.5

    done = crackscan("evaluate", out, masks, "--json")
    assert done.returncode == 0, done.stderr
    report = json.loads(done.stdout)
    detection = report["detection"]
    assert detection["tiles"]["threshold"] == pytest.approx(ckpt.threshold)
    assert len(detection["photos"]) == 12  # every photo of the set: it gives no split
    assert {"f1", "false_alarm_rate", "photo"} <= set(detection["photos"][0])
    done = crackscan("evaluate", out, masks)
    assert "12 photos" in done.stdout and "crack-free tiles" in done.stdout
