"""dependsOn across kinds: which objects an object waits for, and whether they are ready.

Kustomizations and HelmReleases may depend on each other (headwater's
extension: Flux's dependsOn names only the object's own kind). An entry's
optional `kind` says which; it defaults to the dependent's own kind, so
every Flux manifest means what it meant. Each controller keeps its own
cache of the other kind (read-only) and looks dependencies up through a
`Lookup`; nothing here imports a controller.

Ready means what Flux's controllers check: the dependency has reconciled its
current generation and is Ready=True; a Kustomization must also have applied
the revision it last fetched from its source (lastAppliedRevision equals
lastAttemptedRevision), so a dependent never starts on a half-applied one.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from controllers.toolkit.runtime import conditions as cond

KUSTOMIZATION = "Kustomization"
HELM_RELEASE = "HelmRelease"
KINDS = (KUSTOMIZATION, HELM_RELEASE)
# Flux's --requeue-dependency: look again after 30s (a watch usually comes first).
REQUEUE_SECONDS = 30.0


@dataclass(frozen=True, order=True)
class DependencyRef:
    kind: str
    namespace: str
    name: str

    def label(self, own_kind: str) -> str:
        """`namespace/name`, prefixed with the kind when it is not the dependent's own."""
        where = f"{self.namespace}/{self.name}"
        return where if self.kind == own_kind else f"{self.kind}/{where}"


Lookup = Callable[[DependencyRef], Mapping[str, Any] | None]


class DependencySpecError(ValueError):
    """A dependsOn entry cannot work; the message names the field."""


def dependency_refs(spec: Mapping[str, Any], namespace: str, own_kind: str) -> list[DependencyRef]:
    """`spec.dependsOn` as refs: namespace defaults to the object's, kind to its own.

    An unknown kind is kept as written (the parser refuses it; indexes and
    cycle searches simply never find such an object).
    """
    items = spec.get("dependsOn") or []
    return [
        DependencyRef(
            str(item.get("kind") or own_kind),
            str(item.get("namespace") or namespace),
            str(item.get("name")),
        )
        for item in items
        if isinstance(item, Mapping)
    ]


def check_kinds(spec: Mapping[str, Any]) -> None:
    """DependencySpecError naming `spec.dependsOn[i].kind` when it is not one we know."""
    for index, item in enumerate(spec.get("dependsOn") or []):
        kind = item.get("kind") if isinstance(item, Mapping) else None
        if kind not in (None, "", *KINDS):
            raise DependencySpecError(
                f"spec.dependsOn[{index}].kind: {kind!r} is not one of {', '.join(KINDS)}"
            )


def ref_of(kind: str, obj: Mapping[str, Any]) -> DependencyRef:
    metadata = obj.get("metadata") or {}
    return DependencyRef(kind, str(metadata.get("namespace") or ""), str(metadata.get("name")))


def find_cycle(start: DependencyRef, lookup: Lookup) -> list[DependencyRef] | None:
    """The dependency cycle through `start`, if there is one (start ... start)."""

    def depends_on(ref: DependencyRef) -> list[DependencyRef]:
        obj = lookup(ref)
        if obj is None:
            return []
        return dependency_refs(obj.get("spec") or {}, ref.namespace, ref.kind)

    path: list[DependencyRef] = [start]
    visited: set[DependencyRef] = set()

    def visit(ref: DependencyRef) -> list[DependencyRef] | None:
        for nxt in depends_on(ref):
            if nxt == start:
                return [*path, start]
            if nxt in visited:
                continue
            visited.add(nxt)
            path.append(nxt)
            found = visit(nxt)
            if found:
                return found
            path.pop()
        return None

    return visit(start)


def cycle_message(cycle: Sequence[DependencyRef], own_kind: str) -> str:
    return "dependency cycle: " + " -> ".join(ref.label(own_kind) for ref in cycle)


def not_ready(ref: DependencyRef, dep: Mapping[str, Any] | None) -> str | None:
    """Why the dependency `dep` (found at `ref`) is not ready, or None when it is."""
    if dep is None:
        return "not found"
    status = dep.get("status") or {}
    if cond.observed_generation(status) != (dep.get("metadata") or {}).get("generation"):
        return "its latest generation has not been reconciled yet"
    if not cond.is_true(status, cond.READY):
        ready = cond.get_condition(status, cond.READY)
        return ready["message"] if ready else "it has not reported Ready yet"
    if ref.kind == KUSTOMIZATION:
        attempted = status.get("lastAttemptedRevision")
        if attempted and status.get("lastAppliedRevision") != attempted:
            return f"it has not applied revision '{attempted}' of its source yet"
    return None


def readiness(obj: Mapping[str, Any] | None) -> tuple[Any, ...]:
    """What dependents' readiness depends on: a change of it requeues them."""
    if obj is None:
        return ()
    status = obj.get("status") or {}
    return (
        cond.condition_status(status, cond.READY),
        status.get("lastAppliedRevision"),
        status.get("observedGeneration"),
        (obj.get("metadata") or {}).get("generation"),
    )
