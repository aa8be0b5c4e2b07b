"""Parsing Flux's event JSON, cleaning its metadata, and the dedup key and window."""

from __future__ import annotations

import hashlib
from typing import Any

import pytest

from controllers.notification.dedup import DuplicateFilter, event_key
from controllers.notification.event import (
    EventError,
    clean_metadata,
    parse_event,
    parse_timestamp,
    without_internal_metadata,
)
from controllers.notification.kinds import resolve_kind
from tests.unit.notification.events import REVISION, flux_event, wire_event


def test_a_flux_event_parses_with_every_field() -> None:
    event = flux_event()
    assert (event.kind, event.name, event.namespace) == ("GitRepository", "podinfo", "apps")
    assert event.group == "source.toolkit.fluxcd.io"
    assert event.severity == "info"
    assert event.object_metadata("revision") == REVISION
    assert event.reporting_instance == "source-controller-abc"
    assert event.describe() == "GitRepository/apps/podinfo"
    # Round trip: what generic providers forward is what came in.
    assert event.to_json() == wire_event()


@pytest.mark.parametrize(
    ("change", "field", "problem"),
    [
        ({"involvedObject": None}, "involvedObject", "required"),
        ({"involvedObject": "x"}, "involvedObject", "must be an object"),
        ({"involvedObject": {"name": "a"}}, "involvedObject.kind", "required"),
        ({"involvedObject": {"kind": "GitRepository", "name": 3}}, "involvedObject.name", "string"),
        ({"severity": "warning"}, "severity", "'info' or 'error'"),
        ({"severity": None}, "severity", "required"),
        ({"timestamp": "yesterday"}, "timestamp", "RFC 3339"),
        ({"message": 7}, "message", "must be a string, not int"),
        ({"reason": ""}, "reason", "must not be empty"),
        ({"reportingController": None}, "reportingController", "required"),
        ({"metadata": ["a"]}, "metadata", "object of strings"),
        (
            {"metadata": {"source.toolkit.fluxcd.io/revision": 1}},
            "metadata.source.toolkit.fluxcd.io/revision",
            "string",
        ),
    ],
)
def test_a_malformed_event_is_refused_naming_the_field(
    change: dict[str, Any], field: str, problem: str
) -> None:
    body = wire_event()
    for key, value in change.items():
        if value is None:
            body.pop(key)
        else:
            body[key] = value
    with pytest.raises(EventError) as caught:
        parse_event(body)
    assert caught.value.field == field
    assert problem in str(caught.value)


def test_a_body_that_is_not_an_object_is_refused() -> None:
    with pytest.raises(EventError, match="body: must be a JSON object"):
        parse_event(["not", "an", "event"])


@pytest.mark.parametrize(
    "stamp",
    ["2026-01-02T03:04:05Z", "2026-01-02T03:04:05.123456789Z", "2026-01-02T03:04:05+02:00"],
)
def test_rfc3339_timestamps_parse(stamp: str) -> None:
    assert parse_timestamp(stamp).tzinfo is not None


def test_cleaning_keeps_group_keys_and_drops_digest_checksum_and_foreign_keys() -> None:
    event = flux_event(
        metadata={
            "source.toolkit.fluxcd.io/revision": REVISION,
            "source.toolkit.fluxcd.io/digest": "sha256:feed",
            "source.toolkit.fluxcd.io/checksum": "abc",
            "event.toolkit.fluxcd.io/team": "platform",
            "example.com/other": "dropped",
        }
    )
    assert clean_metadata(event).metadata == {
        "source.toolkit.fluxcd.io/revision": REVISION,
        "event.toolkit.fluxcd.io/team": "platform",
    }


def test_the_token_only_feeds_dedup() -> None:
    event = flux_event(metadata={"source.toolkit.fluxcd.io/token": "t1"})
    assert without_internal_metadata(event).metadata == {}


def test_dedup_key_is_fluxs_sha256_over_object_message_and_revisions() -> None:
    event = clean_metadata(flux_event())
    expected = hashlib.sha256(
        (
            "event/name=podinfo/namespace=apps/kind=GitRepository/"
            f"message={event.message}/revision={REVISION}"
        ).encode()
    ).hexdigest()
    assert event_key(event) == expected


def test_dedup_key_changes_with_revision_token_and_message_but_not_digest() -> None:
    base = flux_event()
    other_revision = flux_event(metadata={"source.toolkit.fluxcd.io/revision": "main@sha1:ff"})
    with_token = flux_event(
        metadata={**wire_event()["metadata"], "source.toolkit.fluxcd.io/token": "x"}
    )
    other_message = flux_event(message="something else")
    other_digest = flux_event(
        metadata={
            "source.toolkit.fluxcd.io/revision": REVISION,
            "source.toolkit.fluxcd.io/digest": "sha256:0",
        }
    )
    keys = {event_key(e) for e in (base, other_revision, with_token, other_message)}
    assert len(keys) == 4
    assert event_key(base) == event_key(other_digest)


def test_duplicates_are_dropped_within_the_window_and_admitted_after() -> None:
    now = [100.0]
    dedup = DuplicateFilter(300.0, clock=lambda: now[0])
    assert dedup.admit("a")
    assert not dedup.admit("a")
    assert dedup.admit("b")
    now[0] += 299.0
    assert not dedup.admit("a")
    now[0] += 2.0
    assert dedup.admit("a")


def test_a_zero_window_admits_every_repeat() -> None:
    dedup = DuplicateFilter(0.0)
    assert all(dedup.admit("a") for _ in range(3))


def test_the_dedup_memory_is_bounded() -> None:
    dedup = DuplicateFilter(300.0, max_keys=3)
    for key in "abcde":
        assert dedup.admit(key)
    assert len(dedup) == 3
    assert dedup.admit("a")  # evicted, so admitted again


@pytest.mark.parametrize(
    ("kind", "plural", "group"),
    [
        ("GitRepository", "gitrepositories", "source.toolkit.fluxcd.io"),
        ("Bucket", "buckets", "source.toolkit.fluxcd.io"),
        ("Kustomization", "kustomizations", "kustomize.toolkit.fluxcd.io"),
        ("HelmRelease", "helmreleases", "helm.toolkit.fluxcd.io"),
        ("ImagePolicy", "imagepolicies", "image.toolkit.fluxcd.io"),
        ("OCIRepository", "ocirepositories", "source.toolkit.fluxcd.io"),
    ],
)
def test_flux_kinds_resolve_to_their_resources(kind: str, plural: str, group: str) -> None:
    where = resolve_kind(kind)
    assert (where.plural, where.group) == (plural, group)
    assert resolve_kind(kind, "example.com/v9").version == "v9"
