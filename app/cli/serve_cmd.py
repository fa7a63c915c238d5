"""`crackscan serve`, `crackscan db upgrade`, `crackscan apikey create`."""

from __future__ import annotations

import argparse
import os
import signal
import sys
from typing import Any


def register(sub: Any) -> None:
    from core.apikeys import SCOPES

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
    create.add_argument("--scope", nargs="+", required=True, choices=SCOPES)
    create.add_argument("--name", default="")
    create.set_defaults(run=run_apikey_create)
    revoke = keys_sub.add_parser("revoke", help="revoke a key: it gets 401 from now on")
    revoke.add_argument("key_id", help="the key's id, or the prefix shown at creation")
    revoke.set_defaults(run=run_apikey_revoke)
    listing = keys_sub.add_parser("list", help="list the keys (never the keys themselves)")
    listing.set_defaults(run=run_apikey_list)


def run_serve(args: argparse.Namespace) -> int:
    import uvicorn

    from app.cli.embedded_worker import EmbeddedWorker
    from app.main import create_app
    from core.config import get_settings
    from core.migrate import upgrade

    settings = get_settings()
    if args.migrate:
        upgrade(settings.db_url)
    worker = None
    if settings.embedded_broker and settings.embedded_worker:
        worker = EmbeddedWorker(
            worker_command(concurrency=1),
            settings.worker_stop_grace_s,
            where=f" on the filesystem queue in {settings.broker_folder}",
        )
        worker.start()
    # uvicorn shuts down on SIGTERM, then raises it again with the handler found before:
    # the default one would end this process before `finally` stops the worker.
    previous = signal.signal(signal.SIGTERM, _exit_on_signal)
    try:
        uvicorn.run(
            create_app(settings, embedded_worker=worker),
            host=args.host,
            port=args.port,
            log_level="info",
            access_log=not args.no_access_log,
        )
    except KeyboardInterrupt:  # SIGINT, raised again the same way
        pass
    finally:
        signal.signal(signal.SIGTERM, previous)
        if worker is not None:
            worker.stop()
    return 0


def _exit_on_signal(signum: int, _frame: Any) -> None:
    raise SystemExit(128 + signum)


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


def run_worker(args: argparse.Namespace) -> int:
    """Become the Celery worker (exec): signals reach it directly, and no wrapper is left
    behind to die while the worker runs on."""
    command = worker_command(args.concurrency, args.loglevel)
    sys.stdout.flush()
    sys.stderr.flush()
    os.execv(command[0], command)
    return 0  # not reached


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


def run_apikey_revoke(args: argparse.Namespace) -> int:
    from core.apikeys import revoke_api_key
    from core.config import get_settings
    from core.db import transaction
    from core.errors import CrackscanError

    try:
        with transaction(get_settings().db_url) as session:
            row = revoke_api_key(session, args.key_id)
            when = row.revoked_at.isoformat() if row.revoked_at else "now"
            print(f"revoked key {row.id} ({row.prefix}...) at {when}")
    except CrackscanError as exc:
        print(f"error: {exc.message}", file=sys.stderr)
        return 1
    return 0


def run_apikey_list(args: argparse.Namespace) -> int:
    from sqlalchemy import select

    from core.config import get_settings
    from core.db import transaction
    from core.tables import ApiKey

    with transaction(get_settings().db_url) as session:
        for row in session.scalars(select(ApiKey).order_by(ApiKey.created_at)):
            state = f"revoked {row.revoked_at.isoformat()}" if row.revoked_at else "live"
            print(f"{row.id}  {row.prefix}...  {','.join(row.scopes):20s}  {state}  {row.name}")
    return 0


def run_settings(args: argparse.Namespace) -> int:
    from core.config import settings_markdown

    print(settings_markdown())
    return 0
