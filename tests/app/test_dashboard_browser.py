"""The dashboard in a real browser: Playwright drives Chromium against a live `crackscan serve`
(SQLite file, embedded Celery worker), through the whole loop an inspector and an engineer
walk: upload -> map -> zoom -> review -> label -> feedback job -> live curve -> new model active.

Screenshots of each screen go to $CRACKSCAN_SCREENSHOTS when it is set (the README's
images: `CRACKSCAN_SCREENSHOTS=docs/dashboard pytest tests/app/test_dashboard_browser.py`).
"""

from __future__ import annotations

import base64
import io
import os
import shutil
import subprocess
import sys
import time
import zipfile
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import httpx
import numpy as np
import pytest

from core.apikeys import create_api_key
from core.db import transaction
from core.migrate import upgrade
from models.checkpoint import save_checkpoint
from models.inference import make_grid
from models.synthetic import make_survey, write_tile_set
from tests.conftest import service_missing
from tests.models.inference.test_predictor import random_checkpoint
from tests.worker.conftest import free_port

pytestmark = pytest.mark.slow
ROOT = Path(__file__).resolve().parents[2]
WIDTH, HEIGHT, TILE = 512, 384, 32  # the random checkpoint's input size is its tile
ENDED = ("succeeded", "failed", "cancelled")


def chromium() -> str:
    for name in ("chromium", "chromium-browser", "google-chrome"):
        if path := shutil.which(name):
            return path
    service_missing("Chromium", "not installed (apt-get install chromium)")
    raise AssertionError("unreachable")


@dataclass
class LiveServer:
    base: str
    key: str
    client: httpx.Client
    log: Path


@pytest.fixture
def live_server(tmp_path: Path) -> Iterator[LiveServer]:
    url = f"sqlite:///{tmp_path / 'crackscan.db'}"
    upgrade(url)
    with transaction(url) as session:
        _, key = create_api_key(session, ["admin"], "browser test")
    port = free_port()
    env = {
        **os.environ,
        "CRACKSCAN_DATABASE_URL": url,
        "CRACKSCAN_DATA_DIR": str(tmp_path / "data"),
        "CRACKSCAN_BROKER_URL": "",
        "CRACKSCAN_EMBEDDED_WORKER": "true",
        "CRACKSCAN_INSPECTION_WAIT_S": "20",
    }
    log = tmp_path / "server.log"
    with log.open("wb") as out:
        server = subprocess.Popen(
            [sys.executable, "-m", "app.cli", "serve", "--port", str(port)],
            cwd=ROOT,
            env=env,
            stdout=out,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
    base = f"http://127.0.0.1:{port}"
    client = httpx.Client(base_url=base, headers={"X-API-Key": key}, timeout=60)
    try:
        deadline = time.time() + 60
        while True:
            assert server.poll() is None, log.read_text()
            try:
                if client.get("/healthz").status_code == 200:
                    break
            except httpx.TransportError:
                pass  # not listening yet
            assert time.time() < deadline, "the server did not start:\n" + log.read_text()
            time.sleep(0.3)
        checkpoint = tmp_path / "base.ckpt"
        save_checkpoint(random_checkpoint(seed=1, head_scale=3.0), checkpoint)
        files = {"file": ("base.ckpt", checkpoint.read_bytes())}
        model = client.post("/v1/models", files=files, data={"name": "random base"}).json()
        client.post(f"/v1/models/{model['id']}/activate").raise_for_status()
        yield LiveServer(base, key, client, log)
    finally:
        client.close()
        server.terminate()
        try:
            server.wait(timeout=60)
        except subprocess.TimeoutExpired:
            os.killpg(server.pid, 9)


def survey(seed: int) -> tuple[bytes, np.ndarray]:
    photo, mask = make_survey(WIDTH, HEIGHT, seed=seed, cracks=6)
    buffer = io.BytesIO()
    photo.save(buffer, format="JPEG", quality=95)
    return buffer.getvalue(), mask


def truth(mask: np.ndarray, row: int, col: int) -> str:
    grid = make_grid(HEIGHT, WIDTH, TILE)
    y, x = grid.ys[row], grid.xs[col]
    return "c" if (mask[y : y + TILE, x : x + TILE] > 127).sum() >= 8 else "n"


def tile_set_zip(folder: Path) -> bytes:
    write_tile_set(folder, per_class=6, size=32, seed=0)
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w") as zf:
        for path in sorted(folder.rglob("*.png")):
            zf.write(path, path.relative_to(folder).as_posix())
    return buffer.getvalue()


def test_upload_map_review_feedback_and_activate(live_server: LiveServer, tmp_path: Path):
    from playwright.sync_api import expect, sync_playwright

    shots = Path(os.environ.get("CRACKSCAN_SCREENSHOTS") or tmp_path / "shots")
    shots.mkdir(parents=True, exist_ok=True)
    api = live_server.client
    photos = {f"deck-{seed}.jpg": survey(seed) for seed in (1, 2, 3)}
    problems: list[str] = []
    expected = ("status of 429", "status of 422")  # provoked below on purpose

    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=chromium(), args=["--no-sandbox"])
        page = browser.new_page(viewport={"width": 1280, "height": 800})
        page.on(
            "console",
            lambda m: (
                problems.append(m.text)
                if m.type == "error" and not any(e in m.text for e in expected)
                else None
            ),
        )
        page.on("pageerror", lambda e: problems.append(f"uncaught: {e}"))
        outside: list[str] = []  # offline: every request goes to the server itself
        page.on(
            "request",
            lambda r: (
                outside.append(r.url)
                if not r.url.startswith((live_server.base, "blob:", "data:"))
                else None
            ),
        )
        page.on("dialog", lambda d: d.accept())
        # The queue is full for the first upload: the page must wait Retry-After and retry.
        busy = {"sent": 0}

        def first_busy(route):  # type: ignore[no-untyped-def]
            if route.request.method == "POST" and busy["sent"] == 0:
                busy["sent"] += 1
                route.fulfill(
                    status=429,
                    headers={"Retry-After": "2", "Content-Type": "application/json"},
                    body='{"error": {"status": 429, "code": "busy", "message": "queue full"}}',
                )
            else:
                route.continue_()

        page.route("**/v1/inspections", first_busy)

        # The key: asked for, kept in sessionStorage only.
        page.goto(f"{live_server.base}/dashboard")
        expect(page.locator("#key-prompt")).to_be_visible()
        page.fill("#key", live_server.key)
        page.click("#key-form button")
        expect(page.locator("#key-prompt")).to_be_hidden()
        stored = page.evaluate("[sessionStorage.getItem('crackscan-key'), localStorage.length]")
        assert stored == [live_server.key, 0]

        # Upload: three photos dropped on the drop zone.
        files = [
            {"name": name, "b64": base64.b64encode(data).decode()}
            for name, (data, _) in photos.items()
        ]
        transfer = page.evaluate_handle(
            """files => { const dt = new DataTransfer();
                for (const f of files) dt.items.add(new File(
                    [Uint8Array.from(atob(f.b64), c => c.charCodeAt(0))], f.name, {type: 'image/jpeg'}));
                return dt; }""",
            files,
        )
        page.dispatch_event("#photo-drop", "drop", {"dataTransfer": transfer})
        expect(page.locator("#uploads")).to_contain_text("busy, retrying in")
        expect(page.locator("#uploads li.done")).to_have_count(3, timeout=90_000)
        expect(page.locator("#inspection-list li")).to_have_count(3)
        assert busy["sent"] == 1

        # Map: shown with its tile counts; zoom, hover and the threshold slider.
        expect(page.locator("#map-tools")).to_be_visible(timeout=30_000)
        expect(page.locator("#class-counts tbody tr")).to_have_count(3)  # 2 classes + defects
        box = page.locator("#map-canvas").bounding_box()
        assert box is not None
        cx, cy = box["x"] + box["width"] / 2, box["y"] + box["height"] / 2
        page.mouse.move(cx, cy)
        page.mouse.wheel(0, -600)
        expect(page.locator("#zoom-level")).not_to_have_text("100%")
        assert int(page.inner_text("#zoom-level").rstrip("%")) > 100
        page.mouse.move(cx + 3, cy + 3)
        expect(page.locator("#map-tooltip")).to_be_visible()
        expect(page.locator("#map-tooltip")).to_contain_text("p(defect)")
        page.screenshot(path=str(shots / "map-zoomed.png"))
        open_name = page.inner_text("#map-title").split(" — ")[0]
        listed = api.get("/v1/inspections", params={"limit": 10}).json()["items"]
        open_id = next(i["id"] for i in listed if i["filename"] == open_name)
        tiles = api.get(f"/v1/inspections/{open_id}").json()["crackmap"]["tiles"]
        requests_before = len(page.evaluate("performance.getEntriesByType('resource')"))
        probs = np.array([tile["defect_prob"] for tile in tiles])
        counts = set()
        for q in (0.25, 0.5, 0.75):  # thresholds inside this map's spread of probabilities
            t = float(np.floor(np.quantile(probs, q) * 100) / 100)
            page.locator("#threshold").fill(str(t))
            want = int((probs >= t).sum())
            expect(page.locator("#defect-count")).to_have_text(f"{want:,}")
            counts.add(want)
        assert len(counts) > 1, "the slider changed nothing"
        page.locator("#zoom-fit").click()
        page.screenshot(path=str(shots / "maps.png"))
        fetched = page.evaluate("performance.getEntriesByType('resource')")[requests_before:]
        assert not [r for r in fetched if f"/v1/inspections/{open_id}" in r["name"]]

        # Review: label every offered tile of each photo with c / n from the keyboard.
        labelled = 0
        for name, (_, mask) in photos.items():
            page.click("#tab-maps")
            page.click(f"#inspection-list li:has-text('{name}')")
            expect(page.locator("#map-title")).to_contain_text(name)
            page.click("#tab-review")
            expect(page.locator("#review-title")).to_contain_text(name)
            expect(page.locator("#screen-maps")).to_be_hidden()
            figures = page.locator("#review-tiles figure")
            expect(figures.first).to_be_visible()
            expect(page.locator("#review-tiles figure img").first).to_have_js_property(
                "complete", True
            )
            page.keyboard.press("ArrowRight")
            expect(figures.nth(1)).to_have_class("tile current")
            page.keyboard.press("ArrowLeft")
            for k in range(figures.count()):
                row, col = map(int, figures.nth(k).get_attribute("data-key").split("-"))
                page.keyboard.press(truth(mask, row, col))
                labelled += 1
                expect(page.locator("#review-counter")).to_contain_text(f"{labelled} labels given")
            if name == "deck-1.jpg":
                page.screenshot(path=str(shots / "review.png"))
        stored_labels = sum(
            api.get(f"/v1/inspections/{i['id']}/labels").json()["total"]
            for i in api.get("/v1/inspections").json()["items"]
        )
        assert stored_labels == labelled

        # Training: a labelled set's validation summary, and a rejected zip's message.
        page.click("#tab-training")
        page.set_input_files(
            "#set-file",
            files=[
                {
                    "name": "walls.zip",
                    "mimeType": "application/zip",
                    "buffer": tile_set_zip(tmp_path / "set"),
                }
            ],
        )
        expect(page.locator("#set-summary")).to_contain_text("stored")
        page.set_input_files(
            "#set-file",
            files=[{"name": "broken.zip", "mimeType": "application/zip", "buffer": b"not a zip"}],
        )
        expect(page.locator("#set-summary")).to_contain_text("broken.zip was not stored")

        # A job from the form, cancelled, retried, and that one cancelled too.
        expect(page.locator("#job-sets input")).to_have_count(1)
        page.check("#job-sets input")
        page.fill("#job-epochs", "50")
        page.fill("#job-size", "32")
        page.select_option("#job-loss", "isda")
        expect(page.locator("#job-loss-hint")).to_contain_text("ISDA")
        page.click("#job-form button[type=submit]")
        expect(page.locator("#job-cancel")).to_be_visible()
        page.click("#job-cancel")
        expect(page.locator("#job-retry")).to_be_visible(timeout=60_000)
        page.click("#job-retry")
        expect(page.locator("#job-cancel")).to_be_visible()
        page.click("#job-cancel")
        expect(page.locator("#job-retry")).to_be_visible(timeout=60_000)
        jobs = api.get("/v1/jobs").json()["items"]
        assert [j["status"] for j in jobs] == ["cancelled", "cancelled"]

        # Feedback: fine-tune the map's model on the labels; its curves grow live.
        page.click("#tab-review")
        page.fill("#feedback-epochs", "2")
        page.uncheck("#feedback-activate")  # activated by hand below, with confirmation
        page.click("#feedback-start")
        expect(page).to_have_url(f"{live_server.base}/dashboard#training")
        expect(page.locator("#job-title")).to_contain_text("feedback")
        curve = page.locator("#job-charts svg").nth(1).locator("circle.point")
        seen = set()  # the F1 curve's point counts, read while the page stays open
        deadline = time.time() + 240
        while time.time() < deadline:
            seen.add(curve.count())
            if "succeeded" in page.inner_text("#job-status") and curve.count() == 2:
                break
            page.wait_for_timeout(200)
        assert curve.count() == 2, seen
        assert len(seen | {2}) >= 2, f"the curve never changed in the open page: {seen}"
        expect(page.locator("#job-status")).to_contain_text("succeeded", timeout=240_000)
        page.screenshot(path=str(shots / "training.png"))
        job = api.get("/v1/jobs").json()["items"][0]
        assert job["feedback"] and job["status"] == "succeeded", job

        # Models: the new model, activated after the confirmation dialog.
        page.click("#tab-models")
        new_row = page.locator(f"#models tr[data-id='{job['result_model_id']}']")
        new_row.locator("button.activate").click()
        expect(new_row.locator(".active")).to_have_text("active")
        expect(page.locator("#active-model")).to_contain_text("active model")
        assert api.get(f"/v1/models/{job['result_model_id']}").json()["is_active"]
        page.screenshot(path=str(shots / "models.png"))

        # A tablet, portrait: the map screen stacks into one column.
        tablet = browser.new_page(viewport={"width": 820, "height": 1180})
        tablet.on("pageerror", lambda e: problems.append(f"uncaught (tablet): {e}"))
        tablet.goto(f"{live_server.base}/dashboard")
        tablet.fill("#key", live_server.key)
        tablet.click("#key-form button")
        expect(tablet.locator("#map-tools")).to_be_visible(timeout=30_000)
        width = tablet.evaluate("document.documentElement.scrollWidth")
        assert width <= 820, f"the page scrolls sideways on a tablet ({width} px)"
        tablet.screenshot(path=str(shots / "tablet.png"))
        browser.close()

    assert problems == [], problems
    assert outside == [], outside


def test_api_docs_render_offline_under_their_csp(live_server: LiveServer):
    """#27 item 19: /docs loaded Swagger UI from a CDN, so on an offline site it was blank.
    Its files now come from this server, and its CSP lets nothing else in."""
    from playwright.sync_api import expect, sync_playwright

    problems: list[str] = []
    outside: list[str] = []
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=chromium(), args=["--no-sandbox"])
        page = browser.new_page()
        page.on("console", lambda m: problems.append(m.text) if m.type == "error" else None)
        page.on("pageerror", lambda e: problems.append(f"uncaught: {e}"))
        page.on(
            "request",
            lambda r: (
                None if r.url.startswith((live_server.base, "data:")) else outside.append(r.url)
            ),
        )
        page.goto(f"{live_server.base}/docs")
        expect(page.locator(".opblock").first).to_be_visible(timeout=30_000)
        paths = page.locator(".opblock-summary-path").all_inner_texts()
        assert any("/v1/inspections" in p for p in paths), paths
        page.locator(".opblock-summary").first.click()  # an operation opens: the UI runs
        expect(page.locator(".opblock-body").first).to_be_visible()
        browser.close()
    assert problems == [] and outside == [], (problems, outside)
