"""Run the Alembic migrations programmatically (`crackscan db upgrade`)."""

from __future__ import annotations

from pathlib import Path

from alembic import command
from alembic.config import Config
from alembic.runtime.migration import MigrationContext
from alembic.script import ScriptDirectory

from core.db import get_engine


def project_root() -> Path:
    """Where alembic.ini and migrations/ are: the source checkout, or the working directory (images)."""
    for candidate in (Path(__file__).resolve().parents[1], Path.cwd()):
        if (candidate / "migrations" / "env.py").is_file():
            return candidate
    raise FileNotFoundError(
        "migrations/ not found beside crackscan's sources or in the working directory"
    )


def alembic_config(url: str) -> Config:
    root = project_root()
    config = Config(str(root / "alembic.ini"))
    config.set_main_option("script_location", str(root / "migrations"))
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
