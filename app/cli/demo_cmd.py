"""`crackscan demo`: the whole service on embedded defaults, from a synthetic set to a crack map.

Migrates the SQLite database, starts the API with its embedded Celery worker,
uploads a synthetic labelled set, trains an IGMSDA model through the API,
activates it, inspects a synthetic survey photo (and ../shared/data/cfd photos
when present), prints the crack-map summaries and leaves the service running.
"""

from __future__ import annotations

import argparse
import contextlib
import os
import signal
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import httpx

from app.cli.demo_data import (
    REAL_SETS,
    SHARED_DATA,
    MaskScore,
    check_reply,
    upload_real,
    upload_synthetic,
)
from app.cli.progress import JobFollower
from core.statuses import INSPECTION_UNFINISHED, JOB_FINAL, InspectionStatus, JobStatus
from models.training.config import DEFAULT_LOSS


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
    # The server's lines (its access log, the worker's) go to a file, not between the demo's.
    server_log = settings.data_dir / "demo" / "server.log"
    server_log.parent.mkdir(parents=True, exist_ok=True)
    print(f"2/6 starting the API and an embedded Celery worker on {base} (log: {server_log})")
    with server_log.open("ab") as log:
        server = subprocess.Popen(
            [sys.executable, "-m", "app.cli", "serve", "--port", str(port)],
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
    try:
        client = httpx.Client(base_url=base, headers={"X-API-Key": key}, timeout=120)
        _wait_healthy(client, server, server_log)
        summary = _demo(client, args, settings.data_dir, write_tile_set, make_survey)
        print("\n" + summary)
        print(f"\ndashboard: {base}/dashboard   API docs: {base}/docs")
        print(f"API key (admin): {key}")
        if args.exit:
            return 0
        print(
            f"the service is running (follow it with: tail -f {server_log}); press Ctrl-C to stop it"
        )
        signal.signal(
            signal.SIGTERM, _interrupt
        )  # stop the service cleanly on SIGTERM as on Ctrl-C
        signal.signal(signal.SIGINT, _interrupt)
        server.wait()
        return server.returncode or 0
    except KeyboardInterrupt:
        return 0
    except ValueError as exc:  # a failed step: the server's log says more
        raise ValueError(f"{exc}\nthe server's log: {server_log}") from exc
    finally:
        if server.poll() is None:
            os.killpg(server.pid, signal.SIGTERM)
            try:
                server.wait(timeout=40)
            except subprocess.TimeoutExpired:
                os.killpg(server.pid, signal.SIGKILL)


def _interrupt(signum: int, frame: object) -> None:
    raise KeyboardInterrupt


def _wait_healthy(client: httpx.Client, server: subprocess.Popen[bytes], log: Path) -> None:
    deadline = time.time() + 90
    while time.time() < deadline:
        if server.poll() is not None:
            tail = log.read_text(errors="replace")[-2000:]
            raise ValueError(
                f"the server exited with code {server.returncode}; its log ends:\n{tail}"
            )
        with contextlib.suppress(httpx.TransportError):  # not listening yet
            if client.get("/healthz").status_code == 200:
                return
        time.sleep(0.5)
    raise ValueError(f"the server did not answer /healthz within 90 s; see {log}")


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
            dataset_ids, held_out, job_body = upload_real(client, Path(tmp), args.fast)
        else:
            dataset_ids, job_body = upload_synthetic(client, Path(tmp), args.fast, write_tile_set)
            held_out = []
    epochs = job_body["epochs"]
    job = check_reply(
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
    job = _follow(client, job["id"], epochs)
    if job["status"] != JobStatus.SUCCEEDED:
        raise ValueError(f"the training job ended {job['status']}: {job['error']}")
    model_id = job["result_model_id"]
    check_reply(client.post(f"/v1/models/{model_id}/activate"), "activation")
    model = check_reply(client.get(f"/v1/models/{model_id}"), "model")
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
        scores = MaskScore()
        for photo in held_out:
            reply = _inspect(client, photo.photo, demo_dir)
            lines.append(_map_line(photo.photo, reply, demo_dir))
            if reply["status"] == InspectionStatus.SUCCEEDED:
                lines.append("    " + scores.add(reply["crackmap"], photo.mask))
        lines.append(scores.summary())
        print("6/6 the synthetic survey photo is skipped: the model was trained on real photos")
    else:
        print("5/6 inspecting a synthetic 2400x1600 survey photo")
        photo, _ = make_survey(
            2400, 1600, seed=3, cracks=8, crack_width=(1.5, 4.0), crack_length=(0.3, 0.6)
        )
        survey = demo_dir / "survey.png"
        photo.save(survey)
        lines.append(_map_line(survey, _inspect(client, survey, demo_dir), demo_dir))
        print("6/6 no real photos to inspect (synthetic demo)")
    return "\n".join(lines)


def _follow(client: httpx.Client, job_id: str, epochs: int) -> dict[str, Any]:
    follower = JobFollower(epochs)
    try:
        while True:
            job = check_reply(client.get(f"/v1/jobs/{job_id}"), "job status")
            follower.update(job)
            if job["status"] in JOB_FINAL:
                return job
            time.sleep(1.0)
    finally:
        follower.close()


def _inspect(client: httpx.Client, path: Path, out: Path) -> dict[str, Any]:
    """Map one photo through the API; its inspection when it has ended (overlay saved)."""
    reply = check_reply(
        client.post("/v1/inspections", files={"image": (path.name, path.read_bytes())}),
        f"inspection of {path.name}",
    )
    while reply["status"] in INSPECTION_UNFINISHED:
        time.sleep(0.5)
        reply = check_reply(client.get(f"/v1/inspections/{reply['id']}"), "inspection status")
    if reply["status"] == InspectionStatus.SUCCEEDED:
        overlay = out / f"{path.stem}.overlay.png"
        overlay.write_bytes(client.get(f"/v1/inspections/{reply['id']}/overlay.png").content)
    return reply


def _map_line(path: Path, reply: dict[str, Any], out: Path) -> str:
    if reply["status"] != InspectionStatus.SUCCEEDED:
        return f"{path.name}: {reply['status']} ({reply['error']})"
    s = reply["crackmap"]["summary"]
    return (
        f"{path.name}: {s['defect_tiles']}/{s['tiles']} defect tiles, {100 * s['defect_area_fraction']:.1f}% "
        f"of the area, max p {s['max_defect_prob']:.2f}; overlay {out / (path.stem + '.overlay.png')}"
    )
