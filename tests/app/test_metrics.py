"""app.metrics: the exposition Prometheus scrapes, built with prometheus_client."""

from __future__ import annotations

from prometheus_client.parser import text_string_to_metric_families

from app.metrics import Metrics


def scrape(metrics: Metrics) -> dict[str, float]:
    return {
        s.name: s.value
        for family in text_string_to_metric_families(metrics.render().decode())
        for s in family.samples
        if not s.labels or s.name.endswith("_count")
    }


def test_tiles_add_up_and_the_rate_is_the_last_inspections():
    metrics = Metrics()
    metrics.observe_tiles(300, 2.0)
    metrics.observe_tiles(100, 4.0)
    values = scrape(metrics)
    assert values["crackscan_tiles_total"] == 400
    assert values["crackscan_tiles_per_second"] == 25.0


def test_a_gauge_that_cannot_be_read_is_left_out_of_that_scrape_only():
    metrics = Metrics()
    state = {"down": True}

    def queued() -> float:
        if state["down"]:
            raise ConnectionError("database down")
        return 3

    metrics.gauge("crackscan_training_jobs_queued", "queued jobs", queued)
    assert "crackscan_training_jobs_queued" not in scrape(metrics)
    state["down"] = False
    assert scrape(metrics)["crackscan_training_jobs_queued"] == 3


def test_two_apps_in_one_process_keep_their_own_counts():
    first, second = Metrics(), Metrics()
    first.observe_request("GET", "/healthz", 200, 0.01)
    assert scrape(first)["crackscan_http_request_seconds_count"] == 1
    assert "crackscan_http_request_seconds_count" not in scrape(second)
