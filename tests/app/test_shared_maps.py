"""On a GPU the inspection runner maps queued photos of one model together, so their tiles
share forward passes; each still gets its own map, and the result is the same as alone."""

from __future__ import annotations

import threading
import time

import numpy as np

import app.main
from models.inference import Predictor
from tests.app.conftest import import_and_activate, photo_bytes


def test_queued_inspections_share_one_mapping_call(api_factory, tmp_path, monkeypatch):
    monkeypatch.setattr(app.main, "_inference_on_gpu", lambda settings: True)
    api = api_factory(inspection_wait_s=0.0)
    assert api.client.app.state.runner.shared_maps == app.main.SHARED_MAPS_ON_GPU  # type: ignore[attr-defined]
    import_and_activate(api, tmp_path)
    real = Predictor.map_photos
    calls: list[int] = []
    release = threading.Event()

    def spy(self, requests, progress=None):  # type: ignore[no-untyped-def]
        calls.append(len(requests))
        if len(calls) == 1:
            release.wait(30)  # hold the runner while three more photos queue up
        return real(self, requests, progress)

    monkeypatch.setattr(Predictor, "map_photos", spy)
    headers = api.headers("inspect")
    ids = []
    for k, (width, height) in enumerate(((200, 150), (160, 120), (240, 96), (128, 128))):
        files = {"image": (f"p{k}.png", photo_bytes(width, height, fmt="PNG"), "image/png")}
        reply = api.client.post(
            "/v1/inspections", files=files, data={"tile": "32"}, headers=headers
        )
        assert reply.status_code == 202, reply.text
        ids.append(reply.json()["id"])
        if k == 0:
            while not calls:  # the first photo is being mapped
                time.sleep(0.01)
    release.set()
    maps = []
    for inspection_id in ids:
        for _ in range(300):
            body = api.client.get(
                f"/v1/inspections/{inspection_id}", headers=api.headers("read")
            ).json()
            if body["status"] in ("succeeded", "failed"):
                break
            time.sleep(0.05)
        assert body["status"] == "succeeded", body
        maps.append(body["crackmap"])
    assert calls == [1, 3]
    monkeypatch.setattr(Predictor, "map_photos", real)
    predictor = api.client.app.state.registry.get(None)[1]  # type: ignore[attr-defined]
    for k, (width, height) in enumerate(((200, 150), (160, 120), (240, 96), (128, 128))):
        alone = predictor.inspect_bytes(photo_bytes(width, height, fmt="PNG"), tile=32)
        assert maps[k]["summary"]["tiles"] == len(alone.table)
        got = np.array([t["defect_prob"] for t in maps[k]["tiles"]])
        np.testing.assert_allclose(got, alone.table.defect_probs, atol=1e-5)
