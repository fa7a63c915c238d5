"""The README's scaled-out topology from a runtime-only install (#13 item 1).

`pip install .` into a fresh virtual environment (no dev extras: pytest brings
`packaging`, which hid that the worker's redis transport needed it), then
`crackscan db upgrade`, `crackscan serve` and `crackscan worker` as two processes on
PostgreSQL and Redis, and a training job through HTTP from submission to success.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import time
import urllib.request
import venv
from pathlib import Path

import pytest

from bench.load import multipart
from models.synthetic import write_tile_set
from tests.app.conftest import zip_folder
from tests.conftest import require_redis
from tests.worker.conftest import free_port

pytestmark = [pytest.mark.slow, pytest.mark.services]
REPO = Path(__file__).resolve().parents[1]
TORCH_PINS = ("torch==2.14.1", "torchvision==0.29.1")


def runtime_venv(folder: Path) -> Path:
    venv.EnvBuilder(with_pip=True).create(folder)
    python = folder / "bin" / "python"
    subprocess.run(
        [str(python), "-m", "pip", "install", "--quiet", *TORCH_PINS, str(REPO)],
        check=True,
        cwd=folder,
        timeout=900,
    )
    return folder / "bin"


def request(url: str, key: str, body: bytes | None = None, content_type: str = "") -> dict:
    headers = {"X-API-Key": key}
    if content_type:
        headers["Content-Type"] = content_type
    req = urllib.request.Request(url, data=body, headers=headers)
    with urllib.request.urlopen(req, timeout=30) as reply:
        return json.loads(reply.read())


def test_serve_and_worker_from_a_runtime_only_install(tmp_path, postgres_url):
    redis_url = require_redis().rsplit("/", 1)[0] + "/14"
    import redis

    redis.Redis.from_url(redis_url).flushdb()
    bin_dir = runtime_venv(tmp_path / "runtime")
    check = subprocess.run(
        [str(bin_dir / "python"), "-c", "import pytest"], capture_output=True, cwd=tmp_path
    )
    assert check.returncode != 0, "the runtime install must not bring the dev tools"
    port = free_port()
    env = {
        **{k: v for k, v in os.environ.items() if not k.startswith("CRACKSCAN_")},
        "CRACKSCAN_DATABASE_URL": postgres_url,
        "CRACKSCAN_BROKER_URL": redis_url,
        "CRACKSCAN_DATA_DIR": str(tmp_path / "data"),
        "PATH": f"{bin_dir}:{os.environ['PATH']}",
    }
    env.pop("PYTHONPATH", None)
    run = {"cwd": tmp_path, "env": env, "capture_output": True, "text": True, "timeout": 120}
    upgraded = subprocess.run([str(bin_dir / "crackscan"), "db", "upgrade"], **run)
    assert upgraded.returncode == 0, upgraded.stderr
    created = subprocess.run(
        [str(bin_dir / "crackscan"), "apikey", "create", "--scope", "admin"], **run
    )
    key = created.stdout.strip().splitlines()[-1]
    logs = {name: (tmp_path / f"{name}.log").open("wb") for name in ("serve", "worker")}
    processes = {
        "serve": subprocess.Popen(
            [str(bin_dir / "crackscan"), "serve", "--port", str(port)],
            cwd=tmp_path,
            env=env,
            stdout=logs["serve"],
            stderr=subprocess.STDOUT,
            start_new_session=True,
        ),
        "worker": subprocess.Popen(
            [str(bin_dir / "crackscan"), "worker"],
            cwd=tmp_path,
            env=env,
            stdout=logs["worker"],
            stderr=subprocess.STDOUT,
            start_new_session=True,
        ),
    }

    def log_tail() -> str:
        return "\n".join(
            f"--- {n} ---\n{(tmp_path / f'{n}.log').read_text(errors='replace')[-3000:]}"
            for n in logs
        )

    base = f"http://127.0.0.1:{port}"
    try:
        deadline = time.time() + 90
        while time.time() < deadline:
            try:
                urllib.request.urlopen(f"{base}/healthz", timeout=2).read()
                break
            except OSError:
                assert processes["serve"].poll() is None, log_tail()
                time.sleep(0.5)
        tiles = write_tile_set(tmp_path / "tiles", per_class=30, size=32, seed=5)
        body, content_type = multipart(
            {"file": ("tiles.zip", zip_folder(tiles), "application/zip")}
        )
        dataset = request(f"{base}/v1/datasets", key, body, content_type)
        job_body = {
            "dataset_id": dataset["id"],
            "backbone": "resnet18",
            "loss": "igmsda",
            "epochs": 1,
            "image_size": 32,
            "batch_size": 8,
            "lr_milestones": [],
        }
        job = request(f"{base}/v1/jobs", key, json.dumps(job_body).encode(), "application/json")
        deadline = time.time() + 300
        while time.time() < deadline and job["status"] in ("queued", "running"):
            assert processes["worker"].poll() is None, f"the worker died\n{log_tail()}"
            time.sleep(1)
            job = request(f"{base}/v1/jobs/{job['id']}", key)
        assert job["status"] == "succeeded", f"{job}\n{log_tail()}"
        assert "ModuleNotFoundError" not in log_tail()
        # the dashboard's page and every module and style sheet it loads ship in the wheel
        page = urllib.request.urlopen(f"{base}/dashboard", timeout=10).read().decode()
        assert "/dashboard/assets/main.js" in page
        for asset in sorted((REPO / "app" / "dashboard").glob("*.[jc]s*")):
            with urllib.request.urlopen(f"{base}/dashboard/assets/{asset.name}", timeout=10) as got:
                assert got.read() == asset.read_bytes(), asset.name
    finally:
        for process in processes.values():
            if process.poll() is None:
                os.killpg(process.pid, signal.SIGTERM)
        for process in processes.values():
            try:
                process.wait(timeout=60)
            except subprocess.TimeoutExpired:
                os.killpg(process.pid, signal.SIGKILL)
        for handle in logs.values():
            handle.close()
