"""Table rows of each kind, names people type for kinds, selectors and ages (pure steps)."""

from __future__ import annotations

import datetime
from typing import Any

import pytest

from controllers.commands import common, kinds
from controllers.commands.common import CliError

NOW = datetime.datetime(2026, 1, 2, 12, 0, 0, tzinfo=datetime.UTC)
CREATED = "2026-01-02T11:55:00Z"  # five minutes before NOW


def flux_object(
    kind: kinds.FluxKind,
    *,
    status: dict[str, Any] | None = None,
    suspend: bool = False,
    namespace: str = "apps",
) -> dict[str, Any]:
    return {
        "apiVersion": kind.api_version,
        "kind": kind.kind,
        "metadata": {"name": "web", "namespace": namespace, "creationTimestamp": CREATED},
        "spec": {"suspend": suspend} if suspend else {},
        **({"status": status} if status is not None else {}),
    }


def ready(status: str, message: str) -> dict[str, Any]:
    return {"type": "Ready", "status": status, "reason": "R", "message": message}


ARTIFACT = {"artifact": {"revision": "main@sha1:abc123"}}


@pytest.mark.parametrize(
    ("kind", "status", "expected"),
    [
        (
            kinds.GIT_REPOSITORY,
            {**ARTIFACT, "conditions": [ready("True", "stored artifact for revision 'x'")]},
            ["web", "main@sha1:abc123", "False", "True", "stored artifact for revision 'x'", "5m"],
        ),
        (
            kinds.HELM_REPOSITORY,
            {"artifact": {"revision": "sha256:9f"}, "conditions": [ready("True", "ok")]},
            ["web", "sha256:9f", "False", "True", "ok", "5m"],
        ),
        (
            kinds.HELM_CHART,
            {"artifact": {"revision": "1.2.3"}, "conditions": [ready("False", "no chart")]},
            ["web", "1.2.3", "False", "False", "no chart", "5m"],
        ),
        (
            kinds.KUSTOMIZATION,
            {
                **ARTIFACT,
                "lastAppliedRevision": "main@sha1:def456",
                "conditions": [ready("True", "Applied revision: main@sha1:def456")],
            },
            [
                "web",
                "main@sha1:def456",
                "False",
                "True",
                "Applied revision: main@sha1:def456",
                "5m",
            ],
        ),
        (
            kinds.RECEIVER,
            {"conditions": [ready("True", "Receiver initialized for path: /hook/x")]},
            ["web", "False", "True", "Receiver initialized for path: /hook/x", "5m"],
        ),
        # v1beta3 Alerts and Providers have no status: READY is not made up.
        (kinds.ALERT, None, ["web", "False", "-", "", "5m"]),
        (kinds.PROVIDER, None, ["web", "False", "-", "", "5m"]),
    ],
)
def test_row_of_each_kind(kind: kinds.FluxKind, status: Any, expected: list[str]) -> None:
    assert len(kinds.columns(kind)) == len(expected)
    assert kinds.row(kind, flux_object(kind, status=status), NOW) == expected


def test_columns_follow_flux_get() -> None:
    assert kinds.columns(kinds.KUSTOMIZATION) == [
        "NAME",
        "REVISION",
        "SUSPENDED",
        "READY",
        "MESSAGE",
        "AGE",
    ]
    assert kinds.columns(kinds.ALERT, with_namespace=True) == [
        "NAMESPACE",
        "NAME",
        "SUSPENDED",
        "READY",
        "MESSAGE",
        "AGE",
    ]


def test_row_with_namespace_suspended_and_not_yet_reconciled() -> None:
    obj = flux_object(kinds.KUSTOMIZATION, suspend=True, namespace="team-a")
    assert kinds.row(kinds.KUSTOMIZATION, obj, NOW, with_namespace=True) == [
        "team-a",
        "web",
        "",
        "True",
        "Unknown",
        "waiting to be reconciled",
        "5m",
    ]


@pytest.mark.parametrize(
    ("text", "kind"),
    [
        ("ks", kinds.KUSTOMIZATION),
        ("Kustomization", kinds.KUSTOMIZATION),
        ("kustomizations", kinds.KUSTOMIZATION),
        ("gitrepo", kinds.GIT_REPOSITORY),
        ("GitRepositories", kinds.GIT_REPOSITORY),
        ("helmrepo", kinds.HELM_REPOSITORY),
        ("hc", kinds.HELM_CHART),
        ("oci", kinds.OCI_REPOSITORY),
        ("receiver", kinds.RECEIVER),
        ("alerts", kinds.ALERT),
        ("alert-providers", kinds.PROVIDER),
    ],
)
def test_kind_names(text: str, kind: kinds.FluxKind) -> None:
    assert kinds.resolve(text) is kind


def test_all_and_sources() -> None:
    assert kinds.resolve_many("all") == list(kinds.KINDS)
    assert kinds.resolve_many("sources") == [
        kinds.GIT_REPOSITORY,
        kinds.HELM_REPOSITORY,
        kinds.HELM_CHART,
        kinds.OCI_REPOSITORY,
    ]


def test_unknown_kind_lists_the_accepted_ones() -> None:
    with pytest.raises(CliError, match=r"unknown kind 'widget'.*kustomizations") as caught:
        kinds.resolve("widget")
    assert caught.value.code == common.EXIT_USAGE


def test_status_selector() -> None:
    selector = kinds.parse_selector("ready=false")
    failing = flux_object(kinds.KUSTOMIZATION, status={"conditions": [ready("False", "boom")]})
    passing = flux_object(kinds.KUSTOMIZATION, status={"conditions": [ready("True", "ok")]})
    assert kinds.matches(kinds.KUSTOMIZATION, failing, selector)
    assert not kinds.matches(kinds.KUSTOMIZATION, passing, selector)
    # Objects without any status never match a ready= selector.
    assert not kinds.matches(kinds.ALERT, flux_object(kinds.ALERT), selector)
    both = kinds.parse_selector("Ready=True,suspended=true")
    assert both == {"ready": "true", "suspended": "true"}
    assert not kinds.matches(kinds.KUSTOMIZATION, passing, both)


@pytest.mark.parametrize("text", ["ready", "healthy=true", "ready="])
def test_bad_status_selector_names_the_flag(text: str) -> None:
    with pytest.raises(CliError, match="--status-selector"):
        kinds.parse_selector(text)


@pytest.mark.parametrize(
    ("seconds", "expected"),
    [
        (5, "5s"),
        (119, "119s"),
        (150, "2m30s"),
        (600, "10m"),
        (3 * 3600 + 60, "3h1m"),
        (10 * 3600, "10h"),
        (3 * 86400 + 3600, "3d1h"),
        (30 * 86400, "30d"),
    ],
)
def test_age_reads_like_kubectl(seconds: int, expected: str) -> None:
    created = (NOW - datetime.timedelta(seconds=seconds)).strftime("%Y-%m-%dT%H:%M:%SZ")
    assert common.age(created, NOW) == expected


def test_age_without_a_timestamp() -> None:
    assert common.age(None, NOW) == "-"


def test_timeout_flag_accepts_go_durations_and_seconds() -> None:
    assert common.parse_timeout("90s") == 90
    assert common.parse_timeout("1m30s") == 90
    assert common.parse_timeout("2.5") == 2.5
