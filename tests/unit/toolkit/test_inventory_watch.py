from __future__ import annotations

from typing import Any

from controllers.toolkit.apply.inventory import ObjectId
from controllers.toolkit.apply.inventory_watch import ExpectedDeletions, is_foreign, last_manager

MANAGER = "headwater-kustomize"


def _obj(*entries: tuple[str, str, str | None]) -> dict[str, Any]:
    managed = []
    for manager, time, subresource in entries:
        entry: dict[str, Any] = {"manager": manager, "time": time, "operation": "Update"}
        if subresource:
            entry["subresource"] = subresource
        managed.append(entry)
    return {"metadata": {"managedFields": managed}}


def test_our_own_apply_coming_back_is_not_foreign() -> None:
    obj = _obj((MANAGER, "2026-11-21T10:00:00Z", None))
    assert last_manager(obj) == MANAGER
    assert not is_foreign("MODIFIED", obj, MANAGER)


def test_an_edit_by_someone_else_is_foreign_and_deletion_always_is() -> None:
    obj = _obj(
        (MANAGER, "2026-11-21T10:00:00Z", None), ("kubectl-edit", "2026-11-21T10:05:00Z", None)
    )
    assert is_foreign("MODIFIED", obj, MANAGER)
    assert is_foreign("DELETED", _obj((MANAGER, "2026-11-21T10:00:00Z", None)), MANAGER)
    assert not is_foreign("ADDED", obj, MANAGER)


def test_status_updates_by_the_controller_manager_are_not_drift() -> None:
    obj = _obj(
        (MANAGER, "2026-11-21T10:00:00Z", None),
        ("kube-controller-manager", "2026-11-21T10:00:05Z", "status"),
    )
    assert last_manager(obj) == MANAGER
    assert not is_foreign("MODIFIED", obj, MANAGER)
    # A scale by kubectl goes through the scale subresource: that is drift.
    scaled = _obj(
        (MANAGER, "2026-11-21T10:00:00Z", None), ("kubectl", "2026-11-21T10:01:00Z", "scale")
    )
    assert is_foreign("MODIFIED", scaled, MANAGER)


def test_an_edit_in_the_same_second_as_our_apply_is_foreign() -> None:
    # managedFields times have one-second resolution: a kubectl patch right
    # after our apply carries the same time, and must not pass for ours.
    obj = _obj(
        (MANAGER, "2026-11-21T10:00:00Z", None), ("kubectl-patch", "2026-11-21T10:00:00Z", None)
    )
    assert last_manager(obj, MANAGER) == "kubectl-patch"
    assert is_foreign("MODIFIED", obj, MANAGER)
    reordered = _obj(
        ("kubectl-patch", "2026-11-21T10:00:00Z", None), (MANAGER, "2026-11-21T10:00:00Z", None)
    )
    assert is_foreign("MODIFIED", reordered, MANAGER)


def test_an_announced_deletion_is_taken_once_and_forgotten_after_its_ttl() -> None:
    now = [100.0]
    expected = ExpectedDeletions(ttl=60.0, clock=lambda: now[0])
    pruned = ObjectId("", "ConfigMap", "apps", "settings")
    other = ObjectId("", "ConfigMap", "apps", "other")
    expected.expect([pruned])

    assert not expected.take(other), "a deletion nobody announced is someone else's"
    assert expected.take(pruned)
    assert not expected.take(pruned), "recreated and deleted again: that one is not ours"

    expected.expect([pruned])
    now[0] += 61.0
    expected.expect([other])
    assert len(expected) == 1, "expired announcements are dropped"
    assert not expected.take(pruned), "an announcement that never came true expires"
    expected.expect([pruned])
    now[0] += 61.0
    assert not expected.take(pruned), "an expired one is not taken even before it is dropped"
