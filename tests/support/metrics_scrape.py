"""Reading a Prometheus text exposition in tests: every sample keyed by (name, sorted labels)."""

from __future__ import annotations

import httpx
from prometheus_client.parser import text_string_to_metric_families

Samples = dict[tuple[str, tuple[tuple[str, str], ...]], float]


def samples(text: str) -> Samples:
    return {(sample.name, tuple(sorted(sample.labels.items()))): sample.value
            for family in text_string_to_metric_families(text) for sample in family.samples}


def value(found: Samples, name: str, **labels) -> float:
    """One sample's value; 0 when it was never recorded."""
    return found.get((name, tuple(sorted(labels.items()))), 0.0)


def scrape(port: int) -> Samples:
    """GET /metrics of the admin role on `port` (plain HTTP, as `courriel serve --dev` serves it)."""
    response = httpx.get(f"http://127.0.0.1:{port}/metrics", timeout=5.0)
    assert response.status_code == 200
    assert response.headers["content-type"].startswith("text/plain")
    return samples(response.text)
