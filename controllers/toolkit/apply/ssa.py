"""Server-side apply of a set of objects, the way Flux's ssa package does it.

`apply_all` takes the built objects and makes the cluster match them:

1. Every object is checked before anything is written: it must name its
   apiVersion, kind and name, its kind must be served (or defined by a CRD in
   the same set), namespaced objects need a namespace, and no object may
   appear twice.
2. Objects are normalized as Flux does (owner labels added, server-managed
   metadata and status dropped, port protocols defaulted, a Secret's
   stringData folded into data) and applied in stages: CRDs, Namespaces and
   ClusterRoles first, waiting until they are ready (CRDs Established), then
   `*Class` kinds, then the rest.
3. In each stage every object gets a server-side dry-run apply, and the
   result is compared with the live object; only objects that are new or
   differ are applied (with ForceOwnership), so a no-op reconcile writes
   nothing. If any object of the stage is rejected, nothing of that stage is
   written, and the error names each rejected object and field.

Per-object annotations (`<group>/ssa: Override|Merge|IfNotPresent|Ignore`,
`<group>/reconcile: disabled`, `<group>/force: enabled`) and the takeover of
fields owned by kubectl follow Flux. Live objects are read with one paged
LIST per kind and namespace (filtered by the owner labels) instead of one GET
per object, so a no-op apply of N objects costs about N dry-run requests; for a
group of up to a page the dry-runs start alongside the LIST rather than after it.
"""

from __future__ import annotations

import asyncio
import base64
import binascii
import dataclasses
import enum
import json
import logging
import re
import time
from collections.abc import Awaitable, Callable, Iterable, Iterator, Mapping, Sequence
from typing import Any

from controllers.toolkit.apply import diff
from controllers.toolkit.apply import ignore as ignoring
from controllers.toolkit.apply.health import Status, wait_for_health
from controllers.toolkit.apply.inventory import Inventory, InventoryEntry, ObjectId, by_kind
from controllers.toolkit.apply.resources import (
    ApiError,
    NoMatchError,
    ResourceClient,
    ResourceInfo,
    shorten,
    split_api_version,
)

log = logging.getLogger(__name__)

# Annotation (or label) values, compared case-insensitively as Flux does.
DISABLED = "disabled"
ENABLED = "enabled"
SSA_OVERRIDE = "Override"
SSA_MERGE = "Merge"
SSA_IF_NOT_PRESENT = "IfNotPresent"
SSA_IGNORE = "Ignore"

_SERVER_METADATA = (
    "creationTimestamp",
    "resourceVersion",
    "uid",
    "generation",
    "managedFields",
    "selfLink",
    "deletionTimestamp",
    "deletionGracePeriodSeconds",
)
_IMMUTABLE = re.compile(
    r"immutable|may not change once set|updates to \S+ spec for fields other than", re.I
)
_TYPED_PATCH_PREFIX = re.compile(r"^failed to create typed patch object \([^)]*\): ")
_MAX_FAILURES_SHOWN = 10
_MAX_CAUSE = 300


def owner_labels(group: str, name: str, namespace: str) -> dict[str, str]:
    """The labels that mark an object as applied by `namespace/name` (Flux's owner labels)."""
    return {f"{group}/name": name, f"{group}/namespace": namespace}


def label_selector(labels: Mapping[str, str]) -> str:
    return ",".join(f"{key}={value}" for key, value in sorted(labels.items()))


@dataclasses.dataclass(frozen=True)
class ManagerMatch:
    """Field managers whose fields we take over (prefix match unless `exact`)."""

    name: str
    operation: str  # "Apply" or "Update"
    exact: bool = False

    def matches(self, entry: Mapping[str, Any]) -> bool:
        if entry.get("operation") != self.operation or entry.get("subresource"):
            return False
        manager = str(entry.get("manager") or "")
        return manager == self.name if self.exact else manager.startswith(self.name)


def default_takeover(field_manager: str) -> tuple[ManagerMatch, ...]:
    """Flux's list: kubectl (apply and edits), kubectl's client-side apply, our own updates."""
    return (
        ManagerMatch("kubectl", "Apply"),
        ManagerMatch("kubectl", "Update"),
        ManagerMatch("before-first-apply", "Update"),
        ManagerMatch(field_manager, "Update"),
    )


@dataclasses.dataclass(frozen=True)
class ApplyOptions:
    """How `apply_all` applies: who we are, what we own, and what force allows."""

    # Who applies: the caller's own, never a default (the toolkit serves any controller).
    field_manager: str
    # The API group of the owner's annotations (`<group>/ssa`, `<group>/force`, ...).
    owner_group: str
    # Added to every object; also how live objects are found with a LIST.
    owner_labels: Mapping[str, str] = dataclasses.field(default_factory=dict)
    # Recreate objects whose immutable fields changed.
    force: bool = False
    # Bounds for the staged wait (CRDs Established) and for recreating objects.
    wait_timeout: float = 60.0
    wait_interval: float = 2.0
    # None: Flux's defaults for this field manager / owner group.
    takeover: tuple[ManagerMatch, ...] | None = None
    remove_annotations: tuple[str, ...] | None = None
    remove_labels: tuple[str, ...] = ("fluxcd.io/sync-gc-mark",)
    # Plan only: dry-run and diff, never write.
    dry_run: bool = False
    # Paths left out of drift detection and kept at their live value (see ignore.py).
    ignore: tuple[ignoring.IgnoreRule, ...] = ()
    # Called with every object's entry once all are checked, before the first write:
    # the owner records them, so a crash mid-apply leaves no object it does not know.
    before_write: Callable[[Inventory], Awaitable[None]] | None = None

    def annotation(self, name: str) -> str:
        return f"{self.owner_group}/{name}"

    @property
    def takeover_managers(self) -> tuple[ManagerMatch, ...]:
        return self.takeover if self.takeover is not None else default_takeover(self.field_manager)

    @property
    def stripped_annotations(self) -> tuple[str, ...]:
        if self.remove_annotations is not None:
            return self.remove_annotations
        return (diff.LAST_APPLIED, f"{self.owner_group}/checksum", "fluxcd.io/sync-checksum")


class Action(enum.StrEnum):
    CREATED = "created"
    CONFIGURED = "configured"
    UNCHANGED = "unchanged"
    DELETED = "deleted"
    SKIPPED = "skipped"
    UNKNOWN = "unknown"


CHANGED = frozenset({Action.CREATED, Action.CONFIGURED, Action.DELETED})


@dataclasses.dataclass(frozen=True)
class ChangeSetEntry:
    """What happened to one object, and for `configured`, which fields changed."""

    id: ObjectId
    version: str
    action: Action
    changes: tuple[diff.FieldChange, ...] = ()
    note: str = ""
    # A plan only (ApplyOptions.dry_run): the compared views of the live object and of
    # what applying would make it (diff.comparable), for a caller that shows a diff.
    before: Mapping[str, Any] | None = dataclasses.field(default=None, compare=False, repr=False)
    after: Mapping[str, Any] | None = dataclasses.field(default=None, compare=False, repr=False)

    @property
    def subject(self) -> str:
        return self.id.subject

    def __str__(self) -> str:
        return f"{self.subject} {self.action}"

    def describe(self) -> str:
        """The Flux line, the note, and one indented line per changed field."""
        head = str(self) + (f" ({self.note})" if self.note else "")
        return "\n".join([head, *(f"  {change}" for change in self.changes)])


@dataclasses.dataclass
class ChangeSet:
    entries: list[ChangeSetEntry] = dataclasses.field(default_factory=list)

    def add(self, entry: ChangeSetEntry) -> None:
        self.entries.append(entry)

    def extend(self, entries: Iterable[ChangeSetEntry]) -> None:
        self.entries.extend(entries)

    def __iter__(self) -> Iterator[ChangeSetEntry]:
        return iter(self.entries)

    def __len__(self) -> int:
        return len(self.entries)

    def __str__(self) -> str:
        """Flux's change log: `Kind/namespace/name action`, one per line."""
        return "\n".join(str(entry) for entry in self.entries)

    def changed(self) -> list[ChangeSetEntry]:
        return [entry for entry in self.entries if entry.action in CHANGED]

    def describe(self) -> str:
        """The changed objects with their field changes (secret values masked)."""
        return "\n".join(entry.describe() for entry in self.changed())

    def by_action(self) -> dict[Action, list[str]]:
        grouped: dict[Action, list[str]] = {}
        for entry in self.entries:
            grouped.setdefault(entry.action, []).append(entry.subject)
        return grouped

    def get(self, object_id: ObjectId) -> ChangeSetEntry | None:
        for entry in self.entries:
            if entry.id == object_id:
                return entry
        return None

    def health_entries(self) -> list[InventoryEntry]:
        """What `wait` health-checks: every object but the skipped ones (Flux's rule)."""
        return [
            InventoryEntry(entry.id, entry.version)
            for entry in self.entries
            if entry.action is not Action.SKIPPED
        ]

    def to_inventory(self) -> Inventory:
        """Every object of the set (skipped and unchanged too), as Flux records them."""
        return Inventory(InventoryEntry(entry.id, entry.version) for entry in self.entries)


@dataclasses.dataclass(frozen=True)
class ObjectFailure:
    """Why one object could not be applied; `message` names the object and the fields."""

    subject: str
    message: str
    fields: tuple[str, ...] = ()


class ApplyError(Exception):
    """Some objects could not be applied. `changeset` holds what was done before."""

    def __init__(self, failures: Sequence[ObjectFailure], changeset: ChangeSet) -> None:
        self.failures = list(failures)
        self.changeset = changeset
        lines = [failure.message for failure in self.failures[:_MAX_FAILURES_SHOWN]]
        if len(self.failures) > _MAX_FAILURES_SHOWN:
            lines.append(f"… and {len(self.failures) - _MAX_FAILURES_SHOWN} more objects failed")
        super().__init__("\n".join(lines))


# -- pure helpers -------------------------------------------------------------


def marked(obj: Mapping[str, Any] | None, key: str, value: str) -> bool:
    """True when a label or annotation `key` equals `value` (case-insensitively, like Flux)."""
    if not obj:
        return False
    meta = obj.get("metadata") or {}
    for source in (meta.get("labels") or {}, meta.get("annotations") or {}):
        found = source.get(key)
        if isinstance(found, str) and found and found.casefold() == value.casefold():
            return True
    return False


def is_immutable_error(error: ApiError) -> bool:
    """The API server refused only because immutable fields would change."""
    if error.status != 422:
        return False
    if error.causes:
        return all(_IMMUTABLE.search(cause.message) for cause in error.causes)
    return bool(_IMMUTABLE.search(error.message))


def describe_error(subject: str, step: str, error: ApiError | NoMatchError) -> ObjectFailure:
    """`Kind/ns/name dry-run failed (Reason): field: what is wrong`."""
    if isinstance(error, NoMatchError):
        return ObjectFailure(subject, f"{subject} {step} failed: {error}")
    if error.causes:
        detail = "; ".join(shorten(str(cause), _MAX_CAUSE) for cause in error.causes)
    else:
        detail = shorten(_TYPED_PATCH_PREFIX.sub("", error.message))
    reason = f" ({error.reason})" if error.reason else ""
    fields = tuple(cause.field for cause in error.causes if cause.field)
    return ObjectFailure(subject, f"{subject} {step} failed{reason}: {detail}", fields)


def _json_copy(obj: Any, where: str) -> Any:
    try:
        return json.loads(json.dumps(obj))
    except (TypeError, ValueError) as exc:
        raise ValueError(f"{where}: not a JSON value: {exc}") from None


def _default_ports(pod_spec: Any) -> None:
    # Ports are keyed by (containerPort, protocol); without the protocol the
    # server-side merge misreads them (structured-merge-diff#130), so default
    # it as the API server would.
    if not isinstance(pod_spec, dict):
        return
    for field in ("containers", "initContainers"):
        for container in pod_spec.get(field) or ():
            if isinstance(container, dict):
                for port in container.get("ports") or ():
                    if isinstance(port, dict) and not port.get("protocol"):
                        port["protocol"] = "TCP"


_POD_SPEC_PATHS = {
    ("", "Pod"): ("spec",),
    ("", "ReplicationController"): ("spec", "template", "spec"),
    ("", "PodTemplate"): ("template", "spec"),
    ("apps", "Deployment"): ("spec", "template", "spec"),
    ("apps", "StatefulSet"): ("spec", "template", "spec"),
    ("apps", "DaemonSet"): ("spec", "template", "spec"),
    ("apps", "ReplicaSet"): ("spec", "template", "spec"),
    ("batch", "Job"): ("spec", "template", "spec"),
    ("batch", "CronJob"): ("spec", "jobTemplate", "spec", "template", "spec"),
}


def _dig(obj: Any, path: Sequence[str]) -> Any:
    for part in path:
        if not isinstance(obj, dict):
            return None
        obj = obj.get(part)
    return obj


def _valid_ca_bundle(value: str) -> bool:
    # Imported here: cryptography is 9 MiB of RSS that only a CA bundle needs.
    from cryptography import x509

    try:
        x509.load_pem_x509_certificates(base64.b64decode(value, validate=True))
    except (binascii.Error, ValueError):
        return False
    return True


def normalize(obj: Mapping[str, Any], labels: Mapping[str, str] | None = None) -> dict[str, Any]:
    """A copy of `obj` ready to apply (Flux's normalization), with `labels` added."""
    out: dict[str, Any] = _json_copy(obj, ObjectId.of(obj).subject)
    out.pop("status", None)
    meta = out.setdefault("metadata", {})
    for key in _SERVER_METADATA:
        meta.pop(key, None)
    if labels:
        meta["labels"] = {**(meta.get("labels") or {}), **labels}
    group, _ = split_api_version(str(out.get("apiVersion") or ""))
    kind = str(out.get("kind") or "")
    pod_path = _POD_SPEC_PATHS.get((group, kind))
    if pod_path:
        _default_ports(_dig(out, pod_path))
    if (group, kind) == ("", "Service"):
        for port in _dig(out, ("spec", "ports")) or ():
            if isinstance(port, dict) and not port.get("protocol"):
                port["protocol"] = "TCP"
    if (group, kind) == ("", "Secret"):
        # stringData is write-only, so it would show as drift forever (kubernetes#108008).
        string_data = out.get("stringData")
        if isinstance(string_data, dict) and all(isinstance(v, str) for v in string_data.values()):
            existing = out.get("data")
            data: dict[str, Any] = existing if isinstance(existing, dict) else {}
            for key, value in string_data.items():
                data[key] = base64.b64encode(value.encode("utf-8")).decode("ascii")
            out["data"] = data
            del out["stringData"]
    if (group, kind) == ("apiextensions.k8s.io", "CustomResourceDefinition"):
        # Kubernetes 1.31+ rejects an invalid conversion caBundle; Flux drops it.
        client_config = _dig(out, ("spec", "conversion", "webhook", "clientConfig"))
        bundle = client_config.get("caBundle") if isinstance(client_config, dict) else None
        if isinstance(bundle, str) and bundle and not _valid_ca_bundle(bundle):
            del client_config["caBundle"]
    return out


def merge_fields(left: Any, right: Any) -> Any:
    """The union of two managedFields `fieldsV1` sets (nested maps of path elements)."""
    if not isinstance(left, dict) or not isinstance(right, dict):
        return left if isinstance(left, dict) else right
    merged = dict(left)
    for key, value in right.items():
        merged[key] = merge_fields(merged[key], value) if key in merged else value
    return merged


def _pointer(*parts: str) -> str:
    return "/" + "/".join(p.replace("~", "~0").replace("/", "~1") for p in parts)


def without_fields(fields: Any, paths: Sequence[Sequence[str]]) -> Any:
    """A managedFields `fieldsV1` set without the fields at `paths` (map keys only).

    Parents left empty by a removal go too (an empty entry would mean "owns
    this whole field"). A path through a list index has no `f:` name and is kept.
    """
    if not isinstance(fields, dict):
        return fields
    out = dict(fields)
    for path in paths:
        if path:
            out = _without_field(out, list(path))
    return out


def _without_field(fields: dict[str, Any], path: list[str]) -> dict[str, Any]:
    key = f"f:{path[0]}"
    if key not in fields:
        return fields
    out = dict(fields)
    if len(path) == 1:
        del out[key]
        return out
    child = fields[key]
    if not isinstance(child, dict) or not child:
        return out
    rest = _without_field(child, path[1:])
    if rest:
        out[key] = rest
    else:
        del out[key]
    return out


def _takeover_entries(
    entries: Sequence[Mapping[str, Any]],
    managers: Sequence[ManagerMatch],
    ignored: Sequence[Sequence[str]],
) -> dict[int, dict[str, Any]]:
    """index -> the entry to take over, less the ignored fields; fully ignored ones stay."""
    found: dict[int, dict[str, Any]] = {}
    for index, entry in enumerate(entries):
        if not any(match.matches(entry) for match in managers):
            continue
        fields = (
            without_fields(entry.get("fieldsV1"), ignored) if ignored else entry.get("fieldsV1")
        )
        if ignored and not fields:
            # Everything it set is ignored: theirs to keep.
            continue
        found[index] = {**entry, "fieldsV1": fields}
    return found


def takeover_patch(
    live: Mapping[str, Any],
    field_manager: str,
    managers: Sequence[ManagerMatch],
    remove_annotations: Sequence[str] = (),
    remove_labels: Sequence[str] = (),
    *,
    ignored: Sequence[Sequence[str]] = (),
) -> list[dict[str, Any]]:
    """A JSON patch giving `field_manager` the fields of `managers` (Flux's cleanup).

    Matching managedFields entries are folded into our own Apply entry (the
    first one is renamed when we have none), so the next apply owns those
    fields and removes the ones the manifest no longer has. Fields at
    `ignored` paths are not taken over (an entry with nothing else stays as
    it is). Also removes the given annotations and labels. Empty when there
    is nothing to change.
    """
    meta = live.get("metadata") or {}
    entries = [e for e in meta.get("managedFields") or () if isinstance(e, Mapping)]
    taken = _takeover_entries(entries, managers, ignored)
    ours: dict[str, Any] | None = None
    ours_index = -1
    for index, entry in enumerate(entries):
        if (
            entry.get("manager") == field_manager
            and entry.get("operation") == "Apply"
            and not entry.get("subresource")
        ):
            ours, ours_index = dict(entry), index
    kept: list[Mapping[str, Any]] = []
    edited = False
    for index, entry in enumerate(entries):
        if index == ours_index:
            continue
        if index in taken:
            edited = True
            if ours is None:
                ours = {**taken[index], "manager": field_manager, "operation": "Apply"}
            else:
                ours["fieldsV1"] = merge_fields(ours.get("fieldsV1"), taken[index]["fieldsV1"])
            continue
        kept.append(entry)
    ops: list[dict[str, Any]] = []
    if edited and ours is not None:
        ops.append({"op": "replace", "path": "/metadata/managedFields", "value": [*kept, ours]})
    annotations = meta.get("annotations") or {}
    ops.extend(
        {"op": "remove", "path": _pointer("metadata", "annotations", key)}
        for key in remove_annotations
        if key in annotations
    )
    labels = meta.get("labels") or {}
    ops.extend(
        {"op": "remove", "path": _pointer("metadata", "labels", key)}
        for key in remove_labels
        if key in labels
    )
    if ops:
        # Only rewrite the version we read.
        version = str(meta.get("resourceVersion") or "")
        ops.insert(0, {"op": "test", "path": "/metadata/resourceVersion", "value": version})
    return ops


def _taken_over(
    live: Mapping[str, Any], managers: Sequence[ManagerMatch], ignored: Sequence[Sequence[str]]
) -> list[str]:
    entries = [
        e for e in (live.get("metadata") or {}).get("managedFields") or () if isinstance(e, Mapping)
    ]
    taken = _takeover_entries(entries, managers, ignored)
    return sorted({str(entry.get("manager")) for entry in taken.values()})


def stage_of(obj: Mapping[str, Any]) -> int:
    """0: CRDs, Namespaces, ClusterRoles; 1: `*Class` kinds; 2: the rest (Flux's stages)."""
    group, version = split_api_version(str(obj.get("apiVersion") or ""))
    kind = str(obj.get("kind") or "")
    if (
        (kind == "CustomResourceDefinition" and group == "apiextensions.k8s.io")
        or (kind == "Namespace" and group == "" and version == "v1")
        or (kind == "ClusterRole" and group == "rbac.authorization.k8s.io")
    ):
        return 0
    if kind.endswith("Class"):
        return 1
    return 2


# -- the engine ---------------------------------------------------------------


@dataclasses.dataclass
class _Item:
    """One object on its way through a stage."""

    desired: dict[str, Any]
    info: ResourceInfo
    id: ObjectId
    provided_by_crd: bool = False
    action: Action | None = None
    changes: tuple[diff.FieldChange, ...] = ()
    note: str = ""
    live_uid: str = ""
    takeover: list[dict[str, Any]] = dataclasses.field(default_factory=list)
    previous_owners: list[str] = dataclasses.field(default_factory=list)
    recreate: bool = False
    failure: ObjectFailure | None = None
    # Kept for a plan only (see ChangeSetEntry.before/after).
    before: Mapping[str, Any] | None = None
    after: Mapping[str, Any] | None = None

    @property
    def name(self) -> str:
        return self.id.name

    @property
    def namespace(self) -> str:
        return self.id.namespace

    def entry(self) -> ChangeSetEntry:
        return ChangeSetEntry(
            self.id,
            self.info.version,
            self.action or Action.UNKNOWN,
            self.changes,
            self.note,
            before=self.before,
            after=self.after,
        )


def _crd_kinds(objects: Sequence[Mapping[str, Any]]) -> dict[tuple[str, str], dict[str, Any]]:
    """(group, kind) → CRD manifest, for the CRDs in the set."""
    found: dict[tuple[str, str], dict[str, Any]] = {}
    for obj in objects:
        if obj.get("kind") == "CustomResourceDefinition" and str(
            obj.get("apiVersion") or ""
        ).startswith("apiextensions.k8s.io/"):
            spec = obj.get("spec") or {}
            kind = str((spec.get("names") or {}).get("kind") or "")
            if spec.get("group") and kind:
                found[(str(spec["group"]), kind)] = dict(obj)
    return found


async def _resolve(
    client: ResourceClient,
    objects: Sequence[Mapping[str, Any]],
    options: ApplyOptions,
) -> list[_Item]:
    """Check and normalize every object; raise ApplyError before any write if one is bad."""
    failures: list[ObjectFailure] = []
    crds = _crd_kinds(objects)
    items: list[_Item] = []
    seen: dict[ObjectId, int] = {}
    for index, obj in enumerate(objects):
        where = f"object #{index + 1}"
        if not isinstance(obj, Mapping):
            failures.append(ObjectFailure(where, f"{where}: not a mapping"))
            continue
        api_version, kind = obj.get("apiVersion"), obj.get("kind")
        name = (
            (obj.get("metadata") or {}).get("name")
            if isinstance(obj.get("metadata"), Mapping)
            else None
        )
        if (
            not isinstance(api_version, str)
            or not api_version
            or not isinstance(kind, str)
            or not kind
        ):
            failures.append(ObjectFailure(where, f"{where}: apiVersion and kind are required"))
            continue
        subject = ObjectId.of(obj).subject
        if not isinstance(name, str) or not name:
            failures.append(ObjectFailure(subject, f"{where} ({kind}): metadata.name is required"))
            continue
        group, version = split_api_version(api_version)
        crd = crds.get((group, kind))
        try:
            if crd is not None:
                info = _info_from_crd(crd, version)
            else:
                info = await client.resource_for(api_version, kind)
        except NoMatchError as exc:
            failures.append(describe_error(subject, "apply", exc))
            continue
        except ApiError as exc:
            failures.append(describe_error(subject, "discovery", exc))
            continue
        try:
            desired = normalize(obj, options.owner_labels)
        except ValueError as exc:
            failures.append(ObjectFailure(subject, f"{subject}: {exc}"))
            continue
        meta = desired["metadata"]
        if info.namespaced and not meta.get("namespace"):
            failures.append(ObjectFailure(subject, f"{subject} namespace not specified"))
            continue
        if not info.namespaced:
            # The API server ignores a namespace on cluster-scoped objects; so do we.
            meta.pop("namespace", None)
        object_id = ObjectId.of(desired)
        if object_id in seen:
            failures.append(
                ObjectFailure(
                    object_id.subject,
                    f"{object_id.subject} appears twice "
                    f"(objects #{seen[object_id]} and #{index + 1})",
                )
            )
            continue
        seen[object_id] = index + 1
        items.append(_Item(desired, info, object_id, provided_by_crd=crd is not None))
    if failures:
        raise ApplyError(failures, ChangeSet())
    return items


def _info_from_crd(crd: Mapping[str, Any], version: str) -> ResourceInfo:
    spec = crd.get("spec") or {}
    names = spec.get("names") or {}
    served = [
        str(v.get("name"))
        for v in spec.get("versions") or ()
        if isinstance(v, Mapping) and v.get("served", True)
    ]
    group, kind = str(spec.get("group")), str(names.get("kind"))
    if version not in served:
        raise NoMatchError(
            f"{group}/{version}", kind, f"the CRD in this set serves {', '.join(served) or 'none'}"
        )
    return ResourceInfo(
        group=group,
        version=version,
        kind=kind,
        plural=str(names.get("plural") or kind.lower() + "s"),
        namespaced=spec.get("scope", "Namespaced") == "Namespaced",
    )


class _Stage:
    """Plans and applies one stage's objects."""

    def __init__(
        self,
        client: ResourceClient,
        options: ApplyOptions,
        items: list[_Item],
        created_namespaces: frozenset[str],
        created_groups: frozenset[str],
    ) -> None:
        self.client = client
        self.options = options
        self.items = items
        self.created_namespaces = created_namespaces
        self.created_groups = created_groups
        self._ssa = options.annotation("ssa")

    # decisions

    def _excluded(self, obj: Mapping[str, Any] | None) -> bool:
        return marked(obj, self._ssa, SSA_IGNORE) or marked(
            obj, self.options.annotation("reconcile"), DISABLED
        )

    def _forced(self, item: _Item, live: Mapping[str, Any] | None) -> bool:
        key = self.options.annotation("force")
        return (
            self.options.force or marked(item.desired, key, ENABLED) or marked(live, key, ENABLED)
        )

    # planning

    async def _dry_run(self, item: _Item) -> dict[str, Any]:
        deadline = time.monotonic() + self.options.wait_timeout
        while True:
            try:
                return await self.client.apply(
                    item.info, item.desired, field_manager=self.options.field_manager, dry_run=True
                )
            except ApiError as exc:
                # A just-established CRD can take a moment to be served.
                retry = (
                    item.provided_by_crd
                    and exc.not_found
                    and exc.details_kind != "namespaces"
                    and not self.options.dry_run
                    and time.monotonic() < deadline
                )
                if not retry:
                    raise
            await asyncio.sleep(0.5)

    def _dry_run_early(self, item: _Item) -> bool:
        """Whether the item's dry-run may start before its live copy is read.

        Not for an object that is skipped unread (Ignore, reconcile disabled)
        or that IfNotPresent applies only when it is missing.
        """
        return not self._excluded(item.desired) and not marked(
            item.desired, self._ssa, SSA_IF_NOT_PRESENT
        )

    async def _plan(
        self,
        item: _Item,
        live: dict[str, Any] | None,
        known: bool,
        early: asyncio.Future[dict[str, Any]] | None = None,
    ) -> None:
        try:
            await self._plan_checked(item, live, known, early)
        except ApiError as exc:
            if exc.not_found and exc.details_kind != "namespaces":
                # The kind is no longer served as discovery said: ask again next time.
                self.client.forget(item.id.group)
            item.failure = describe_error(item.id.subject, "dry-run", exc)
        finally:
            if early is not None and not early.done():
                early.cancel()  # skipped once the live copy was seen: its answer is not needed
            elif early is not None and not early.cancelled():
                early.exception()  # retrieved, so an unused failure is not logged as lost

    async def _plan_checked(
        self,
        item: _Item,
        live: dict[str, Any] | None,
        known: bool,
        early: asyncio.Future[dict[str, Any]] | None = None,
    ) -> None:
        """Decide what applying `item` does; `early`, its dry-run if already started."""
        client, options = self.client, self.options
        if self._excluded(item.desired):
            item.action = Action.SKIPPED
            return
        if_not_present = marked(item.desired, self._ssa, SSA_IF_NOT_PRESENT)
        if not known and if_not_present:
            live, known = await client.get(item.info, item.namespace, item.name), True
        if live is not None and (self._excluded(live) or if_not_present):
            item.action = Action.SKIPPED
            return
        try:
            merged = await (early if early is not None else self._dry_run(item))
        except ApiError as exc:
            if not known:
                try:
                    live, known = await client.get(item.info, item.namespace, item.name), True
                except ApiError:
                    # e.g. allowed neither to patch nor to get: the dry-run's
                    # refusal is the one that explains the failure.
                    item.failure = describe_error(item.id.subject, "dry-run", exc)
                    return
            if live is not None and self._excluded(live):
                item.action = Action.SKIPPED
                return
            if live is not None and is_immutable_error(exc) and self._forced(item, live):
                item.action, item.recreate = Action.CREATED, True
                item.live_uid = str((live.get("metadata") or {}).get("uid") or "")
                fields = ", ".join(c.field for c in exc.causes if c.field) or "immutable fields"
                item.note = f"recreated: {fields} changed"
                return
            if options.dry_run and exc.not_found and self._depends_on_planned(item):
                item.action = Action.CREATED
                return
            failure = describe_error(item.id.subject, "dry-run", exc)
            if is_immutable_error(exc):
                hint = f"{options.annotation('force')}: {ENABLED}"
                failure = dataclasses.replace(
                    failure,
                    message=f"{failure.message} (immutable; enable force or annotate {hint} "
                    "to recreate the object)",
                )
            item.failure = failure
            return
        version = str((merged.get("metadata") or {}).get("resourceVersion") or "")
        if not version:
            item.action = Action.CREATED
            if options.dry_run:
                item.after = diff.comparable(merged)
            return
        live_version = str(((live or {}).get("metadata") or {}).get("resourceVersion") or "")
        if live is None or live_version != version:
            # Not listed (no owner labels yet) or changed since the LIST: read it now.
            live = await client.get(item.info, item.namespace, item.name)
            if live is None:
                item.action = Action.CREATED
                if options.dry_run:
                    item.after = diff.comparable(merged)
                return
            if str((live.get("metadata") or {}).get("resourceVersion")) != version:
                merged = await self._dry_run(item)
        if self._excluded(live) or if_not_present:
            item.action = Action.SKIPPED
            return
        ignored = ignoring.ignored_paths(item.desired, options.ignore)
        if not (marked(item.desired, self._ssa, SSA_MERGE) or marked(live, self._ssa, SSA_MERGE)):
            item.takeover = takeover_patch(
                live,
                options.field_manager,
                options.takeover_managers,
                options.stripped_annotations,
                options.remove_labels,
                ignored=ignored,
            )
            item.previous_owners = _taken_over(live, options.takeover_managers, ignored)
        if ignored:
            live_view = ignoring.without_paths(live, ignored)
            merged_view = ignoring.without_paths(merged, ignored)
            item.desired = ignoring.keep_live(item.desired, live, ignored)
        else:
            live_view, merged_view = live, merged
        if options.dry_run:
            item.before, item.after = diff.comparable(live_view), diff.comparable(merged_view)
        if diff.has_drifted(live_view, merged_view):
            item.action = Action.CONFIGURED
            item.changes = tuple(diff.field_changes(live_view, merged_view))
        elif item.takeover:
            item.action = Action.CONFIGURED
            item.note = _takeover_note(item.previous_owners)
        else:
            item.action = Action.UNCHANGED

    def _depends_on_planned(self, item: _Item) -> bool:
        return item.namespace in self.created_namespaces or item.id.group in self.created_groups

    async def plan(self) -> None:
        groups: dict[tuple[ResourceInfo, str], list[_Item]] = {}
        for item in self.items:
            groups.setdefault((item.info, item.namespace), []).append(item)
        # Bound how many groups hold listed objects in memory at once.
        limit = asyncio.Semaphore(max(2, self.client.concurrency))
        # Small pages keep the listed copies fresh while their dry-runs queue
        # (an object changed since the LIST costs an extra GET) and bound memory.
        page_size = min(500, 16 * self.client.concurrency)

        async def plan_group(info: ResourceInfo, namespace: str, group: list[_Item]) -> None:
            async with limit:
                remaining = {item.name: item for item in group}
                selector = label_selector(self.options.owner_labels)
                if selector and len(group) <= page_size:
                    await self._plan_with_list(info, namespace, group, selector, page_size)
                    return
                if selector:
                    try:
                        async for page in self.client.list_pages(
                            info, namespace, label_selector=selector, limit=page_size
                        ):
                            batch = []
                            for live in page:
                                item = remaining.pop(str(live["metadata"].get("name")), None)
                                if item is not None:
                                    batch.append(self._plan(item, live, True))
                            await asyncio.gather(*batch)
                    except ApiError as exc:
                        # e.g. allowed to patch but not to list: read one by one.
                        log.debug("cannot list %s in %r: %s", info.kind, namespace, exc)
                await asyncio.gather(
                    *(self._plan(item, None, False) for item in remaining.values())
                )

        await asyncio.gather(*(plan_group(i, ns, g) for (i, ns), g in groups.items()))

    async def _plan_with_list(
        self,
        info: ResourceInfo,
        namespace: str,
        group: list[_Item],
        selector: str,
        page_size: int,
    ) -> None:
        """Plan a group of at most a page: its dry-runs run alongside the LIST, not after it.

        A dry-run does not depend on the live copy, only the comparison does;
        the reconcile then waits one round trip (the slower of the two) where
        it waited two. Each answer is compared as before: a listed copy older
        or newer than the dry-run's base shows as another resourceVersion, and
        is read again (a GET and a second dry-run).
        """
        early = {
            item.name: asyncio.ensure_future(self._dry_run(item))
            for item in group
            if self._dry_run_early(item)
        }
        listed: dict[str, dict[str, Any]] = {}
        try:
            async for page in self.client.list_pages(
                info, namespace, label_selector=selector, limit=page_size
            ):
                for live in page:
                    listed[str(live["metadata"].get("name"))] = live
        except ApiError as exc:
            # e.g. allowed to patch but not to list: the unlisted are read one by one.
            log.debug("cannot list %s in %r: %s", info.kind, namespace, exc)
        except BaseException:
            for future in early.values():
                future.cancel()
            raise
        await asyncio.gather(
            *(
                self._plan(item, listed.get(item.name), item.name in listed, early.get(item.name))
                for item in group
            )
        )

    # writing

    async def _wait_gone(self, item: _Item) -> None:
        deadline = time.monotonic() + self.options.wait_timeout
        while True:
            live = await self.client.get(item.info, item.namespace, item.name)
            if live is None or str((live.get("metadata") or {}).get("uid")) != item.live_uid:
                return
            if time.monotonic() >= deadline:
                raise TimeoutError(
                    f"{item.id.subject} was deleted to be recreated but still exists after "
                    f"{self.options.wait_timeout:g}s"
                )
            await asyncio.sleep(self.options.wait_interval)

    async def _write(self, item: _Item) -> None:
        client, options = self.client, self.options
        try:
            if item.recreate:
                await client.delete(item.info, item.namespace, item.name, uid=item.live_uid)
                await self._wait_gone(item)
            elif item.takeover:
                patched = await client.json_patch(
                    item.info,
                    item.namespace,
                    item.name,
                    item.takeover,
                    field_manager=options.field_manager,
                )
                applied = await client.apply(
                    item.info, item.desired, field_manager=options.field_manager
                )
                # Fields the previous owners set and the manifest lacks are gone now.
                item.changes = tuple(diff.field_changes(patched, applied))
                item.note = _takeover_note(item.previous_owners)
                return
            await client.apply(item.info, item.desired, field_manager=options.field_manager)
        except ApiError as exc:
            item.failure = describe_error(item.id.subject, "apply", exc)
        except TimeoutError as exc:
            item.failure = ObjectFailure(item.id.subject, str(exc))

    async def write(self) -> list[ObjectFailure]:
        """Apply what the plan found new or changed, kind by kind in reconcile order."""
        todo = sorted(
            (i for i in self.items if i.action in (Action.CREATED, Action.CONFIGURED)),
            key=lambda i: i.id.sort_key(),
        )
        for batch in by_kind(todo):
            await asyncio.gather(*(self._write(item) for item in batch))
            failures = [item.failure for item in batch if item.failure]
            if failures:
                return failures
        return []


def _takeover_note(owners: Sequence[str]) -> str:
    return f"took over fields from {', '.join(owners)}" if owners else "cleaned up metadata"


async def apply_all(
    client: ResourceClient,
    objects: Sequence[Mapping[str, Any]],
    options: ApplyOptions,
) -> ChangeSet:
    """Make the cluster match `objects`; returns what was done to each, in reconcile order.

    Raises ApplyError naming every object that failed; its `changeset` holds
    the stages applied before the failure (those objects stay applied).
    """
    items = await _resolve(client, objects, options)
    if options.before_write is not None and not options.dry_run:
        await options.before_write(Inventory(InventoryEntry.of(item.desired) for item in items))
    stages: list[list[_Item]] = [[], [], []]
    for item in items:
        stages[stage_of(item.desired)].append(item)
    changeset = ChangeSet()
    created_namespaces: set[str] = set()
    created_groups: set[str] = set()
    for stage_items in stages:
        if not stage_items:
            continue
        stage = _Stage(
            client, options, stage_items, frozenset(created_namespaces), frozenset(created_groups)
        )
        await stage.plan()
        failures = [item.failure for item in stage_items if item.failure]
        if failures:
            raise ApplyError(_sorted_failures(stage_items), changeset)
        if not options.dry_run:
            failures = await stage.write()
        done = sorted(stage_items, key=lambda i: i.id.sort_key())
        if failures:
            changeset.extend(
                item.entry() for item in done if item.failure is None and item.action is not None
            )
            raise ApplyError(failures, changeset)
        changeset.extend(item.entry() for item in done)
        changed = [item for item in done if item.action in (Action.CREATED, Action.CONFIGURED)]
        for item in changed:
            if item.id.kind == "Namespace" and item.action is Action.CREATED:
                created_namespaces.add(item.name)
            if item.id.kind == "CustomResourceDefinition":
                group = str((item.desired.get("spec") or {}).get("group") or "")
                created_groups.add(group)
                client.forget(group)
        if changed and not options.dry_run and stage_of(changed[0].desired) < 2:
            await _wait_ready(client, changed, options, changeset)
    return changeset


async def _wait_ready(
    client: ResourceClient,
    items: Sequence[_Item],
    options: ApplyOptions,
    changeset: ChangeSet,
) -> None:
    """Wait until a stage's new or changed cluster definitions are ready (CRDs Established)."""
    result = await wait_for_health(
        client,
        [InventoryEntry(item.id, item.info.version) for item in items],
        timeout=options.wait_timeout,
        poll_interval=options.wait_interval,
    )
    if result.healthy:
        return
    failures = [
        ObjectFailure(
            object_id.subject,
            f"{object_id.subject} is not ready ({status.status}"
            + (f": {status.message})" if status.message else ")"),
        )
        for object_id, status in result.not_ready
        if status.status is not Status.CURRENT
    ]
    raise ApplyError(failures, changeset)


def _sorted_failures(items: Sequence[_Item]) -> list[ObjectFailure]:
    return [
        item.failure
        for item in sorted(items, key=lambda i: i.id.sort_key())
        if item.failure is not None
    ]
