"""Declared indexes on the watch cache: dependents found by key, kept current on every event."""

from __future__ import annotations

from collections.abc import Iterable

import pytest

from controllers.toolkit.runtime.reconciler import Object, ObjectRef, Resource, WatchCache

RESOURCE = Resource("kustomize.toolkit.fluxcd.io", "v1", "kustomizations", "Kustomization")


def _ks(name: str, source: str, *depends_on: str) -> Object:
    return {
        "metadata": {"name": name, "namespace": "ns"},
        "spec": {"sourceRef": {"name": source}, "dependsOn": [{"name": d} for d in depends_on]},
    }


def _by_source(obj: Object) -> Iterable[str]:
    return [obj["spec"]["sourceRef"]["name"]]


def _by_dependency(obj: Object) -> Iterable[str]:
    return [d["name"] for d in obj["spec"]["dependsOn"]]


def _names(objects: list[Object]) -> list[str]:
    return [o["metadata"]["name"] for o in objects]


def test_objects_are_found_by_their_keys_and_move_when_they_change() -> None:
    cache = WatchCache(RESOURCE)
    cache.add_index("source", _by_source)
    cache.observe("ADDED", _ks("a", "repo1"))
    cache.observe("ADDED", _ks("b", "repo1"))
    cache.observe("ADDED", _ks("c", "repo2"))
    assert _names(cache.indexed("source", "repo1")) == ["a", "b"]
    assert _names(cache.indexed("source", "repo2")) == ["c"]
    assert cache.indexed("source", "nothing") == []

    cache.observe("MODIFIED", _ks("b", "repo2"))
    assert _names(cache.indexed("source", "repo1")) == ["a"]
    assert _names(cache.indexed("source", "repo2")) == ["b", "c"]

    cache.observe("DELETED", _ks("a", "repo1"))
    assert cache.indexed("source", "repo1") == []


def test_an_object_can_be_under_several_keys() -> None:
    cache = WatchCache(RESOURCE)
    cache.add_index("dependency", _by_dependency)
    cache.observe("ADDED", _ks("app", "repo", "infra", "crds"))
    assert _names(cache.indexed("dependency", "infra")) == ["app"]
    assert _names(cache.indexed("dependency", "crds")) == ["app"]
    cache.observe("MODIFIED", _ks("app", "repo", "crds"))
    assert cache.indexed("dependency", "infra") == []


def test_an_index_declared_late_covers_what_is_already_cached() -> None:
    cache = WatchCache(RESOURCE)
    cache.observe("ADDED", _ks("a", "repo1"))
    cache.add_index("source", _by_source)
    assert _names(cache.indexed("source", "repo1")) == ["a"]


def test_observers_see_the_index_already_updated() -> None:
    cache = WatchCache(RESOURCE)
    cache.add_index("source", _by_source)
    seen: list[list[str]] = []
    cache.add_observer(lambda old, new: seen.append(_names(cache.indexed("source", "repo1"))))
    cache.observe("ADDED", _ks("a", "repo1"))
    cache.observe("DELETED", _ks("a", "repo1"))
    assert seen == [["a"], []]


def test_our_own_cache_updates_reindex() -> None:
    cache = WatchCache(RESOURCE)
    cache.add_index("source", _by_source)
    cache.observe("ADDED", _ks("a", "repo1"))
    cache.update(ObjectRef("ns", "a"), lambda o: o["spec"]["sourceRef"].update(name="repo2"))
    assert _names(cache.indexed("source", "repo2")) == ["a"]
    assert cache.indexed("source", "repo1") == []


def test_unknown_and_duplicate_indexes_are_refused() -> None:
    cache = WatchCache(RESOURCE)
    cache.add_index("source", _by_source)
    with pytest.raises(ValueError, match="already declared"):
        cache.add_index("source", _by_source)
    with pytest.raises(KeyError, match="no index"):
        cache.indexed("other", "x")


def test_the_cache_keeps_no_managed_fields_and_leaves_the_event_alone() -> None:
    cache = WatchCache(RESOURCE)
    event = _ks("a", "repo")
    event["metadata"]["managedFields"] = [{"manager": "kubectl", "operation": "Apply"}]
    event["metadata"]["labels"] = {"team": "x"}
    cache.observe("ADDED", event)
    cached = cache.peek(ObjectRef("ns", "a"))
    assert cached is not None
    assert cached["metadata"] == {"name": "a", "namespace": "ns", "labels": {"team": "x"}}
    assert cached["spec"] == event["spec"] and cached["spec"] is not event["spec"]
    # The event itself (kopf's body) is untouched.
    assert event["metadata"]["managedFields"] == [{"manager": "kubectl", "operation": "Apply"}]
