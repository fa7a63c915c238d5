"""The review loop through HTTP: tiles to label, their crops, labels stored, replaced and deleted."""

from __future__ import annotations

import io

import numpy as np
from PIL import Image
from sqlalchemy import select

from core.db import transaction
from core.tables import ApiKey, TileLabel
from models.inference import make_grid, open_image, tile_batches
from tests.app.conftest import import_and_activate, photo_bytes
from tests.app.test_api import assert_error, count


def inspected(api, tmp_path) -> dict:  # type: ignore[no-untyped-def]
    import_and_activate(api, tmp_path)
    files = {"image": ("wall.jpg", photo_bytes(), "image/jpeg")}
    reply = api.client.post(
        "/v1/inspections",
        files=files,
        data={"tile": "64", "stride": "32"},
        headers=api.headers("inspect"),
    )
    assert reply.status_code == 201, reply.text
    return reply.json()  # type: ignore[no-any-return]


def test_review_crops_and_labels_round_trip(api, tmp_path):
    body = inspected(api, tmp_path)  # 4 rows x 6 cols of 64-px tiles at stride 32
    base, read, inspect = (
        f"/v1/inspections/{body['id']}",
        api.headers("read"),
        api.headers("inspect"),
    )
    review = api.client.get(
        f"{base}/review", params={"limit": 50, "strategy": "uncertainty"}, headers=read
    ).json()
    items = review["items"]
    assert review["labelled"] == 0 and review["classes"] == ["crack", "no_crack"] and items
    assert all(
        abs(a["x"] - b["x"]) >= 64 or abs(a["y"] - b["y"]) >= 64
        for i, a in enumerate(items)
        for b in items[i + 1 :]
    )
    assert [t["margin"] for t in items] == sorted(t["margin"] for t in items)

    crop = api.client.get(items[1]["crop_url"], headers=read)
    assert crop.status_code == 200 and crop.headers["content-type"] == "image/png"
    size = body["crackmap"]["tiling"]["input_size"]
    grid = make_grid(150, 200, 64, 32)
    fed = next(tile_batches(open_image(photo_bytes()), grid, len(grid), size))[1]
    index = items[1]["row"] * grid.cols + items[1]["col"]
    expected = fed[index].permute(1, 2, 0).numpy()
    assert np.array_equal(np.asarray(Image.open(io.BytesIO(crop.content)).convert("RGB")), expected)
    assert_error(api.client.get(f"{base}/tiles/4/0.png", headers=read), 422, "row")
    assert_error(api.client.get("/v1/inspections/nope/tiles/0/0.png", headers=read), 404)

    labels = {
        "labels": [
            {"row": 0, "col": 0, "label": "crack"},
            {"row": 2, "col": 5, "label": "no_crack"},
        ]
    }
    assert_error(api.client.post(f"{base}/labels", json=labels, headers=read), 403)
    stored = api.client.post(f"{base}/labels", json=labels, headers=inspect)
    assert stored.status_code == 200, stored.text
    with transaction(api.settings.db_url) as session:
        key_id = session.scalar(select(ApiKey.id).where(ApiKey.name == "test inspect"))
    assert {(s["row"], s["col"], s["label"], s["api_key_id"]) for s in stored.json()["items"]} == {
        (0, 0, "crack", key_id),
        (2, 5, "no_crack", key_id),
    }
    assert (
        stored.json()["items"][0]["created_at"].endswith("Z")
        or "+00:00" in stored.json()["items"][0]["created_at"]
    )

    again = {
        "labels": [
            {"row": 0, "col": 0, "label": "no_crack"},
            {"row": 0, "col": 0, "label": "crack"},
            {"row": 1, "col": 1, "label": "no_crack"},
        ]
    }
    assert api.client.post(f"{base}/labels", json=again, headers=inspect).status_code == 200
    listed = api.client.get(f"{base}/labels", headers=read).json()
    assert listed["total"] == 3  # the repeat replaced (0, 0); the last answer in a request wins
    assert [(t["row"], t["col"], t["label"]) for t in listed["items"]] == [
        (0, 0, "crack"),
        (1, 1, "no_crack"),
        (2, 5, "no_crack"),
    ]
    paged = api.client.get(f"{base}/labels", params={"limit": 1, "offset": 1}, headers=read).json()
    assert paged["total"] == 3 and [(t["row"], t["col"]) for t in paged["items"]] == [(1, 1)]

    after = api.client.get(f"{base}/review", params={"limit": 50}, headers=read).json()
    assert after["labelled"] == 3
    labelled = {(0, 0), (1, 1), (2, 5)}
    assert not labelled & {(t["row"], t["col"]) for t in after["items"]}

    assert api.client.delete(base, headers=inspect).status_code == 204
    assert count(api.settings.db_url, TileLabel) == 0
    assert_error(api.client.get(f"{base}/labels", headers=read), 404)


def test_bad_labels_are_refused_and_store_nothing(api, tmp_path):
    body = inspected(api, tmp_path)
    base, inspect = f"/v1/inspections/{body['id']}/labels", api.headers("inspect")
    cases = [
        ({"labels": [{"row": 0, "col": 0, "label": "pothole"}]}, "labels.0.label"),
        (
            {
                "labels": [
                    {"row": 0, "col": 0, "label": "crack"},
                    {"row": 4, "col": 0, "label": "crack"},
                ]
            },
            "labels.1",
        ),
        ({"labels": [{"row": 0, "col": 6, "label": "crack"}]}, "labels.0"),
        ({"labels": [{"row": -1, "col": 0, "label": "crack"}]}, None),
        ({"labels": [{"row": 0, "col": 0, "label": "crack", "colour": "red"}]}, None),
        ({"labels": []}, None),
        ({"labels": [{"row": 0, "col": 0, "label": "crack"}] * 1001}, None),
    ]
    for labels, field in cases:
        assert_error(api.client.post(base, json=labels, headers=inspect), 422, field)
    assert count(api.settings.db_url, TileLabel) == 0
    assert_error(
        api.client.post("/v1/inspections/nope/labels", json=cases[0][0], headers=inspect), 404
    )
    read = api.headers("read")
    one = api.client.get(
        f"/v1/inspections/{body['id']}/review",
        params={"strategy": "random", "seed": 7, "limit": 3},
        headers=read,
    ).json()
    two = api.client.get(
        f"/v1/inspections/{body['id']}/review",
        params={"strategy": "random", "seed": 7, "limit": 3},
        headers=read,
    ).json()
    assert one["items"] == two["items"] and len(one["items"]) == 3
    assert_error(
        api.client.get(
            f"/v1/inspections/{body['id']}/review", params={"strategy": "entropy"}, headers=read
        ),
        422,
    )
    assert_error(
        api.client.get(f"/v1/inspections/{body['id']}/review", params={"limit": 201}, headers=read),
        422,
    )
