from __future__ import annotations

import pytest

from controllers.toolkit.apply.inventory import (
    Inventory,
    InventoryEntry,
    InventoryError,
    ObjectId,
    kind_rank,
)


def deployment(name: str, namespace: str = "default") -> dict[str, object]:
    return {
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "metadata": {"name": name, "namespace": namespace},
    }


@pytest.mark.parametrize(
    ("object_id", "text"),
    [
        (ObjectId("apps", "Deployment", "default", "podinfo"), "default_podinfo_apps_Deployment"),
        (ObjectId("", "Service", "default", "podinfo"), "default_podinfo__Service"),
        (ObjectId("", "Namespace", "", "apps"), "_apps__Namespace"),
        (
            ObjectId("rbac.authorization.k8s.io", "ClusterRole", "", "system:reader"),
            "_system__reader_rbac.authorization.k8s.io_ClusterRole",
        ),
        (
            ObjectId("apiextensions.k8s.io", "CustomResourceDefinition", "", "foos.example.com"),
            "_foos.example.com_apiextensions.k8s.io_CustomResourceDefinition",
        ),
    ],
)
def test_ids_format_and_parse_like_flux(object_id: ObjectId, text: str) -> None:
    assert object_id.format() == text
    assert ObjectId.parse(text) == object_id


def test_colons_are_transcoded_only_for_rbac_kinds() -> None:
    # cli-utils transcodes ':' for RBAC kinds only; other kinds cannot have one.
    assert ObjectId("", "ConfigMap", "ns", "a:b").format() == "ns_a:b__ConfigMap"


@pytest.mark.parametrize("text", ["", "nounderscore", "ns_name", "ns__Kind", "_x_"])
def test_malformed_ids_are_refused_naming_the_id(text: str) -> None:
    with pytest.raises(InventoryError, match="invalid inventory id"):
        ObjectId.parse(text)


def test_id_of_an_object_and_its_subject() -> None:
    object_id = ObjectId.of(deployment("web", "apps"))
    assert object_id == ObjectId("apps", "Deployment", "apps", "web")
    assert object_id.subject == "Deployment/apps/web"
    cluster = ObjectId.of({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": "x"}})
    assert cluster.subject == "Namespace/x"


def test_inventory_round_trips_flux_status_format() -> None:
    status = {
        "entries": [
            {"id": "default_podinfo_apps_Deployment", "v": "v1"},
            {"id": "default_podinfo__Service", "v": "v1"},
            {"id": "_default__Namespace", "v": "v1"},
        ]
    }
    inventory = Inventory.from_status(status)
    # Sorted in Flux's reconcile order: Namespace, Service, Deployment.
    assert inventory.to_status() == {
        "entries": [
            {"id": "_default__Namespace", "v": "v1"},
            {"id": "default_podinfo__Service", "v": "v1"},
            {"id": "default_podinfo_apps_Deployment", "v": "v1"},
        ]
    }


def test_inventory_is_deduplicated_and_empty_status_is_empty() -> None:
    entry = InventoryEntry.of(deployment("web"))
    assert len(Inventory([entry, entry])) == 1
    assert len(Inventory.from_status(None)) == 0
    assert Inventory.from_status({}).to_status() == {"entries": []}


def test_bad_status_entries_are_refused_with_their_index() -> None:
    with pytest.raises(InventoryError, match=r"entries\[1\]"):
        Inventory.from_status({"entries": [{"id": "a_b__C", "v": "v1"}, {"v": "v1"}]})


def test_stale_is_old_minus_new() -> None:
    old = Inventory.from_objects([deployment("a"), deployment("b"), deployment("c")])
    new = Inventory.from_objects([deployment("b"), deployment("d")])
    assert [e.id.name for e in old.stale(new)] == ["a", "c"]
    assert new.stale(new) == []


def test_stale_ignores_version_changes() -> None:
    old = Inventory([InventoryEntry(ObjectId("autoscaling", "HPA", "ns", "x"), "v1")])
    new = Inventory([InventoryEntry(ObjectId("autoscaling", "HPA", "ns", "x"), "v2")])
    assert old.stale(new) == []


def test_merge_adds_survivors_once() -> None:
    inventory = Inventory.from_objects([deployment("a")])
    survivor = InventoryEntry.of(deployment("b"))
    merged = inventory.merge([survivor, InventoryEntry.of(deployment("a"))])
    assert [e.id.name for e in merged] == ["a", "b"]


def test_reconcile_order() -> None:
    assert kind_rank("CustomResourceDefinition") < kind_rank("Namespace") < kind_rank("Service")
    assert kind_rank("Deployment") < kind_rank("SomethingElse") == 0
    assert kind_rank("ValidatingWebhookConfiguration") > 0
    ids = [
        ObjectId("admissionregistration.k8s.io", "ValidatingWebhookConfiguration", "", "w"),
        ObjectId("example.com", "Foo", "ns", "f"),
        ObjectId("apps", "Deployment", "ns", "d"),
        ObjectId("", "Namespace", "", "ns"),
    ]
    assert [i.kind for i in sorted(ids, key=ObjectId.sort_key)] == [
        "Namespace",
        "Deployment",
        "Foo",
        "ValidatingWebhookConfiguration",
    ]


def test_entry_reference_names_the_object() -> None:
    entry = InventoryEntry(ObjectId("apps", "Deployment", "ns", "web"), "v1")
    assert entry.api_version == "apps/v1"
    assert entry.reference() == {
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "metadata": {"name": "web", "namespace": "ns"},
    }
    core = InventoryEntry(ObjectId("", "Namespace", "", "ns"), "v1")
    assert core.reference() == {"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": "ns"}}
