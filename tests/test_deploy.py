"""docker-compose.yml and the Dockerfile: valid, and naming images and commands that exist."""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from app.cli import build_parser

ROOT = Path(__file__).resolve().parents[1]


def compose() -> dict:  # type: ignore[type-arg]
    return yaml.safe_load((ROOT / "docker-compose.yml").read_text())  # type: ignore[no-any-return]


def test_compose_file_is_valid():
    if (
        shutil.which("docker")
        and subprocess.run(["docker", "compose", "version"], capture_output=True).returncode == 0
    ):
        done = subprocess.run(
            ["docker", "compose", "config", "-q"], cwd=ROOT, capture_output=True, text=True
        )
    else:  # no compose plugin here: validate against the Compose specification's JSON schema
        checker = shutil.which("check-jsonschema") or str(
            Path(sys.executable).parent / "check-jsonschema"
        )
        done = subprocess.run(
            [
                checker,
                "--builtin-schema",
                "vendor.compose-spec",
                str(ROOT / "docker-compose.yml"),
            ],
            capture_output=True,
            text=True,
        )
    assert done.returncode == 0, done.stdout + done.stderr


def test_compose_services_images_and_commands_exist():
    services = compose()["services"]
    assert {"postgres", "redis", "migrate", "api", "worker", "worker-gpu"} <= set(services)
    assert all("healthcheck" in services[s] for s in ("postgres", "redis", "api", "worker"))
    assert services["worker-gpu"]["profiles"] == ["gpu"]
    assert (
        services["worker-gpu"]["deploy"]["resources"]["reservations"]["devices"][0]["driver"]
        == "nvidia"
    )
    built = {s["image"] for s in services.values() if "build" in s}
    for name, service in services.items():
        image = service["image"]
        assert image in built or image.split(":")[0] in {"postgres", "redis", "mher/flower"}, name
        assert "environment" not in service or all(
            isinstance(v, str) for v in service["environment"].values()
        )
    parser = build_parser()
    for name in ("migrate", "api"):
        command = services[name]["command"]
        assert command[0] == "crackscan"
        parser.parse_args(command[1:])  # a subcommand the CLI has
    for name in ("worker", "worker-gpu"):
        command = services[name]["command"]
        assert command[:3] == ["celery", "-A", "worker.celery_app"]
        assert (ROOT / "worker" / "celery_app.py").is_file()
    assert set(compose()["volumes"]) >= {"pgdata", "redisdata"}


def test_dockerfile_is_multistage_non_root_and_pins_torch():
    text = (ROOT / "Dockerfile").read_text()
    assert text.count("FROM ") >= 2 and "USER crackscan" in text
    assert "torch==2.14.1" in text and "ARG TORCH_INDEX" in text
    for path in ("core", "models", "app", "worker", "migrations", "alembic.ini", "pyproject.toml"):
        assert (ROOT / path).exists(), path
    assert "SECRET" not in text.upper() and "PASSWORD" not in text.upper()


@pytest.mark.parametrize("name", ["Dockerfile", "docker-compose.yml"])
def test_no_secrets_are_baked_in(name):
    text = (ROOT / name).read_text()
    assert "cs_" not in text  # no API keys


def test_flower_needs_a_login_and_listens_on_loopback_only():
    """#13 item 16: Flower can revoke and inspect tasks."""
    flower = compose()["services"]["flower"]
    command = " ".join(flower["command"])
    assert "--basic-auth=${FLOWER_BASIC_AUTH:?" in command
    assert all(str(p).startswith("127.0.0.1:") for p in flower["ports"]), flower["ports"]


@pytest.mark.services
def test_startup_errors_never_show_the_database_password(tmp_path, postgres_url):
    """A fresh (unmigrated) PostgreSQL database, reached with a password (trust auth
    ignores it): the refusal to start names the database but not the password."""
    from fastapi.testclient import TestClient

    from app.main import create_app
    from core.config import Settings
    from core.db import redacted_url

    assert redacted_url("postgresql+psycopg://crack:s3cret@db:5432/crackscan") == (
        "postgresql+psycopg://crack:***@db:5432/crackscan"
    )
    secret_url = postgres_url.replace("://postgres@", "://postgres:s3cret@")
    app = create_app(Settings(data_dir=tmp_path, database_url=secret_url))
    with pytest.raises(RuntimeError, match="not migrated") as failure, TestClient(app):
        pass
    assert "s3cret" not in str(failure.value) and "***" in str(failure.value)
