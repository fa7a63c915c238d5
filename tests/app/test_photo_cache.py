"""Photo decodes for review crops and photo.jpg (#27 item 8): one decode per photo at a
time, however many ask at once, and decodes of other photos only while they fit the budget."""

from __future__ import annotations

import threading
import time
from concurrent.futures import ThreadPoolExecutor

import pytest
from PIL import Image

from app.services.photos import DECODE_BYTES_PER_PIXEL, PhotoCache
from core.errors import ServiceUnavailable
from models.inference import make_grid, open_image
from tests.app.conftest import photo_bytes

PHOTO = photo_bytes(400, 300)
GRID = make_grid(300, 400, 100)
COST = 400 * 300 * DECODE_BYTES_PER_PIXEL


def test_parallel_first_requests_decode_the_photo_once():
    cache = PhotoCache(max_pixels=10**9)
    decoding = threading.Event()

    def slow_decode(data: bytes) -> Image.Image:
        decoding.set()
        time.sleep(0.3)  # the others arrive while it runs
        return open_image(data)

    with ThreadPoolExecutor(8) as pool:
        photos = list(
            pool.map(lambda _: cache.get("a", lambda: (PHOTO, GRID), slow_decode), range(8))
        )
    assert cache.decodes == 1
    assert all(p is photos[0] for p in photos) and photos[0][0].size == (400, 300)
    assert cache.get("a", lambda: pytest.fail("read again"), slow_decode) is photos[0]


def test_a_decode_past_the_budget_is_a_503_while_another_runs():
    cache = PhotoCache(max_pixels=10**9, decode_bytes=COST + COST // 2)
    started, release = threading.Event(), threading.Event()

    def held_decode(data: bytes) -> Image.Image:
        started.set()
        release.wait(10)
        return open_image(data)

    with ThreadPoolExecutor(1) as pool:
        first = pool.submit(cache.get, "a", lambda: (PHOTO, GRID), held_decode)
        assert started.wait(10)
        with pytest.raises(ServiceUnavailable) as refused:
            cache.get("b", lambda: (PHOTO, GRID), open_image)
        assert refused.value.headers["Retry-After"] and "CRACKSCAN_PHOTO_DECODE_MB" in str(
            refused.value
        )
        release.set()
        assert first.result()[0].size == (400, 300)
    assert cache.get("b", lambda: (PHOTO, GRID), open_image)[0].size == (400, 300)
    assert cache.decodes == 2


def test_one_decode_may_always_run_and_a_failed_one_is_not_kept():
    cache = PhotoCache(max_pixels=10**9, decode_bytes=1)  # under any photo's size
    assert cache.get("a", lambda: (PHOTO, GRID), open_image)[0].size == (400, 300)

    def broken(data: bytes) -> Image.Image:
        raise ValueError("disk gone")

    with pytest.raises(ValueError, match="disk gone"):
        cache.get("b", lambda: (PHOTO, GRID), broken)
    assert cache.get("b", lambda: (PHOTO, GRID), open_image)[0].size == (400, 300)
