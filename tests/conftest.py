"""Shared fixtures: synthetic labelled sets, and where the real crack photos are."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from models.synthetic import write_tile_set

REPO = Path(__file__).resolve().parents[1]
SHARED_DATA = REPO.parent / "shared" / "data"


def shared_data(sub: str) -> Path:
    """A folder of ../shared/data, or skip the test with the reason."""
    path = SHARED_DATA / sub
    if not path.is_dir():
        pytest.skip(f"{path} is absent (real crack photos live beside the repository, not in it)")
    return path


@pytest.fixture(autouse=True)
def _two_threads():
    torch.set_num_threads(2)


@pytest.fixture(scope="session")
def tiny_set(tmp_path_factory) -> Path:
    """60 tiles per class, 32 px: fast enough for every training test."""
    return write_tile_set(tmp_path_factory.mktemp("tiny") / "set", per_class=60, size=32, seed=3)


@pytest.fixture(scope="session")
def synthetic_set(tmp_path_factory) -> Path:
    """500 tiles per class at 48 px, for the accuracy test."""
    return write_tile_set(tmp_path_factory.mktemp("syn") / "set", per_class=500, size=48, seed=1)
