"""dependsOn: is every object this Kustomization depends on ready for it?

Flux's rules: each dependency must exist; with `readyExpr` the expression
decides (variables `self`, the dependent, and `dep`); otherwise it must have
observed its current generation and be Ready, and a Kustomization that uses
the same source must already have applied the revision we are about to
apply. A dependency may also be a HelmRelease (`kind: HelmRelease`,
headwater's extension; `controllers.toolkit.dependencies` holds the rules
shared with the helm controller). A cycle can never become ready, so it is
named as such instead of waiting.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from controllers.kustomize.spec import Dependency, KustomizationSpec, SourceRef
from controllers.toolkit.cel import ExpressionError
from controllers.toolkit.dependencies import (
    KUSTOMIZATION,
    DependencyRef,
    Lookup,
    cycle_message,
    find_cycle,
    not_ready,
    ref_of,
)
from controllers.toolkit.runtime.reconciler import Object

__all__ = ["Lookup", "dependency_not_ready", "find_cycle"]


def _source_of(obj: Mapping[str, Any]) -> SourceRef:
    return SourceRef.of(obj.get("spec") or {}, obj["metadata"].get("namespace") or "")


def dependency_not_ready(
    obj: Object, spec: KustomizationSpec, revision: str, lookup: Lookup
) -> str | None:
    """Why a dependency is not ready (a message naming it), or None when all are."""
    if spec.depends_on:
        cycle = find_cycle(ref_of(KUSTOMIZATION, obj), lookup)
        if cycle:
            return cycle_message(cycle, KUSTOMIZATION)
    for dependency in spec.depends_on:
        reason = _not_ready(obj, spec, dependency, revision, lookup)
        if reason:
            return f"dependency '{dependency}' is not ready: {reason}"
    return None


def _not_ready(
    obj: Object, spec: KustomizationSpec, dependency: Dependency, revision: str, lookup: Lookup
) -> str | None:
    ref: DependencyRef = dependency.ref
    dep = lookup(ref)
    if dep is None:
        return "not found"
    if dependency.ready_expr is not None:
        try:
            satisfied = dependency.ready_expr.evaluate({"self": obj, "dep": dep})
        except ExpressionError as exc:
            return str(exc)
        return None if satisfied else f"readyExpr {dependency.ready_expr.source!r} is false"
    general = not_ready(ref, dep)
    if general:
        return general
    status = dep.get("status") or {}
    if (
        ref.kind == KUSTOMIZATION
        and _source_of(dep) == spec.source
        and status.get("lastAppliedRevision") != revision
    ):
        return f"it has not applied revision '{revision}' of the shared source yet"
    return None
