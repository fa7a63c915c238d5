"""The `crackscan` command: one subcommand per module in app/cli/."""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence

from app.cli import (
    adapt_cmd,
    bench_cmd,
    demo_cmd,
    evaluate_cmd,
    inspect_cmd,
    labels_cmd,
    serve_cmd,
    train_cmd,
)

COMMANDS = (
    demo_cmd,
    serve_cmd,
    train_cmd,
    evaluate_cmd,
    inspect_cmd,
    adapt_cmd,
    labels_cmd,
    bench_cmd,
)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="crackscan",
        description="Crack maps from survey photos, and IGMSDA-trained classifiers.",
    )
    parser.add_argument("--version", action="version", version=f"crackscan {_version()}")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    for module in COMMANDS:
        module.register(sub)
    return parser


def _version() -> str:
    from importlib.metadata import PackageNotFoundError, version

    try:
        return version("crackscan")
    except PackageNotFoundError:
        return "unknown"


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        return int(args.run(args) or 0)
    except (ValueError, FileNotFoundError) as exc:
        print(f"crackscan {args.command}: error: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
