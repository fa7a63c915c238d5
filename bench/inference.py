"""Sliding-window inference speed on a 42 MP synthetic survey photo (7000 x 6000).

For each backbone, tiles/s of:
  (a) the bare model forward on ready tensors, at the same batch size;
  (b) the full pipeline, from JPEG bytes to crack map (decode, tile, forward, map), with
      its stages timed apart: decode, tiling (cutting and resizing, or waiting for it),
      forward (and the copy back) and map assembly;
  (c) a naive baseline: a PIL crop per tile and one tile per forward (on a sample of tiles).
the peak RSS of a 100 MP inspection with resnet18 (in a fresh process), and with --service
the maps/s that 4 concurrent HTTP clients get from a running `crackscan serve` on the device.

    python -m bench.inference                  # CPU: resnet18 + resnet50 (bf16 where native)
    python -m bench.inference --no-cpu-bf16    # CPU in fp32
    python -m bench.inference --device cuda --skip-rss --service   # GPU: resident path, bf16
"""

from __future__ import annotations

import argparse
import io
import json
import subprocess
import sys
import textwrap
from pathlib import Path
from typing import Any

import numpy as np
import torch
from PIL import Image

from bench.common import median, print_table, timed, write_results
from models.backbones import build_classifier
from models.checkpoint import Checkpoint
from models.data import IMAGENET_MEAN, IMAGENET_STD, normalise
from models.device import select_device
from models.inference import InferenceConfig, Predictor
from models.synthetic import make_survey

CACHE = Path(__file__).resolve().parent / "cache"


def survey_jpeg(width: int, height: int) -> bytes:
    """The synthetic survey photo as JPEG bytes, cached under bench/cache/."""
    path = CACHE / f"survey_{width}x{height}.jpg"
    if not path.exists():
        CACHE.mkdir(parents=True, exist_ok=True)
        photo, _ = make_survey(width, height, seed=42, cracks=12)
        photo.save(path, format="JPEG", quality=90)
    return path.read_bytes()


def random_checkpoint(backbone: str, size: int) -> Checkpoint:
    torch.manual_seed(0)
    model = build_classifier(backbone, 2)
    return Checkpoint(
        backbone=backbone,
        classes=["crack", "no_crack"],
        defect_classes=["crack"],
        input_size=size,
        mean=list(IMAGENET_MEAN),
        std=list(IMAGENET_STD),
        model_state=model.state_dict(),
    )


def bare_forward(predictor: Predictor, batch: int, repeats: int, batches: int = 4) -> list[float]:
    """(a): tiles/s of model(x) on a ready, normalised batch already on the device, in the
    predictor's precision; one rate per repeat, each over `batches` forward passes (a single
    pass is too short to time on a shared machine)."""
    size = predictor.checkpoint.input_size
    raw = torch.randint(0, 256, (batch, 3, size, size), dtype=torch.uint8, device=predictor.device)
    x = normalise(raw, IMAGENET_MEAN, IMAGENET_STD).contiguous(memory_format=torch.channels_last)
    dtype = predictor.amp

    @torch.inference_mode()
    def run() -> None:
        for _ in range(batches):
            if dtype is None:
                predictor.model(x)
            else:
                with torch.autocast(predictor.device.type, dtype=dtype):
                    predictor.model(x)

    run()
    return [batch * batches / timed(run, predictor.device) for _ in range(repeats)]


def naive(predictor: Predictor, data: bytes, sample: int) -> float:
    """(c): decode with PIL, crop each tile with PIL, one tile per forward; tiles/s over a sample."""
    size = predictor.checkpoint.input_size

    def run() -> None:
        image = Image.open(io.BytesIO(data)).convert("RGB")
        cols = image.width // size
        for k in range(sample):
            r, c = divmod(k, cols)
            tile = np.asarray(image.crop((c * size, r * size, (c + 1) * size, (r + 1) * size)))
            batch = torch.from_numpy(tile.copy()).permute(2, 0, 1).unsqueeze(0)
            predictor.predict_batch(batch)

    return sample / timed(run, predictor.device)


def peak_rss_100mp(device: str, batch: int = 32) -> dict[str, Any]:
    """Inspect a 10000 x 10000 JPEG with resnet18 in a fresh process; report its peak RSS."""
    path = CACHE / "survey_10000x10000.jpg"
    if not path.exists():
        Image.open(io.BytesIO(survey_jpeg(7000, 6000))).resize((10000, 10000)).save(
            path, quality=90
        )
    script = textwrap.dedent(f"""
        import json, resource, time

        def peak_mb():
            # VmHWM is this process's own high-water mark; ru_maxrss would also count the
            # parent's pages at fork time (Linux carries it across exec).
            try:
                for line in open("/proc/self/status"):
                    if line.startswith("VmHWM:"):
                        return int(line.split()[1]) / 1024
            except OSError:  # no /proc (not Linux): fall back to ru_maxrss below
                pass
            return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
        from bench.inference import random_checkpoint
        from models.inference import InferenceConfig, Predictor
        predictor = Predictor(random_checkpoint("resnet18", 224), InferenceConfig(device={device!r}, batch_size={batch}))
        data = open({str(path)!r}, "rb").read()
        started = time.perf_counter()
        crack_map = predictor.inspect_bytes(data)
        print(json.dumps({{"tiles": len(crack_map.table), "seconds": time.perf_counter() - started, "batch": {batch},
                          "peak_rss_mb": peak_mb()}}))
    """)
    out = subprocess.run(
        [sys.executable, "-c", script],
        capture_output=True,
        text=True,
        check=True,
        cwd=Path(__file__).resolve().parents[1],
    )
    return dict(json.loads(out.stdout.strip().splitlines()[-1]))


STAGES = ("decode_s", "tiling_s", "forward_s", "assemble_s")


def service_figure(
    device: str, backbone: str, size: int, data: bytes, clients: int, maps: int, cpu_bf16: bool
) -> dict[str, Any]:
    """Maps/s through HTTP: `crackscan serve` on the device (SQLite, no key), `clients`
    threads each posting the photo until `maps` maps are made; one untimed map first."""
    import os
    import tempfile
    import threading
    import time

    import httpx

    from models.checkpoint import save_checkpoint

    root = Path(__file__).resolve().parents[1]
    with tempfile.TemporaryDirectory(prefix="crackscan-bench-") as tmp:
        folder = Path(tmp)
        checkpoint = folder / "model.ckpt"
        save_checkpoint(random_checkpoint(backbone, size), checkpoint)
        port = free_port()
        env = {
            **os.environ,
            "CRACKSCAN_DATABASE_URL": f"sqlite:///{folder / 'bench.db'}",
            "CRACKSCAN_DATA_DIR": str(folder / "data"),
            "CRACKSCAN_AUTH_DISABLED": "true",
            "CRACKSCAN_EMBEDDED_WORKER": "false",
            "CRACKSCAN_INFERENCE_DEVICE": device,
            "CRACKSCAN_INFERENCE_CPU_BF16": str(cpu_bf16).lower(),
            "CRACKSCAN_INSPECTION_WAIT_S": "900",
            "CRACKSCAN_INSPECTION_QUEUE_SIZE": str(2 * clients),
        }
        subprocess.run(
            [sys.executable, "-m", "app.cli", "db", "upgrade"], cwd=root, env=env, check=True,
            capture_output=True,
        )  # fmt: skip
        log = (folder / "server.log").open("wb")
        server = subprocess.Popen(
            [sys.executable, "-m", "app.cli", "serve", "--port", str(port), "--no-access-log"],
            cwd=root, env=env, stdout=log, stderr=subprocess.STDOUT,
        )  # fmt: skip
        base = f"http://127.0.0.1:{port}"
        try:
            client = httpx.Client(base_url=base, timeout=900)
            deadline = time.time() + 120
            while time.time() < deadline:
                try:
                    if client.get("/healthz").status_code == 200:
                        break
                except httpx.TransportError:
                    time.sleep(0.3)
            model = client.post("/v1/models", files={"file": ("m.ckpt", checkpoint.read_bytes())})
            model.raise_for_status()
            client.post(f"/v1/models/{model.json()['id']}/activate").raise_for_status()

            def one() -> float:
                started = time.perf_counter()
                reply = client.post(
                    "/v1/inspections",
                    files={"image": ("survey.jpg", data, "image/jpeg")},
                    data={"tile": str(size)},
                )
                if reply.status_code != 201 or reply.json()["status"] != "succeeded":
                    raise RuntimeError(f"inspection failed: {reply.status_code} {reply.text[:300]}")
                return time.perf_counter() - started

            one()  # loads and warms the model
            latencies: list[float] = []
            lock = threading.Lock()
            left = [maps]

            def worker() -> None:
                while True:
                    with lock:
                        if left[0] == 0:
                            return
                        left[0] -= 1
                    seconds = one()
                    with lock:
                        latencies.append(seconds)

            started = time.perf_counter()
            threads = [threading.Thread(target=worker) for _ in range(clients)]
            for t in threads:
                t.start()
            for t in threads:
                t.join()
            wall = time.perf_counter() - started
        finally:
            server.terminate()
            server.wait(timeout=60)
            log.close()
    if len(latencies) != maps:
        raise RuntimeError(f"{maps - len(latencies)} of {maps} inspections failed")
    return {
        "backbone": backbone,
        "clients": clients,
        "maps": maps,
        "seconds": wall,
        "maps_per_s": maps / wall,
        "median_latency_s": median(latencies),
    }


def free_port() -> int:
    """A TCP port on 127.0.0.1 that nothing listens on now, for the server to take."""
    import socket

    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--device", default="auto")
    parser.add_argument("--backbones", nargs="+", default=["resnet18", "resnet50"])
    parser.add_argument("--size", type=int, default=224, help="model input = tile size")
    parser.add_argument(
        "--batch", type=int, default=None, help="default: the predictor's (32 CPU, by memory GPU)"
    )
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument(
        "--cpu-bf16",
        action=argparse.BooleanOptionalAction,
        default=True,
        help="bf16 autocast on CPUs with native bf16 (the default there; --no-cpu-bf16: fp32)",
    )
    parser.add_argument("--name", help="results file stem (default: inference[_cuda][_bf16])")
    parser.add_argument("--naive-sample", type=int, default=64, help="tiles timed for (c)")
    parser.add_argument("--skip-rss", action="store_true")
    parser.add_argument(
        "--rss-batch", type=int, default=32, help="batch of the 100 MP run (the API's default)"
    )
    parser.add_argument("--service", action="store_true", help="also maps/s through HTTP")
    parser.add_argument("--service-backbone", default="resnet50")
    parser.add_argument("--service-clients", type=int, default=4)
    parser.add_argument("--service-maps", type=int, default=16)
    args = parser.parse_args(argv)
    device = select_device(args.device)
    data = survey_jpeg(7000, 6000)
    rows: list[dict[str, Any]] = []
    for backbone in args.backbones:
        predictor = Predictor(
            random_checkpoint(backbone, args.size),
            InferenceConfig(device=str(device), batch_size=args.batch, cpu_bf16=args.cpu_bf16),
        )
        predictor.warm_up()
        predictor.inspect_bytes(data)  # the first map pays for lazy set-up (nvjpeg, cuDNN)
        # (a) and (b) taken in turn, so that the shared machine's drift shows in both
        rates, runs = bare_forward(predictor, predictor.batch_size, 1), []
        for _ in range(args.repeats):
            runs.append(predictor.inspect_bytes(data))
            rates += bare_forward(predictor, predictor.batch_size, 1)
        a = median(rates)
        b_seconds = median([r.timings["total_s"] for r in runs])
        tiles = len(runs[0].table)
        c = naive(predictor, data, args.naive_sample)
        rows.append(
            {
                "backbone": backbone,
                "device": str(device),
                "precision": predictor.model_info["precision"],
                "resident": predictor.resident,
                "batch": predictor.batch_size,
                "tiles": tiles,
                "a_tiles_per_s": a,
                "b_tiles_per_s": tiles / b_seconds,
                "b_seconds": b_seconds,
                "c_tiles_per_s": c,
                "b_over_a": tiles / b_seconds / a,
                "b_over_c": tiles / b_seconds / c,
                **{stage: median([r.timings[stage] for r in runs]) for stage in STAGES},
                "forward_share": median(
                    [r.timings["forward_s"] / r.timings["total_s"] for r in runs]
                ),
                "device_peak_mb": runs[-1].timings.get("device_peak_mb"),
            }
        )
        print(f"{backbone}: done", flush=True)
    first = rows[0]
    print(
        f"42 MP (7000x6000) synthetic survey, {args.size} px tiles, batch {first['batch']}, "
        f"{device}, {first['precision']}{', resident' if first['resident'] else ''}"
    )
    print_table(
        ["backbone", "tiles", "(a) bare tiles/s", "(b) pipeline tiles/s", "(b) s per map",
         "(c) naive tiles/s", "(b)/(a)", "(b)/(c)"],
        [[r["backbone"], r["tiles"], r["a_tiles_per_s"], r["b_tiles_per_s"], r["b_seconds"],
          r["c_tiles_per_s"], r["b_over_a"], r["b_over_c"]] for r in rows],
    )  # fmt: skip
    print("(b) by stage, seconds per map (medians):")
    print_table(
        ["backbone", "decode", "tiling", "forward", "assemble", "forward share", "device peak MB"],
        [
            [r["backbone"], *(r[s] for s in STAGES), r["forward_share"], r["device_peak_mb"] or "-"]
            for r in rows
        ],
    )
    rss = None if args.skip_rss else peak_rss_100mp(str(device), args.rss_batch)
    if rss:
        print(
            f"100 MP inspection with resnet18: {rss['tiles']} tiles in {rss['seconds']:.1f} s, "
            f"peak RSS {rss['peak_rss_mb']:.0f} MB (target < 2048)"
        )
    service = None
    if args.service:
        service = service_figure(
            str(device), args.service_backbone, args.size, data, args.service_clients,
            args.service_maps, args.cpu_bf16,
        )  # fmt: skip
        print(
            f"service: {service['maps']} maps by {service['clients']} HTTP clients with "
            f"{service['backbone']} in {service['seconds']:.1f} s = {service['maps_per_s']:.2f} "
            f"maps/s (median latency {service['median_latency_s']:.2f} s)"
        )
    suffix = "" if device.type == "cpu" else f"_{device.type}"
    suffix += "_bf16" if first["precision"] == "bfloat16" and device.type == "cpu" else ""
    path = write_results(
        args.name or f"inference{suffix}",
        {
            "command": "python -m bench.inference "
            + " ".join(argv if argv is not None else sys.argv[1:]),
            "image": "synthetic 7000x6000 JPEG q90",
            "tile": args.size,
            "repeats": args.repeats,
            "rows": rows,
            "peak_rss_100mp": rss,
            "service": service,
            "targets": {
                "b_over_a_cpu": 0.9,
                "b_over_a_gpu": 0.5,
                "gpu_resnet50_bf16_seconds_per_map": 0.15,
                "gpu_service_maps_per_s": 5.0,
            },
        },
    )
    print(f"wrote {path}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
