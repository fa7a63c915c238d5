"""Prometheus metrics in the text exposition format: requests, latencies, tiles/s, queue depth."""

from __future__ import annotations

import threading
from collections import defaultdict
from collections.abc import Callable

BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0)


class Metrics:
    def __init__(self) -> None:
        self._lock = threading.Lock()
        self.requests: dict[tuple[str, str, int], int] = defaultdict(int)
        self.latency_buckets: dict[tuple[str, str], list[int]] = defaultdict(
            lambda: [0] * len(BUCKETS)
        )
        self.latency_sum: dict[tuple[str, str], float] = defaultdict(float)
        self.latency_count: dict[tuple[str, str], int] = defaultdict(int)
        self.tiles_total = 0
        self.tiles_seconds = 0.0
        self.last_tiles_per_s = 0.0
        self.gauges: dict[str, Callable[[], float]] = {}

    def observe_request(self, method: str, route: str, status: int, seconds: float) -> None:
        with self._lock:
            self.requests[(method, route, status)] += 1
            key = (method, route)
            for i, edge in enumerate(BUCKETS):
                if seconds <= edge:
                    self.latency_buckets[key][i] += 1
            self.latency_sum[key] += seconds
            self.latency_count[key] += 1

    def observe_tiles(self, tiles: int, seconds: float) -> None:
        with self._lock:
            self.tiles_total += tiles
            self.tiles_seconds += seconds
            self.last_tiles_per_s = tiles / seconds if seconds > 0 else 0.0

    def render(self) -> str:
        lines = [
            "# HELP crackscan_http_requests_total HTTP requests by method, route and status.",
            "# TYPE crackscan_http_requests_total counter",
        ]
        with self._lock:
            for (method, route, status), n in sorted(self.requests.items()):
                lines.append(
                    f'crackscan_http_requests_total{{method="{method}",route="{route}",status="{status}"}} {n}'
                )
            lines += [
                "# HELP crackscan_http_request_seconds Request latency.",
                "# TYPE crackscan_http_request_seconds histogram",
            ]
            for (method, route), counts in sorted(self.latency_buckets.items()):
                labels = f'method="{method}",route="{route}"'
                for edge, n in zip(BUCKETS, counts, strict=True):
                    lines.append(
                        f'crackscan_http_request_seconds_bucket{{{labels},le="{edge}"}} {n}'
                    )
                total = self.latency_count[(method, route)]
                lines.append(f'crackscan_http_request_seconds_bucket{{{labels},le="+Inf"}} {total}')
                lines.append(
                    f"crackscan_http_request_seconds_sum{{{labels}}} {self.latency_sum[(method, route)]:.6f}"
                )
                lines.append(f"crackscan_http_request_seconds_count{{{labels}}} {total}")
            lines += [
                "# HELP crackscan_tiles_total Tiles classified by inspections.",
                "# TYPE crackscan_tiles_total counter",
                f"crackscan_tiles_total {self.tiles_total}",
                "# HELP crackscan_tiles_per_second Tiles per second of the last inspection.",
                "# TYPE crackscan_tiles_per_second gauge",
                f"crackscan_tiles_per_second {self.last_tiles_per_s:.3f}",
            ]
            gauges = dict(self.gauges)
        for name, read in sorted(gauges.items()):
            try:
                value = float(read())
            except Exception:  # a gauge that cannot be read now is left out
                continue
            lines += [f"# TYPE {name} gauge", f"{name} {value}"]
        return "\n".join(lines) + "\n"
