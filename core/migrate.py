"""Run the Alembic migrations programmatically (`crackscan db upgrade`)."""

from __future__ import annotations

from pathlib import Path

from alembic import command
from alembic.config import Config
from alembic.runtime.migration import MigrationContext
from alembic.script import ScriptDirectory

from core.db import get_engine


def migrations_dir() -> Path:
    """migrations/: beside core/ (a source checkout, or site-packages of an installed
    wheel, which ships it), or in the working directory (the container image)."""
    for candidate in (Path(__file__).resolve().parents[1], Path.cwd()):
        if (candidate / "migrations" / "env.py").is_file():
            return candidate / "migrations"
    raise FileNotFoundError(
        "migrations/ not found beside crackscan's sources or in the working directory"
    )


def alembic_config(url: str) -> Config:
    folder = migrations_dir()
    ini = folder.parent / "alembic.ini"  # logging settings; a wheel runs without it
    config = Config(str(ini)) if ini.is_file() else Config()
    config.set_main_option("script_location", str(folder))
    config.set_main_option("path_separator", "os")
    config.attributes["database_url"] = url
    return config


def upgrade(url: str, revision: str = "head") -> None:
    command.upgrade(alembic_config(url), revision)


def current_revision(url: str) -> str | None:
    with get_engine(url).connect() as conn:
        return MigrationContext.configure(conn).get_current_revision()


def head_revision(url: str) -> str | None:
    return ScriptDirectory.from_config(alembic_config(url)).get_current_head()


def is_up_to_date(url: str) -> bool:
    return current_revision(url) == head_revision(url)
