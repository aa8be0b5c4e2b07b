"""A HelmRelease's spec, read once into typed settings; bad input names its field.

Defaults are Flux's: `timeout` 5m, `maxHistory` 5, install CRDs `Create`,
upgrade CRDs `Skip`, remediation retries 0, `remediateLastFailure` true only
when retries are set, upgrade remediation strategy `rollback`, release name
`[targetNamespace-]name` shortened to Helm's 53 characters.
"""

from __future__ import annotations

import hashlib
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, Literal

from controllers.helm import postrender
from controllers.helm.dependencies import Dependency, parse_dependencies
from controllers.helm.drift import (
    NO_DRIFT_DETECTION,
    DriftSettings,
    DriftSpecError,
    parse_drift_detection,
)
from controllers.helm.values import ValuesReference, ValuesSpecError, parse_values_from
from controllers.toolkit.dependencies import DependencySpecError
from controllers.toolkit.runtime.durations import DurationError, parse_duration
from controllers.toolkit.runtime.fields import refuse_unsupported
from controllers.toolkit.runtime.frame import ReconcileError
from controllers.toolkit.runtime.reconciler import Resource
from controllers.toolkit.runtime.tenancy import Reference

RESOURCE = Resource("helm.toolkit.fluxcd.io", "v2", "helmreleases", "HelmRelease")
HELM_CHART = Resource("source.toolkit.fluxcd.io", "v1", "helmcharts", "HelmChart")
OCI_REPOSITORY = Resource("source.toolkit.fluxcd.io", "v1", "ocirepositories", "OCIRepository")
# What spec.chartRef may name: a HelmChart, or an OCIRepository whose artifact is a chart.
CHART_REF_KINDS = (HELM_CHART.kind, OCI_REPOSITORY.kind)
SOURCE_GROUP = HELM_CHART.group

DEFAULT_TIMEOUT = 300.0
DEFAULT_MAX_HISTORY = 5
DEFAULT_INTERVAL = 600.0
# Helm refuses longer release names (they become label values and Secret names).
MAX_RELEASE_NAME = 53
SHORT_NAME_PREFIX = 40
SHORT_NAME_HASH = 12

CrdPolicy = Literal["Skip", "Create", "CreateReplace"]
CRD_POLICIES: tuple[CrdPolicy, ...] = ("Skip", "Create", "CreateReplace")
Strategy = Literal["rollback", "uninstall"]

# Fields the CRD accepts that headwater does not implement yet: refused (the
# object stalls naming them) rather than silently ignored.
UNSUPPORTED_FIELDS: dict[str, str] = {
    "spec.kubeConfig.configMapRef": "remote clusters are reached with kubeConfig.secretRef only",
    "spec.commonMetadata": "not implemented yet",
    "spec.healthCheckExprs": "custom health checks are not implemented yet",
    "spec.waitStrategy": "headwater waits with helm's own watcher",
    "spec.postRenderStrategy": "post-renderers run on the rendered manifests only (no strategy)",
    "spec.install.strategy": "only the RemediateOnFailure strategy is implemented",
    "spec.upgrade.strategy": "only the RemediateOnFailure strategy is implemented",
    "spec.upgrade.chartNameChangeStrategy": "not implemented yet",
    "spec.chart.spec.verify": "chart verification belongs to the source controller",
    "spec.chart.metadata": "HelmChart template metadata is not implemented yet",
    "spec.install.replace": "pyhelm3 installs with `helm upgrade --install` (no --replace)",
    "spec.rollback.recreate": "helm v4 has no --recreate-pods",
    "spec.rollback.serverSideApply": "pyhelm3 0.5.8 has no option for it on rollback",
    "spec.rollback.disableWaitForJobs": "helm waits for Jobs whenever it waits",
    # pyhelm3 asks helm to wait for Jobs whenever it waits.
    "spec.install.disableWaitForJobs": "helm waits for Jobs whenever it waits",
    "spec.upgrade.disableWaitForJobs": "helm waits for Jobs whenever it waits",
}


class SpecError(ValueError):
    """The spec cannot work until it changes; the message names the field."""


@dataclass(frozen=True)
class Remediation:
    retries: int  # < 0: retry for ever
    remediate_last_failure: bool
    strategy: Strategy = "rollback"
    ignore_test_failures: bool | None = None

    def exhausted(self, failures: int) -> bool:
        return self.retries >= 0 and failures > self.retries


@dataclass(frozen=True)
class ChartTemplate:
    """`spec.chart.spec`: the HelmChart this release creates and owns."""

    chart: str
    version: str
    source_kind: str
    source_name: str
    source_namespace: str
    interval: str
    reconcile_strategy: str
    values_files: tuple[str, ...]
    ignore_missing_values_files: bool = False

    def helm_chart_spec(self) -> dict[str, Any]:
        spec: dict[str, Any] = {
            "chart": self.chart,
            "version": self.version,
            "sourceRef": {"kind": self.source_kind, "name": self.source_name},
            "interval": self.interval,
            "reconcileStrategy": self.reconcile_strategy,
        }
        if self.values_files:
            spec["valuesFiles"] = list(self.values_files)
        if self.ignore_missing_values_files:
            spec["ignoreMissingValuesFiles"] = True
        return spec


@dataclass(frozen=True)
class ChartSource:
    """Where the chart comes from: a HelmChart (given, or the one we own) or an
    OCIRepository (`kind`), whose artifact is the chart."""

    namespace: str
    name: str
    template: ChartTemplate | None  # set when the release owns the HelmChart
    kind: str = HELM_CHART.kind

    @property
    def key(self) -> str:
        """`<kind>/<namespace>/<name>`: the releases index their source by it."""
        return f"{self.kind}/{self.namespace}/{self.name}"


@dataclass(frozen=True)
class HelmReleaseSpec:
    interval: float
    release_name: str
    namespace: str  # the release's (target) namespace; helm stores the release there too
    timeout: float
    max_history: int
    chart: ChartSource
    values: Mapping[str, Any]
    values_from: tuple[ValuesReference, ...]
    create_namespace: bool
    install_crds: CrdPolicy
    upgrade_crds: CrdPolicy
    install_remediation: Remediation
    upgrade_remediation: Remediation
    upgrade_force: bool
    test_enable: bool
    test_ignore_failures: bool
    test_timeout: float
    rollback_force: bool
    rollback_timeout: float
    uninstall_keep_history: bool
    uninstall_timeout: float
    install_wait: bool
    upgrade_wait: bool
    install_timeout: float = DEFAULT_TIMEOUT
    upgrade_timeout: float = DEFAULT_TIMEOUT
    install_hooks: bool = True
    upgrade_hooks: bool = True
    rollback_hooks: bool = True
    uninstall_hooks: bool = True
    rollback_wait: bool = True
    uninstall_wait: bool = True
    upgrade_cleanup_on_fail: bool = False
    rollback_cleanup_on_fail: bool = False
    # Flux takes ownership of existing objects unless told not to.
    install_take_ownership: bool = True
    upgrade_take_ownership: bool = True
    # helm's --server-side: "true", "false", or "auto" (the previous release's method).
    install_server_side: str = "auto"
    upgrade_server_side: str = "auto"
    # Impersonated for every helm action (and CRD writes), as Flux does.
    service_account_name: str = ""
    depends_on: tuple[Dependency, ...] = ()
    # Each the kustomize settings (patches, images) of one `spec.postRenderers` entry.
    post_renderers: tuple[dict[str, Any], ...] = ()
    # Flux's origin labels (`helm.toolkit.fluxcd.io/name`, `/namespace`), which
    # every release's objects carry, as Flux's helm-controller always adds them.
    origin: tuple[tuple[str, str], ...] = ()
    drift: DriftSettings = NO_DRIFT_DETECTION
    # upgrade.preserveValues: helm's --reuse-values (the last release's values, with
    # the spec's merged over them) instead of --reset-values.
    upgrade_preserve_values: bool = False
    # install/upgrade.disableOpenAPIValidation and disableSchemaValidation: helm's
    # --disable-openapi-validation and --skip-schema-validation (pyhelm3 0.5.8 mangles
    # its own flag, so they go to helm as extra arguments).
    install_validation_args: tuple[str, ...] = ()
    upgrade_validation_args: tuple[str, ...] = ()
    # test.filters as helm's `--filter`: `name=<test>`, or `!name=<test>` to exclude.
    test_filters: tuple[str, ...] = ()
    # spec.kubeConfig.secretRef: (Secret name, key) of the remote cluster's kubeconfig.
    kubeconfig_secret: tuple[str, str] | None = None

    @property
    def post_renderers_digest(self) -> str:
        """Flux's observedPostRenderersDigest, of `spec.postRenderers` only; empty without."""
        return postrender.digest(self.post_renderers) if self.post_renderers else ""

    @property
    def renderers(self) -> tuple[dict[str, Any], ...]:
        """What helm runs: the user's post-renderers, then the origin labels (as Flux)."""
        if not self.origin:
            return self.post_renderers
        return (*self.post_renderers, postrender.origin_labels(dict(self.origin)))

    def impersonate(self, namespace: str, default_account: str = "") -> str | None:
        """The user helm acts as: the service account in the HelmRelease's namespace.

        `default_account` is the lockdown's --default-service-account, used
        when the release names none; None means the controller's own identity.
        """
        # The lockdown's default account is local; a remote cluster's kubeconfig
        # is its own identity (as in Flux's impersonator).
        account = self.service_account_name or (
            "" if self.kubeconfig_secret is not None else default_account
        )
        if not account:
            return None
        return f"system:serviceaccount:{namespace}:{account}"

    def references(self) -> list[Reference]:
        """What --no-cross-namespace-refs checks: where the chart comes from, and
        every dependency (as for a Kustomization)."""
        chart = self.chart
        dependencies = [
            Reference(f"spec.dependsOn[{index}]", dep.ref.kind, dep.ref.name, dep.ref.namespace)
            for index, dep in enumerate(self.depends_on)
        ]
        if chart.template is None:
            source = Reference("spec.chartRef", chart.kind, chart.name, chart.namespace)
        else:
            template = chart.template
            source = Reference(
                "spec.chart.spec.sourceRef",
                template.source_kind,
                template.source_name,
                template.source_namespace,
            )
        return [source, *dependencies]

    def ignores_test_failures(self, action: str) -> bool:
        remediation = self.install_remediation if action == "install" else self.upgrade_remediation
        if remediation.ignore_test_failures is not None:
            return remediation.ignore_test_failures
        return self.test_ignore_failures


def origin_labels(namespace: str, name: str) -> dict[str, str]:
    """Flux's labels on a release's objects: the HelmRelease they come from."""
    return {f"{RESOURCE.group}/name": name, f"{RESOURCE.group}/namespace": namespace}


def release_name(name: str, target_namespace: str = "", explicit: str = "") -> str:
    """Flux's release name: `releaseName`, else `[targetNamespace-]name`, at most 53 chars.

    A longer name keeps its first 40 characters and gets `-` and the first 12
    hex digits of its SHA-256, so it stays unique and stable.
    """
    full = explicit or (f"{target_namespace}-{name}" if target_namespace else name)
    if len(full) <= MAX_RELEASE_NAME:
        return full
    digest = hashlib.sha256(full.encode()).hexdigest()[:SHORT_NAME_HASH]
    return f"{full[:SHORT_NAME_PREFIX]}-{digest}"


def helm_chart_name(namespace: str, name: str) -> str:
    """The HelmChart a `spec.chart` release creates: `<namespace>-<name>`, as Flux names it."""
    return f"{namespace}-{name}"


def _duration(value: Any, field: str, default: float) -> float:
    if value in (None, ""):
        return default
    try:
        return parse_duration(str(value), field=field)
    except DurationError as exc:
        raise SpecError(str(exc)) from None


def _int(value: Any, field: str, default: int) -> int:
    if value is None:
        return default
    if isinstance(value, bool) or not isinstance(value, int):
        raise SpecError(f"{field}: expected an integer, got {value!r}")
    return value


def _validation_args(section: Mapping[str, Any]) -> tuple[str, ...]:
    return (
        *(["--disable-openapi-validation"] if section.get("disableOpenAPIValidation") else []),
        *(["--skip-schema-validation"] if section.get("disableSchemaValidation") else []),
    )


def _test_filters(items: Any) -> tuple[str, ...]:
    if items in (None, []):
        return ()
    if not isinstance(items, list):
        raise SpecError("spec.test.filters: must be a list")
    result = []
    for index, item in enumerate(items):
        name = item.get("name") if isinstance(item, Mapping) else None
        if not isinstance(name, str) or not name or "," in name:
            raise SpecError(f"spec.test.filters[{index}].name: required (a test hook's name)")
        result.append(("!" if item.get("exclude") else "") + f"name={name}")
    return tuple(result)


def _server_side(value: Any) -> str:
    return "auto" if value is None else ("true" if value else "false")


def _crds(value: Any, field: str, default: CrdPolicy) -> CrdPolicy:
    if value in (None, ""):
        return default
    for policy in CRD_POLICIES:
        if value == policy:
            return policy
    raise SpecError(f"{field}: {value!r} is not one of {', '.join(CRD_POLICIES)}")


def _remediation(section: Mapping[str, Any], field: str, *, upgrade: bool) -> Remediation:
    raw = section.get("remediation") or {}
    retries = _int(raw.get("retries"), f"{field}.retries", 0)
    last = raw.get("remediateLastFailure")
    strategy = raw.get("strategy") or "rollback"
    if strategy not in ("rollback", "uninstall") or (not upgrade and "strategy" in raw):
        raise SpecError(f"{field}.strategy: {strategy!r} is not rollback or uninstall")
    ignore = raw.get("ignoreTestFailures")
    return Remediation(
        retries=retries,
        remediate_last_failure=bool(last) if last is not None else retries != 0,
        strategy="uninstall" if strategy == "uninstall" else "rollback",
        ignore_test_failures=bool(ignore) if ignore is not None else None,
    )


def _chart_source(spec: Mapping[str, Any], namespace: str, name: str, interval: str) -> ChartSource:
    chart, chart_ref = spec.get("chart"), spec.get("chartRef")
    if bool(chart) == bool(chart_ref):
        raise SpecError("spec.chart, spec.chartRef: exactly one of them must be set")
    if chart_ref:
        kind = chart_ref.get("kind")
        if kind not in CHART_REF_KINDS:
            raise SpecError(
                f"spec.chartRef.kind: {kind!r} is not supported by headwater "
                f"(supported: {', '.join(CHART_REF_KINDS)})"
            )
        api_version = str(chart_ref.get("apiVersion") or "")
        if api_version and api_version.partition("/")[0] != SOURCE_GROUP:
            raise SpecError(
                f"spec.chartRef.apiVersion: {api_version!r} is not in {SOURCE_GROUP}, "
                f"the group of {kind}"
            )
        ref_name = str(chart_ref.get("name") or "")
        if not ref_name:
            raise SpecError("spec.chartRef.name: required")
        return ChartSource(str(chart_ref.get("namespace") or namespace), ref_name, None, str(kind))
    template: Mapping[str, Any] = (chart or {}).get("spec") or {}
    source: Mapping[str, Any] = template.get("sourceRef") or {}
    chart_name = str(template.get("chart") or "")
    if not chart_name:
        raise SpecError("spec.chart.spec.chart: required")
    source_kind = str(source.get("kind") or "HelmRepository")
    if source_kind not in ("HelmRepository", "GitRepository", "Bucket"):
        raise SpecError(f"spec.chart.spec.sourceRef.kind: {source_kind!r} is not a chart source")
    if not source.get("name"):
        raise SpecError("spec.chart.spec.sourceRef.name: required")
    source_namespace = str(source.get("namespace") or namespace)
    strategy = str(template.get("reconcileStrategy") or "ChartVersion")
    if strategy not in ("ChartVersion", "Revision"):
        raise SpecError(
            f"spec.chart.spec.reconcileStrategy: {strategy!r} is not ChartVersion or Revision"
        )
    values_files = template.get("valuesFiles") or []
    return ChartSource(
        namespace=source_namespace,
        name=helm_chart_name(namespace, name),
        template=ChartTemplate(
            chart=chart_name,
            version=str(template.get("version") or "*"),
            source_kind=source_kind,
            source_name=str(source["name"]),
            source_namespace=source_namespace,
            interval=str(template.get("interval") or interval),
            reconcile_strategy=strategy,
            values_files=tuple(str(v) for v in values_files),
            ignore_missing_values_files=bool(template.get("ignoreMissingValuesFiles")),
        ),
    )


def parse(obj: Mapping[str, Any]) -> HelmReleaseSpec:
    """The spec, checked. ReconcileError (stalled) for fields headwater refuses, SpecError
    for values that cannot work."""
    refuse_unsupported(obj, UNSUPPORTED_FIELDS)
    metadata = obj.get("metadata") or {}
    namespace, name = str(metadata.get("namespace") or ""), str(metadata["name"])
    spec: Mapping[str, Any] = obj.get("spec") or {}
    interval_text = str(spec.get("interval") or "10m")
    interval = _duration(spec.get("interval"), "spec.interval", DEFAULT_INTERVAL)
    target = str(spec.get("targetNamespace") or "")
    release_namespace = target or namespace
    storage = str(spec.get("storageNamespace") or "")
    if storage and storage != release_namespace:
        # The helm binary keeps a release in the namespace it installs into.
        raise ReconcileError(
            "UnsupportedField",
            f"spec.storageNamespace: {storage!r} differs from the release namespace "
            f"{release_namespace!r}; headwater drives the helm binary, which stores a "
            "release in its own namespace",
            stalled=True,
        )
    timeout = _duration(spec.get("timeout"), "spec.timeout", DEFAULT_TIMEOUT)
    install: Mapping[str, Any] = spec.get("install") or {}
    upgrade: Mapping[str, Any] = spec.get("upgrade") or {}
    test: Mapping[str, Any] = spec.get("test") or {}
    rollback: Mapping[str, Any] = spec.get("rollback") or {}
    uninstall: Mapping[str, Any] = spec.get("uninstall") or {}
    values = spec.get("values") or {}
    if not isinstance(values, Mapping):
        raise SpecError("spec.values: must be an object")
    try:
        values_from = parse_values_from(spec.get("valuesFrom") or [])
    except ValuesSpecError as exc:
        raise SpecError(str(exc)) from None
    if upgrade.get("force") and upgrade.get("serverSideApply"):
        # helm v4 cannot replace objects it applies server-side.
        raise SpecError("spec.upgrade.force: cannot be combined with serverSideApply: true")
    propagation = uninstall.get("deletionPropagation")
    if propagation not in (None, "background"):
        # pyhelm3 0.5.8 cannot pass helm's --cascade.
        raise ReconcileError(
            "UnsupportedField",
            f"spec.uninstall.deletionPropagation: {propagation!r} is not supported by headwater "
            "(only background, helm's default)",
            stalled=True,
        )
    max_history = _int(spec.get("maxHistory"), "spec.maxHistory", DEFAULT_MAX_HISTORY)
    if max_history < 0:
        raise SpecError("spec.maxHistory: must not be negative")
    # spec.persistentClient asks Flux to keep one kube client across the actions of
    # a reconcile. Here each helm action is its own helm process with its own
    # client, so no client outlives an action: true and false behave the same.
    if not isinstance(spec.get("persistentClient", True), bool):
        raise SpecError("spec.persistentClient: must be true or false")
    try:
        depends_on = parse_dependencies(spec, namespace)
    except DependencySpecError as exc:
        raise SpecError(str(exc)) from None
    try:
        post_renderers = postrender.parse_post_renderers(spec.get("postRenderers"))
    except postrender.PostRenderSpecError as exc:
        raise SpecError(str(exc)) from None
    try:
        drift = parse_drift_detection(spec.get("driftDetection"))
    except DriftSpecError as exc:
        raise SpecError(str(exc)) from None
    test_filters = _test_filters(test.get("filters"))
    kubeconfig = (spec.get("kubeConfig") or {}).get("secretRef") or None
    if kubeconfig is not None and not kubeconfig.get("name"):
        raise SpecError("spec.kubeConfig.secretRef.name: required")
    return HelmReleaseSpec(
        interval=interval if interval > 0 else DEFAULT_INTERVAL,
        release_name=release_name(name, target, str(spec.get("releaseName") or "")),
        namespace=release_namespace,
        timeout=timeout,
        max_history=max_history,
        chart=_chart_source(spec, namespace, name, interval_text),
        values=values,
        values_from=values_from,
        create_namespace=bool(install.get("createNamespace")),
        install_crds=_crds(
            install.get("crds"),
            "spec.install.crds",
            "Skip" if install.get("skipCRDs") else "Create",
        ),
        upgrade_crds=_crds(upgrade.get("crds"), "spec.upgrade.crds", "Skip"),
        install_remediation=_remediation(install, "spec.install.remediation", upgrade=False),
        upgrade_remediation=_remediation(upgrade, "spec.upgrade.remediation", upgrade=True),
        upgrade_force=bool(upgrade.get("force")),
        test_enable=bool(test.get("enable")),
        test_ignore_failures=bool(test.get("ignoreFailures")),
        test_timeout=_duration(test.get("timeout"), "spec.test.timeout", timeout),
        rollback_force=bool(rollback.get("force")),
        rollback_timeout=_duration(rollback.get("timeout"), "spec.rollback.timeout", timeout),
        uninstall_keep_history=bool(uninstall.get("keepHistory")),
        uninstall_timeout=_duration(uninstall.get("timeout"), "spec.uninstall.timeout", timeout),
        install_wait=not install.get("disableWait"),
        upgrade_wait=not upgrade.get("disableWait"),
        service_account_name=str(spec.get("serviceAccountName") or ""),
        install_timeout=_duration(install.get("timeout"), "spec.install.timeout", timeout),
        upgrade_timeout=_duration(upgrade.get("timeout"), "spec.upgrade.timeout", timeout),
        install_hooks=not install.get("disableHooks"),
        upgrade_hooks=not upgrade.get("disableHooks"),
        rollback_hooks=not rollback.get("disableHooks"),
        uninstall_hooks=not uninstall.get("disableHooks"),
        rollback_wait=not rollback.get("disableWait"),
        uninstall_wait=not uninstall.get("disableWait"),
        upgrade_cleanup_on_fail=bool(upgrade.get("cleanupOnFail")),
        rollback_cleanup_on_fail=bool(rollback.get("cleanupOnFail")),
        install_take_ownership=not install.get("disableTakeOwnership"),
        upgrade_take_ownership=not upgrade.get("disableTakeOwnership"),
        install_server_side=_server_side(install.get("serverSideApply")),
        upgrade_server_side=_server_side(upgrade.get("serverSideApply")),
        depends_on=depends_on,
        post_renderers=post_renderers,
        origin=tuple(origin_labels(namespace, name).items()),
        drift=drift,
        upgrade_preserve_values=bool(upgrade.get("preserveValues")),
        install_validation_args=_validation_args(install),
        upgrade_validation_args=_validation_args(upgrade),
        test_filters=test_filters,
        kubeconfig_secret=(
            (str(kubeconfig["name"]), str(kubeconfig.get("key") or "value")) if kubeconfig else None
        ),
    )
