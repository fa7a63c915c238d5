"""`crackscan adapt` writes an adapted checkpoint that records what was done."""

from __future__ import annotations

import json
import subprocess
import sys

import numpy as np
import torch
from PIL import Image

from models.checkpoint import load_checkpoint, save_checkpoint
from tests.models.inference.test_predictor import random_checkpoint


def _crackscan(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "app.cli", *args], capture_output=True, text=True, timeout=300
    )


def test_adapt_writes_a_recorded_checkpoint_and_refuses_bad_input(tmp_path):
    base = random_checkpoint()
    base.threshold = 0.5
    model = tmp_path / "base.ckpt"
    save_checkpoint(base, model)
    rng = np.random.default_rng(3)
    photos = []
    for k in range(3):
        path = tmp_path / f"survey_{k}.jpg"
        Image.fromarray(rng.integers(0, 256, (120, 160, 3), dtype=np.uint8)).save(path)
        photos.append(str(path))
    out = tmp_path / "adapted.ckpt"
    done = _crackscan(
        "adapt", str(model), *photos, "--out", str(out), "--max-tiles", "60", "--json",
        "--device", "cpu", "--no-cpu-bf16",
    )  # fmt: skip
    assert done.returncode == 0, done.stderr
    report = json.loads(done.stdout)
    assert report["photos"] == 3 and report["tiles"] == 60
    adapted = load_checkpoint(out)
    assert adapted.metrics["adaptation"] == report
    assert adapted.threshold == report["threshold"]
    assert report["method"] == "adabn+prior" and report["batchnorm_layers"] > 0
    key = next(k for k in base.model_state if k.endswith("running_var"))
    assert not torch.equal(adapted.model_state[key], base.model_state[key])
    assert adapted.content_hash != base.content_hash

    missing = _crackscan("adapt", str(model), str(tmp_path / "nope.jpg"), "--out", str(out))
    assert missing.returncode == 2 and "no such photo" in missing.stderr
    broken = tmp_path / "broken.png"
    broken.write_bytes(b"\x89PNG not a photo")
    bad = _crackscan("adapt", str(model), str(broken), "--out", str(tmp_path / "x.ckpt"))
    assert bad.returncode == 2 and "error" in bad.stderr
    assert not (tmp_path / "x.ckpt").exists()
    same = _crackscan("adapt", str(model), photos[0], "--out", str(model))
    assert same.returncode == 2 and "must not be the base" in same.stderr
