"""Reading a running controller's Prometheus `/metrics` over HTTP, as a scraper would."""

from __future__ import annotations

import urllib.request
from collections.abc import Mapping

from prometheus_client.parser import text_string_to_metric_families


def scrape(metrics_url: str) -> str:
    """The exposition text the controllers serve at `<metrics_url>/metrics`."""
    with urllib.request.urlopen(f"{metrics_url}/metrics", timeout=5) as response:
        text: str = response.read().decode()
    return text


def sample_value(text: str, name: str, labels: Mapping[str, str]) -> float | None:
    """The value of sample `name` whose labels include `labels`, None when there is none."""
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            if sample.name == name and all(sample.labels.get(k) == v for k, v in labels.items()):
                return float(sample.value)
    return None


def sample_sum(text: str, name: str, labels: Mapping[str, str]) -> float:
    """The sum of every sample `name` whose labels include `labels` (e.g. over codes)."""
    return sum(
        float(sample.value)
        for family in text_string_to_metric_families(text)
        for sample in family.samples
        if sample.name == name and all(sample.labels.get(k) == v for k, v in labels.items())
    )
