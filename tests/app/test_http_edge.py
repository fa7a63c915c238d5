"""The HTTP edge as a hostile client meets it (#27 items 1-3, 12-14, 18-20): the key before
the body, bounded metrics, Allow and HEAD, NUL bytes, extreme dates, download names,
links, security headers, leaks, and the queue slot of a deleted inspection."""

from __future__ import annotations

import asyncio
import json
import re
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Any

import pytest
from prometheus_client.parser import text_string_to_metric_families
from sqlalchemy import func, select

from app.schemas.review import MAX_LABELS_PER_REQUEST
from core.db import transaction
from core.tables import ApiKey, NetworkModel
from tests.app.conftest import checkpoint_bytes, import_and_activate, photo_bytes, zip_folder
from tests.app.test_api import assert_error

MIB = 1 << 20
METHODS = {"GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS"}
JOB = {"dataset_id": "x", "backbone": "resnet18", "epochs": 1, "image_size": 32, "batch_size": 4}


@dataclass
class Raw:
    """What the app answered to a request sent straight to its ASGI callable, and how many
    body chunks it pulled (the test client reads a whole body before the app sees it)."""

    status: int = 0
    headers: dict[str, str] = field(default_factory=dict)
    body: bytes = b""
    pulled: int = 0


def asgi_request(
    api: Any,
    method: str,
    path: str,
    headers: dict[str, str],
    chunks: int,
    chunk_bytes: int = MIB,
    declare_length: bool = True,
) -> Raw:
    raw = Raw()
    head = [(k.lower().encode(), v.encode()) for k, v in headers.items()]
    if declare_length:
        head.append((b"content-length", str(chunks * chunk_bytes).encode()))
    scope = {
        "type": "http", "asgi": {"version": "3.0"}, "http_version": "1.1", "method": method,
        "scheme": "http", "path": path, "raw_path": path.encode(), "query_string": b"",
        "root_path": "", "headers": head, "client": ("127.0.0.1", 5000),
        "server": ("testserver", 80),
    }  # fmt: skip

    async def receive() -> dict[str, Any]:
        if raw.pulled >= chunks:
            await asyncio.sleep(30)  # the client has sent all: a server waiting here hangs
            return {"type": "http.disconnect"}
        raw.pulled += 1
        return {
            "type": "http.request",
            "body": bytes(chunk_bytes),
            "more_body": raw.pulled < chunks,
        }

    async def send(message: dict[str, Any]) -> None:
        if message["type"] == "http.response.start":
            raw.status = message["status"]
            raw.headers = {k.decode().lower(): v.decode() for k, v in message["headers"]}
        elif message["type"] == "http.response.body":
            raw.body += message.get("body", b"")

    asyncio.run(asyncio.wait_for(api.client.app(scope, receive, send), timeout=120))
    return raw


BODY_ROUTES = [
    ("/v1/inspections", "multipart/form-data; boundary=x", "inspect"),
    ("/v1/datasets", "multipart/form-data; boundary=x", "train"),
    ("/v1/models", "multipart/form-data; boundary=x", "admin"),
    ("/v1/jobs", "application/json", "train"),
    ("/v1/inspections/some-id/labels", "application/json", "inspect"),
]


def test_the_key_and_its_scope_are_checked_before_any_body_is_read(api):
    """#27 item 1: a 200 MB body with no key, a wrong key or a key without the scope gets
    401/403 and not one byte of it is read (it was spooled or parsed in full first)."""
    for path, content_type, _ in BODY_ROUTES:
        for key, status in ((None, 401), ("cs_wrong", 401), (api.keys["read"], 403)):
            headers = {"content-type": content_type} | ({"x-api-key": key} if key else {})
            raw = asgi_request(api, "POST", path, headers, chunks=200)
            assert (raw.status, raw.pulled) == (status, 0), (path, key, raw)
            assert json.loads(raw.body)["error"]["status"] == status
            assert raw.headers["connection"] == "close"  # its body stays unread


def test_json_bodies_have_a_small_cap_of_their_own(api):
    """#27 item 1: a 50 MB JSON array cost 316 MB of RSS before the route refused it."""
    cap = api.settings.max_json_kb << 10
    train = {"content-type": "application/json", "x-api-key": api.keys["train"]}
    declared = asgi_request(api, "POST", "/v1/jobs", train, chunks=50)
    assert (declared.status, declared.pulled) == (413, 0), declared
    assert "JSON body" in json.loads(declared.body)["error"]["message"]
    streamed = asgi_request(
        api, "POST", "/v1/jobs", train, chunks=64, chunk_bytes=64 << 10, declare_length=False
    )
    assert streamed.status == 413 and streamed.pulled == cap // (64 << 10) + 1, streamed
    labels = asgi_request(
        api, "POST", "/v1/inspections/x/labels", train | {"x-api-key": api.keys["inspect"]}, 2
    )
    assert (labels.status, labels.pulled) == (413, 0)
    # the largest valid body still fits: 1,000 labels with 100-character class names
    biggest = {
        "labels": [{"row": 10**6, "col": 10**6, "label": "x" * 100}] * MAX_LABELS_PER_REQUEST
    }
    assert len(json.dumps(biggest)) < cap
    small = api.client.post("/v1/jobs", json=JOB, headers=api.headers("train"))
    assert_error(small, 404)  # past the cap and the key: the set does not exist


def test_an_upload_still_gets_the_upload_cap(api_factory):
    small = api_factory(max_upload_mb=1, max_json_kb=1)
    headers = {
        "content-type": "multipart/form-data; boundary=x",
        "x-api-key": small.keys["inspect"],
    }
    raw = asgi_request(small, "POST", "/v1/inspections", headers, chunks=1, chunk_bytes=64 << 10)
    assert raw.status in (400, 422) and raw.pulled == 1, raw  # no form, but under the cap
    assert asgi_request(small, "POST", "/v1/inspections", headers, chunks=3).status == 413


def test_metrics_label_only_known_methods_and_route_templates(api):
    """#27 item 2: 5,000 requests `X000001 /nope` ... took /metrics from 355 KB to 8.8 MB."""
    for n in range(40):
        api.client.request(f"X{n:06d}", "/nope")
        api.client.request(f"X{n:06d}", "/v1/models")
        api.client.get(f"/v1/inspections/id-{n}", headers=api.headers("read"))
        api.client.get(f"/nothing/{n}")
    families = text_string_to_metric_families(api.client.get("/metrics").text)
    samples = [s for f in families for s in f.samples if s.name == "crackscan_http_requests_total"]
    methods = {s.labels["method"] for s in samples}
    routes = {s.labels["route"] for s in samples}
    assert methods <= METHODS | {"other"} and "other" in methods, methods
    assert routes <= {"unmatched", "/v1/models", "/v1/inspections/{inspection_id}", "/metrics"}
    assert len(samples) < 10, samples


def test_405_names_every_allowed_method_and_head_works_wherever_get_does(api):
    """#27 item 3: Allow was empty (included routers are wrapped) and HEAD was a 405."""
    for method, path, allowed in (
        ("PUT", "/healthz", "GET, HEAD"),
        ("DELETE", "/v1/inspections", "GET, HEAD, POST"),
        ("POST", "/v1/inspections/some-id", "DELETE, GET, HEAD"),
        ("GET", "/v1/models/some-id/activate", "POST"),
        ("HEAD", "/v1/jobs/some-id/cancel", "POST"),
    ):
        reply = api.client.request(method, path, headers=api.headers("admin"))
        assert reply.status_code == 405 and reply.headers["Allow"] == allowed, (path, reply)
    for path in ("/healthz", "/dashboard", "/metrics", "/openapi.json", "/docs"):
        get, head = api.client.get(path), api.client.head(path)
        assert head.status_code == 200 and head.content == b"", (path, head)
        assert head.headers["content-type"] == get.headers["content-type"]
    assert api.client.head("/v1/models", headers=api.headers("read")).status_code == 200
    assert api.client.head("/v1/models").status_code == 401
    assert api.client.head("/dashboard/assets/main.js").status_code == 200


@pytest.mark.slow
def test_parallel_activations_answer_200_or_409_and_leave_one_model_active(api, tmp_path):
    """#27 item 12: on PostgreSQL 10 of 48 parallel activations raised IntegrityError: 500."""
    ids = []
    for bias in ([2.0, 0.0], [0.0, 2.0], [1.0, 1.0]):
        files = {"file": ("m.ckpt", checkpoint_bytes(tmp_path, bias), "application/octet-stream")}
        ids.append(api.client.post("/v1/models", files=files, headers=api.headers()).json()["id"])

    def activate(n: int) -> int:
        url = f"/v1/models/{ids[n % 3]}/activate"
        return api.client.post(url, headers=api.headers()).status_code

    with ThreadPoolExecutor(16) as pool:
        statuses = list(pool.map(activate, range(48)))
    assert set(statuses) <= {200, 409} and statuses.count(200) >= 3, statuses
    with transaction(api.settings.db_url) as session:
        active = session.scalar(
            select(func.count()).select_from(NetworkModel).where(NetworkModel.is_active.is_(True))
        )
    assert active == 1


def multipart(fields: list[tuple[str, str | None, bytes]]) -> tuple[bytes, str]:
    """A multipart body written by hand (clients escape a NUL in a file name: %00)."""
    parts = []
    for name, filename, value in fields:
        disposition = f'form-data; name="{name}"'
        if filename is not None:
            disposition += f'; filename="{filename}"'
        parts.append(
            f"--b0undary\r\nContent-Disposition: {disposition}\r\n\r\n".encode("latin-1")
            + value
            + b"\r\n"
        )
    return b"".join(parts) + b"--b0undary--\r\n", "multipart/form-data; boundary=b0undary"


def test_a_nul_byte_or_an_overlong_file_name_is_a_422(api, tiny_set, tmp_path):
    """#27 item 12: on PostgreSQL a NUL in a path id, a file name or a set name was a 500
    (DataError); on SQLite it was stored. One check covers every string a request brings."""
    import_and_activate(api, tmp_path)
    for path in ("/v1/models/a%00b", "/v1/datasets/a%00b", "/v1/inspections/a%00b/tiles"):
        assert_error(api.client.get(path, headers=api.headers()), 422)
    assert_error(api.client.get("/v1/models?x=a%00b", headers=api.headers()), 422, "x")
    assert_error(api.client.delete("/v1/inspections/a%00b", headers=api.headers()), 422)
    uploads = [
        ("/v1/inspections", [("image", "deck\x00.jpg", photo_bytes())], "image"),
        ("/v1/inspections", [("image", "a.jpg", photo_bytes()), ("model_id", None, b"m\x00")], "model_id"),
        ("/v1/datasets", [("file", "s.zip", zip_folder(tiny_set)), ("name", None, b"set\x00")], "name"),
        ("/v1/datasets", [("file", "s.zip", zip_folder(tiny_set)), ("defect_classes", None, b"c\x00")], "defect_classes"),
        ("/v1/models", [("file", "m.ckpt", checkpoint_bytes(tmp_path)), ("name", None, b"m\x00")], "name"),
    ]  # fmt: skip
    for path, fields, field_name in uploads:
        body, content_type = multipart(fields)
        headers = {**api.headers(), "Content-Type": content_type}
        assert_error(api.client.post(path, content=body, headers=headers), 422, field_name)
    for body in ({**JOB, "dataset_id": "a\x00b"}, {**JOB, "dataset_ids": ["a", "b\x00"]}):
        assert_error(api.client.post("/v1/jobs", json=body, headers=api.headers()), 422)
    labels = {"labels": [{"row": 0, "col": 0, "label": "crack\x00"}]}
    reply = api.client.post("/v1/inspections/x/labels", json=labels, headers=api.headers())
    assert_error(reply, 422, "labels.0.label")
    too_long = [  # stored as text too: PostgreSQL refused them (DataError: 500)
        ("/v1/inspections", {"image": ("a" * 400 + ".jpg", photo_bytes(), "image/jpeg")}, "image"),
        ("/v1/inspections", {"image": ("a.jpg", photo_bytes(), "image/" + "x" * 200)}, "image"),
        ("/v1/models", {"file": ("m" * 250 + ".ckpt", checkpoint_bytes(tmp_path))}, "file"),
    ]  # fmt: skip
    for path, files, field_name in too_long:
        assert_error(api.client.post(path, files=files, headers=api.headers()), 422, field_name)
    listed = api.client.get("/v1/datasets", headers=api.headers()).json()
    assert listed["total"] == 0  # nothing half-stored
    assert api.client.get("/v1/inspections", headers=api.headers()).json()["total"] == 0
    assert api.client.get("/v1/models", headers=api.headers()).json()["total"] == 1


def test_unknown_form_fields_are_a_422_like_unknown_json_fields(api, tmp_path):
    """#27 item 20: `tiel=64` was ignored silently and the photo mapped at the default."""
    import_and_activate(api, tmp_path)
    files = {"image": ("a.jpg", photo_bytes(), "image/jpeg")}
    reply = api.client.post(
        "/v1/inspections", files=files, data={"tiel": "64"}, headers=api.headers()
    )
    assert "unknown form field" in assert_error(reply, 422, "tiel")["message"]
    files = {"file": ("m.ckpt", checkpoint_bytes(tmp_path), "application/octet-stream")}
    reply = api.client.post("/v1/models", files=files, data={"nmae": "x"}, headers=api.headers())
    assert_error(reply, 422, "nmae")
    assert api.client.get("/v1/inspections", headers=api.headers()).json()["total"] == 0
    ok = api.client.post(
        "/v1/inspections",
        files={"image": ("a.jpg", photo_bytes(), "image/jpeg")},
        data={"tile": "64"},
        headers=api.headers(),
    )
    assert ok.status_code in (201, 202), ok.text


def test_extreme_date_filters_work(api):
    """#27 item 13: created_after=0001-01-01T00:00:00+14:00 overflowed in UTC: 500."""
    for query in (
        "created_after=0001-01-01T00:00:00%2B14:00",
        "created_before=9999-12-31T23:59:59-14:00",
        "created_after=0001-01-01T00:00:00%2B14:00&created_before=9999-12-31T23:59:59-14:00",
        "created_after=9999-12-31T23:59:59-14:00",
        "created_before=0001-01-01T00:00:00%2B14:00",
    ):
        reply = api.client.get(f"/v1/inspections?{query}", headers=api.headers("read"))
        assert reply.status_code == 200, (query, reply.text)


def test_a_model_name_cannot_break_the_download_header(api, tmp_path):
    """#27 item 14: CR/LF in a name dropped the connection; quotes were not escaped."""
    name = 'deck "A";\r\nX-Injected: 1 — Brücke\\'
    files = {"file": ("m.ckpt", checkpoint_bytes(tmp_path), "application/octet-stream")}
    model = api.client.post("/v1/models", files=files, data={"name": name}, headers=api.headers())
    assert model.status_code == 201, model.text
    reply = api.client.get(f"/v1/models/{model.json()['id']}/download", headers=api.headers())
    assert reply.status_code == 200 and "x-injected" not in reply.headers
    disposition = reply.headers["content-disposition"]
    match = re.fullmatch(r'attachment; filename="([ -~]*)"; filename\*=UTF-8\'\'(\S+)', disposition)
    assert match, disposition
    fallback, encoded = match.groups()
    assert not set(fallback) & set('"\\;') and fallback.endswith(".ckpt")
    from urllib.parse import unquote

    assert unquote(encoded).startswith(name)


def test_links_in_answers_never_come_from_the_host_header(api_factory, tmp_path):
    """#27 item 18: every URL in an answer was built from the Host header the client sent,
    and the dashboard sent the API key to it."""
    plain = api_factory()
    import_and_activate(plain, tmp_path)
    evil = {**plain.headers(), "Host": "evil.example"}
    files = {"image": ("a.jpg", photo_bytes(), "image/jpeg")}
    reply = plain.client.post("/v1/inspections", files=files, headers=evil)
    body = reply.json()
    assert reply.headers["Location"] == f"/v1/inspections/{body['id']}"
    links = [body[k] for k in ("overlay_url", "tiles_url", "photo_url", "geojson_url")]
    assert all(u.startswith(f"/v1/inspections/{body['id']}/") for u in links), links
    review = plain.client.get(f"/v1/inspections/{body['id']}/review", headers=evil).json()
    assert review["items"] and all(i["crop_url"].startswith("/v1/") for i in review["items"])
    assert (
        plain.client.get(review["items"][0]["crop_url"], headers=plain.headers()).status_code == 200
    )
    slash = plain.client.get("/v1/models/", headers=evil, follow_redirects=False)
    assert "evil.example" not in slash.headers.get("location", "") and slash.status_code == 404

    public = api_factory(public_url="https://cracks.example.org/")
    listed = public.client.get(
        "/v1/inspections", headers={**public.headers(), "Host": "evil.example"}
    )
    item = listed.json()["items"][0]
    assert item["photo_url"] == f"https://cracks.example.org/v1/inspections/{item['id']}/photo.jpg"
    with pytest.raises(ValueError, match="PUBLIC_URL"):
        api_factory(public_url="javascript:alert(1)")


def test_security_headers_and_docs_served_from_the_package(api):
    """#27 item 19: no nosniff, CSP or X-Frame-Options; /docs loaded Swagger UI from a CDN."""
    page = api.client.get("/dashboard")
    csp = page.headers["content-security-policy"]
    assert "default-src 'self'" in csp and "frame-ancestors 'none'" in csp and "blob:" in csp
    assert "unsafe-inline" not in csp and "unsafe-eval" not in csp
    for reply in (
        page,
        api.client.get("/v1/models", headers=api.headers()),
        api.client.get("/healthz"),
    ):
        assert reply.headers["x-content-type-options"] == "nosniff"
        assert reply.headers["x-frame-options"] == "DENY"
    assert (
        api.client.get("/healthz")
        .headers["content-security-policy"]
        .startswith("default-src 'none'")
    )
    docs = api.client.get("/docs")
    assert docs.status_code == 200 and "swagger-ui" in docs.text
    assert not re.search(r"(src|href)=\"(https?:)?//", docs.text), docs.text
    assets = re.findall(r'(?:src|href)="(/[^"]+)"', docs.text)
    assert len(assets) >= 3
    for asset in assets:
        assert api.client.get(asset).status_code == 200, asset
    assert api.client.get("/redoc").status_code == 404  # it loaded its script from a CDN


def test_error_messages_do_not_leak_temporary_paths_or_addresses(api):
    """#27 item 20: a junk checkpoint's 422 named /tmp/crackscan-upload-…/model.ckpt."""
    from app.errors import error_body

    for path, field_name, name in (
        ("/v1/models", "file", "m.ckpt"),
        ("/v1/datasets", "file", "d.zip"),
    ):
        files = {field_name: (name, b"PK\x05\x06" + bytes(18), "application/octet-stream")}
        message = assert_error(api.client.post(path, files=files, headers=api.headers()), 422)[
            "message"
        ]
        assert "/tmp" not in message and "crackscan-upload" not in message, message
    leaky = error_body(
        500, "x", "failed on <object object at 0x7f3a2c1b4d90> in /tmp/abc/photo.jpg"
    )
    assert leaky["error"]["message"] == "failed on <object object at 0x…> in photo.jpg"


def test_last_used_at_is_written_at_most_once_a_minute(api):
    """#27 item 20: every authenticated GET wrote the key's row."""
    url = api.settings.db_url

    def last_used() -> Any:
        with transaction(url) as session:
            return session.scalar(select(ApiKey.last_used_at).where(ApiKey.name == "test read"))

    api.client.get("/v1/models", headers=api.headers("read"))
    first = last_used()
    time.sleep(0.05)
    for _ in range(3):
        api.client.get("/v1/models", headers=api.headers("read"))
    assert last_used() == first
    with transaction(url) as session:  # as if the last write were a year old
        row = session.scalar(select(ApiKey).where(ApiKey.name == "test read"))
        row.last_used_at = first.replace(year=first.year - 1)
    api.client.get("/v1/models", headers=api.headers("read"))
    assert last_used() > first


def test_deleting_a_running_inspection_frees_its_queue_slot(api_factory, tmp_path):
    """#27 item 20: a deleted inspection kept its place until its map was done."""
    one = api_factory(inspection_queue_size=1, inspection_wait_s=0.0)
    import_and_activate(one, tmp_path)
    files = {"image": ("big.jpg", photo_bytes(2400, 2400), "image/jpeg")}
    first = one.client.post(
        "/v1/inspections", files=files, data={"tile": "32", "stride": "16"}, headers=one.headers()
    ).json()
    assert first["status"] in ("queued", "running")
    small = {"image": ("a.jpg", photo_bytes(), "image/jpeg")}
    assert_error(one.client.post("/v1/inspections", files=small, headers=one.headers()), 429)
    deleted = one.client.delete(f"/v1/inspections/{first['id']}", headers=one.headers())
    assert deleted.status_code == 204
    second = one.client.post("/v1/inspections", files=small, headers=one.headers())
    assert second.status_code in (201, 202), second.text
    for _ in range(400):
        body = one.client.get(second.headers["Location"], headers=one.headers()).json()
        if body["status"] == "succeeded":
            break
        time.sleep(0.05)
    assert body["status"] == "succeeded"
    runner = one.client.app.state.runner
    assert runner.depth == 0


@pytest.mark.slow
def test_a_real_server_refuses_without_reading_and_logs_no_key_from_a_url(tmp_path):
    """#27 items 1 and 20 through `crackscan serve`: a no-key upload declaring 200 MB is
    answered 401 after its first kilobyte, and a key put in the query string (never read
    there) is not written to the access log."""
    import socket

    from core.apikeys import create_api_key
    from core.migrate import upgrade
    from tests.app.test_faults import Serve, serve_env

    env = serve_env(tmp_path)
    del env["CRACKSCAN_AUTH_DISABLED"]
    url = f"sqlite:///{tmp_path / 'data' / 'crackscan.db'}"
    (tmp_path / "data").mkdir()
    upgrade(url)
    with transaction(url) as session:
        key = create_api_key(session, ["read"], "in a URL")[1]
    server = Serve(tmp_path, env, "edge")
    try:
        with socket.create_connection(("127.0.0.1", server.port), timeout=10) as sock:
            sock.sendall(
                b"POST /v1/inspections HTTP/1.1\r\nHost: x\r\nContent-Length: 209715200\r\n"
                b"Content-Type: multipart/form-data; boundary=x\r\n\r\n" + bytes(1024)
            )
            answer = sock.recv(65536).decode("latin-1")
        assert answer.startswith("HTTP/1.1 401"), answer
        reply = server.client.get("/v1/models", params={"api_key": key, "limit": 5})
        assert reply.status_code == 401  # the key goes in X-API-Key only
        assert server.client.get(f"/v1/models?key={key}").status_code == 401
        assert server.client.get("/v1/models", headers={"X-API-Key": key}).status_code == 200
    finally:
        server.stop()
    log = server.log.read_text()
    assert "GET /v1/models?api_key=[redacted]&limit=5" in log, log[-3000:]
    assert key not in log and key[3:] not in log
