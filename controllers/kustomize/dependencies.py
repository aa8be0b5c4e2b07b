"""dependsOn: is every Kustomization this one depends on ready for it?

Flux's rules: each dependency must exist; with `readyExpr` the expression
decides (variables `self`, the dependent, and `dep`); otherwise it must have
observed its current generation and be Ready, and when it uses the same
source it must already have applied the revision we are about to apply.
A cycle can never become ready, so it is named as such instead of waiting.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any

from controllers.kustomize.spec import Dependency, KustomizationSpec, SourceRef, dependency_refs
from controllers.toolkit.cel import ExpressionError
from controllers.toolkit.runtime import conditions as cond
from controllers.toolkit.runtime.reconciler import Object, ObjectRef

Lookup = Callable[[ObjectRef], Object | None]


def _source_of(obj: Mapping[str, Any]) -> SourceRef:
    return SourceRef.of(obj.get("spec") or {}, obj["metadata"].get("namespace") or "")


def find_cycle(start: ObjectRef, lookup: Lookup) -> list[ObjectRef] | None:
    """The dependency cycle through `start`, if there is one (start ... start)."""

    def depends_on(ref: ObjectRef) -> list[ObjectRef]:
        obj = lookup(ref)
        if obj is None:
            return []
        return [
            ObjectRef(namespace, name)
            for namespace, name in dependency_refs(obj.get("spec") or {}, ref.namespace)
        ]

    path: list[ObjectRef] = [start]
    visited: set[ObjectRef] = set()

    def visit(ref: ObjectRef) -> list[ObjectRef] | None:
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


def dependency_not_ready(
    obj: Object, spec: KustomizationSpec, revision: str, lookup: Lookup
) -> str | None:
    """Why a dependency is not ready (a message naming it), or None when all are."""
    ref = ObjectRef.of(obj)
    if spec.depends_on:
        cycle = find_cycle(ref, lookup)
        if cycle:
            return "dependency cycle: " + " -> ".join(str(r) for r in cycle)
    for dependency in spec.depends_on:
        reason = _not_ready(obj, spec, dependency, revision, lookup)
        if reason:
            return f"dependency '{dependency}' is not ready: {reason}"
    return None


def _not_ready(
    obj: Object, spec: KustomizationSpec, dependency: Dependency, revision: str, lookup: Lookup
) -> str | None:
    dep = lookup(ObjectRef(dependency.namespace, dependency.name))
    if dep is None:
        return "not found"
    if dependency.ready_expr is not None:
        try:
            satisfied = dependency.ready_expr.evaluate({"self": obj, "dep": dep})
        except ExpressionError as exc:
            return str(exc)
        return None if satisfied else f"readyExpr {dependency.ready_expr.source!r} is false"
    status = dep.get("status") or {}
    if cond.observed_generation(status) != dep["metadata"].get("generation"):
        return "its latest generation has not been reconciled yet"
    if not cond.is_true(status, cond.READY):
        ready = cond.get_condition(status, cond.READY)
        return ready["message"] if ready else "it has not reported Ready yet"
    if _source_of(dep) == spec.source and status.get("lastAppliedRevision") != revision:
        return f"it has not applied revision '{revision}' of the shared source yet"
    return None
