"""Object identity and the inventory of applied objects, in Flux's formats.

An object is identified by group, kind, namespace and name (not version: the
same object is reachable at several versions). Flux stores each one in
`status.inventory.entries` as `{id: "<namespace>_<name>_<group>_<kind>",
v: "<version>"}`; colons in RBAC names are written as `__`. Cluster-scoped
objects have an empty namespace and core objects an empty group, e.g.
`_admin_rbac.authorization.k8s.io_ClusterRole` or `default_web__Service`.

Objects sort in Flux's reconcile order (CRDs and Namespaces first, webhooks
last), so the inventory and change sets list objects the way Flux does.
"""

from __future__ import annotations

import dataclasses
import itertools
from collections.abc import Iterable, Iterator, Mapping, Sequence
from typing import Any, Protocol, TypeVar

from controllers.toolkit.apply.resources import ResourceClient, ResourceInfo, split_api_version

_SEPARATOR = "_"
_COLON = "__"
_RBAC_GROUP = "rbac.authorization.k8s.io"
_RBAC_KINDS = frozenset({"Role", "ClusterRole", "RoleBinding", "ClusterRoleBinding"})

# Flux's ssa.ReconcileOrder: kinds applied first (in this order) and last.
_FIRST = (
    "CustomResourceDefinition",
    "Namespace",
    "ClusterRole",
    "ClusterClass",
    "RuntimeClass",
    "PriorityClass",
    "StorageClass",
    "VolumeSnapshotClass",
    "IngressClass",
    "GatewayClass",
    "ClusterRoleBinding",
    "ResourceQuota",
    "ServiceAccount",
    "Role",
    "RoleBinding",
    "ConfigMap",
    "Secret",
    "Service",
    "LimitRange",
    "Deployment",
    "StatefulSet",
    "CronJob",
    "PodDisruptionBudget",
)
_LAST = ("MutatingWebhookConfiguration", "ValidatingWebhookConfiguration")
_RANK = {kind: i - len(_FIRST) for i, kind in enumerate(_FIRST)} | {
    kind: i + 1 for i, kind in enumerate(_LAST)
}


class InventoryError(ValueError):
    """An inventory entry or object cannot be read; the message says which."""


def kind_rank(kind: str) -> int:
    """Where a kind goes in the reconcile order: negative first, 0 middle, positive last."""
    return _RANK.get(kind, 0)


@dataclasses.dataclass(frozen=True, order=False)
class ObjectId:
    """Group, kind, namespace and name of an object."""

    group: str
    kind: str
    namespace: str
    name: str

    @classmethod
    def of(cls, obj: Mapping[str, Any]) -> ObjectId:
        """The id of an object (a dict as the API returns it)."""
        meta = obj.get("metadata") or {}
        group, _ = split_api_version(str(obj.get("apiVersion") or ""))
        return cls(
            group=group,
            kind=str(obj.get("kind") or ""),
            namespace=str(meta.get("namespace") or ""),
            name=str(meta.get("name") or ""),
        )

    @classmethod
    def parse(cls, text: str) -> ObjectId:
        """Read Flux's `<namespace>_<name>_<group>_<kind>` form."""
        namespace, sep, rest = text.partition(_SEPARATOR)
        rest, sep2, kind = rest.rpartition(_SEPARATOR)
        name, sep3, group = rest.rpartition(_SEPARATOR)
        if not (sep and sep2 and sep3) or not name or not kind:
            raise InventoryError(
                f"invalid inventory id {text!r}: expected <namespace>_<name>_<group>_<kind>"
            )
        return cls(group=group, kind=kind, namespace=namespace, name=name.replace(_COLON, ":"))

    def format(self) -> str:
        """Flux's inventory id."""
        name = self.name
        if self.group == _RBAC_GROUP and self.kind in _RBAC_KINDS:
            name = name.replace(":", _COLON)
        return _SEPARATOR.join((self.namespace, name, self.group, self.kind))

    @property
    def subject(self) -> str:
        """`Kind/namespace/name` (`Kind/name` when cluster-scoped), as Flux prints objects."""
        if self.namespace:
            return f"{self.kind}/{self.namespace}/{self.name}"
        return f"{self.kind}/{self.name}"

    def sort_key(self) -> tuple[int, str, str, str, str]:
        return (kind_rank(self.kind), self.group, self.kind, self.namespace, self.name)

    def __str__(self) -> str:
        return self.subject


@dataclasses.dataclass(frozen=True)
class InventoryEntry:
    """One object of an inventory: its id and the version it was applied at."""

    id: ObjectId
    version: str

    @classmethod
    def of(cls, obj: Mapping[str, Any]) -> InventoryEntry:
        _, version = split_api_version(str(obj.get("apiVersion") or ""))
        return cls(ObjectId.of(obj), version)

    @property
    def api_version(self) -> str:
        return f"{self.id.group}/{self.version}" if self.id.group else self.version

    def to_status(self) -> dict[str, str]:
        return {"id": self.id.format(), "v": self.version}

    def reference(self) -> dict[str, Any]:
        """A minimal object (apiVersion, kind, metadata) naming this entry."""
        metadata = {"name": self.id.name}
        if self.id.namespace:
            metadata["namespace"] = self.id.namespace
        return {"apiVersion": self.api_version, "kind": self.id.kind, "metadata": metadata}


class Inventory:
    """A sorted, duplicate-free set of inventory entries (one per object id)."""

    def __init__(self, entries: Iterable[InventoryEntry] = ()) -> None:
        by_id: dict[ObjectId, InventoryEntry] = {}
        for entry in entries:
            # The latest version recorded for an object wins.
            by_id[entry.id] = entry
        self._entries = sorted(by_id.values(), key=lambda e: e.id.sort_key())
        self._by_id = {e.id: e for e in self._entries}

    @classmethod
    def from_status(cls, inventory: Mapping[str, Any] | None) -> Inventory:
        """Read `status.inventory` (`{entries: [{id, v}]}`); None or empty gives an empty one."""
        entries = []
        for index, raw in enumerate((inventory or {}).get("entries") or ()):
            if not isinstance(raw, Mapping) or not isinstance(raw.get("id"), str):
                raise InventoryError(f"status.inventory.entries[{index}]: missing id")
            entries.append(InventoryEntry(ObjectId.parse(raw["id"]), str(raw.get("v") or "")))
        return cls(entries)

    @classmethod
    def from_objects(cls, objects: Iterable[Mapping[str, Any]]) -> Inventory:
        return cls(InventoryEntry.of(obj) for obj in objects)

    def to_status(self) -> dict[str, list[dict[str, str]]]:
        """`status.inventory` as Flux writes it."""
        return {"entries": [entry.to_status() for entry in self._entries]}

    @property
    def entries(self) -> Sequence[InventoryEntry]:
        return tuple(self._entries)

    def get(self, object_id: ObjectId) -> InventoryEntry | None:
        return self._by_id.get(object_id)

    def __contains__(self, item: object) -> bool:
        if isinstance(item, InventoryEntry):
            return item.id in self._by_id
        return item in self._by_id

    def __iter__(self) -> Iterator[InventoryEntry]:
        return iter(self._entries)

    def __len__(self) -> int:
        return len(self._entries)

    def __eq__(self, other: object) -> bool:
        return isinstance(other, Inventory) and self._entries == other._entries

    def __repr__(self) -> str:
        return f"Inventory({[e.id.format() for e in self._entries]!r})"

    def stale(self, new: Inventory) -> list[InventoryEntry]:
        """Entries of this (old) inventory that `new` no longer has: what pruning deletes."""
        return [entry for entry in self._entries if entry.id not in new._by_id]

    def merge(self, extra: Iterable[InventoryEntry]) -> Inventory:
        """This inventory plus `extra` entries it lacks (e.g. objects a prune failed to delete)."""
        added = [entry for entry in extra if entry.id not in self._by_id]
        return Inventory([*self._entries, *added])


class _HasId(Protocol):
    @property
    def id(self) -> ObjectId: ...


ItemT = TypeVar("ItemT", bound=_HasId)


def by_kind(items: Iterable[ItemT]) -> list[list[ItemT]]:
    """`items` cut into runs of one group and kind, in their order (apply and prune stages)."""
    return [list(run) for _, run in itertools.groupby(items, key=lambda i: (i.id.group, i.id.kind))]


async def resource_of(client: ResourceClient, entry: InventoryEntry) -> ResourceInfo:
    """Where `entry`'s kind is served: its recorded version, else the group's preferred one."""
    version = entry.version or await client.preferred_version(entry.id.group)
    api_version = f"{entry.id.group}/{version}" if entry.id.group else version
    return await client.resource_for(api_version, entry.id.kind)
