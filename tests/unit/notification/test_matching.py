"""Flux's Alert matching rules and metadata precedence, as pure functions."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from controllers.notification.event import FluxEvent
from controllers.notification.matching import (
    AlertSpec,
    combine_metadata,
    match_alert,
    matching_alerts,
)
from tests.unit.notification.events import REVISION, flux_event


def alert(namespace: str = "apps", **spec: Any) -> AlertSpec:
    body = {
        "metadata": {"name": "on-call", "namespace": namespace},
        "spec": {
            "providerRef": {"name": "slack"},
            "eventSources": [{"kind": "GitRepository", "name": "*"}],
            **spec,
        },
    }
    return AlertSpec.from_object(body)


class Labels:
    """Labels the involved object has; counts reads, as the real lookup costs one."""

    def __init__(self, labels: Mapping[str, str] | None) -> None:
        self.labels = labels
        self.reads = 0

    async def __call__(self, event: FluxEvent) -> Mapping[str, str] | None:
        self.reads += 1
        return self.labels


async def matches(spec: AlertSpec, event: FluxEvent, labels: Labels | None = None) -> bool:
    return await match_alert(spec, event, labels or Labels({})) is not None


async def test_defaults_take_info_and_error_from_the_alerts_namespace() -> None:
    spec = alert()
    assert spec.severity == "info"
    assert spec.sources[0].namespace == "apps"
    assert await matches(spec, flux_event())
    assert await matches(spec, flux_event(severity="error"))


async def test_an_error_alert_takes_only_errors() -> None:
    spec = alert(eventSeverity="error")
    assert not await matches(spec, flux_event())
    assert await matches(spec, flux_event(severity="error"))


async def test_kind_name_and_namespace_must_match() -> None:
    named = alert(eventSources=[{"kind": "GitRepository", "name": "podinfo"}])
    assert await matches(named, flux_event())
    other = flux_event(
        involvedObject={"kind": "GitRepository", "name": "other", "namespace": "apps"}
    )
    assert not await matches(named, other)
    kustomization = flux_event(
        involvedObject={"kind": "Kustomization", "name": "podinfo", "namespace": "apps"}
    )
    assert not await matches(named, kustomization)
    elsewhere = flux_event(
        involvedObject={"kind": "GitRepository", "name": "podinfo", "namespace": "prod"}
    )
    assert not await matches(named, elsewhere)
    cross = alert(eventSources=[{"kind": "GitRepository", "name": "*", "namespace": "prod"}])
    assert await matches(cross, elsewhere)
    assert not await matches(cross, flux_event())


async def test_suspended_alerts_take_nothing() -> None:
    assert not await matches(alert(suspend=True), flux_event())


async def test_match_labels_read_the_objects_labels_only_when_asked() -> None:
    plain = Labels({"team": "a"})
    assert await matches(alert(), flux_event(), plain)
    assert plain.reads == 0
    selecting = alert(
        eventSources=[{"kind": "GitRepository", "name": "*", "matchLabels": {"team": "a"}}]
    )
    assert await matches(selecting, flux_event(), Labels({"team": "a", "tier": "web"}))
    assert not await matches(selecting, flux_event(), Labels({"team": "b"}))
    assert not await matches(selecting, flux_event(), Labels(None))  # unreadable object


async def test_one_source_without_labels_is_enough() -> None:
    spec = alert(
        eventSources=[
            {"kind": "GitRepository", "name": "*", "matchLabels": {"team": "b"}},
            {"kind": "GitRepository", "name": "podinfo"},
        ]
    )
    labels = Labels({"team": "a"})
    assert await matches(spec, flux_event(), labels)
    assert labels.reads == 0


async def test_inclusion_needs_one_match_and_exclusion_drops_on_any() -> None:
    event = flux_event(message="Health check failed for Deployment/apps/web")
    assert await matches(alert(inclusionList=["nope", "Health check"]), event)
    assert not await matches(alert(inclusionList=["^stored"]), event)
    assert not await matches(alert(exclusionList=["nope", "apps/web$"]), event)
    assert await matches(alert(exclusionList=["^web"]), event)  # searched, not anchored


async def test_bad_patterns_are_reported_and_do_not_match() -> None:
    spec = alert(inclusionList=["(unclosed", "stored"])
    found = await match_alert(spec, flux_event(), Labels({}))
    assert found is not None
    assert len(found.config_errors) == 1
    assert "(unclosed" in found.config_errors[0]
    assert not await matches(alert(inclusionList=["(unclosed"]), flux_event())


async def test_matching_alerts_keeps_only_those_that_take_the_event() -> None:
    specs = [alert(), alert(eventSeverity="error"), alert(namespace="other")]
    found = await matching_alerts(specs, flux_event(), Labels({}))
    assert [m.alert for m in found] == [specs[0]]


def test_metadata_precedence_and_prefix_stripping() -> None:
    event = flux_event(
        metadata={
            "event.toolkit.fluxcd.io/env": "from-annotation",
            "event.toolkit.fluxcd.io/team": "from-annotation",
            "event.toolkit.fluxcd.io/summary": "from-annotation",
            "source.toolkit.fluxcd.io/revision": REVISION,
            "source.toolkit.fluxcd.io/team": "from-controller",
        }
    )
    spec = alert(
        eventMetadata={"env": "from-alert", "cluster": "prod-1", "summary": "from-alert"},
        summary="from-summary",
    )
    combined = combine_metadata(event, spec)
    assert combined.metadata == {
        "env": "from-alert",
        "team": "from-controller",
        "summary": "from-summary",
        "cluster": "prod-1",
        "revision": REVISION,
    }
    assert set(combined.conflicts) == {"env", "team", "summary"}
    assert combined.conflicts["summary"] == (
        "involved object annotations",
        "Alert object .spec.eventMetadata",
        "Alert object .spec.summary",
    )


def test_metadata_without_conflicts() -> None:
    combined = combine_metadata(flux_event(), alert())
    assert combined.metadata == {"revision": REVISION, "digest": "sha256:feed"}
    assert combined.conflicts == {}
