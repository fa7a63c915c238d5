"""`crackscan demo`: the whole service on embedded defaults, from a synthetic set to a crack map.

Migrates the SQLite database, starts the API with its embedded Celery worker,
uploads a synthetic labelled set, trains an IGMSDA model through the API,
activates it, inspects a synthetic survey photo (and ../shared/data/cfd photos
when present), prints the crack-map summaries and leaves the service running.
"""

from __future__ import annotations

import argparse
import contextlib
import io
import os
import signal
import socket
import subprocess
import sys
import tempfile
import time
import zipfile
from pathlib import Path
from typing import Any

import httpx
from tqdm import tqdm

from core.statuses import INSPECTION_UNFINISHED, JOB_FINAL, InspectionStatus, JobStatus
from models.training.config import DEFAULT_LOSS

SHARED_DATA = Path(__file__).resolve().parents[3] / "shared" / "data"
REAL_SETS = ("ccic-dev", "cfd", "crackmix")


def register(sub: Any) -> None:
    p = sub.add_parser("demo", help="run the service and a training job, then map a survey photo")
    p.add_argument("--fast", action="store_true", help="a smaller set and fewer epochs (for CI)")
    p.add_argument(
        "--synthetic",
        action="store_true",
        help="train on synthetic tiles even when ../shared/data's real photos are there",
    )
    p.add_argument("--port", type=int, default=8000)
    p.add_argument(
        "--exit", action="store_true", help="stop the service at the end instead of leaving it up"
    )
    p.set_defaults(run=run)


def _free(port: int) -> bool:
    with socket.socket() as s:
        return s.connect_ex(("127.0.0.1", port)) != 0


def _pick_port(port: int) -> int:
    if _free(port):
        return port
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        chosen = int(s.getsockname()[1])
    print(f"port {port} is busy: using {chosen}")
    return chosen


def _zip(folder: Path) -> bytes:
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w") as zf:
        for path in sorted(folder.rglob("*.png")):
            zf.write(path, path.relative_to(folder).as_posix())
    return buffer.getvalue()


def _check(reply: httpx.Response, what: str) -> dict[str, Any]:
    if reply.status_code >= 400:
        raise ValueError(f"{what} failed: HTTP {reply.status_code} {reply.text}")
    return dict(reply.json())


def run(args: argparse.Namespace) -> int:
    from core.apikeys import create_api_key
    from core.config import get_settings
    from core.db import redacted_url, transaction
    from core.migrate import upgrade
    from models.synthetic import make_survey, write_tile_set

    settings = get_settings()
    print(f"1/6 database: {redacted_url(settings.db_url)}")
    upgrade(settings.db_url)
    with transaction(settings.db_url) as session:
        _, key = create_api_key(session, ["admin"], "demo")
    port = _pick_port(args.port)
    base = f"http://127.0.0.1:{port}"
    print(f"2/6 starting the API and an embedded Celery worker on {base}")
    server = subprocess.Popen(
        [sys.executable, "-m", "app.cli", "serve", "--port", str(port), "--no-access-log"],
        start_new_session=True,
    )
    try:
        client = httpx.Client(base_url=base, headers={"X-API-Key": key}, timeout=120)
        _wait_healthy(client, server)
        summary = _demo(client, args, settings.data_dir, write_tile_set, make_survey)
        print("\n" + summary)
        print(f"\ndashboard: {base}/dashboard   API docs: {base}/docs")
        print(f"API key (admin): {key}")
        if args.exit:
            return 0
        print("the service is running; press Ctrl-C to stop it")
        signal.signal(
            signal.SIGTERM, _interrupt
        )  # stop the service cleanly on SIGTERM as on Ctrl-C
        signal.signal(signal.SIGINT, _interrupt)
        server.wait()
        return server.returncode or 0
    except KeyboardInterrupt:
        return 0
    finally:
        if server.poll() is None:
            os.killpg(server.pid, signal.SIGTERM)
            try:
                server.wait(timeout=40)
            except subprocess.TimeoutExpired:
                os.killpg(server.pid, signal.SIGKILL)


def _interrupt(signum: int, frame: object) -> None:
    raise KeyboardInterrupt


def _wait_healthy(client: httpx.Client, server: subprocess.Popen[bytes]) -> None:
    deadline = time.time() + 90
    while time.time() < deadline:
        if server.poll() is not None:
            raise ValueError(f"the server exited with code {server.returncode}")
        with contextlib.suppress(httpx.TransportError):  # not listening yet
            if client.get("/healthz").status_code == 200:
                return
        time.sleep(0.5)
    raise ValueError("the server did not answer /healthz within 90 s")


def _demo(
    client: httpx.Client,
    args: argparse.Namespace,
    data_dir: Path,
    write_tile_set: Any,
    make_survey: Any,
) -> str:
    demo_dir = data_dir / "demo"
    demo_dir.mkdir(parents=True, exist_ok=True)
    real = not args.synthetic and all((SHARED_DATA / name).is_dir() for name in REAL_SETS)
    with tempfile.TemporaryDirectory() as tmp:
        if real:
            dataset_ids, held_out, job_body = _upload_real(client, Path(tmp), args.fast)
        else:
            dataset_ids, job_body = _upload_synthetic(client, Path(tmp), args.fast, write_tile_set)
            held_out = []
    epochs = job_body["epochs"]
    job = _check(
        client.post(
            "/v1/jobs",
            json={"dataset_ids": dataset_ids, "backbone": "resnet18", "loss": DEFAULT_LOSS}
            | job_body,
        ),
        "job submission",
    )
    print(
        f"4/6 training job {job['id']}: resnet18 + {DEFAULT_LOSS}, {epochs} epochs, on the worker"
    )
    job = _follow(client, job["id"])
    if job["status"] != JobStatus.SUCCEEDED:
        raise ValueError(f"the training job ended {job['status']}: {job['error']}")
    model_id = job["result_model_id"]
    _check(client.post(f"/v1/models/{model_id}/activate"), "activation")
    model = _check(client.get(f"/v1/models/{model_id}"), "model")
    test = model["metrics"]["test"]
    found = test["detection"]
    lines = [
        f"model {model_id} ({'real photos' if real else 'synthetic tiles'}): test macro F "
        f"{test['macro_f1']:.3f}, ECE {test['ece']:.3f} -> {test['ece_calibrated']:.3f} after "
        f"temperature scaling (T={model['temperature']:.3f}); at its operating threshold "
        f"{model['operating_threshold']:.2f}: crack tiles P {found['precision']:.2f} "
        f"R {found['recall']:.2f} F1 {found['f1']:.2f}, "
        f"{100 * found['false_alarm_rate']:.0f}% of crack-free tiles flagged"
    ]
    if real:
        print(f"5/6 inspecting {len(held_out)} real photos held out of training")
        for path in held_out:
            lines.append(_inspect(client, path, demo_dir))
        print("6/6 the synthetic survey photo is skipped: the model was trained on real photos")
    else:
        print("5/6 inspecting a synthetic 2400x1600 survey photo")
        photo, _ = make_survey(
            2400, 1600, seed=3, cracks=8, crack_width=(1.5, 4.0), crack_length=(0.3, 0.6)
        )
        survey = demo_dir / "survey.png"
        photo.save(survey)
        lines.append(_inspect(client, survey, demo_dir))
        print("6/6 no real photos to inspect (synthetic demo)")
    return "\n".join(lines)


def _upload_synthetic(
    client: httpx.Client, tmp: Path, fast: bool, write_tile_set: Any
) -> tuple[list[str], dict[str, Any]]:
    per_class, epochs = (150, 4) if fast else (400, 10)
    print(
        f"3/6 synthetic data: generating {per_class} synthetic tiles per class "
        "(crack / no_crack, 48 px) and uploading them"
    )
    folder = write_tile_set(tmp / "tiles", per_class, size=48, seed=7)
    dataset = _check(
        client.post(
            "/v1/datasets",
            files={"file": ("synthetic.zip", _zip(folder))},
            data={"name": "synthetic demo tiles"},
        ),
        "dataset upload",
    )
    body = {
        "augment": "flip",  # synthetic tiles: survey changes are not what varies
        "epochs": epochs,
        "image_size": 48,
        "batch_size": 32,
        "lr": 0.01,
        "lr_milestones": [max(1, epochs - 2)],
    }
    return [dataset["id"]], body


def _upload_real(
    client: httpx.Client, tmp: Path, fast: bool
) -> tuple[list[str], list[Path], dict[str, Any]]:
    """Upload a seeded sample of the wall tiles and of the photos with masks; keep some
    photos out of it to map afterwards."""
    import random

    walls, photos, epochs = (120, 10, 2) if fast else (400, 28, 6)
    rng = random.Random(7)
    print(
        f"3/6 real data from {SHARED_DATA}: {walls} wall tiles per class (ccic-dev) and "
        f"{photos} photos with masks (cfd + crackmix), uploaded as two sets"
    )
    wall_zip = tmp / "walls.zip"
    with zipfile.ZipFile(wall_zip, "w") as zf:
        for label in ("Positive", "Negative"):
            files = sorted((SHARED_DATA / "ccic-dev" / label).glob("*.jpg"))
            for path in rng.sample(files, walls):
                zf.write(path, f"{label}/{path.name}")
    chosen: list[tuple[Path, Path]] = []
    held_out: list[Path] = []
    for name, mask_ext in (("cfd", ".png"), ("crackmix", ".png")):
        images = sorted((SHARED_DATA / name / "image").glob("*.jpg"))
        picked = rng.sample(images, photos // 2 + 2)
        held_out += picked[:2]  # never uploaded: mapped at the end
        chosen += [(p, SHARED_DATA / name / "mask" / (p.stem + mask_ext)) for p in picked[2:]]
    masks_zip = tmp / "photos.zip"
    with zipfile.ZipFile(masks_zip, "w") as zf:
        for image, mask in chosen:
            zf.write(image, f"images/{image.parent.parent.name}_{image.name}")
            zf.write(mask, f"masks/{image.parent.parent.name}_{image.stem}{mask.suffix}")
    ids = []
    for path, label in ((wall_zip, "ccic-dev wall tiles"), (masks_zip, "photos with masks")):
        ids.append(
            _check(
                client.post(
                    "/v1/datasets",
                    files={"file": (path.name, path.read_bytes())},
                    data={"name": f"demo: {label}"},
                ),
                "dataset upload",
            )["id"]
        )
    body = {
        "augment": "survey",
        "epochs": epochs,
        "image_size": 64,
        "batch_size": 64,
        "lr": 0.01,
        "lr_milestones": [max(1, epochs - 2)],
    }
    return ids, held_out, body


def _follow(client: httpx.Client, job_id: str) -> dict[str, Any]:
    with tqdm(
        total=100.0, desc="training", unit="%", bar_format="{l_bar}{bar}| {n:.0f}% [{elapsed}]"
    ) as bar:
        while True:
            job = _check(client.get(f"/v1/jobs/{job_id}"), "job status")
            bar.n = float(job["progress"])
            epochs = job["epochs"]
            if epochs:
                bar.set_postfix_str(
                    f"epoch {epochs[-1]['epoch']}, val F {epochs[-1]['val_macro_f1']:.3f}"
                )
            bar.refresh()
            if job["status"] in JOB_FINAL:
                return job
            time.sleep(1.0)


def _inspect(client: httpx.Client, path: Path, out: Path) -> str:
    reply = _check(
        client.post("/v1/inspections", files={"image": (path.name, path.read_bytes())}),
        f"inspection of {path.name}",
    )
    while reply["status"] in INSPECTION_UNFINISHED:
        time.sleep(0.5)
        reply = _check(client.get(f"/v1/inspections/{reply['id']}"), "inspection status")
    if reply["status"] != InspectionStatus.SUCCEEDED:
        return f"{path.name}: {reply['status']} ({reply['error']})"
    overlay = out / f"{path.stem}.overlay.png"
    overlay.write_bytes(client.get(f"/v1/inspections/{reply['id']}/overlay.png").content)
    s = reply["crackmap"]["summary"]
    return (
        f"{path.name}: {s['defect_tiles']}/{s['tiles']} defect tiles, {100 * s['defect_area_fraction']:.1f}% "
        f"of the area, max p {s['max_defect_prob']:.2f}; overlay {overlay}"
    )
