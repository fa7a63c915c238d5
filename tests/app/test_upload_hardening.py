"""Uploads a small file makes huge, and answers that were wrong or 500 (#27 items 6-11, 15-17):
long panoramas, the grid the tile cap counts, photo decodes, pixel caps, zip bombs, corrupt
zip members, class names, EXIF sizes and odd checkpoints."""

from __future__ import annotations

import contextlib
import io
import resource
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from core.tables import Blob, Dataset, NetworkModel
from models.checkpoint import save_checkpoint
from models.inference import inspection_grid
from tests.app.conftest import Api, import_and_activate
from tests.app.test_api import assert_error, count
from tests.models.inference.test_predictor import constant_checkpoint
from tests.models.test_checkpoint import odd_checkpoints
from tests.models.test_class_names import csv_set
from tests.models.test_set_limits import masks_zip
from tests.models.test_zip_damage import DAMAGED, many_small_zeros, tile_set_zip


def jpeg(width: int, height: int, **save: object) -> bytes:
    buffer = io.BytesIO()
    rng = np.random.default_rng(0)
    Image.fromarray(rng.integers(0, 255, (height, width, 3), dtype=np.uint8)).save(
        buffer, format="JPEG", **save
    )
    return buffer.getvalue()


def inspect(api: Api, data: bytes, **form: str):  # type: ignore[no-untyped-def]
    return api.client.post(
        "/v1/inspections",
        files={"image": ("photo.jpg", data, "image/jpeg")},
        data=form,
        headers=api.headers("inspect"),
    )


def import_checkpoint(api: Api, path: Path, activate: bool = True) -> str:
    with path.open("rb") as handle:
        reply = api.client.post(
            "/v1/models",
            files={"file": (path.name, handle, "application/octet-stream")},
            headers=api.headers("admin"),
        )
    assert reply.status_code == 201, reply.text
    model_id = str(reply.json()["id"])
    if activate:
        activated = api.client.post(f"/v1/models/{model_id}/activate", headers=api.headers())
        assert activated.status_code == 200, activated.text
    return model_id


# ------------------------------------------------------------- item 6: long panoramas


def test_a_long_panorama_is_mapped_with_an_overlay(api, tmp_path):
    import_and_activate(api, tmp_path)
    reply = inspect(api, jpeg(16000, 8), tile="8")  # tiles of 0.8 px at preview scale
    assert reply.status_code == 201, reply.text
    body = reply.json()
    assert body["status"] == "succeeded", body["error"]
    assert body["summary"]["tiles"] == 2000
    overlay = api.client.get(body["overlay_url"], headers=api.headers("read"))
    assert overlay.status_code == 200 and overlay.content[:4] == b"\x89PNG"


# ------------------------------------------------- item 7: the grid the tile cap counts


def test_the_tile_cap_counts_the_grid_a_masks_model_maps(api_factory, tmp_path):
    """A model trained on masks (tile 64, input 224) maps 64-px tiles at stride 32; the cap
    counted 224-px tiles without overlap (1 tile for this photo, where 24 are mapped)."""
    ckpt = constant_checkpoint([2.0, 0.0])
    ckpt.input_size, ckpt.tile_px = 224, 64
    save_checkpoint(ckpt, tmp_path / "masks.ckpt")
    mapped = len(inspection_grid(ckpt, 150, 200))
    assert mapped == 24
    tight = api_factory(max_tiles_per_inspection=mapped - 1)
    import_checkpoint(tight, tmp_path / "masks.ckpt")
    error = assert_error(inspect(tight, jpeg(200, 150)), 422, "tile")
    assert "24 tiles" in error["message"] and "tile 64 at stride 32" in error["message"]
    enough = api_factory(max_tiles_per_inspection=mapped)
    reply = inspect(enough, jpeg(200, 150))
    assert reply.status_code == 201, reply.text
    tiling = reply.json()["crackmap"]["tiling"]
    assert reply.json()["summary"]["tiles"] == mapped
    assert (tiling["tile"], tiling["stride"]) == (64, 32)


# --------------------------------------------------------- item 16: EXIF-rotated photos


def test_an_exif_rotated_photo_reports_its_oriented_size(api, tmp_path):
    import_and_activate(api, tmp_path)
    exif = Image.Exif()
    exif[0x0112] = 6  # stored 200x100, seen 100x200
    reply = inspect(api, jpeg(200, 100, exif=exif.tobytes()), tile="50")
    assert reply.status_code == 201, reply.text
    body = reply.json()
    image = body["crackmap"]["image"]
    assert (body["width"], body["height"]) == (image["width"], image["height"]) == (100, 200)
    assert body["crackmap"]["tiling"]["rows"] == 4 and body["crackmap"]["tiling"]["cols"] == 2
    shapes = api.client.get(body["geojson_url"], headers=api.headers("read")).json()
    assert (shapes["properties"]["width"], shapes["properties"]["height"]) == (100, 200)
    photo = api.client.get(body["photo_url"], headers=api.headers("read"))
    assert Image.open(io.BytesIO(photo.content)).size == (100, 200)


# ------------------------------------------- items 10 and 11: zip bombs, damaged members


def upload_set(api: Api, data: bytes, **form: str):  # type: ignore[no-untyped-def]
    return api.client.post(
        "/v1/datasets",
        files={"file": ("set.zip", data, "application/zip")},
        data=form,
        headers=api.headers("train"),
    )


def stored(api: Api) -> tuple[int, int]:
    return count(api.settings.db_url, Dataset), count(api.settings.db_url, Blob)


@pytest.mark.parametrize("damage", DAMAGED)
def test_a_damaged_zip_member_is_a_422_and_nothing_is_stored(api, damage):
    make, words = DAMAGED[damage]
    before = stored(api)
    error = assert_error(upload_set(api, bytes(make())), 422, "file")
    assert words in error["message"] and "crack/b.png" in error["message"]
    assert stored(api) == before


def test_a_zip_of_many_small_zero_members_is_a_422(api, tmp_path):
    path = tmp_path / "bomb.zip"
    many_small_zeros(path, 2000, 1 << 20)
    before = stored(api)
    error = assert_error(upload_set(api, path.read_bytes()), 422, "file")
    assert "in all" in error["message"]
    assert stored(api) == before


# ------------------------------------------------------------------ item 15: class names


def test_a_set_whose_class_is_a_path_is_a_422(api, tmp_path):
    csv_set(tmp_path / "set.zip", "../../../tmp/x<script>")
    before = stored(api)
    error = assert_error(upload_set(api, (tmp_path / "set.zip").read_bytes()), 422, "file")
    assert "class name" in error["message"]
    assert stored(api) == before


# ------------------------------------------------------------- item 17: odd checkpoints


@pytest.mark.parametrize(
    "case",
    ["temperature 0", "threshold NaN", "input size 100000", "weights of another backbone"],
)
def test_an_odd_checkpoint_is_a_422_on_import(api, tmp_path, case):
    ckpt, words = odd_checkpoints()[case]
    save_checkpoint(ckpt, tmp_path / "odd.ckpt")
    before = count(api.settings.db_url, NetworkModel), count(api.settings.db_url, Blob)
    reply = api.client.post(
        "/v1/models",
        files={
            "file": ("odd.ckpt", (tmp_path / "odd.ckpt").read_bytes(), "application/octet-stream")
        },
        headers=api.headers("admin"),
    )
    error = assert_error(reply, 422, "file")
    assert words in error["message"]
    assert (count(api.settings.db_url, NetworkModel), count(api.settings.db_url, Blob)) == before


# ------------------------------------- item 9: set photos under the caps, upload slots


def peak_rss_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def test_a_small_masks_zip_cannot_cost_a_big_decode(api, tmp_path):
    """The issue's case: a 6000x6000 PNG photo and its mask in a zip of ~200 KB, at
    mask_tile=8, cost 890 MB. It cuts into 2.25 M tiles, over CRACKSCAN_MAX_SET_TILES: it is
    refused from the photo's header, before the photo or its mask is decoded."""
    path = masks_zip(tmp_path / "big.zip", 6000)
    assert path.stat().st_size < 1 << 20
    data = path.read_bytes()
    before_rss, before = peak_rss_mb(), stored(api)
    error = assert_error(upload_set(api, data, mask_tile="8"), 422, "file")
    assert "CRACKSCAN_MAX_SET_TILES" in error["message"]
    assert peak_rss_mb() - before_rss < 100  # the photo alone is 108 MB as RGB
    assert stored(api) == before


def test_set_photos_are_decoded_under_the_pixel_cap(api_factory, tmp_path):
    capped = api_factory(max_image_pixels=1_000_000)
    data = masks_zip(tmp_path / "big.zip", 1200, photos=3).read_bytes()  # 1.44 MP each
    error = assert_error(upload_set(capped, data), 422, "file")
    assert "no usable photo" in error["message"] and "3 skipped" in error["message"]


def test_set_uploads_past_their_slots_answer_429(api_factory, tmp_path):
    api = api_factory(dataset_upload_slots=1)
    zipped = bytes(tile_set_zip())
    with api.client.app.state.dataset_slots.hold():  # another upload is being checked
        reply = upload_set(api, zipped)
        error = assert_error(reply, 429)
        assert "CRACKSCAN_DATASET_UPLOAD_SLOTS" in error["message"]
        assert int(reply.headers["Retry-After"]) > 0
    assert upload_set(api, zipped).status_code == 201  # the place is free again


def test_parallel_set_uploads_never_exceed_their_slots(api_factory, tmp_path):
    api = api_factory(dataset_upload_slots=2)
    slots = api.client.app.state.dataset_slots
    zipped = masks_zip(tmp_path / "set.zip", 160, photos=3).read_bytes()
    seen: list[int] = []
    hold = slots.hold

    @contextlib.contextmanager
    def watched():  # type: ignore[no-untyped-def]
        with hold():
            seen.append(slots.taken)
            time.sleep(0.3)  # long enough for the others to arrive while it is held
            yield

    slots.hold = watched
    with ThreadPoolExecutor(6) as pool:
        codes = sorted(pool.map(lambda _: upload_set(api, zipped).status_code, range(6)))
    assert set(codes) <= {201, 429} and 201 in codes and 429 in codes, codes
    assert max(seen) <= 2 and slots.taken == 0


# ------------------------------------------------ item 8: one decode per photo at a time


def test_parallel_first_crop_and_photo_requests_decode_the_photo_once(api, tmp_path):
    import_and_activate(api, tmp_path)
    body = inspect(api, jpeg(640, 480), tile="64").json()
    assert body["status"] == "succeeded", body
    read = api.headers("read")
    urls = [f"/v1/inspections/{body['id']}/tiles/{i}/{i}.png" for i in range(6)]
    urls += [body["photo_url"]] * 2
    with ThreadPoolExecutor(8) as pool:
        replies = list(pool.map(lambda url: api.client.get(url, headers=read), urls))
    assert [r.status_code for r in replies] == [200] * 8
    assert api.client.app.state.photos.decodes == 1


def test_a_photo_decode_over_the_budget_is_a_503_with_json(api_factory, tmp_path):
    api = api_factory(photo_decode_mb=1)
    import_and_activate(api, tmp_path)
    body = inspect(api, jpeg(640, 480), tile="64").json()
    cache = api.client.app.state.photos
    cache._decoding = 1  # noqa: SLF001  (another photo's decode holds the budget)
    reply = api.client.get(body["photo_url"], headers=api.headers("read"))
    error = assert_error(reply, 503)
    assert "CRACKSCAN_PHOTO_DECODE_MB" in error["message"] and reply.headers["Retry-After"]
    cache._decoding = 0  # noqa: SLF001
    assert api.client.get(body["photo_url"], headers=api.headers("read")).status_code == 200
