"""`crackscan serve`, `crackscan db upgrade`, `crackscan apikey create`."""

from __future__ import annotations

import argparse
import signal
import subprocess
import sys
from typing import Any


def register(sub: Any) -> None:
    serve = sub.add_parser("serve", help="run the API server")
    serve.add_argument("--host", default="127.0.0.1")
    serve.add_argument("--port", type=int, default=8000)
    serve.add_argument("--migrate", action="store_true", help="run `db upgrade` first")
    serve.add_argument(
        "--no-access-log", action="store_true", help="do not log every request (the demo's view)"
    )
    serve.set_defaults(run=run_serve)

    worker = sub.add_parser(
        "worker", help="run a Celery training worker (celery -A worker.celery_app worker)"
    )
    worker.add_argument("--concurrency", type=int, default=1)
    worker.add_argument("--loglevel", default="info")
    worker.set_defaults(run=run_worker)

    conf = sub.add_parser("settings", help="print every CRACKSCAN_* setting as a Markdown table")
    conf.set_defaults(run=run_settings)

    db = sub.add_parser("db", help="database migrations")
    db_sub = db.add_subparsers(dest="db_command", required=True)
    up = db_sub.add_parser("upgrade", help="migrate the database to the latest schema")
    up.add_argument("revision", nargs="?", default="head")
    up.set_defaults(run=run_upgrade)

    keys = sub.add_parser("apikey", help="API keys")
    keys_sub = keys.add_subparsers(dest="apikey_command", required=True)
    create = keys_sub.add_parser(
        "create", help="create a key; it is printed once, as the last line"
    )
    create.add_argument(
        "--scope", nargs="+", required=True, choices=("read", "inspect", "train", "admin")
    )
    create.add_argument("--name", default="")
    create.set_defaults(run=run_apikey_create)


def run_serve(args: argparse.Namespace) -> int:
    import uvicorn

    from app.main import create_app
    from core.config import get_settings
    from core.migrate import upgrade

    settings = get_settings()
    if args.migrate:
        upgrade(settings.db_url)
    worker = None
    if settings.embedded_broker and settings.embedded_worker:
        worker = start_worker(concurrency=1)
        print(
            f"started an embedded Celery worker (pid {worker.pid}) on the filesystem queue in "
            f"{settings.broker_folder}",
            file=sys.stderr,
        )
    try:
        uvicorn.run(
            create_app(settings),
            host=args.host,
            port=args.port,
            log_level="info",
            access_log=not args.no_access_log,
        )
    finally:
        if worker is not None:
            stop_worker(worker)
    return 0


def worker_command(concurrency: int, loglevel: str = "info") -> list[str]:
    """The Celery worker command line (app/ starts it as a process, never imports worker/)."""
    return [
        sys.executable,
        "-m",
        "celery",
        "-A",
        "worker.celery_app",
        "worker",
        "-Q",
        "training",
        "--concurrency",
        str(concurrency),
        "--loglevel",
        loglevel,
        "--without-gossip",
        "--without-mingle",
    ]


def start_worker(concurrency: int) -> subprocess.Popen[bytes]:
    return subprocess.Popen(worker_command(concurrency))


def stop_worker(process: subprocess.Popen[bytes]) -> None:
    process.send_signal(
        signal.SIGTERM
    )  # warm shutdown: the running task's lease goes stale and resumes later
    try:
        process.wait(timeout=30)
    except subprocess.TimeoutExpired:
        process.kill()


def run_worker(args: argparse.Namespace) -> int:
    return subprocess.call(worker_command(args.concurrency, args.loglevel))


def run_upgrade(args: argparse.Namespace) -> int:
    from core.config import get_settings
    from core.migrate import current_revision, upgrade

    settings = get_settings()
    upgrade(settings.db_url, args.revision)
    print(f"database at revision {current_revision(settings.db_url)}")
    return 0


def run_apikey_create(args: argparse.Namespace) -> int:
    from core.apikeys import create_api_key
    from core.config import get_settings
    from core.db import transaction

    with transaction(get_settings().db_url) as session:
        row, key = create_api_key(session, args.scope, args.name)
        print(
            f"created key {row.id} ({row.prefix}...) with scopes {', '.join(row.scopes)}; it is shown only once:"
        )
    print(key)
    return 0


def run_settings(args: argparse.Namespace) -> int:
    from core.config import settings_markdown

    print(settings_markdown())
    return 0
