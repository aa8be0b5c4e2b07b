"""When a no-op reconcile may skip its dry-run: the rule, and the watch ledger behind it."""

from __future__ import annotations

import dataclasses
from typing import Any

import pytest

from controllers.toolkit.apply.inventory import ObjectId
from controllers.toolkit.apply.inventory_watch import (
    ChangeLedger,
    WatchedKind,
    WatchToken,
    fingerprint,
)
from controllers.toolkit.apply.ssa import Action, ChangeSet, ChangeSetEntry
from controllers.toolkit.apply.verification import (
    Attempt,
    Verified,
    full_verification_reason,
)

HOUR = 3600.0
CONFIG_MAPS = WatchedKind("v1", "ConfigMap")
DEPLOYMENTS = WatchedKind("apps/v1", "Deployment")
OWNER = ("apps", "web")


def _changeset(action: Action = Action.UNCHANGED) -> ChangeSet:
    return ChangeSet(
        [
            ChangeSetEntry(ObjectId("", "ConfigMap", "apps", "settings"), "v1", action),
            ChangeSetEntry(ObjectId("apps", "Deployment", "apps", "web"), "v1", Action.SKIPPED),
        ]
    )


def _verified(**changes: Any) -> Verified:
    ledger = changes.pop("ledger", None)
    verified = Verified.of(
        _changeset(),
        key="key-1",
        digest="digest-1",
        revision="main@sha1:1",
        requested_at=None,
        at=1000.0,
        token=ledger.token(OWNER) if ledger is not None else WatchToken({}, 0),
    )
    assert verified is not None
    return dataclasses.replace(verified, **changes)


def _attempt(**changes: Any) -> Attempt:
    base = Attempt(
        key="key-1",
        digest="digest-1",
        revision="main@sha1:1",
        requested_at=None,
        force=False,
        remote=False,
        now=1060.0,
    )
    return dataclasses.replace(base, **changes)


def _vouching(token: Any, kinds: set[WatchedKind]) -> str | None:
    return None


def _decide(last: Verified | None, attempt: Attempt, interval: float = HOUR) -> str | None:
    return full_verification_reason(last, attempt, interval=interval, watch=_vouching)


def test_an_unchanged_periodic_reconcile_the_watch_vouches_for_skips() -> None:
    assert _decide(_verified(), _attempt()) is None


@pytest.mark.parametrize(
    ("last", "attempt", "interval", "expected"),
    [
        (None, _attempt(), HOUR, "since the controller started"),
        (_verified(), _attempt(requested_at="2026-12-03T15:00:00Z"), HOUR, "requestedAt"),
        (_verified(), _attempt(revision="main@sha1:2"), HOUR, "new revision main@sha1:2"),
        (_verified(), _attempt(key="key-2"), HOUR, "spec, substitution inputs or build"),
        (_verified(), _attempt(digest="digest-2"), HOUR, "build output changed"),
        (_verified(), _attempt(force=True), HOUR, "spec.force"),
        (_verified(), _attempt(remote=True), HOUR, "remote cluster"),
        (_verified(), _attempt(now=1000.0 + HOUR), HOUR, "3600s ago (interval 3600s)"),
        (_verified(), _attempt(), 0.0, "every reconcile"),
    ],
    ids=[
        "controller-start",
        "requested",
        "new-revision",
        "spec-or-inputs",
        "build-output",
        "force",
        "remote",
        "interval-elapsed",
        "interval-zero",
    ],
)
def test_anything_the_last_verification_does_not_cover_forces_a_full_one(
    last: Verified | None, attempt: Attempt, interval: float, expected: str
) -> None:
    reason = _decide(last, attempt, interval)
    assert reason is not None and expected in reason, reason


def test_a_handled_request_is_not_asked_for_again() -> None:
    # The requestedAt value that forced the last full verification stays on the object.
    last = _verified(requested_at="2026-12-03T15:00:00Z")
    assert _decide(last, _attempt(requested_at="2026-12-03T15:00:00Z")) is None


def test_without_a_watch_or_a_token_every_reconcile_is_full() -> None:
    assert full_verification_reason(_verified(), _attempt(), interval=HOUR, watch=None) == (
        "no inventory watch"
    )
    assert _decide(_verified(token=None), _attempt()) == "no inventory watch"


def test_the_watch_is_asked_about_the_verified_kinds_and_its_answer_stands() -> None:
    asked: list[set[WatchedKind]] = []

    def watch(token: Any, kinds: set[WatchedKind]) -> str | None:
        asked.append(kinds)
        return "the watch of v1 ConfigMap restarted since the last full verification"

    ledger = ChangeLedger(_owner_of, silence_limit=130.0, clock=lambda: 0.0)
    reason = full_verification_reason(
        _verified(ledger=ledger), _attempt(), interval=HOUR, watch=watch
    )
    assert reason == "the watch of v1 ConfigMap restarted since the last full verification"
    assert asked == [{CONFIG_MAPS, DEPLOYMENTS}]


def test_a_dry_run_that_changed_something_vouches_for_nothing() -> None:
    for action in (Action.CREATED, Action.CONFIGURED, Action.DELETED):
        assert (
            Verified.of(
                _changeset(action),
                key="k",
                digest="d",
                revision="r",
                requested_at=None,
                at=0.0,
                token=None,
            )
            is None
        )


# -- the ledger ---------------------------------------------------------------------------


def _owner_of(obj: Any) -> tuple[str, str] | None:
    labels = obj["metadata"].get("labels") or {}
    owner = labels.get("owner")
    return ("apps", owner) if owner else None


def _config_map(data: str = "fast", owner: str = "web", **meta: Any) -> dict[str, Any]:
    return {
        "apiVersion": "v1",
        "kind": "ConfigMap",
        "metadata": {
            "name": "settings",
            "namespace": "apps",
            "labels": {"owner": owner},
            "resourceVersion": "1",
            **meta,
        },
        "data": {"mode": data},
    }


class Clock:
    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


def _ledger() -> tuple[ChangeLedger, Clock]:
    clock = Clock()
    ledger = ChangeLedger(_owner_of, silence_limit=130.0, clock=clock)
    ledger.listed(CONFIG_MAPS, [_config_map()])
    ledger.listed(DEPLOYMENTS, [])
    return ledger, clock


def test_a_connected_quiet_watch_vouches_and_status_changes_do_not_count() -> None:
    ledger, clock = _ledger()
    token = ledger.token(OWNER)
    assert ledger.broken(token, OWNER, {CONFIG_MAPS, DEPLOYMENTS}) is None
    # A status write, a new resourceVersion, a status managedFields entry: not drift.
    updated = _config_map(
        resourceVersion="2",
        managedFields=[{"manager": "kcm", "subresource": "status", "time": "t"}],
    )
    updated["status"] = {"ready": True}
    ledger.record(CONFIG_MAPS, "MODIFIED", updated)
    ledger.record(CONFIG_MAPS, "BOOKMARK", {"metadata": {"resourceVersion": "3"}})
    clock.now = 100.0
    ledger.heard(DEPLOYMENTS)
    assert ledger.broken(token, OWNER, {CONFIG_MAPS, DEPLOYMENTS}) is None
    assert len(ledger) == 1


@pytest.mark.parametrize(
    ("event", "obj"),
    [
        ("MODIFIED", _config_map("slow")),
        ("MODIFIED", _config_map(annotations={"note": "edited"})),
        ("DELETED", _config_map()),
        ("ADDED", {**_config_map(), "metadata": {**_config_map()["metadata"], "name": "new"}}),
        # Relabelled to another owner: it left this one.
        ("MODIFIED", _config_map(owner="other")),
    ],
    ids=["data", "annotation", "deleted", "added", "relabelled"],
)
def test_any_change_to_an_owned_object_breaks_the_token(event: str, obj: dict[str, Any]) -> None:
    ledger, _ = _ledger()
    token = ledger.token(OWNER)
    ledger.record(CONFIG_MAPS, event, obj)
    assert ledger.broken(token, OWNER, {CONFIG_MAPS}) == (
        "an applied object changed since the last full verification"
    )


def test_another_owners_change_leaves_the_token_alone() -> None:
    ledger, _ = _ledger()
    token = ledger.token(OWNER)
    other = _config_map("slow", owner="other")
    other["metadata"]["name"] = "theirs"
    ledger.record(CONFIG_MAPS, "ADDED", other)
    assert ledger.broken(token, OWNER, {CONFIG_MAPS}) is None


def test_a_gap_a_disconnect_an_unwatched_kind_or_silence_break_the_token() -> None:
    ledger, clock = _ledger()
    token = ledger.token(OWNER)
    secrets = WatchedKind("v1", "Secret")
    assert ledger.broken(token, OWNER, {secrets}) == "the watch of v1 Secret is not running"
    ledger.listed(secrets, [])
    assert ledger.broken(token, OWNER, {secrets}) == (
        "the watch of v1 Secret was not running at the last full verification"
    )

    # A relist (410 Gone, a reconnect) may have missed events: a new connection.
    ledger.listed(CONFIG_MAPS, [_config_map()])
    assert ledger.broken(token, OWNER, {CONFIG_MAPS}) == (
        "the watch of v1 ConfigMap restarted since the last full verification"
    )
    token = ledger.token(OWNER)
    ledger.disconnected(CONFIG_MAPS)
    assert ledger.broken(token, OWNER, {CONFIG_MAPS}) == "the watch of v1 ConfigMap is not running"

    ledger.listed(CONFIG_MAPS, [_config_map()])
    token = ledger.token(OWNER)
    clock.now = 131.0
    assert ledger.broken(token, OWNER, {CONFIG_MAPS}) == (
        "the watch of v1 ConfigMap has been silent for 131s"
    )


def test_the_fingerprint_ignores_bookkeeping_only() -> None:
    base = _config_map(managedFields=[{"manager": "hw", "operation": "Apply", "time": "t1"}])
    later = _config_map(
        resourceVersion="9",
        managedFields=[
            {"manager": "hw", "operation": "Apply", "time": "t2"},
            {"manager": "kcm", "operation": "Update", "subresource": "status", "time": "t2"},
        ],
    )
    assert fingerprint(base) == fingerprint(later)
    taken = _config_map(
        managedFields=[
            {"manager": "hw", "operation": "Apply", "time": "t1"},
            {"manager": "kubectl-edit", "operation": "Update", "time": "t3"},
        ]
    )
    assert fingerprint(base) != fingerprint(taken), "a new owner of a field is a change"
