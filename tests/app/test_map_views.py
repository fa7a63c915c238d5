"""What the dashboard reads, through HTTP like any client: summaries in lists, ETags that make
polling cheap, the photo as a JPEG, the defects as GeoJSON, and retrying a job."""

from __future__ import annotations

import io

from PIL import Image

from tests.app.conftest import photo_bytes, zip_folder
from tests.app.test_api import assert_error
from tests.app.test_review import inspected


def test_lists_carry_summaries_and_unchanged_answers_are_304(api, tmp_path):
    body = inspected(api, tmp_path)
    read = api.headers("read")
    listed = api.client.get("/v1/inspections", headers=read)
    item = listed.json()["items"][0]
    assert item["crackmap"] is None and item["summary"] == body["crackmap"]["summary"]
    etag = listed.headers["ETag"]
    again = api.client.get("/v1/inspections", headers=read | {"If-None-Match": etag})
    assert again.status_code == 304 and again.content == b"" and again.headers["ETag"] == etag

    one = api.client.get(f"/v1/inspections/{body['id']}", headers=read)
    assert one.status_code == 200 and one.json()["crackmap"]["tiles"]
    tag = one.headers["ETag"]
    unchanged = api.client.get(
        f"/v1/inspections/{body['id']}", headers=read | {"If-None-Match": f'"x", {tag}'}
    )
    assert unchanged.status_code == 304
    other = api.client.get(f"/v1/inspections/{body['id']}", headers=read | {"If-None-Match": '"x"'})
    assert other.status_code == 200 and other.json() == one.json()

    # a new inspection changes the list's tag but not the first one's
    files = {"image": ("second.png", photo_bytes(fmt="PNG"), "image/png")}
    assert (
        api.client.post("/v1/inspections", files=files, headers=api.headers("inspect")).status_code
        == 201
    )
    assert (
        api.client.get("/v1/inspections", headers=read | {"If-None-Match": etag}).status_code == 200
    )
    assert (
        api.client.get(
            f"/v1/inspections/{body['id']}", headers=read | {"If-None-Match": tag}
        ).status_code
        == 304
    )
    models = api.client.get("/v1/models", headers=read)
    assert (
        api.client.get(
            "/v1/models", headers=read | {"If-None-Match": models.headers["ETag"]}
        ).status_code
        == 304
    )


def test_photo_jpeg_is_scaled_and_geojson_follows_the_threshold(api, tmp_path):
    body = inspected(api, tmp_path)  # a 200 x 150 photo, 4 x 6 tiles of 64 px at stride 32
    read = api.headers("read")
    full = api.client.get(body["photo_url"], headers=read)
    assert full.status_code == 200 and full.headers["content-type"] == "image/jpeg"
    assert Image.open(io.BytesIO(full.content)).size == (200, 150)
    small = api.client.get(body["photo_url"], params={"max_side": 100}, headers=read)
    assert Image.open(io.BytesIO(small.content)).size == (100, 75)
    assert_error(
        api.client.get(body["photo_url"], params={"max_side": 10}, headers=read), 422, "max_side"
    )

    tiles = body["crackmap"]["tiles"]
    shapes = api.client.get(body["geojson_url"], headers=read)
    assert shapes.headers["content-type"] == "application/geo+json"
    assert "attachment" in shapes.headers["content-disposition"]
    features = shapes.json()["features"]
    assert len(features) == sum(t["defect"] for t in tiles)
    ring = features[0]["geometry"]["coordinates"][0]
    first = next(t for t in tiles if t["defect"])
    assert ring[0] == [first["x"], first["y"]] and ring[2] == [
        first["x"] + first["w"],
        first["y"] + first["h"],
    ]
    none = api.client.get(body["geojson_url"], params={"threshold": 1.0}, headers=read).json()
    assert len(none["features"]) == sum(t["defect_prob"] >= 1.0 for t in tiles)
    assert_error(
        api.client.get(body["geojson_url"], params={"threshold": 2}, headers=read), 422, "threshold"
    )
    assert_error(api.client.get("/v1/inspections/nope/defects.geojson", headers=read), 404)


def test_a_cancelled_job_is_retried_as_a_new_job_with_its_config(api, tiny_set):
    train, read = api.headers("train"), api.headers("read")
    files = {"file": ("tiles.zip", zip_folder(tiny_set), "application/zip")}
    dataset_id = api.client.post("/v1/datasets", files=files, headers=train).json()["id"]
    body = {
        "dataset_id": dataset_id,
        "backbone": "resnet18",
        "loss": "isda",
        "epochs": 3,
        "image_size": 32,
        "batch_size": 8,
    }
    job = api.client.post("/v1/jobs", json=body, headers=train).json()
    assert_error(api.client.post(f"/v1/jobs/{job['id']}/retry", headers=train), 409)  # still queued
    api.client.post(f"/v1/jobs/{job['id']}/cancel", headers=train)
    assert_error(api.client.post(f"/v1/jobs/{job['id']}/retry", headers=read), 403)
    reply = api.client.post(f"/v1/jobs/{job['id']}/retry", headers=train)
    assert reply.status_code == 202, reply.text
    again = reply.json()
    assert again["id"] != job["id"] and again["status"] == "queued"
    assert again["config"] == job["config"] and again["dataset_ids"] == [dataset_id]
    assert reply.headers["Location"].endswith(again["id"])
    assert api.client.get(f"/v1/jobs/{job['id']}", headers=read).json()["status"] == "cancelled"
    polled = api.client.get(f"/v1/jobs/{again['id']}", headers=read)
    assert (
        api.client.get(
            f"/v1/jobs/{again['id']}", headers=read | {"If-None-Match": polled.headers["ETag"]}
        ).status_code
        == 304
    )
    # once its set is gone, a retry cannot run: a 409 that says why
    api.client.post(f"/v1/jobs/{again['id']}/cancel", headers=train)
    assert api.client.delete(f"/v1/datasets/{dataset_id}", headers=train).status_code == 204
    assert (
        "deleted"
        in assert_error(api.client.post(f"/v1/jobs/{job['id']}/retry", headers=train), 409)[
            "message"
        ]
    )
    assert_error(api.client.post("/v1/jobs/nope/retry", headers=train), 404)
