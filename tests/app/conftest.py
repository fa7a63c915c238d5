"""The API against a real database: fixtures for apps, clients and keys."""

from __future__ import annotations

import io
import zipfile
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pytest
from fastapi.testclient import TestClient
from PIL import Image

from app.main import create_app
from core.apikeys import create_api_key
from core.config import Settings
from core.db import transaction
from core.migrate import upgrade
from models.checkpoint import save_checkpoint
from tests.models.inference.test_predictor import constant_checkpoint


@dataclass
class Api:
    client: TestClient
    settings: Settings
    keys: dict[str, str]

    def headers(self, scope: str = "admin") -> dict[str, str]:
        return {"X-API-Key": self.keys[scope]}


def make_settings(tmp_path: Path, database_url: str, **kw: object) -> Settings:
    return Settings(data_dir=tmp_path / "data", database_url=database_url, **kw)  # type: ignore[arg-type]


@pytest.fixture
def api_factory(tmp_path, database_url) -> Iterator:  # type: ignore[type-arg]
    """Start apps (lifespan included) on one migrated database; all closed at the end."""
    upgrade(database_url)
    keys: dict[str, str] = {}
    with transaction(database_url) as session:
        for scope in ("read", "inspect", "train", "admin"):
            keys[scope] = create_api_key(session, [scope], f"test {scope}")[1]
    clients: list[TestClient] = []

    def start(**kw: object) -> Api:
        settings = make_settings(tmp_path, database_url, **kw)
        client = TestClient(create_app(settings))
        client.__enter__()
        clients.append(client)
        return Api(client, settings, keys)

    yield start
    for client in reversed(clients):
        client.__exit__(None, None, None)


@pytest.fixture
def api(api_factory) -> Api:  # type: ignore[no-untyped-def]
    return api_factory()


def photo_bytes(width: int = 200, height: int = 150, fmt: str = "JPEG") -> bytes:
    buffer = io.BytesIO()
    rng = np.random.default_rng(0)
    Image.fromarray(rng.integers(0, 255, (height, width, 3), dtype=np.uint8)).save(
        buffer, format=fmt
    )
    return buffer.getvalue()


def checkpoint_bytes(tmp_path: Path, bias: list[float] | None = None) -> bytes:
    path = tmp_path / "constant.ckpt"
    save_checkpoint(constant_checkpoint(bias or [2.0, 0.0]), path)
    return path.read_bytes()


def zip_folder(folder: Path) -> bytes:
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w") as zf:
        for path in sorted(folder.rglob("*")):
            if path.is_file():
                zf.write(path, path.relative_to(folder).as_posix())
    return buffer.getvalue()


def import_and_activate(api: Api, tmp_path: Path) -> str:
    files = {"file": ("constant.ckpt", checkpoint_bytes(tmp_path), "application/octet-stream")}
    reply = api.client.post("/v1/models", files=files, headers=api.headers("admin"))
    assert reply.status_code == 201, reply.text
    model_id = reply.json()["id"]
    assert (
        api.client.post(f"/v1/models/{model_id}/activate", headers=api.headers("admin")).status_code
        == 200
    )
    return str(model_id)
