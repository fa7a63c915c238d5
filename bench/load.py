"""Load: concurrent inspection uploads against a running server, from a separate process.

Starts `crackscan serve` (embedded SQLite and queue, in a temporary folder) with a
random-weight resnet18 at 64 px as the active model, then sends --clients concurrent
POST /v1/inspections of one synthetic survey photo over loopback, each client once,
with a time bound. Reports throughput, p50 and p95 latency, the status codes, whether
every 429 carried Retry-After, no 5xx, and the API process's peak RSS.

    python -m bench.load                      # 20 clients, 2000 x 1500 JPEG
    python -m bench.load --clients 40 --width 4000 --height 3000
"""

from __future__ import annotations

import argparse
import io
import json
import os
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
import urllib.error
import urllib.request
from pathlib import Path
from typing import Any

from bench.common import median, print_table, write_results
from bench.inference import random_checkpoint
from models.checkpoint import to_bytes
from models.synthetic import make_survey

ROOT = Path(__file__).resolve().parents[1]
BOUNDARY = "crackscan-load-boundary"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def multipart(fields: dict[str, tuple[str, bytes, str]]) -> tuple[bytes, str]:
    parts = []
    for name, (filename, data, media) in fields.items():
        head = (
            f'--{BOUNDARY}\r\nContent-Disposition: form-data; name="{name}"; '
            f'filename="{filename}"\r\nContent-Type: {media}\r\n\r\n'
        )
        parts.append(head.encode() + data + b"\r\n")
    return b"".join(parts) + f"--{BOUNDARY}--\r\n".encode(), (
        f"multipart/form-data; boundary={BOUNDARY}"
    )


def call(url: str, body: bytes | None, content_type: str, timeout: float) -> tuple[int, Any]:
    """(status, headers); the headers answer .get() case-insensitively."""
    headers = {"Content-Type": content_type} if content_type else {}
    req = urllib.request.Request(url, data=body, headers=headers)
    try:
        with urllib.request.urlopen(req, timeout=timeout) as reply:
            return reply.status, reply.headers
    except urllib.error.HTTPError as exc:
        return exc.code, exc.headers


def start_server(folder: Path, port: int, queue_size: int) -> subprocess.Popen[bytes]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("CRACKSCAN_")}
    env |= {
        "CRACKSCAN_DATA_DIR": str(folder),
        "CRACKSCAN_AUTH_DISABLED": "true",
        "CRACKSCAN_EMBEDDED_WORKER": "false",
        "CRACKSCAN_INSPECTION_QUEUE_SIZE": str(queue_size),
        "CRACKSCAN_INSPECTION_WAIT_S": "120",
    }
    log = (folder / "serve.log").open("wb")
    server = subprocess.Popen(
        [sys.executable, "-m", "app.cli", "serve", "--migrate", "--no-access-log"]
        + ["--port", str(port)],
        cwd=ROOT,
        env=env,
        stdout=log,
        stderr=subprocess.STDOUT,
        start_new_session=True,
    )
    deadline = time.time() + 60
    while time.time() < deadline:
        try:
            urllib.request.urlopen(f"http://127.0.0.1:{port}/healthz", timeout=2).read()
            return server
        except OSError:
            if server.poll() is not None:
                break
            time.sleep(0.3)
    raise SystemExit(f"the server did not start:\n{(folder / 'serve.log').read_text()[-2000:]}")


def peak_rss_mib(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) / 1024
    return float("nan")


def run(args: argparse.Namespace) -> dict[str, Any]:
    photo, _ = make_survey(args.width, args.height, seed=3, cracks=8)
    buffer = io.BytesIO()
    photo.save(buffer, format="JPEG", quality=90)
    image = buffer.getvalue()
    with tempfile.TemporaryDirectory(prefix="crackscan-load-") as tmp:
        port = free_port()
        base = f"http://127.0.0.1:{port}"
        server = start_server(Path(tmp), port, args.queue_size)
        try:
            ckpt = to_bytes(random_checkpoint("resnet18", 64))
            body, kind = multipart({"file": ("load.ckpt", ckpt, "application/octet-stream")})
            status, _ = call(f"{base}/v1/models", body, kind, 120)
            assert status == 201, status
            with urllib.request.urlopen(f"{base}/v1/models", timeout=30) as reply:
                model_id = json.loads(reply.read())["items"][0]["id"]
            call(f"{base}/v1/models/{model_id}/activate", b"", "", 60)
            body, kind = multipart({"image": ("survey.jpg", image, "image/jpeg")})
            results: list[dict[str, Any]] = []
            lock = threading.Lock()
            go = threading.Event()

            def client() -> None:
                go.wait()
                started = time.perf_counter()
                try:
                    status, headers = call(f"{base}/v1/inspections", body, kind, args.timeout)
                except OSError as exc:  # timed out or refused: counted, never hidden
                    status, headers = 0, {"error": str(exc)}
                with lock:
                    results.append(
                        {
                            "status": status,
                            "seconds": time.perf_counter() - started,
                            "retry_after": headers.get("Retry-After"),
                        }
                    )

            threads = [threading.Thread(target=client) for _ in range(args.clients)]
            for thread in threads:
                thread.start()
            started = time.perf_counter()
            go.set()
            for thread in threads:
                thread.join(args.timeout + 30)
            wall = time.perf_counter() - started
            rss = peak_rss_mib(server.pid)
        finally:
            os.killpg(server.pid, signal.SIGTERM)
            server.wait(timeout=60)
    served = [r for r in results if r["status"] in (200, 201, 202)]
    latencies = sorted(r["seconds"] for r in served)
    busy = [r for r in results if r["status"] == 429]

    def pct(q: float) -> float:
        return latencies[min(len(latencies) - 1, int(q * len(latencies)))] if latencies else 0.0

    return {
        "clients": args.clients,
        "photo": f"{args.width}x{args.height} JPEG, {len(image) >> 10} KiB",
        "queue_size": args.queue_size,
        "wall_s": wall,
        "maps_per_s": len(served) / wall if wall else 0.0,
        "served": len(served),
        "p50_s": median(latencies) if latencies else 0.0,
        "p95_s": pct(0.95),
        "status_counts": {
            str(s): sum(1 for r in results if r["status"] == s)
            for s in sorted({r["status"] for r in results})
        },
        "server_errors": sum(1 for r in results if r["status"] >= 500 or r["status"] == 0),
        "busy_429": len(busy),
        "busy_with_retry_after": sum(1 for r in busy if r["retry_after"]),
        "api_peak_rss_mib": rss,
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--clients", type=int, default=20)
    parser.add_argument("--width", type=int, default=2000)
    parser.add_argument("--height", type=int, default=1500)
    parser.add_argument("--queue-size", type=int, default=8, help="CRACKSCAN_INSPECTION_QUEUE_SIZE")
    parser.add_argument("--timeout", type=float, default=300.0, help="seconds per request")
    args = parser.parse_args(argv)
    row = run(args)
    print_table(
        [
            "clients",
            "served",
            "429 (+Retry-After)",
            "5xx",
            "maps/s",
            "p50 s",
            "p95 s",
            "peak RSS MiB",
        ],
        [
            [
                row["clients"],
                row["served"],
                f"{row['busy_429']} ({row['busy_with_retry_after']})",
                row["server_errors"],
                row["maps_per_s"],
                row["p50_s"],
                row["p95_s"],
                row["api_peak_rss_mib"],
            ]
        ],
    )
    command = "python -m bench.load " + " ".join(argv if argv is not None else sys.argv[1:])
    path = write_results("load", {"command": command.strip(), "settings": vars(args), **row})
    print(f"wrote {path}")
    return 0 if row["server_errors"] == 0 else 1


if __name__ == "__main__":
    sys.exit(main())
