"""Applying a set of objects and keeping them as applied: the toolkit's apply wing.

- `resources`: raw, counted access to any resource (`ResourceClient`);
- `inventory`: object identity and Flux's inventory format;
- `ssa`: server-side apply of a set, in stages, with drift-aware dry-runs;
- `diff`: field-level changes, secret values masked;
- `ignore`: JSON-pointer paths left out of drift detection and apply;
- `prune`: deleting what left the set, and the deletion policies;
- `health`: kstatus health and a bounded, cancellable wait;
- `inventory_watch`: watches on applied kinds that report foreign changes, and
  the ledger of what they saw;
- `verification`: when a no-op reconcile may skip its dry-run of everything.

Nothing here knows which controller calls it: the owner (field manager and
label group) is always passed in. This wing never imports `toolkit.runtime`.
"""

from __future__ import annotations

from controllers.toolkit.apply.health import (
    CustomStatus,
    HealthOutcome,
    HealthResult,
    ObjectStatus,
    Status,
    wait_for_health,
)
from controllers.toolkit.apply.ignore import IgnoreRule, Selector
from controllers.toolkit.apply.inventory import Inventory, InventoryEntry, ObjectId, by_kind
from controllers.toolkit.apply.inventory_watch import ForeignChange, InventoryWatcher, WatchedKind
from controllers.toolkit.apply.prune import (
    DeletionPolicy,
    PruneOptions,
    PruneResult,
    delete_all,
    prune,
)
from controllers.toolkit.apply.resources import (
    ApiError,
    NoMatchError,
    ResourceClient,
    ResourceInfo,
    split_api_version,
)
from controllers.toolkit.apply.ssa import (
    Action,
    ApplyError,
    ApplyOptions,
    ChangeSet,
    ChangeSetEntry,
    apply_all,
    label_selector,
    owner_labels,
)

__all__ = [
    "Action",
    "ApiError",
    "ApplyError",
    "ApplyOptions",
    "ChangeSet",
    "ChangeSetEntry",
    "CustomStatus",
    "DeletionPolicy",
    "ForeignChange",
    "HealthOutcome",
    "HealthResult",
    "IgnoreRule",
    "Inventory",
    "InventoryEntry",
    "InventoryWatcher",
    "NoMatchError",
    "ObjectId",
    "ObjectStatus",
    "PruneOptions",
    "PruneResult",
    "ResourceClient",
    "ResourceInfo",
    "Selector",
    "Status",
    "WatchedKind",
    "apply_all",
    "by_kind",
    "delete_all",
    "label_selector",
    "owner_labels",
    "prune",
    "split_api_version",
    "wait_for_health",
]
