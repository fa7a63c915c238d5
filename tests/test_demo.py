"""The README's first command, in its fast mode: service, worker, training job and crack maps."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from tests.conftest import shared_data
from tests.worker.conftest import free_port

ROOT = Path(__file__).resolve().parents[1]


def run_demo(tmp_path: Path, *extra: str) -> str:
    env = {**os.environ, "CRACKSCAN_DATA_DIR": str(tmp_path / "data")}
    for name in ("CRACKSCAN_DATABASE_URL", "CRACKSCAN_BROKER_URL"):
        env.pop(name, None)
    done = subprocess.run(
        [
            sys.executable,
            *("-m", "app.cli", "demo", "--fast", "--exit", "--port", str(free_port())),
            *extra,
        ],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=900,
    )
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    out = done.stdout
    assert "test macro F" in out and "operating threshold" in out and "defect tiles" in out
    assert "dashboard: http://127.0.0.1:" in out
    assert (tmp_path / "data" / "crackscan.db").is_file()
    # Not a terminal: one line per epoch and no redrawn bars; the server's lines in its log.
    assert "\r" not in done.stderr and "epoch 1/" in done.stderr, done.stderr[-2000:]
    assert "HTTP/1.1" not in out + done.stderr and "INFO" not in out + done.stderr
    server_log = (tmp_path / "data" / "demo" / "server.log").read_text()
    assert '"POST /v1/jobs HTTP/1.1" 202' in server_log
    return out


@pytest.mark.slow
def test_demo_on_synthetic_data(tmp_path):
    out = run_demo(tmp_path, "--synthetic")
    assert "synthetic tiles" in out and "survey.png:" in out
    assert (tmp_path / "data" / "demo" / "survey.overlay.png").is_file()


@pytest.mark.slow
@pytest.mark.shared_data
def test_demo_on_real_photos_maps_photos_it_never_saw(tmp_path):
    shared_data("cfd")  # skips with the reason when ../shared/data is absent
    out = run_demo(tmp_path)
    assert "(real photos)" in out and "held out of training" in out
    overlays = sorted((tmp_path / "data" / "demo").glob("*.overlay.png"))
    assert len(overlays) == 4, overlays
    # Each map is scored against its mask, and the photos' figures are printed together.
    assert out.count("against its mask:") == 4, out
    assert "held-out photos scored against their masks" in out and "tile F1" in out
    assert "of crack-free tiles flagged" in out
    assert any(p.name.startswith("noncrack") for p in overlays), overlays  # a crack-free wall
