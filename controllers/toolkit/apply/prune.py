"""Deleting what left git: prune of stale objects and the deletion policies.

An object is deleted only when the live object still carries every owner
label with the same value (so an object another Kustomization, or a person,
took over is left alone), and never when it is annotated
`<group>/prune: disabled`, `<group>/reconcile: disabled` or
`<group>/ssa: Ignore`. Deletion propagates in the background, as Flux's does.
Objects already gone count as deleted. Objects whose deletion failed are
returned as survivors so the caller keeps them in the inventory and tries
again next time.

`delete_all` serves the Kustomization's finalizer (`spec.deletionPolicy`).
"""

from __future__ import annotations

import asyncio
import dataclasses
import enum
import time
from collections.abc import Mapping, Sequence
from typing import Any

from controllers.toolkit.apply.inventory import InventoryEntry, ObjectId, by_kind, resource_of
from controllers.toolkit.apply.resources import ApiError, NoMatchError, ResourceClient
from controllers.toolkit.apply.ssa import (
    DISABLED,
    SSA_IGNORE,
    Action,
    ChangeSet,
    ChangeSetEntry,
    marked,
)


class DeletionPolicy(enum.StrEnum):
    """Kustomization `spec.deletionPolicy`."""

    MIRROR_PRUNE = "MirrorPrune"
    DELETE = "Delete"
    WAIT_FOR_TERMINATION = "WaitForTermination"
    ORPHAN = "Orphan"


@dataclasses.dataclass(frozen=True)
class PruneOptions:
    owner_labels: Mapping[str, str]
    # The owner's annotation group (`<group>/prune: disabled`); the caller's, no default.
    owner_group: str
    propagation: str = "Background"

    def excluded(self, live: Mapping[str, Any]) -> bool:
        group = self.owner_group
        return (
            marked(live, f"{group}/prune", DISABLED)
            or marked(live, f"{group}/reconcile", DISABLED)
            or marked(live, f"{group}/ssa", SSA_IGNORE)
        )

    def owned(self, live: Mapping[str, Any]) -> bool:
        labels = (live.get("metadata") or {}).get("labels") or {}
        return all(labels.get(key) == value for key, value in self.owner_labels.items())


@dataclasses.dataclass
class PruneResult:
    """What happened to each stale object; `failures` name those still there."""

    changeset: ChangeSet
    survivors: list[InventoryEntry]
    failures: list[str]
    # Deleted objects still present when a WaitForTermination wait gave up.
    not_terminated: list[ObjectId] = dataclasses.field(default_factory=list)

    @property
    def ok(self) -> bool:
        return not self.failures

    @property
    def message(self) -> str:
        return "; ".join(self.failures)


async def _delete_one(
    client: ResourceClient, entry: InventoryEntry, options: PruneOptions
) -> tuple[Action, str]:
    subject = entry.id.subject
    try:
        info = await resource_of(client, entry)
    except NoMatchError:
        # The kind is no longer served (its CRD is gone), so neither is the object.
        return Action.DELETED, ""
    except ApiError as exc:
        return Action.UNKNOWN, f"{subject} query failed: {exc}"
    try:
        live = await client.get(info, entry.id.namespace, entry.id.name)
        if live is None:
            return Action.DELETED, ""
        if not options.owned(live) or options.excluded(live):
            return Action.SKIPPED, ""
        uid = str((live.get("metadata") or {}).get("uid") or "") or None
        await client.delete(
            info, entry.id.namespace, entry.id.name, propagation=options.propagation, uid=uid
        )
    except ApiError as exc:
        return Action.UNKNOWN, f"{subject} delete failed: {exc}"
    return Action.DELETED, ""


async def prune(
    client: ResourceClient, stale: Sequence[InventoryEntry], options: PruneOptions
) -> PruneResult:
    """Delete `stale` objects we still own, in reverse reconcile order (webhooks first)."""
    ordered = sorted(stale, key=lambda e: e.id.sort_key(), reverse=True)
    changeset = ChangeSet()
    survivors: list[InventoryEntry] = []
    failures: list[str] = []
    # Kind by kind, like the apply, so e.g. a CRD goes after its custom resources.
    for batch in by_kind(ordered):
        results = await asyncio.gather(*(_delete_one(client, e, options) for e in batch))
        for entry, (action, failure) in zip(batch, results, strict=True):
            changeset.add(ChangeSetEntry(entry.id, entry.version, action))
            if failure:
                failures.append(failure)
                survivors.append(entry)
    return PruneResult(changeset, survivors, failures)


def should_delete(policy: str, prune_enabled: bool) -> bool:
    """Whether the finalizer deletes the inventory (Flux: MirrorPrune follows `spec.prune`)."""
    if policy in ("", DeletionPolicy.MIRROR_PRUNE):
        return prune_enabled
    return policy in (DeletionPolicy.DELETE, DeletionPolicy.WAIT_FOR_TERMINATION)


async def wait_for_termination(
    client: ResourceClient,
    entries: Sequence[InventoryEntry],
    *,
    timeout: float,
    poll_interval: float = 2.0,
) -> list[ObjectId]:
    """Wait until `entries` are gone; returns those still present at the timeout."""
    deadline = time.monotonic() + timeout
    pending = list(entries)
    while pending:

        async def present(entry: InventoryEntry) -> bool:
            try:
                info = await resource_of(client, entry)
                return await client.get(info, entry.id.namespace, entry.id.name) is not None
            except NoMatchError:
                return False
            except ApiError:
                return True

        still = await asyncio.gather(*(present(e) for e in pending))
        pending = [e for e, here in zip(pending, still, strict=True) if here]
        if not pending or time.monotonic() >= deadline:
            break
        await asyncio.sleep(min(poll_interval, max(0.0, deadline - time.monotonic())))
    return [entry.id for entry in pending]


async def delete_all(
    client: ResourceClient,
    inventory: Sequence[InventoryEntry],
    policy: str,
    options: PruneOptions,
    *,
    prune_enabled: bool = False,
    timeout: float = 300.0,
    poll_interval: float = 2.0,
) -> PruneResult:
    """Apply the deletion policy to the whole inventory (the Kustomization is being deleted).

    Orphan (and MirrorPrune without prune) deletes nothing. WaitForTermination
    then waits up to `timeout` for the deleted objects to disappear; objects
    still there are listed in `not_terminated` (Flux reports them and lets the
    finalizer go).
    """
    if not inventory or not should_delete(policy, prune_enabled):
        return PruneResult(ChangeSet(), [], [])
    result = await prune(client, inventory, options)
    if policy == DeletionPolicy.WAIT_FOR_TERMINATION:
        deleted = [
            InventoryEntry(entry.id, entry.version)
            for entry in result.changeset
            if entry.action is Action.DELETED
        ]
        result.not_terminated = await wait_for_termination(
            client, deleted, timeout=timeout, poll_interval=poll_interval
        )
    return result
