"""The review loop end to end: review -> labels -> feedback job on a real worker -> new model;
and `crackscan labels export` of the same labels."""

from __future__ import annotations

import io
import subprocess
import sys
import zipfile
from pathlib import PurePosixPath

import numpy as np
import pytest

from models.inference import make_grid
from models.synthetic import make_survey
from tests.app.conftest import checkpoint_bytes
from tests.worker.conftest import REPO

pytestmark = pytest.mark.slow

ENDED = ("succeeded", "failed", "cancelled")
WIDTH, HEIGHT, TILE, STRIDE = 256, 192, 64, 32


def survey_jpeg(seed: int) -> tuple[bytes, np.ndarray]:
    photo, mask = make_survey(WIDTH, HEIGHT, seed=seed, cracks=4)
    buffer = io.BytesIO()
    photo.save(buffer, format="JPEG", quality=95)
    return buffer.getvalue(), mask


def truth(mask: np.ndarray, row: int, col: int) -> str:
    grid = make_grid(HEIGHT, WIDTH, TILE, STRIDE)
    y, x = grid.ys[row], grid.xs[col]
    return "crack" if (mask[y : y + TILE, x : x + TILE] > 127).sum() >= 16 else "no_crack"


def inspect_and_label(stack, seed: int) -> str:  # type: ignore[no-untyped-def]
    """Map one synthetic survey, then answer its review and label the rest from the mask."""
    data, mask = survey_jpeg(seed)
    files = {"image": (f"survey{seed}.jpg", data, "image/jpeg")}
    reply = stack.client.post(
        "/v1/inspections", files=files, data={"tile": str(TILE), "stride": str(STRIDE)}
    )
    assert reply.status_code == 201, reply.text
    inspection_id = reply.json()["id"]
    review = stack.client.get(f"/v1/inspections/{inspection_id}/review", params={"limit": 6}).json()
    assert review["items"] and review["labelled"] == 0
    grid = make_grid(HEIGHT, WIDTH, TILE, STRIDE)
    answers = [(t["row"], t["col"]) for t in review["items"]]
    answers += [(r, c) for r in range(grid.rows) for c in range(grid.cols) if (r, c) not in answers]
    labels = [{"row": r, "col": c, "label": truth(mask, r, c)} for r, c in answers]
    stored = stack.client.post(f"/v1/inspections/{inspection_id}/labels", json={"labels": labels})
    assert stored.status_code == 200, stored.text
    return str(inspection_id)


def feedback_job(stack, base_id: str, **extra) -> dict:  # type: ignore[no-untyped-def]
    body = {
        "feedback": True,
        "base_model_id": base_id,
        "backbone": "resnet18",
        "loss": "isda",
        "epochs": 1,
        "image_size": 32,
        "batch_size": 8,
        "lr": 0.003,
        "lr_milestones": [],
        "augment": "flip",
    } | extra
    return stack.client.post("/v1/jobs", json=body)  # type: ignore[no-any-return]


def test_labels_train_a_feedback_job_and_export_as_a_set(stack, tmp_path):
    files = {"file": ("base.ckpt", checkpoint_bytes(tmp_path), "application/octet-stream")}
    base_id = stack.client.post("/v1/models", files=files).json()["id"]
    assert stack.client.post(f"/v1/models/{base_id}/activate").status_code == 200
    photos = [inspect_and_label(stack, seed) for seed in (1, 2)]

    too_few = feedback_job(stack, base_id)
    assert too_few.status_code == 422 and "at least 3 photos" in too_few.json()["error"]["message"]
    reply = stack.client.post(
        "/v1/jobs",
        json={
            "feedback": True,
            "backbone": "resnet18",
            "epochs": 1,
            "image_size": 32,
            "batch_size": 8,
        },
    )
    assert reply.status_code == 422 and "base_model_id" in reply.json()["error"]["message"]
    photos.append(inspect_and_label(stack, 3))

    stack.start_worker()
    submitted = feedback_job(stack, base_id, auto_activate=True)
    assert submitted.status_code == 202, submitted.text
    job = stack.wait_job(submitted.json()["id"], lambda j: j["status"] in ENDED)
    assert job["status"] == "succeeded", job
    assert job["feedback"] and job["dataset_ids"] == []
    compared = job["metrics"]["feedback"]
    cells = make_grid(HEIGHT, WIDTH, TILE, STRIDE)
    assert compared["held_back_tiles"] == len(cells)  # one photo of three is held back
    assert compared["labels"]["photos"] == {"test": 1, "val": 1, "train": 1}
    for side in ("base", "new"):
        assert set(compared[side]) >= {"precision", "recall", "f1", "false_alarm_rate"}
    new = stack.client.get(f"/v1/models/{job['result_model_id']}").json()
    assert new["parent_model_id"] == base_id
    base_f1, new_f1 = compared["base"]["f1"], compared["new"]["f1"]
    if new_f1 != base_f1:
        assert new["is_active"] == (new_f1 > base_f1)

    # A fine-tune that names only its base and its length takes the rest of the recipe from
    # the base model (#25): backbone, loss, input size, batch, augmentations, normalisation.
    minimal = {"feedback": True, "base_model_id": new["id"], "epochs": 1}
    again = stack.client.post("/v1/jobs", json=minimal)
    assert again.status_code == 202, again.text
    config = again.json()["config"]
    assert (config["backbone"], config["loss"], config["image_size"]) == ("resnet18", "isda", 32)
    assert (config["batch_size"], config["augment"], config["lr"]) == (8, "flip", 0.01)
    assert config["mean"] == [0.485, 0.456, 0.406]
    job = stack.wait_job(again.json()["id"], lambda j: j["status"] in ENDED)
    assert job["status"] == "succeeded", job
    tuned = stack.client.get(f"/v1/models/{job['result_model_id']}").json()
    assert tuned["input_size"] == 32 and tuned["parent_model_id"] == new["id"]
    other = stack.client.post("/v1/jobs", json=minimal | {"backbone": "resnet34"})
    assert other.status_code == 422 and other.json()["error"]["field"] == "backbone"

    out = tmp_path / "labels.zip"
    export = [sys.executable, "-m", "app.cli", "labels", "export", "--out", str(out)]
    done = subprocess.run(
        export, env=stack.env, cwd=REPO, capture_output=True, text=True, timeout=120
    )
    assert done.returncode == 0, done.stderr
    with zipfile.ZipFile(out) as archive:
        names = [PurePosixPath(n) for n in archive.namelist()]
    assert len(names) == 3 * len(cells)
    split_of = {}
    for name in names:
        split, label, file = name.parts
        photo = file.rsplit("_r", 1)[0]
        assert split_of.setdefault(photo, split) == split  # every tile of a photo in one split
        assert label in ("crack", "no_crack")
    assert sorted(split_of) == sorted(photos)

    later = subprocess.run(
        [*export[:-1], str(tmp_path / "none.zip"), "--since", "2999-01-01T00:00:00Z"],
        env=stack.env,
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert later.returncode == 2 and "at least 3 photos" in later.stderr
    assert not (tmp_path / "none.zip").exists() and not (tmp_path / "none.zip.part").exists()
