"""Prometheus metrics for /metrics: requests, latencies, tiles/s and queue depths.

Each app owns its registry (prometheus_client's default one is process-wide, and tests
build many apps in one process). Gauges read from the service at scrape time are
registered as callbacks; one that cannot be read now is left out of that scrape.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, generate_latest
from prometheus_client.core import GaugeMetricFamily
from prometheus_client.registry import Collector

BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0)
CONTENT_TYPE = "text/plain; version=0.0.4; charset=utf-8"
# Labels come only from these; anything else a client sends is counted as "other", so no
# request can add a series (a method is any token the client likes).
METHODS = frozenset({"GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS"})
OTHER = "other"


class CallbackGauges(Collector):
    """Gauges whose value is read by a callback when Prometheus scrapes."""

    def __init__(self) -> None:
        self.reads: dict[str, tuple[str, Callable[[], float]]] = {}

    def collect(self) -> Iterator[GaugeMetricFamily]:
        for name, (documentation, read) in sorted(self.reads.items()):
            try:
                value = float(read())
            except Exception:  # e.g. the database is down: leave it out, keep the scrape
                continue
            yield GaugeMetricFamily(name, documentation, value=value)


class Metrics:
    def __init__(self) -> None:
        self.registry = CollectorRegistry(auto_describe=True)
        self.requests = Counter(
            "crackscan_http_requests",
            "HTTP requests by method, route and status.",
            ["method", "route", "status"],
            registry=self.registry,
        )
        self.latency = Histogram(
            "crackscan_http_request_seconds",
            "Request latency.",
            ["method", "route"],
            buckets=BUCKETS,
            registry=self.registry,
        )
        self.tiles = Counter(
            "crackscan_tiles", "Tiles classified by inspections.", registry=self.registry
        )
        self.tiles_per_second = Gauge(
            "crackscan_tiles_per_second",
            "Tiles per second of the last inspection.",
            registry=self.registry,
        )
        self.callbacks = CallbackGauges()
        self.registry.register(self.callbacks)

    def gauge(self, name: str, documentation: str, read: Callable[[], float]) -> None:
        """Report read() as the gauge `name` at every scrape."""
        self.callbacks.reads[name] = (documentation, read)

    def observe_request(self, method: str, route: str, status: int, seconds: float) -> None:
        """Count a request. `route` must be a route template or "unmatched", never the path
        as sent; an unknown method is counted as "other"."""
        method = method if method in METHODS else OTHER
        status = status if 100 <= status <= 599 else 0
        self.requests.labels(method, route, str(status)).inc()
        self.latency.labels(method, route).observe(seconds)

    def observe_tiles(self, tiles: int, seconds: float) -> None:
        self.tiles.inc(tiles)
        self.tiles_per_second.set(tiles / seconds if seconds > 0 else 0.0)

    def render(self) -> bytes:
        return generate_latest(self.registry)
