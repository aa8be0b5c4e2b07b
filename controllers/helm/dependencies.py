"""dependsOn of a HelmRelease: other HelmReleases, and Kustomizations (`kind: Kustomization`).

A dependency is ready when `readyExpr` says so (variables `self`, the
dependent, and `dep`), or else by the rules shared with the kustomize
controller (`controllers.toolkit.dependencies`): its current generation
reconciled, Ready=True, and for a Kustomization its last fetched revision
applied. A cycle never becomes ready, so it is named instead of waited on.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from controllers.toolkit.cel import Expression, ExpressionError, compile_expression
from controllers.toolkit.dependencies import (
    HELM_RELEASE,
    DependencyRef,
    DependencySpecError,
    Lookup,
    check_kinds,
    cycle_message,
    dependency_refs,
    find_cycle,
    not_ready,
    ref_of,
)


@dataclass(frozen=True)
class Dependency:
    ref: DependencyRef
    ready_expr: Expression | None = None

    def __str__(self) -> str:
        return self.ref.label(HELM_RELEASE)


def parse_dependencies(spec: Mapping[str, Any], namespace: str) -> tuple[Dependency, ...]:
    """`spec.dependsOn`, checked: DependencySpecError names a bad kind or readyExpr."""
    check_kinds(spec)
    items = spec.get("dependsOn") or []
    result = []
    for index, (item, ref) in enumerate(
        zip(items, dependency_refs(spec, namespace, HELM_RELEASE), strict=True)
    ):
        source = item.get("readyExpr")
        expression = None
        if source:
            try:
                expression = compile_expression(
                    str(source), field=f"spec.dependsOn[{index}].readyExpr"
                )
            except ExpressionError as exc:
                raise DependencySpecError(str(exc)) from None
        result.append(Dependency(ref, expression))
    return tuple(result)


def dependency_not_ready(
    obj: Mapping[str, Any], dependencies: Sequence[Dependency], lookup: Lookup
) -> str | None:
    """Why a dependency is not ready (a message naming it), or None when all are."""
    if not dependencies:
        return None
    cycle = find_cycle(ref_of(HELM_RELEASE, obj), lookup)
    if cycle:
        return cycle_message(cycle, HELM_RELEASE)
    for dependency in dependencies:
        dep = lookup(dependency.ref)
        if dep is not None and dependency.ready_expr is not None:
            try:
                satisfied = dependency.ready_expr.evaluate({"self": obj, "dep": dep})
            except ExpressionError as exc:
                reason: str | None = str(exc)
            else:
                source = dependency.ready_expr.source
                reason = None if satisfied else f"readyExpr {source!r} is false"
        else:
            reason = not_ready(dependency.ref, dep)
        if reason:
            return f"dependency '{dependency}' is not ready: {reason}"
    return None
