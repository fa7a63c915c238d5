"""Every route through HTTP, against a real SQLite file and a real PostgreSQL database."""

from __future__ import annotations

import hashlib
import time

import pytest
from prometheus_client.parser import text_string_to_metric_families
from sqlalchemy import func, select

from core.db import transaction
from core.tables import Blob, Inspection
from models.inference import TileTable
from tests.app.conftest import checkpoint_bytes, import_and_activate, photo_bytes, zip_folder


def assert_error(reply, status: int, field: str | None = None) -> dict:  # type: ignore[no-untyped-def]
    assert reply.status_code == status, reply.text
    error = reply.json()["error"]
    assert error["status"] == status and error["code"] and error["message"]
    if field is not None:
        assert error["field"] == field, error
    return error  # type: ignore[no-any-return]


def count(url: str, table: type) -> int:
    with transaction(url) as session:
        return int(session.scalar(select(func.count()).select_from(table)) or 0)


def test_health_readiness_and_metrics(api, tmp_path):
    assert api.client.get("/healthz").json() == {"status": "ok", "auth": "api-key"}
    assert "no active model" in assert_error(api.client.get("/readyz"), 503)["message"]
    model_id = import_and_activate(api, tmp_path)
    ready = api.client.get("/readyz")
    assert ready.status_code == 200 and ready.json()["model_id"] == model_id
    reply = api.client.get("/metrics")
    assert reply.headers["content-type"].startswith("text/plain; version=0.0.4")
    samples = {
        (s.name, tuple(sorted(s.labels.items()))): s.value
        for family in text_string_to_metric_families(reply.text)
        for s in family.samples
    }
    readyz = (("method", "GET"), ("route", "/readyz"))
    assert samples[("crackscan_http_requests_total", (*readyz, ("status", "200")))] == 1
    assert samples[("crackscan_http_requests_total", (*readyz, ("status", "503")))] == 1
    assert samples[("crackscan_http_request_seconds_count", readyz)] == 2
    assert samples[("crackscan_inspection_queue_depth", ())] == 0
    assert samples[("crackscan_training_jobs_queued", ())] == 0
    assert samples[("crackscan_tiles_total", ())] == 0
    assert ("crackscan_tiles_per_second", ()) in samples


def test_auth_scopes(api):
    assert_error(api.client.get("/v1/models"), 401, "X-API-Key")
    assert_error(api.client.get("/v1/models", headers={"X-API-Key": "cs_wrong"}), 401)
    assert api.client.get("/v1/models", headers=api.headers("read")).status_code == 200
    files = {"image": ("a.jpg", photo_bytes(), "image/jpeg")}
    assert_error(api.client.post("/v1/inspections", files=files, headers=api.headers("read")), 403)
    assert_error(api.client.post("/v1/models/x/activate", headers=api.headers("train")), 403)
    body = {
        "dataset_id": "x",
        "backbone": "resnet18",
        "loss": "ce",
        "epochs": 1,
        "image_size": 32,
        "batch_size": 4,
    }
    assert_error(api.client.post("/v1/jobs", json=body, headers=api.headers("inspect")), 403)
    assert_error(
        api.client.post("/v1/jobs", json=body, headers=api.headers("admin")), 404
    )  # admin passes auth


def test_auth_can_be_switched_off_only_in_development(api_factory):
    open_api = api_factory(auth_disabled=True)
    assert open_api.client.get("/v1/models").status_code == 200
    with pytest.raises(ValueError, match="development"):
        api_factory(auth_disabled=True, environment="production")


def test_models_import_list_get_activate_download(api, tmp_path):
    data = checkpoint_bytes(tmp_path)
    model_id = import_and_activate(api, tmp_path)
    listed = api.client.get("/v1/models", headers=api.headers("read")).json()
    assert listed["total"] == 1 and listed["items"][0]["is_active"]
    one = api.client.get(f"/v1/models/{model_id}", headers=api.headers("read")).json()
    assert one["classes"] == ["crack", "no_crack"] and len(one["content_hash"]) == 64
    download = api.client.get(f"/v1/models/{model_id}/download", headers=api.headers("read"))
    assert download.status_code == 200
    assert hashlib.sha256(download.content).hexdigest() == hashlib.sha256(data).hexdigest()
    files = {"file": ("junk.ckpt", b"not a checkpoint", "application/octet-stream")}
    assert_error(
        api.client.post("/v1/models", files=files, headers=api.headers("admin")), 422, "file"
    )
    assert_error(api.client.get("/v1/models/nope", headers=api.headers("read")), 404)
    assert_error(api.client.post("/v1/models/nope/activate", headers=api.headers("admin")), 404)


def test_inspection_round_trip_list_overlay_delete(api, tmp_path):
    import_and_activate(api, tmp_path)
    files = {"image": ("wall.jpg", photo_bytes(), "image/jpeg")}
    reply = api.client.post(
        "/v1/inspections",
        files=files,
        data={"tile": "64", "stride": "32", "threshold": "0.6"},
        headers=api.headers("inspect"),
    )
    assert reply.status_code == 201, reply.text
    body = reply.json()
    assert body["status"] == "succeeded" and reply.headers["Location"].endswith(body["id"])
    crackmap = body["crackmap"]
    assert crackmap["schema_version"] == "crackscan.crackmap/2"
    assert crackmap["tiling"]["tile"] == 64 and crackmap["summary"]["tiles"] == 4 * 6
    assert {"row", "col", "x", "y", "w", "h", "probs", "defect"} <= set(crackmap["tiles"][0])
    overlay = api.client.get(
        f"/v1/inspections/{body['id']}/overlay.png", headers=api.headers("read")
    )
    assert overlay.status_code == 200 and overlay.content[:8] == b"\x89PNG\r\n\x1a\n"
    for _ in range(2):
        api.client.post("/v1/inspections", files=files, headers=api.headers("inspect"))
    page = api.client.get("/v1/inspections?limit=2", headers=api.headers("read")).json()
    assert page["total"] == 3 and len(page["items"]) == 2 and page["items"][0]["crackmap"] is None
    rest = api.client.get("/v1/inspections?limit=2&offset=2", headers=api.headers("read")).json()
    assert len(rest["items"]) == 1
    assert (
        api.client.get("/v1/inspections?status=failed", headers=api.headers("read")).json()["total"]
        == 0
    )
    future = api.client.get(
        "/v1/inspections?created_after=2999-01-01T00:00:00Z", headers=api.headers("read")
    )
    assert future.json()["total"] == 0
    assert (
        api.client.delete(
            f"/v1/inspections/{body['id']}", headers=api.headers("inspect")
        ).status_code
        == 204
    )
    assert_error(api.client.get(f"/v1/inspections/{body['id']}", headers=api.headers("read")), 404)


def test_big_maps_store_a_compact_tile_table_and_page_their_tiles(api_factory, tmp_path):
    api = api_factory(inline_tiles=5)
    import_and_activate(api, tmp_path)
    blobs_before = count(api.settings.db_url, Blob)
    files = {"image": ("wall.jpg", photo_bytes(), "image/jpeg")}
    data = {"tile": "64", "stride": "32", "threshold": "0.5"}
    body = api.client.post(
        "/v1/inspections", files=files, data=data, headers=api.headers("inspect")
    ).json()
    inspection_id, read = body["id"], api.headers("read")
    assert body["crackmap"]["tiles"] is None and body["crackmap"]["summary"]["tiles"] == 24
    with transaction(api.settings.db_url) as session:
        row = session.get(Inspection, inspection_id)
        assert row is not None and row.tiles_blob_id is not None
        assert row.crackmap is not None and row.crackmap["tiles"] is None  # no inline JSON
    everything = api.client.get(body["tiles_url"], params={"limit": 100}, headers=read).json()
    assert everything["total"] == 24 and len(everything["items"]) == 24
    first = api.client.get(body["tiles_url"], params={"limit": 10}, headers=read).json()
    last = api.client.get(body["tiles_url"], params={"offset": 20}, headers=read).json()
    assert first["items"] == everything["items"][:10] and last["items"] == everything["items"][20:]
    assert [(t["row"], t["col"]) for t in everything["items"][:7]] == [
        (0, 0),
        (0, 1),
        (0, 2),
        (0, 3),
        (0, 4),
        (0, 5),
        (1, 0),
    ]
    defects = api.client.get(body["tiles_url"], params={"defect": "true"}, headers=read).json()
    assert defects["total"] == body["crackmap"]["summary"]["defect_tiles"]
    assert all(t["defect"] for t in defects["items"])
    likely = api.client.get(body["tiles_url"], params={"min_prob": 0.5}, headers=read).json()
    assert likely["total"] == sum(t["defect_prob"] >= 0.5 for t in everything["items"])
    npz = api.client.get(body["tiles_npz_url"], headers=read)
    assert npz.status_code == 200 and npz.headers["content-type"].startswith(
        "application/vnd.crackscan.tiles+npz"
    )
    table = TileTable.from_npz(npz.content)
    assert [t["defect_prob"] for t in everything["items"]] == pytest.approx(
        table.defect_probs.tolist()
    )
    assert_error(api.client.get(body["tiles_url"], params={"limit": 5001}, headers=read), 422)
    assert_error(api.client.get(body["tiles_url"], params={"min_prob": 2}, headers=read), 422)
    assert_error(api.client.get("/v1/inspections/nope/tiles", headers=read), 404)
    assert (
        api.client.delete(
            f"/v1/inspections/{inspection_id}", headers=api.headers("inspect")
        ).status_code
        == 204
    )
    assert count(api.settings.db_url, Blob) == blobs_before  # photo, overlay and tile table


def test_maps_stored_before_tile_tables_are_served_from_their_inline_tiles(api, tmp_path):
    import_and_activate(api, tmp_path)
    files = {"image": ("wall.jpg", photo_bytes(), "image/jpeg")}
    body = api.client.post(
        "/v1/inspections", files=files, data={"tile": "64"}, headers=api.headers("inspect")
    ).json()
    tiles = body["crackmap"]["tiles"]
    assert len(tiles) == body["crackmap"]["summary"]["tiles"] == 3 * 4  # listed inline: few tiles
    with transaction(api.settings.db_url) as session:  # as migration 0006 left older rows
        row = session.get(Inspection, body["id"])
        assert row is not None
        row.crackmap = {**body["crackmap"], "schema_version": "crackscan.crackmap/1"}
        row.tiles_blob_id = None
    read = api.headers("read")
    again = api.client.get(f"/v1/inspections/{body['id']}", headers=read).json()
    assert again["crackmap"]["tiles"] == tiles and again["tiles_npz_url"] is None
    paged = api.client.get(again["tiles_url"], params={"offset": 4}, headers=read).json()
    assert paged["total"] == 12 and paged["items"] == tiles[4:]
    assert_error(api.client.get(f"/v1/inspections/{body['id']}/tiles.npz", headers=read), 409)


def test_bad_inspections_store_nothing(api, tmp_path):
    url = api.settings.db_url
    assert_error(
        api.client.post(
            "/v1/inspections",
            files={"image": ("a.jpg", photo_bytes(), "image/jpeg")},
            headers=api.headers("inspect"),
        ),
        422,
        "model_id",
    )  # no active model yet
    import_and_activate(api, tmp_path)
    blobs, rows = count(url, Blob), count(url, Inspection)
    bad = {"image": ("a.jpg", b"definitely not an image", "image/jpeg")}
    assert_error(
        api.client.post("/v1/inspections", files=bad, headers=api.headers("inspect")), 422, "image"
    )
    good = {"image": ("a.png", photo_bytes(fmt="PNG"), "image/png")}
    assert_error(
        api.client.post(
            "/v1/inspections", files=good, data={"threshold": "1.5"}, headers=api.headers("inspect")
        ),
        422,
        "threshold",
    )
    assert_error(
        api.client.post(
            "/v1/inspections",
            files=good,
            data={"tile": "64", "stride": "4"},
            headers=api.headers("inspect"),
        ),
        422,
        "stride",
    )
    assert_error(api.client.post("/v1/inspections", headers=api.headers("inspect")), 422, "image")
    assert (count(url, Blob), count(url, Inspection)) == (blobs, rows)


@pytest.mark.parametrize("fmt", ["JPEG", "PNG", "TIFF"])
def test_truncated_or_corrupt_photos_get_422_and_store_nothing(api, tmp_path, fmt):
    """Never a map of pixels that were not in the photo (#13 item 4)."""
    url = api.settings.db_url
    import_and_activate(api, tmp_path)
    whole = photo_bytes(640, 480, fmt)
    blobs, rows = count(url, Blob), count(url, Inspection)
    middle = len(whole) // 2
    corrupt = whole[:middle] + bytes(b ^ 0x5A for b in whole[middle : middle + 64])
    corrupt += whole[middle + 64 :]
    for label, data in (
        ("end cut off", whole[: len(whole) - 16]),
        ("half cut off", whole[:middle]),
        ("bytes flipped", corrupt),
    ):
        if fmt != "PNG" and label == "bytes flipped":
            continue  # JPEG data and raw TIFF strips have no checksum: flipped bytes decode
        files = {"image": (f"a.{fmt.lower()}", data, "application/octet-stream")}
        reply = api.client.post("/v1/inspections", files=files, headers=api.headers("inspect"))
        assert reply.status_code == 422, (label, reply.status_code, reply.text)
        assert reply.json()["error"]["field"] == "image", label
    assert (count(url, Blob), count(url, Inspection)) == (blobs, rows)


def test_pixel_cap_and_full_queue(api_factory, tmp_path):
    small = api_factory(max_image_pixels=10_000)
    import_and_activate(small, tmp_path)
    files = {"image": ("a.jpg", photo_bytes(), "image/jpeg")}
    assert_error(
        small.client.post("/v1/inspections", files=files, headers=small.headers("inspect")),
        413,
        "image",
    )
    full = api_factory(inspection_queue_size=0)
    reply = full.client.post("/v1/inspections", files=files, headers=full.headers("inspect"))
    assert_error(reply, 429)
    assert reply.headers["Retry-After"] == "5"


def test_slow_inspection_answers_202_then_finishes(api_factory, tmp_path):
    api = api_factory(inspection_wait_s=0.0)
    import_and_activate(api, tmp_path)
    reply = api.client.post(
        "/v1/inspections",
        files={"image": ("a.jpg", photo_bytes(900, 700), "image/jpeg")},
        headers=api.headers("inspect"),
    )
    assert reply.status_code in (201, 202)
    location = reply.headers["Location"]
    for _ in range(200):
        body = api.client.get(location, headers=api.headers("read")).json()
        if body["status"] == "succeeded":
            break
        time.sleep(0.05)
    assert body["status"] == "succeeded" and body["crackmap"]["summary"]["tiles"] > 0


def test_unfinished_inspections_are_rerun_after_a_restart(api_factory, tmp_path):
    first = api_factory()
    import_and_activate(first, tmp_path)
    reply = first.client.post(
        "/v1/inspections",
        files={"image": ("a.jpg", photo_bytes(), "image/jpeg")},
        headers=first.headers("inspect"),
    )
    inspection_id = reply.json()["id"]
    with transaction(first.settings.db_url) as session:  # as if the process died mid-run
        row = session.get(Inspection, inspection_id)
        row.status, row.crackmap, row.finished_at = "running", None, None
    second = api_factory()
    for _ in range(200):
        body = second.client.get(
            f"/v1/inspections/{inspection_id}", headers=second.headers("read")
        ).json()
        if body["status"] == "succeeded":
            break
        time.sleep(0.05)
    assert body["status"] == "succeeded" and body["crackmap"] is not None


def test_datasets_upload_validate_list_delete(api, tiny_set, tmp_path):
    url = api.settings.db_url
    files = {"file": ("tiles.zip", zip_folder(tiny_set), "application/zip")}
    reply = api.client.post(
        "/v1/datasets", files=files, data={"name": "tiny"}, headers=api.headers("train")
    )
    assert reply.status_code == 201, reply.text
    dataset = reply.json()
    assert dataset["classes"] == ["crack", "no_crack"] and dataset["defect_classes"] == ["crack"]
    assert (
        dataset["counts"]["train"] == {"crack": 36, "no_crack": 36}
        and dataset["layout"] == "folders"
    )
    blobs = count(url, Blob)
    junk = {"file": ("tiles.zip", b"PK not a zip", "application/zip")}
    assert_error(
        api.client.post("/v1/datasets", files=junk, headers=api.headers("train")), 422, "file"
    )
    single = tmp_path / "single"
    (single / "crack").mkdir(parents=True)
    for src in list((tiny_set / "crack").glob("*.png"))[:3]:
        (single / "crack" / src.name).write_bytes(src.read_bytes())
    one_class = {"file": ("one.zip", zip_folder(single), "application/zip")}
    assert (
        "single class"
        in assert_error(
            api.client.post("/v1/datasets", files=one_class, headers=api.headers("train")),
            422,
            "file",
        )["message"]
    )
    assert count(url, Blob) == blobs
    assert api.client.get("/v1/datasets", headers=api.headers("read")).json()["total"] == 1
    assert (
        api.client.get(f"/v1/datasets/{dataset['id']}", headers=api.headers("read")).json()["name"]
        == "tiny"
    )
    job = {
        "dataset_id": dataset["id"],
        "backbone": "resnet18",
        "loss": "igmsda",
        "epochs": 1,
        "image_size": 32,
        "batch_size": 8,
    }
    job_id = api.client.post("/v1/jobs", json=job, headers=api.headers("train")).json()["id"]
    assert_error(
        api.client.delete(f"/v1/datasets/{dataset['id']}", headers=api.headers("train")), 409
    )
    api.client.post(f"/v1/jobs/{job_id}/cancel", headers=api.headers("train"))
    assert (
        api.client.delete(f"/v1/datasets/{dataset['id']}", headers=api.headers("train")).status_code
        == 204
    )
    assert_error(api.client.get(f"/v1/datasets/{dataset['id']}", headers=api.headers("read")), 404)


def test_jobs_create_validate_list_cancel(api, tiny_set, tmp_path):
    files = {"file": ("tiles.zip", zip_folder(tiny_set), "application/zip")}
    dataset_id = api.client.post("/v1/datasets", files=files, headers=api.headers("train")).json()[
        "id"
    ]
    body = {
        "dataset_id": dataset_id,
        "backbone": "resnet18",
        "loss": "igmsda",
        "epochs": 2,
        "image_size": 32,
        "batch_size": 8,
        "lam0": 7.5,
    }
    reply = api.client.post("/v1/jobs", json=body, headers=api.headers("train"))
    assert reply.status_code == 202, reply.text
    job = reply.json()
    assert job["status"] == "queued" and job["config"]["lam0"] == 7.5 and job["id"]
    assert reply.headers["Location"].endswith(job["id"])
    assert_error(
        api.client.post("/v1/jobs", json=body | {"epochs": 0}, headers=api.headers("train")),
        422,
        "epochs",
    )
    assert_error(
        api.client.post("/v1/jobs", json=body | {"loss": "hinge"}, headers=api.headers("train")),
        422,
        "loss",
    )
    assert_error(
        api.client.post(
            "/v1/jobs", json=body | {"dataset_id": "nope"}, headers=api.headers("train")
        ),
        404,
    )
    model_id = import_and_activate(api, tmp_path)
    with transaction(api.settings.db_url) as session:
        from core.tables import NetworkModel

        session.get(NetworkModel, model_id).classes = ["a", "b", "c"]
    assert_error(
        api.client.post(
            "/v1/jobs", json=body | {"base_model_id": model_id}, headers=api.headers("train")
        ),
        422,
        "base_model_id",
    )
    for wrong, field in (
        ({"dataset_ids": [dataset_id]}, None),  # both ways of naming the sets
        ({"dataset_id": None}, None),  # neither
        ({"dataset_id": None, "dataset_ids": [dataset_id, dataset_id]}, None),
        ({"augment": "mixup"}, "augment"),
        ({"target_precision": 1.5}, "target_precision"),
    ):
        assert_error(
            api.client.post("/v1/jobs", json=body | wrong, headers=api.headers("train")),
            422,
            field,
        )
    listed = api.client.get("/v1/jobs?status=queued", headers=api.headers("read")).json()
    assert listed["total"] == 1 and listed["items"][0]["id"] == job["id"]
    one = api.client.get(f"/v1/jobs/{job['id']}", headers=api.headers("read")).json()
    assert one["epochs"] == [] and one["progress"] == 0
    cancelled = api.client.post(f"/v1/jobs/{job['id']}/cancel", headers=api.headers("train")).json()
    assert cancelled["status"] == "cancelled"
    assert_error(api.client.post(f"/v1/jobs/{job['id']}/cancel", headers=api.headers("train")), 409)


def test_unknown_routes_and_methods_use_the_error_shape(api):
    assert_error(api.client.get("/v1/nothing-here"), 404)
    assert_error(api.client.put("/healthz"), 405)
    assert api.client.get("/openapi.json").json()["info"]["title"] == "crackscan"


def test_every_time_is_utc_with_its_offset_and_pages_are_bounded(api, tmp_path):
    """RFC 3339 date-times on every database (#13 item 17); huge offsets are a 422, not a 500."""
    from datetime import datetime, timedelta

    import_and_activate(api, tmp_path)
    files = {"image": ("a.jpg", photo_bytes(), "image/jpeg")}
    reply = api.client.post("/v1/inspections", files=files, headers=api.headers("inspect"))
    assert reply.status_code in (201, 202), reply.text
    stamps = []
    for path in ("/v1/inspections", "/v1/models"):
        for item in api.client.get(path, headers=api.headers("read")).json()["items"]:
            stamps += [v for k, v in item.items() if k.endswith("_at") and v is not None]
    assert len(stamps) >= 3
    for stamp in stamps:
        assert stamp.endswith("Z") or stamp[-6] in "+-", stamp
        assert datetime.fromisoformat(stamp).utcoffset() == timedelta(0), stamp
    for path in ("/v1/jobs", "/v1/inspections", "/v1/models", "/v1/datasets"):
        huge = api.client.get(
            f"{path}?offset=157544251628035125930326103162880", headers=api.headers("read")
        )
        assert_error(huge, 422, "offset")
        assert (
            api.client.get(f"{path}?offset=1000000000", headers=api.headers("read")).json()["items"]
            == []
        )


def test_a_write_that_cannot_commit_is_not_answered_2xx(api_factory, tmp_path):
    """Activate, cancel and delete commit before answering (#13 item 6): a failing commit
    is a 503 with Retry-After, and nothing changed. (Keys are off, so that the only
    commits refused are the routes' own, not the key's last-use stamp.)"""
    from sqlalchemy import event
    from sqlalchemy.exc import OperationalError

    api = api_factory(auth_disabled=True)
    first = import_and_activate(api, tmp_path)
    files = {"file": ("second.ckpt", checkpoint_bytes(tmp_path, [0.0, 1.0]), "x/y")}
    second = api.client.post("/v1/models", files=files, headers=api.headers("admin")).json()["id"]
    reply = api.client.post(
        "/v1/inspections",
        files={"image": ("a.jpg", photo_bytes(), "image/jpeg")},
        headers=api.headers("inspect"),
    )
    inspection = reply.json()["id"]

    def refuse(session):  # type: ignore[no-untyped-def]
        raise OperationalError("COMMIT", {}, Exception("the database went away"))

    sessions = api.client.app.state.sessions  # type: ignore[attr-defined]
    event.listen(sessions, "before_commit", refuse)
    try:
        for method, path in (
            ("post", f"/v1/models/{second}/activate"),
            ("delete", f"/v1/inspections/{inspection}"),
        ):
            reply = getattr(api.client, method)(path, headers=api.headers("admin"))
            assert reply.status_code == 503, (path, reply.status_code, reply.text)
            assert int(reply.headers["Retry-After"]) > 0
    finally:
        event.remove(sessions, "before_commit", refuse)
    models = api.client.get("/v1/models", headers=api.headers("read")).json()["items"]
    assert [m["id"] for m in models if m["is_active"]] == [first]
    assert api.client.get(f"/v1/inspections/{inspection}", headers=api.headers("read")).is_success


def test_a_database_that_fails_is_a_503_not_a_500(api, tmp_path):
    from sqlalchemy import event
    from sqlalchemy.exc import OperationalError

    def refuse(session):  # type: ignore[no-untyped-def]
        raise OperationalError("COMMIT", {}, Exception("connection refused"))

    sessions = api.client.app.state.sessions  # type: ignore[attr-defined]
    event.listen(sessions, "before_commit", refuse)  # the key check stamps its last use
    try:
        reply = api.client.get("/v1/models", headers=api.headers("read"))
    finally:
        event.remove(sessions, "before_commit", refuse)
    assert_error(reply, 503)
    assert reply.json()["error"]["code"] == "database_unavailable"
    assert int(reply.headers["Retry-After"]) > 0
    assert api.client.get("/v1/models", headers=api.headers("read")).status_code == 200


def test_a_revoked_key_is_refused_at_once(api, tmp_path):
    """#13 item 15: the admin route and the CLI revoke; the key gets 401 from then on."""
    import subprocess
    import sys

    from core.apikeys import create_api_key

    url = api.settings.db_url
    with transaction(url) as session:
        row, key = create_api_key(session, ["read"], "to revoke")
        other_row, other = create_api_key(session, ["read"], "revoked by the CLI")
        key_id, other_id, other_prefix = row.id, other_row.id, other_row.prefix
    assert api.client.get("/v1/models", headers={"X-API-Key": key}).status_code == 200
    listed = api.client.get("/v1/apikeys", headers=api.headers("admin")).json()["items"]
    assert key_id in [k["id"] for k in listed]
    assert all("key_hash" not in k and "key" not in k for k in listed)
    assert_error(api.client.get("/v1/apikeys", headers=api.headers("read")), 403)
    reply = api.client.post(f"/v1/apikeys/{key_id}/revoke", headers=api.headers("admin"))
    assert reply.status_code == 200 and reply.json()["revoked_at"], reply.text
    assert (
        "revoked"
        in assert_error(api.client.get("/v1/models", headers={"X-API-Key": key}), 401)["message"]
    )
    assert_error(api.client.post("/v1/apikeys/nope/revoke", headers=api.headers("admin")), 404)

    env = {"CRACKSCAN_DATABASE_URL": url, "CRACKSCAN_DATA_DIR": str(tmp_path / "data")}
    run = subprocess.run(
        [sys.executable, "-m", "app.cli", "apikey", "revoke", other_prefix],
        capture_output=True,
        text=True,
        env={**__import__("os").environ, **env},
    )
    assert run.returncode == 0, run.stderr
    assert other_id in run.stdout
    assert_error(api.client.get("/v1/models", headers={"X-API-Key": other}), 401)


def test_bodies_over_the_cap_are_refused_before_they_are_spooled(api_factory, tmp_path):
    """#13 item 10: on Content-Length at once, and while a chunked body streams in."""
    import_and_activate(api_factory(), tmp_path)  # a checkpoint is bigger than the small cap
    small = api_factory(max_upload_mb=1)
    url = small.settings.db_url
    blobs, rows = count(url, Blob), count(url, Inspection)
    big = b"\xff\xd8" + bytes(3 << 20)
    files = {"image": ("big.jpg", big, "image/jpeg")}
    reply = small.client.post("/v1/inspections", files=files, headers=small.headers("inspect"))
    assert_error(reply, 413)

    def chunks():  # type: ignore[no-untyped-def]
        for _ in range(8):  # chunked: no Content-Length to refuse on
            yield bytes(1 << 20)

    headers = {**small.headers("inspect"), "Content-Type": "multipart/form-data; boundary=x"}
    reply = small.client.post("/v1/inspections", content=chunks(), headers=headers)
    assert_error(reply, 413)
    assert (count(url, Blob), count(url, Inspection)) == (blobs, rows)
    ok = {"image": ("a.jpg", photo_bytes(), "image/jpeg")}
    assert small.client.post(
        "/v1/inspections", files=ok, headers=small.headers("inspect")
    ).status_code in (201, 202)


def test_the_body_limit_stops_reading_a_stream_at_the_cap():
    """At the ASGI level (the test client reads a body whole before the app sees it): the
    app gets no more chunks once the cap is passed, and the client a 413."""
    import asyncio

    from app.body_limit import MULTIPART_SLACK, BodySizeLimit

    pulled = 0
    sent: list[dict] = []

    async def receive():  # type: ignore[no-untyped-def]
        nonlocal pulled
        pulled += 1
        return {"type": "http.request", "body": bytes(1 << 20), "more_body": pulled < 64}

    async def send(message):  # type: ignore[no-untyped-def]
        sent.append(message)

    async def app(scope, receive, send):  # type: ignore[no-untyped-def]
        while (await receive())["type"] == "http.request":  # an app that reads it all
            pass
        await send({"type": "http.response.start", "status": 400, "headers": []})
        await send({"type": "http.response.body", "body": b"cut short"})

    limit = BodySizeLimit(app, max_bytes=2 << 20)
    asyncio.run(limit({"type": "http", "headers": []}, receive, send))
    assert pulled == (2 << 20) // (1 << 20) + MULTIPART_SLACK // (1 << 20) + 1
    assert sent[0]["status"] == 413 and b"payload_too_large" in sent[1]["body"]


def test_tiles_per_inspection_are_capped(api_factory, tmp_path):
    """#13 item 7: tile 8 at stride 2 on a big photo was tens of millions of tiles."""
    capped = api_factory(max_tiles_per_inspection=100)
    import_and_activate(capped, tmp_path)
    url = capped.settings.db_url
    blobs, rows = count(url, Blob), count(url, Inspection)
    files = {"image": ("a.jpg", photo_bytes(640, 480), "image/jpeg")}
    reply = capped.client.post(
        "/v1/inspections",
        files=files,
        data={"tile": "32", "stride": "8"},
        headers=capped.headers("inspect"),
    )
    message = assert_error(reply, 422, "stride")["message"]
    assert "over the cap of 100" in message and "CRACKSCAN_MAX_TILES_PER_INSPECTION" in message
    assert (count(url, Blob), count(url, Inspection)) == (blobs, rows)
    reply = capped.client.post(
        "/v1/inspections",
        files=files,
        data={"tile": "64", "stride": "64"},  # 10 x 7.5 -> 80 tiles
        headers=capped.headers("inspect"),
    )
    assert reply.status_code in (201, 202), reply.text


def test_loaded_models_are_bounded_least_recently_used_first(api_factory, tmp_path):
    """#13 item 8: inspections by model id, or activations, no longer load every model."""
    api = api_factory(max_loaded_models=2)
    first = import_and_activate(api, tmp_path)
    others = []
    for bias in ([0.0, 1.0], [1.0, 1.0]):
        files = {"file": ("m.ckpt", checkpoint_bytes(tmp_path, bias), "x/y")}
        reply = api.client.post("/v1/models", files=files, headers=api.headers("admin"))
        others.append(reply.json()["id"])
    registry = api.client.app.state.registry  # type: ignore[attr-defined]
    photo = {"image": ("a.jpg", photo_bytes(), "image/jpeg")}
    for model_id in (first, others[0], others[1], first):
        reply = api.client.post(
            "/v1/inspections",
            files=photo,
            data={"model_id": model_id},
            headers=api.headers("inspect"),
        )
        assert reply.status_code in (201, 202), reply.text
        assert len(registry.loaded()) <= 2
    assert registry.loaded() == [others[1], first]


def test_readyz_answers_503_in_time_while_the_database_hangs(api):
    """#13 item 11: the readiness probe runs its database call off the event loop, with a
    timeout, so a database that does not answer is a prompt 503."""
    import socket

    from sqlalchemy import create_engine
    from sqlalchemy.orm import sessionmaker

    from app.routes.health import READY_DB_TIMEOUT_S

    silent = socket.socket()  # accepts connections (backlog) and never says a word
    silent.bind(("127.0.0.1", 0))
    silent.listen(8)
    port = silent.getsockname()[1]
    engine = create_engine(
        f"postgresql+psycopg://postgres@127.0.0.1:{port}/test", connect_args={"connect_timeout": 30}
    )
    state = api.client.app.state  # type: ignore[attr-defined]
    real = state.sessions
    state.sessions = sessionmaker(engine)
    try:
        started = time.perf_counter()
        reply = api.client.get("/readyz")
        waited = time.perf_counter() - started
        assert api.client.get("/healthz").status_code == 200  # the loop still serves
    finally:
        state.sessions = real
        silent.close()
        engine.dispose()
    assert_error(reply, 503)
    assert "no answer in time" in reply.json()["error"]["message"]
    assert waited < READY_DB_TIMEOUT_S + 2, waited


def test_inspections_held_by_a_live_process_are_left_to_it(api_factory, tmp_path):
    """#13 item 12: with several API processes, an unfinished inspection is taken over only
    once its holder's lease has run out."""
    from datetime import timedelta

    from core.tables import utcnow

    api = api_factory(inspection_lease_s=3.0)
    import_and_activate(api, tmp_path)
    reply = api.client.post(
        "/v1/inspections",
        files={"image": ("a.jpg", photo_bytes(), "image/jpeg")},
        headers=api.headers("inspect"),
    )
    done = reply.json()
    assert done["status"] == "succeeded", done
    url = api.settings.db_url
    with transaction(url) as session:
        source = session.get(Inspection, done["id"])
        ids = {}
        for label, until in (("alive", 600), ("dead", -1)):
            row = Inspection(
                filename=label,
                image_blob_id=source.image_blob_id,
                width=source.width,
                height=source.height,
                params=source.params,
                model_id=source.model_id,
                status="running",
                lease_owner="another-host:1:abcd",
                leased_until=utcnow() + timedelta(seconds=until),
            )
            session.add(row)
            session.flush()
            ids[label] = row.id
    runner = api.client.app.state.runner  # type: ignore[attr-defined]
    assert runner.recover() == 1
    for _ in range(200):
        dead = api.client.get(f"/v1/inspections/{ids['dead']}", headers=api.headers("read"))
        if dead.json()["status"] == "succeeded":
            break
        time.sleep(0.05)
    assert dead.json()["status"] == "succeeded"
    with transaction(url) as session:
        alive = session.get(Inspection, ids["alive"])
        assert (alive.status, alive.lease_owner) == ("running", "another-host:1:abcd")
        assert runner._claim(ids["alive"]) == "running"  # noqa: SLF001  refused, not run twice
        finished = session.get(Inspection, ids["dead"])
        assert finished.lease_owner is None and finished.crackmap is not None


def test_an_empty_dataset_id_is_a_422_not_a_500(api):
    """Found by schemathesis: "dataset_id": "" named no set and crashed the route."""
    body = {"dataset_id": "", "backbone": "resnet18", "epochs": 1, "image_size": 32}
    assert_error(api.client.post("/v1/jobs", json=body, headers=api.headers("train")), 422)
    body = {"dataset_ids": [""], "backbone": "resnet18", "epochs": 1, "image_size": 32}
    assert_error(api.client.post("/v1/jobs", json=body, headers=api.headers("train")), 422)


def test_query_times_must_be_rfc3339_text(api):
    """Found by schemathesis: numbers were read as Unix times."""
    for bad in ("-17", "0.5", "yesterday"):
        reply = api.client.get(f"/v1/inspections?created_after={bad}", headers=api.headers("read"))
        assert_error(reply, 422, "created_after")
    good = api.client.get(
        "/v1/inspections?created_after=2026-11-29T00:00:00Z", headers=api.headers("read")
    )
    assert good.status_code == 200, good.text
