"""The dashboard in a real browser (headless Chromium) against a running server."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

import httpx
import pytest

from core.migrate import upgrade
from tests.app.conftest import checkpoint_bytes, photo_bytes
from tests.worker.conftest import free_port

ROOT = Path(__file__).resolve().parents[2]


def chromium() -> str:
    for name in ("chromium", "chromium-browser", "google-chrome"):
        if path := shutil.which(name):
            return path
    pytest.skip("no Chromium on this machine (apt-get install chromium)")


@pytest.mark.slow
def test_dashboard_shows_an_inspection(tmp_path):
    browser = chromium()
    url = f"sqlite:///{tmp_path / 'crackscan.db'}"
    upgrade(url)
    port = free_port()
    env = {
        **os.environ,
        "CRACKSCAN_DATABASE_URL": url,
        "CRACKSCAN_DATA_DIR": str(tmp_path / "data"),
        "CRACKSCAN_AUTH_DISABLED": "true",
        "CRACKSCAN_EMBEDDED_WORKER": "false",
    }
    server = subprocess.Popen(
        [sys.executable, "-m", "app.cli", "serve", "--port", str(port)],
        cwd=ROOT,
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    base = f"http://127.0.0.1:{port}"
    try:
        client = httpx.Client(base_url=base, timeout=60)
        for _ in range(100):
            try:
                if client.get("/healthz").status_code == 200:
                    break
            except httpx.TransportError:
                time.sleep(0.2)
        model = client.post(
            "/v1/models", files={"file": ("m.ckpt", checkpoint_bytes(tmp_path))}
        ).json()
        client.post(f"/v1/models/{model['id']}/activate").raise_for_status()
        reply = client.post(
            "/v1/inspections", files={"image": ("bridge-deck.jpg", photo_bytes(), "image/jpeg")}
        )
        assert reply.status_code == 201, reply.text
        shot = tmp_path / "dashboard.png"
        flags = [
            "--headless",
            "--no-sandbox",
            "--disable-gpu",
            "--disable-quic",
            "--no-first-run",
            "--disable-background-networking",
            "--disable-component-update",
            "--disable-sync",
            f"--user-data-dir={tmp_path / 'profile'}",
            "--virtual-time-budget=8000",
        ]
        dom = subprocess.run(
            [browser, *flags, "--dump-dom", f"{base}/dashboard"],
            capture_output=True,
            text=True,
            timeout=120,
        ).stdout
        subprocess.run(
            [
                browser,
                *flags,
                "--window-size=1280,900",
                f"--screenshot={shot}",
                f"{base}/dashboard",
            ],
            capture_output=True,
            timeout=120,
        )
        assert "bridge-deck.jpg" in dom and "succeeded" in dom
        assert (
            "35/35" in dom
        )  # the summary column was filled from the crack map (7 x 5 tiles, all defects)
        assert shot.is_file() and shot.stat().st_size > 10_000
    finally:
        server.terminate()
        server.wait(timeout=30)
