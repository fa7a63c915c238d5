"""bench/load.py in CI, small: concurrent uploads past the queue, no 5xx, 429s say when."""

from __future__ import annotations

import argparse

import pytest

from bench.load import run

pytestmark = pytest.mark.slow


def test_concurrent_uploads_get_maps_or_429_with_retry_after_and_never_a_5xx():
    args = argparse.Namespace(clients=8, width=480, height=360, queue_size=2, timeout=120.0)
    row = run(args)
    assert row["server_errors"] == 0, row
    assert row["served"] >= 2, row
    assert row["served"] + row["busy_429"] == args.clients, row
    assert row["busy_with_retry_after"] == row["busy_429"], row
    assert row["api_peak_rss_mib"] > 0
