"""What the dashboard shows, read from the API as the person using it.

Every page is read fresh (one LIST per Flux kind, and what a page needs
beyond that) through that person's Session, so the dashboard never shows
what their identity may not read. The functions here are plain and
synchronous, like the CLI's (they reuse `controllers.commands`); the web app
runs them in a thread.

Nothing here returns a Secret's value: objects are reduced to names,
conditions, revisions and messages before any template sees them.
"""

from __future__ import annotations

import concurrent.futures
import dataclasses
import datetime
from collections.abc import Iterable, Mapping, Sequence
from typing import Any

from kubernetes.client.exceptions import ApiException

from controllers.commands import common, events, helm_inventory, kinds, live, trace
from controllers.commands.common import Session
from controllers.commands.kinds import FluxKind
from controllers.toolkit.apply import health
from controllers.toolkit.apply.inventory import Inventory, InventoryEntry, InventoryError, ObjectId
from controllers.toolkit.runtime import conditions as cond

# What the overview and graph list: the sources, then what applies them.
SOURCE_KINDS = (kinds.GIT_REPOSITORY, kinds.HELM_REPOSITORY, kinds.HELM_CHART)
APPLIER_KINDS = (kinds.KUSTOMIZATION, kinds.HELM_RELEASE)
SHOWN_KINDS = (*SOURCE_KINDS, *APPLIER_KINDS)
STATES = ("Ready", "Progressing", "Failed", "Stalled", "Suspended")
# The graph opens at most this many HelmRelease manifests (one Secret read each).
GRAPH_MAX_RELEASES = 100


@dataclasses.dataclass(frozen=True)
class Row:
    kind: FluxKind
    namespace: str
    name: str
    revision: str
    state: str
    ready: str
    message: str
    age: str
    suspended: bool
    source: tuple[str, str, str] | None  # (Kind, namespace, name)
    depends_on: tuple[tuple[str, str, str], ...]

    @property
    def key(self) -> tuple[str, str, str]:
        return (self.kind.kind, self.namespace, self.name)

    @property
    def href(self) -> str:
        return f"/object/{self.kind.kind}/{self.namespace}/{self.name}"


def state_of(kind: FluxKind, obj: Mapping[str, Any]) -> str:
    """One word per object, as the counts group them: Suspended, Stalled, Ready, Failed or
    Progressing (reconciling, or not reconciled yet)."""
    if kinds.suspended(obj):
        return "Suspended"
    status = obj.get("status") or {}
    if cond.condition_status(status, cond.STALLED) == cond.TRUE:
        return "Stalled"
    if cond.condition_status(status, cond.RECONCILING) == cond.TRUE:
        return "Progressing"
    ready = cond.condition_status(status, cond.READY)
    if ready == cond.TRUE:
        return "Ready"
    if ready == cond.FALSE:
        return "Failed"
    return "Progressing"


def _source_key(kind: FluxKind, obj: Mapping[str, Any]) -> tuple[str, str, str] | None:
    meta = obj.get("metadata") or {}
    spec = obj.get("spec") or {}
    namespace = str(meta.get("namespace") or "")
    if kind is kinds.KUSTOMIZATION:
        ref = spec.get("sourceRef") or {}
    elif kind is kinds.HELM_RELEASE:
        ref = spec.get("chartRef") or {}
        if not ref:
            template = ((spec.get("chart") or {}).get("spec") or {}).get("sourceRef") or {}
            if not template.get("name"):
                return None
            return (
                kinds.HELM_CHART.kind,
                str(template.get("namespace") or namespace),
                f"{namespace}-{meta.get('name')}",
            )
    elif kind is kinds.HELM_CHART:
        ref = spec.get("sourceRef") or {}
    else:
        return None
    if not ref.get("kind") or not ref.get("name"):
        return None
    return (str(ref["kind"]), str(ref.get("namespace") or namespace), str(ref["name"]))


def _depends_on(kind: FluxKind, obj: Mapping[str, Any]) -> tuple[tuple[str, str, str], ...]:
    namespace = str((obj.get("metadata") or {}).get("namespace") or "")
    found = []
    for dep in (obj.get("spec") or {}).get("dependsOn") or []:
        if not isinstance(dep, Mapping) or not dep.get("name"):
            continue
        dep_kind = str(dep.get("kind") or kind.kind)
        found.append((dep_kind, str(dep.get("namespace") or namespace), str(dep["name"])))
    return tuple(found)


def row(kind: FluxKind, obj: Mapping[str, Any], now: datetime.datetime) -> Row:
    meta = obj.get("metadata") or {}
    ready, message = kinds.ready(kind, obj)
    return Row(
        kind=kind,
        namespace=str(meta.get("namespace") or ""),
        name=str(meta.get("name") or ""),
        revision=kinds.revision(kind, obj),
        state=state_of(kind, obj),
        ready=ready,
        message=message,
        age=common.age(meta.get("creationTimestamp"), now),
        suspended=kinds.suspended(obj),
        source=_source_key(kind, obj),
        depends_on=_depends_on(kind, obj) if kind in APPLIER_KINDS else (),
    )


def list_kind(session: Session, kind: FluxKind) -> list[dict[str, Any]]:
    """Every object of the kind in scope; none when the identity may not list them."""
    try:
        if session.all_namespaces:
            listing = session.custom.list_cluster_custom_object(
                kind.group, kind.version, kind.plural
            )
        else:
            listing = session.custom.list_namespaced_custom_object(
                kind.group, kind.version, session.namespace, kind.plural
            )
    except ApiException as exc:
        if exc.status in (403, 404):
            return []
        raise
    items: list[dict[str, Any]] = listing.get("items") or []
    for item in items:  # a LIST leaves kind and apiVersion off its items
        item.setdefault("kind", kind.kind)
        item.setdefault("apiVersion", kind.api_version)
    return items


@dataclasses.dataclass(frozen=True)
class Filters:
    namespace: str = ""
    kind: str = ""
    state: str = ""
    search: str = ""

    @classmethod
    def of(cls, query: Mapping[str, str]) -> Filters:
        return cls(
            namespace=str(query.get("namespace") or "").strip(),
            kind=str(query.get("kind") or "").strip(),
            state=str(query.get("state") or "").strip(),
            search=str(query.get("q") or "").strip(),
        )

    def keep(self, item: Row) -> bool:
        if self.namespace and item.namespace != self.namespace:
            return False
        if self.kind and item.kind.kind != self.kind:
            return False
        if self.state and item.state != self.state:
            return False
        if self.search:
            haystack = " ".join((item.name, item.namespace, item.revision, item.message)).lower()
            return self.search.lower() in haystack
        return True


@dataclasses.dataclass
class Overview:
    rows: list[Row]
    counts: dict[str, dict[str, int]]  # kind -> state -> count, over every row (unfiltered)
    namespaces: list[str]
    total: int


def list_all(session: Session) -> dict[FluxKind, list[dict[str, Any]]]:
    """Every shown kind, the LISTs made at once (each is a round trip to the API server)."""
    with concurrent.futures.ThreadPoolExecutor(len(SHOWN_KINDS)) as pool:
        results = pool.map(lambda kind: list_kind(session, kind), SHOWN_KINDS)
        return dict(zip(SHOWN_KINDS, results, strict=True))


def overview(session: Session, filters: Filters, now: datetime.datetime | None = None) -> Overview:
    moment = now or common.now()
    listed = list_all(session)
    everything = [row(kind, obj, moment) for kind, items in listed.items() for obj in items]
    return summarise(everything, filters)


def summarise(everything: Sequence[Row], filters: Filters) -> Overview:
    counts: dict[str, dict[str, int]] = {k.kind: dict.fromkeys(STATES, 0) for k in SHOWN_KINDS}
    for item in everything:
        counts[item.kind.kind][item.state] += 1
    rows = sorted(
        (r for r in everything if filters.keep(r)),
        key=lambda r: (SHOWN_KINDS.index(r.kind), r.namespace, r.name),
    )
    namespaces = sorted({r.namespace for r in everything})
    return Overview(rows, counts, namespaces, len(everything))


# --- inventories --------------------------------------------------------------------------


@dataclasses.dataclass(frozen=True)
class Owned:
    id: ObjectId
    api_version: str
    status: str
    message: str

    @property
    def href(self) -> str | None:
        flux = next((k for k in APPLIER_KINDS if k.kind == self.id.kind), None)
        if flux is not None and flux.group == self.id.group:
            return f"/object/{flux.kind}/{self.id.namespace}/{self.id.name}"
        return None


def inventory_entries(session: Session, obj: Mapping[str, Any]) -> tuple[list[InventoryEntry], str]:
    """What a Kustomization or HelmRelease owns, and a note when it cannot be read."""
    if obj.get("kind") == kinds.HELM_RELEASE.kind:

        def namespaced(api_version: str, kind: str) -> bool | None:
            resource = live.resource_for(session, api_version, kind)
            return None if resource is None else bool(resource.namespaced)

        try:
            return helm_inventory.helm_inventory(session, obj, namespaced), ""
        except helm_inventory.HelmInventoryError as exc:
            return [], str(exc)
    try:
        return list(Inventory.from_status((obj.get("status") or {}).get("inventory"))), ""
    except InventoryError as exc:
        return [], str(exc)


def live_health(session: Session, entries: Iterable[InventoryEntry]) -> list[Owned]:
    """Each entry's health, reading the live objects with one LIST per kind and namespace."""
    wanted = list(entries)
    groups: dict[tuple[str, str, str], list[InventoryEntry]] = {}
    for entry in wanted:
        groups.setdefault((entry.api_version, entry.id.kind, entry.id.namespace), []).append(entry)
    found: dict[ObjectId, dict[str, Any]] = {}
    for (api_version, kind, namespace), members in groups.items():
        resource = live.resource_for(session, api_version, kind)
        if resource is None:
            continue
        try:
            listing = (
                resource.get(namespace=namespace) if resource.namespaced else resource.get()
            ).to_dict()
        except ApiException:
            continue
        names = {m.id.name for m in members}
        for item in listing.get("items") or []:
            name = (item.get("metadata") or {}).get("name")
            if name in names:
                item.setdefault("kind", kind)
                item.setdefault("apiVersion", api_version)
                found[ObjectId.of(item)] = item
    owned = []
    for entry in wanted:
        obj = found.get(entry.id)
        if obj is None:
            owned.append(Owned(entry.id, entry.api_version, str(health.Status.NOT_FOUND), ""))
            continue
        status = health.compute_status(obj)
        owned.append(Owned(entry.id, entry.api_version, str(status.status), status.message))
    return owned


# --- the graph ----------------------------------------------------------------------------


@dataclasses.dataclass
class Graph:
    sources: list[Row]
    appliers: list[Row]
    objects: list[Owned]
    # (from column, from key) -> (to column, to key), keys as strings for the template
    edges: list[tuple[str, str, str]]  # (kind of edge: source|depends|owns, from key, to key)
    notes: list[str]


def key_text(key: tuple[str, str, str]) -> str:
    return "/".join(key)


def graph(session: Session, filters: Filters) -> Graph:
    moment = common.now()
    listed = list_all(session)
    everything = [row(kind, obj, moment) for kind, items in listed.items() for obj in items]
    objects_by_key = {
        (kind.kind, str(o["metadata"].get("namespace")), str(o["metadata"].get("name"))): o
        for kind in APPLIER_KINDS
        for o in listed[kind]
    }
    appliers = [r for r in everything if r.kind in APPLIER_KINDS and filters.keep(r)]
    applier_keys = {r.key for r in appliers}
    used_sources = {r.source for r in appliers if r.source}
    # A HelmChart that feeds a shown release shows its own source too.
    chart_sources = {
        r.source
        for r in everything
        if r.kind is kinds.HELM_CHART and r.key in used_sources and r.source is not None
    }
    sources = [
        r for r in everything if r.kind in SOURCE_KINDS and r.key in used_sources | chart_sources
    ]
    edges: list[tuple[str, str, str]] = []
    for s in sources:
        if s.source and s.source in used_sources | chart_sources:
            edges.append(("source", key_text(s.source), key_text(s.key)))
    for a in appliers:
        if a.source:
            edges.append(("source", key_text(a.source), key_text(a.key)))
        for dep in a.depends_on:
            if dep in applier_keys:
                edges.append(("depends", key_text(dep), key_text(a.key)))
    notes: list[str] = []
    entries: list[InventoryEntry] = []
    owners: list[tuple[str, ObjectId]] = []
    releases = 0
    for a in appliers:
        obj = objects_by_key.get(a.key)
        if obj is None:
            continue
        if a.kind is kinds.HELM_RELEASE:
            releases += 1
            if releases > GRAPH_MAX_RELEASES:
                continue
        owned, note = inventory_entries(session, obj)
        if note:
            notes.append(f"{a.kind.kind} {a.namespace}/{a.name}: {note}")
        for entry in owned:
            flux = (entry.id.kind, entry.id.namespace, entry.id.name)
            if flux in applier_keys and entry.id.group in (k.group for k in APPLIER_KINDS):
                edges.append(("owns", key_text(a.key), key_text(flux)))
                continue
            entries.append(entry)
            owners.append((key_text(a.key), entry.id))
    unique = list({e.id: e for e in entries}.values())
    objects = live_health(session, unique)
    for owner, object_id in owners:
        edges.append(("owns", owner, object_id.format()))
    return Graph(sources, appliers, objects, edges, notes)


# --- one object ---------------------------------------------------------------------------


@dataclasses.dataclass
class DriftCorrection:
    last_seen: str
    age: str
    kind: str  # Warning reason: DriftDetected
    objects: list[tuple[str, list[str]]]  # (object line, changed field lines)


@dataclasses.dataclass
class Detail:
    row: Row
    conditions: list[dict[str, str]]
    history: list[dict[str, str]]
    events: list[dict[str, str]]
    drift: list[DriftCorrection]
    owned: list[Owned]
    inventory_note: str
    facts: list[tuple[str, str]]


def parse_drift(message: str) -> list[tuple[str, list[str]]]:
    """A DriftDetected message (`Drift detected and corrected:` then one `Kind/ns/name
    configured` line per object and indented field lines) as (object, fields) pairs."""
    found: list[tuple[str, list[str]]] = []
    for line in message.splitlines()[1:]:
        if not line.strip():
            continue
        if line.startswith((" ", "\t")) and found:
            found[-1][1].append(line.strip())
        else:
            found.append((line.strip(), []))
    return found


def _facts(kind: FluxKind, obj: Mapping[str, Any]) -> list[tuple[str, str]]:
    """The spec fields people look at, by name: never values, data or credentials."""
    spec = obj.get("spec") or {}
    status = obj.get("status") or {}
    facts: list[tuple[str, str]] = []

    def add(label: str, value: Any) -> None:
        if value not in (None, "", [], {}):
            facts.append((label, str(value)))

    add("Interval", spec.get("interval"))
    if kind.source:
        add("URL", trace.without_password(str(spec.get("url") or "")))
        ref = spec.get("ref") or {}
        add("Ref", ", ".join(f"{k} {v}" for k, v in ref.items() if isinstance(v, str)))
        add("Chart", spec.get("chart"))
        add("Version", spec.get("version"))
        add("Artifact", (status.get("artifact") or {}).get("revision"))
    if kind is kinds.KUSTOMIZATION:
        add("Path", spec.get("path") or "./")
        add("Prune", spec.get("prune"))
        add("Target namespace", spec.get("targetNamespace"))
        add("Last attempted", status.get("lastAttemptedRevision"))
        add("Last applied", status.get("lastAppliedRevision"))
    if kind is kinds.HELM_RELEASE:
        template = (spec.get("chart") or {}).get("spec") or {}
        add("Chart", template.get("chart"))
        add("Version", template.get("version"))
        add("Release namespace", spec.get("targetNamespace") or status.get("storageNamespace"))
        add("Drift detection", (spec.get("driftDetection") or {}).get("mode"))
        add("Last attempted", status.get("lastAttemptedRevision"))
    add("Last handled reconcile", status.get("lastHandledReconcileAt"))
    return facts


def _history(kind: FluxKind, obj: Mapping[str, Any]) -> list[dict[str, str]]:
    found = []
    for entry in (obj.get("status") or {}).get("history") or []:
        if not isinstance(entry, Mapping):
            continue
        if kind is kinds.HELM_RELEASE:
            found.append(
                {
                    "revision": f"{entry.get('chartName', '')} {entry.get('chartVersion', '')}",
                    "when": str(entry.get("lastDeployed") or ""),
                    "status": str(entry.get("status") or ""),
                    "detail": f"release v{entry.get('version', '')}",
                }
            )
        else:
            found.append(
                {
                    "revision": str((entry.get("metadata") or {}).get("revision") or ""),
                    "when": str(entry.get("lastReconciled") or ""),
                    "status": str(entry.get("lastReconciledStatus") or ""),
                    "detail": f"{entry.get('totalReconciliations', '')} reconciliation(s), "
                    f"{entry.get('lastReconciledDuration', '')}",
                }
            )
    return found


def detail(session: Session, kind: FluxKind, namespace: str, name: str) -> Detail | None:
    try:
        obj: dict[str, Any] = session.custom.get_namespaced_custom_object(
            kind.group, kind.version, namespace, kind.plural, name
        )
    except ApiException as exc:
        if exc.status in (403, 404):
            return None
        raise
    moment = common.now()
    status = obj.get("status") or {}
    conditions = [
        {
            "type": str(c.get("type") or ""),
            "status": str(c.get("status") or ""),
            "reason": str(c.get("reason") or ""),
            "message": str(c.get("message") or ""),
            "age": common.age(c.get("lastTransitionTime"), moment),
        }
        for c in status.get("conditions") or []
        if isinstance(c, Mapping)
    ]
    subjects = [(namespace, kind.kind, name)]
    try:
        found_events = events.list_events(session, subjects)
    except common.CliError:
        found_events = []
    shown_events = [
        {
            "age": common.age(events.last_seen(e), moment),
            "type": str(e.get("type") or ""),
            "reason": str(e.get("reason") or ""),
            "message": str(e.get("message") or ""),
        }
        for e in reversed(found_events)
    ]
    drift = [
        DriftCorrection(
            events.last_seen(e),
            common.age(events.last_seen(e), moment),
            str(e.get("reason") or ""),
            parse_drift(str(e.get("message") or "")),
        )
        for e in reversed(found_events)
        if e.get("reason") == trace.DRIFT_DETECTED
    ]
    owned: list[Owned] = []
    note = ""
    if kind in APPLIER_KINDS:
        obj.setdefault("kind", kind.kind)
        entries, note = inventory_entries(session, obj)
        owned = live_health(session, entries)
    return Detail(
        row=row(kind, obj, moment),
        conditions=conditions,
        history=_history(kind, obj),
        events=shown_events,
        drift=drift,
        owned=owned,
        inventory_note=note,
        facts=_facts(kind, obj),
    )
