"""Reading what several controller instances did: who holds a Lease, who reconciled what."""

from __future__ import annotations

import urllib.error
import urllib.request

from prometheus_client.parser import text_string_to_metric_families

from tests.support.cluster import TestCluster, get_json
from tests.support.metrics import scrape

SHARD_KEY = "sharding.fluxcd.io/key"


def lease_holder(cluster: TestCluster, namespace: str, name: str) -> str | None:
    """The Lease's holderIdentity; None while the Lease does not exist or nobody holds it."""
    lease = get_json(cluster, "lease", name, "-n", namespace)
    if lease is None:
        return None
    return (lease.get("spec") or {}).get("holderIdentity") or None


def reconciled(metrics_url: str, kind: str, namespace: str) -> dict[str, float]:
    """Object name -> how many reconciles of `kind` this instance has run (its /metrics)."""
    counts: dict[str, float] = {}
    for family in text_string_to_metric_families(scrape(metrics_url)):
        for sample in family.samples:
            labels = sample.labels
            if (
                sample.name == "gotk_reconcile_duration_seconds_count"
                and labels.get("kind") == kind
                and labels.get("namespace") == namespace
                and sample.value > 0
            ):
                counts[labels["name"]] = float(sample.value)
    return counts


def http_status(url: str) -> int:
    """The status code a GET of `url` answers with (errors included)."""
    try:
        with urllib.request.urlopen(url, timeout=5) as response:
            return int(response.status)
    except urllib.error.HTTPError as exc:
        return int(exc.code)
