"""The README's first command, in its fast mode: service, worker, training job and crack maps."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from tests.worker.conftest import free_port

ROOT = Path(__file__).resolve().parents[1]


@pytest.mark.slow
def test_demo_runs_end_to_end(tmp_path):
    env = {**os.environ, "CRACKSCAN_DATA_DIR": str(tmp_path / "data")}
    for name in ("CRACKSCAN_DATABASE_URL", "CRACKSCAN_BROKER_URL"):
        env.pop(name, None)
    done = subprocess.run(
        [sys.executable, "-m", "app.cli", "demo", "--fast", "--exit", "--port", str(free_port())],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=900,
    )
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    out = done.stdout
    assert "test macro F" in out and "survey.png:" in out and "defect tiles" in out
    assert "dashboard: http://127.0.0.1:" in out
    assert (tmp_path / "data" / "demo" / "survey.overlay.png").is_file()
    assert (tmp_path / "data" / "crackscan.db").is_file()
