"""config/monitoring's Grafana dashboard queries only metrics the controllers export.

Every metric name in every PromQL expression of the dashboard (panels and
template variables) must be a sample name some controller module registers
with prometheus_client, so renaming or dropping a metric fails here instead
of leaving an empty panel behind.
"""

from __future__ import annotations

import importlib
import json
import pkgutil
import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import prometheus_client
import yaml

import controllers

REPO = Path(__file__).resolve().parents[2]
DASHBOARD = REPO / "config" / "monitoring" / "headwater-dashboard.json"

# PromQL words that are not metric names: aggregation modifiers, set operators, offsets.
KEYWORDS = {
    "by",
    "without",
    "on",
    "ignoring",
    "group_left",
    "group_right",
    "bool",
    "and",
    "or",
    "unless",
    "offset",
    "inf",
    "nan",
}


def exported_sample_names() -> set[str]:
    """The sample names a scrape of the controllers can show, from the default registry."""
    for module in pkgutil.walk_packages(controllers.__path__, "controllers."):
        importlib.import_module(module.name)
    names: set[str] = set()
    suffixes = {
        "counter": ("_total",),
        "histogram": ("_bucket", "_count", "_sum"),
        "summary": ("_count", "_sum"),
        "gauge": ("",),
    }
    for family in prometheus_client.REGISTRY.collect():
        for suffix in suffixes.get(family.type, ("",)):
            names.add(family.name + suffix)
    return names


def expressions(node: Any) -> Iterator[str]:
    """Every PromQL text in the dashboard: targets' expr and variables' queries."""
    if isinstance(node, dict):
        for key, value in node.items():
            promql = key in ("expr", "definition") or (
                key == "query" and node.get("type") != "datasource"
            )
            if promql and isinstance(value, str):
                yield value
            else:
                yield from expressions(value)
    elif isinstance(node, list):
        for item in node:
            yield from expressions(item)


def metric_names(expr: str) -> set[str]:
    """The metric names in one expression (Grafana's label_values(metric, label) included)."""
    text = re.sub(r'"(?:[^"\\]|\\.)*"', "", expr)  # string literals
    text = re.sub(r"\{[^}]*\}", "", text)  # label matchers
    text = re.sub(r"\[[^\]]*\]", "", text)  # range selectors
    text = re.sub(r"\b(by|without|on|ignoring|group_left|group_right)\s*\([^)]*\)", "", text)
    text = re.sub(r"label_values\(\s*([a-zA-Z_:][\w:]*)\s*,[^)]*\)", r"\1", text)
    names = set()
    for match in re.finditer(r"(?<![\w$.])([a-zA-Z_:][\w:]*)\s*(\()?", text):
        name, call = match.group(1), match.group(2)
        if call or name.lower() in KEYWORDS:
            continue
        names.add(name)
    return names


def dashboard() -> dict[str, Any]:
    loaded: dict[str, Any] = json.loads(DASHBOARD.read_text())
    return loaded


def test_every_metric_the_dashboard_queries_is_exported() -> None:
    exported = exported_sample_names()
    queried: dict[str, set[str]] = {}
    for expr in expressions(dashboard()):
        for name in metric_names(expr):
            queried.setdefault(name, set()).add(expr)
    # The panels the dashboard promises, by the metrics that feed them.
    assert {
        "gotk_reconcile_duration_seconds_count",  # reconcile rate
        "gotk_reconcile_duration_seconds_bucket",  # duration percentiles
        "gotk_reconcile_condition",  # failures, stalled
        "gotk_suspend_status",  # suspended objects
        "headwater_drift_corrections_total",  # drift heals
        "headwater_notifications_total",  # alerts sent
    } <= set(queried)
    unknown = {name: sorted(exprs) for name, exprs in queried.items() if name not in exported}
    assert not unknown, f"the dashboard queries metrics no controller exports: {unknown}"


def test_the_name_extraction_sees_through_promql() -> None:
    # The check above is only as good as this parser: it must find a renamed metric.
    expr = (
        'histogram_quantile(0.9, sum by (le, kind) (rate(no_such_metric_bucket{kind=~"$kind",'
        ' name!="x"}[$__rate_interval]))) / on (kind) group_left other_metric offset 5m'
    )
    assert metric_names(expr) == {"no_such_metric_bucket", "other_metric"}
    assert metric_names("label_values(gotk_reconcile_condition, namespace)") == {
        "gotk_reconcile_condition"
    }


def test_the_dashboard_ships_as_a_labelled_configmap_of_its_own() -> None:
    monitoring = yaml.safe_load((REPO / "config" / "monitoring" / "kustomization.yaml").read_text())
    [generated] = monitoring["configMapGenerator"]
    assert generated["files"] == [DASHBOARD.name]
    assert generated["options"]["labels"]["grafana_dashboard"] == "1"
    # Neither it nor the PodMonitor is part of the default install, which must apply
    # on clusters without the Prometheus operator's CRDs.
    install = yaml.safe_load((REPO / "config" / "kustomization.yaml").read_text())
    assert not any("monitoring" in str(resource) for resource in install["resources"])
    assert "resources" not in monitoring


def test_the_podmonitor_scrapes_every_controller_pod_on_its_metrics_port() -> None:
    path = REPO / "config" / "monitoring" / "prometheus-operator" / "podmonitor.yaml"
    monitor = yaml.safe_load(path.read_text())
    selector = monitor["spec"]["selector"]
    [endpoint] = monitor["spec"]["podMetricsEndpoints"]

    def selected(labels: dict[str, str]) -> bool:
        if not selector["matchLabels"].items() <= labels.items():
            return False
        for expression in selector.get("matchExpressions", []):
            assert expression["operator"] == "In"
            if labels.get(expression["key"]) not in expression["values"]:
                return False
        return True

    pods = []
    for manifest in sorted((REPO / "config").rglob("*.yaml")):
        for doc in yaml.safe_load_all(manifest.read_text()):
            if isinstance(doc, dict) and doc.get("kind") == "Deployment":
                pods.append((manifest, doc["spec"]["template"]))
    assert len(pods) >= 5
    for manifest, pod in pods:
        annotations = pod["metadata"].get("annotations") or {}
        # Exactly the pods that say they serve metrics are scraped, on that port.
        scraped = annotations.get("prometheus.io/scrape") == "true"
        assert selected(pod["metadata"]["labels"]) == scraped, manifest
        if scraped:
            ports = {
                p["name"]: p["containerPort"] for c in pod["spec"]["containers"] for p in c["ports"]
            }
            assert str(ports[endpoint["port"]]) == annotations["prometheus.io/port"]
