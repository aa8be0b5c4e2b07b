"""A Kustomization's spec, typed, with Flux's defaults applied.

The CRD already rejects most malformed specs; what it cannot check (CEL
that does not compile, durations it accepts but we cannot use) becomes a
SpecError naming the field, which stalls the object until its spec changes.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from controllers.toolkit.apply.health import CustomStatus, ObjectStatus, Status
from controllers.toolkit.apply.ignore import IgnoreError, IgnoreRule, parse_rules
from controllers.toolkit.apply.prune import DeletionPolicy
from controllers.toolkit.apply.resources import shorten
from controllers.toolkit.cel import Expression, ExpressionError, compile_expression
from controllers.toolkit.dependencies import (
    KUSTOMIZATION,
    DependencyRef,
    DependencySpecError,
    check_kinds,
)
from controllers.toolkit.dependencies import dependency_refs as shared_dependency_refs
from controllers.toolkit.kustomize.build import CommonMetadata
from controllers.toolkit.kustomize.generate import BuildOptions
from controllers.toolkit.kustomize.substitute import PostBuild
from controllers.toolkit.runtime.conditions import RECONCILIATION_FAILED
from controllers.toolkit.runtime.durations import DurationError, parse_duration
from controllers.toolkit.runtime.fields import UNSUPPORTED_FIELD
from controllers.toolkit.runtime.frame import ReconcileError

GROUP = "kustomize.toolkit.fluxcd.io"
SOURCE_GROUP = "source.toolkit.fluxcd.io"
# Flux: when a dependency or the source is not ready, look again after 30s.
DEPENDENCY_REQUEUE_SECONDS = 30.0
# Flux's timeout default: the interval less 30s, but never under 30s.
MIN_TIMEOUT_SECONDS = 30.0
# cel-python's evaluation errors carry the whole activation: keep their two ends.
_MAX_EXPR_ERROR = 300

# Flux's API also allows "sops", which headwater does not implement: refusing it
# beats applying still-encrypted Secrets.
DECRYPTION_PROVIDERS = ("sealedsecrets",)
INVALID_CEL_EXPRESSION = "InvalidCELExpression"
DEFAULT_SOURCE_KIND = "GitRepository"


class SpecError(ReconcileError):
    """The spec cannot work as written (the message names the field): stalled until it changes."""

    def __init__(self, message: str, reason: str = RECONCILIATION_FAILED) -> None:
        super().__init__(reason, message, stalled=True)


@dataclass(frozen=True)
class SourceRef:
    kind: str
    name: str
    namespace: str

    def __str__(self) -> str:
        return f"{self.kind}/{self.namespace}/{self.name}"

    @classmethod
    def of(cls, spec: Mapping[str, Any], namespace: str) -> SourceRef:
        """`spec.sourceRef` with Flux's defaults (kind GitRepository, the object's namespace).

        The one place these defaults live: the parser, the dependency check and
        the source index all read a sourceRef through it.
        """
        ref = spec.get("sourceRef") or {}
        return cls(
            kind=str(ref.get("kind") or DEFAULT_SOURCE_KIND),
            name=str(ref.get("name") or ""),
            namespace=str(ref.get("namespace") or namespace),
        )


@dataclass(frozen=True)
class Dependency:
    name: str
    namespace: str
    ready_expr: Expression | None = None
    # headwater's extension: a Kustomization may wait for a HelmRelease.
    kind: str = KUSTOMIZATION

    @property
    def ref(self) -> DependencyRef:
        return DependencyRef(self.kind, self.namespace, self.name)

    def __str__(self) -> str:
        return self.ref.label(KUSTOMIZATION)


def dependency_refs(spec: Mapping[str, Any], namespace: str) -> list[DependencyRef]:
    """`spec.dependsOn` as refs: namespace defaulting to the object's own, kind to ours."""
    return shared_dependency_refs(spec, namespace, KUSTOMIZATION)


@dataclass(frozen=True)
class HealthCheckRef:
    api_version: str
    kind: str
    name: str
    namespace: str


@dataclass(frozen=True)
class HealthCheckExpr:
    api_version: str
    kind: str
    current: Expression
    in_progress: Expression | None
    failed: Expression | None

    def matches(self, obj: Mapping[str, Any]) -> bool:
        """Same group and kind (Flux matches GroupKind: any served version will do)."""
        group = self.api_version.rpartition("/")[0]
        return (
            obj.get("kind") == self.kind
            and str(obj.get("apiVersion") or "").rpartition("/")[0] == group
        )

    def status_of(self, obj: Mapping[str, Any]) -> ObjectStatus:
        """Flux's CEL status reader: observedGeneration first, then inProgress, failed, current.

        The expressions see the object's top-level fields (`metadata`, `spec`,
        `status`, ... as Flux declares them) and, beyond Flux, the whole object
        as `self`. A field that is missing makes the expression fail; the object
        is then Unknown and the health check keeps polling until the timeout, as
        in Flux.
        """
        generation = (obj.get("metadata") or {}).get("generation")
        observed = (obj.get("status") or {}).get("observedGeneration")
        if observed is not None and observed != generation:
            return ObjectStatus(
                Status.IN_PROGRESS,
                f"generation is {generation}, but latest observed generation is {observed}",
            )
        variables = {**obj, "self": obj}
        for expression, status in (
            (self.in_progress, Status.IN_PROGRESS),
            (self.failed, Status.FAILED),
            (self.current, Status.CURRENT),
        ):
            if expression is None:
                continue
            try:
                if expression.evaluate(variables):
                    return ObjectStatus(status, f"{expression.field} {expression.source!r} is true")
            except ExpressionError as exc:
                return ObjectStatus(Status.UNKNOWN, shorten(str(exc), _MAX_EXPR_ERROR))
        return ObjectStatus(Status.IN_PROGRESS, "no health check expression is true yet")


def expression_status(exprs: Sequence[HealthCheckExpr]) -> CustomStatus | None:
    """The health hook for spec.healthCheckExprs: the first entry matching an object decides."""
    if not exprs:
        return None

    def status(obj: Mapping[str, Any]) -> ObjectStatus | None:
        for expr in exprs:
            if expr.matches(obj):
                return expr.status_of(obj)
        return None

    return status


@dataclass(frozen=True)
class KustomizationSpec:
    source: SourceRef
    path: str
    interval: float
    retry_interval: float
    timeout: float
    prune: bool
    wait: bool
    force: bool
    deletion_policy: DeletionPolicy
    depends_on: tuple[Dependency, ...]
    health_checks: tuple[HealthCheckRef, ...]
    health_check_exprs: tuple[HealthCheckExpr, ...]
    service_account_name: str | None
    kubeconfig_secret: tuple[str, str] | None  # (secret name, key)
    decryption_provider: str | None
    decryption_secret: str | None
    build: BuildOptions = field(default_factory=BuildOptions)
    post_build: PostBuild | None = None
    common_metadata: CommonMetadata | None = None
    # kubeConfig.configMapRef: the ConfigMap describing the remote cluster.
    kubeconfig_config_map: str | None = None
    # spec.ignore: paths left out of drift detection and apply.
    ignore: tuple[IgnoreRule, ...] = ()

    @classmethod
    def parse(cls, spec: Mapping[str, Any], namespace: str) -> KustomizationSpec:
        interval = _duration(spec, "interval", required=True)
        timeout = (
            _duration(spec, "timeout")
            if spec.get("timeout")
            else max(interval - 30.0, MIN_TIMEOUT_SECONDS)
        )
        source = SourceRef.of(spec, namespace)
        if not source.name:
            raise SpecError("spec.sourceRef.name is required")
        decryption = spec.get("decryption") or {}
        provider = decryption.get("provider")
        if provider is not None and provider not in DECRYPTION_PROVIDERS:
            choices = ", ".join(DECRYPTION_PROVIDERS)
            raise SpecError(
                f"spec.decryption.provider: {provider!r} is not supported by headwater "
                f"(supported: {choices})",
                UNSUPPORTED_FIELD,
            )
        policy = spec.get("deletionPolicy") or DeletionPolicy.MIRROR_PRUNE
        if policy not in set(DeletionPolicy):
            raise SpecError(
                f"spec.deletionPolicy: {policy!r} is not one of {', '.join(DeletionPolicy)}"
            )
        kubeconfig = ((spec.get("kubeConfig") or {}).get("secretRef")) or None
        cluster_config = ((spec.get("kubeConfig") or {}).get("configMapRef")) or None
        return cls(
            source=source,
            path=str(spec.get("path") or ""),
            interval=interval,
            retry_interval=_duration(spec, "retryInterval")
            if spec.get("retryInterval")
            else interval,
            timeout=timeout,
            prune=bool(spec.get("prune")),
            wait=bool(spec.get("wait")),
            force=bool(spec.get("force")),
            deletion_policy=DeletionPolicy(policy),
            depends_on=tuple(_dependencies(spec, namespace)),
            health_checks=tuple(
                HealthCheckRef(
                    api_version=str(item.get("apiVersion") or ""),
                    kind=str(item.get("kind") or ""),
                    name=str(item.get("name") or ""),
                    namespace=str(item.get("namespace") or namespace),
                )
                for item in spec.get("healthChecks") or []
            ),
            health_check_exprs=tuple(_health_exprs(spec.get("healthCheckExprs") or [])),
            service_account_name=spec.get("serviceAccountName") or None,
            kubeconfig_secret=(
                (str(kubeconfig["name"]), str(kubeconfig.get("key") or "value"))
                if kubeconfig
                else None
            ),
            kubeconfig_config_map=str(cluster_config["name"]) if cluster_config else None,
            ignore=parse_ignore_rules(spec.get("ignore") or []),
            decryption_provider=provider,
            decryption_secret=((decryption.get("secretRef") or {}).get("name")) or None,
            build=BuildOptions.parse(spec),
            post_build=PostBuild.parse(spec.get("postBuild")),
            common_metadata=CommonMetadata.parse(spec.get("commonMetadata")),
        )


def parse_ignore_rules(items: Sequence[Mapping[str, Any]]) -> tuple[IgnoreRule, ...]:
    """spec.ignore as toolkit rules; a bad pointer or selector names its field."""
    try:
        return parse_rules(items, "spec.ignore")
    except IgnoreError as exc:
        raise SpecError(str(exc)) from None


def _duration(spec: Mapping[str, Any], name: str, *, required: bool = False) -> float:
    value = spec.get(name)
    if value is None:
        if required:
            raise SpecError(f"spec.{name} is required")
        return 0.0
    try:
        return parse_duration(str(value), field=f"spec.{name}")
    except DurationError as exc:
        raise SpecError(str(exc)) from None


def _expression(source: str | None, field_path: str) -> Expression | None:
    if not source:
        return None
    try:
        return compile_expression(source, field=field_path)
    except ExpressionError as exc:
        raise SpecError(str(exc), INVALID_CEL_EXPRESSION) from None


def _dependencies(spec: Mapping[str, Any], namespace: str) -> list[Dependency]:
    items = spec.get("dependsOn") or []
    try:
        check_kinds(spec)
    except DependencySpecError as exc:
        raise SpecError(str(exc)) from None
    return [
        Dependency(
            name=ref.name,
            namespace=ref.namespace,
            ready_expr=_expression(item.get("readyExpr"), f"spec.dependsOn[{index}].readyExpr"),
            kind=ref.kind,
        )
        for index, (item, ref) in enumerate(
            zip(items, dependency_refs(spec, namespace), strict=True)
        )
    ]


def _health_exprs(items: list[Mapping[str, Any]]) -> list[HealthCheckExpr]:
    result = []
    for index, item in enumerate(items):
        where = f"spec.healthCheckExprs[{index}]"
        current = _expression(item.get("current"), f"{where}.current")
        if current is None:
            raise SpecError(f"{where}.current is required")
        result.append(
            HealthCheckExpr(
                api_version=str(item.get("apiVersion") or ""),
                kind=str(item.get("kind") or ""),
                current=current,
                in_progress=_expression(item.get("inProgress"), f"{where}.inProgress"),
                failed=_expression(item.get("failed"), f"{where}.failed"),
            )
        )
    return result
