"""Kopf wiring of the helm controller: HelmRelease, and the HelmCharts it reads.

Handlers are added by `register`, on the registry the runner passes in,
never on kopf's global registry: that is how `headwater run all` combines
every controller in one operator. The work lives in the step modules:
`spec`, `values`, `helmchart` + `chart` (where the chart comes from),
`actions` + `engine` + `release` (what helm does), `storage`, `crds`.
"""

from __future__ import annotations

import logging
import os
import shutil
import tempfile
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import kopf

from controllers.helm.chart import ChartStore
from controllers.helm.crds import apply_crds
from controllers.helm.drift import HELM_FIELD_MANAGER, NAME_LABEL, SpecChanges, release_of
from controllers.helm.engine import Engine
from controllers.helm.helmchart import HelmCharts
from controllers.helm.helmrelease import HelmReleaseReconciler
from controllers.helm.postrender import install_plugin
from controllers.helm.release import Helm, ReleaseRef
from controllers.helm.spec import HELM_CHART, OCI_REPOSITORY, RESOURCE
from controllers.helm.spec import HelmReleaseSpec as ReleaseSpec
from controllers.helm.storage import StoredRevision, stored_revisions
from controllers.toolkit.apply.inventory_watch import ForeignChange, InventoryWatcher
from controllers.toolkit.apply.resources import ResourceClient
from controllers.toolkit.dependencies import (
    HELM_RELEASE,
    KUSTOMIZATION,
    DependencyRef,
    dependency_refs,
    readiness,
    ref_of,
)
from controllers.toolkit.runtime import kube
from controllers.toolkit.runtime.clients import ClientPool, SecretKeyRef
from controllers.toolkit.runtime.concurrency import ReconcileSlots
from controllers.toolkit.runtime.events import make_recorder
from controllers.toolkit.runtime.frame import ReconcileFrame
from controllers.toolkit.runtime.leader import Leadership
from controllers.toolkit.runtime.patching import ObjectWriter
from controllers.toolkit.runtime.reconciler import (
    Object,
    ObjectRef,
    ObserverFn,
    Reconciler,
    Resource,
    WatchCache,
)
from controllers.toolkit.runtime.settings import Settings
from controllers.toolkit.runtime.tenancy import Lockdown

log = logging.getLogger(__name__)

CONTROLLER = "helm"
# Index of HelmReleases by the `namespace/name` of the HelmChart they read.
BY_CHART = "chart"
# Index of HelmReleases by the DependencyRef of each object they depend on.
BY_DEPENDENCY = "dependsOn"

KUSTOMIZATION_RESOURCE = Resource(
    "kustomize.toolkit.fluxcd.io", "v1", "kustomizations", KUSTOMIZATION
)
_REPO_ROOT = Path(__file__).resolve().parents[2]


def helm_executable() -> str:
    """The pinned helm (v4) in the repository's .tools/bin, else the one on PATH."""
    return _pinned("helm")


def _pinned(tool: str) -> str:
    pinned = _REPO_ROOT / ".tools" / "bin" / tool
    if pinned.exists():
        return str(pinned)
    return shutil.which(tool) or tool


def _install_post_renderer() -> None:
    """Write the post-renderer plugin and point helm at it (HELM_PLUGINS).

    helm reads its plugin directories from the environment only, so the
    controller's own environment carries it to every helm it starts; a
    HELM_PLUGINS set by the operator stays searched after ours.
    """
    root = Path(tempfile.mkdtemp(prefix="headwater-helm-plugins-"))
    install_plugin(root)
    existing = os.environ.get("HELM_PLUGINS")
    os.environ["HELM_PLUGINS"] = os.pathsep.join([str(root), *([existing] if existing else [])])


def register(registry: kopf.OperatorRegistry, settings: Settings, leadership: Leadership) -> None:
    """Add the helm controller's handlers to `registry`."""
    api = kube.api_client()
    _install_post_renderer()
    read_secret = kube.secret_reader(api)
    read_config_map = kube.config_map_reader(api)

    async def read_config(kind: str, namespace: str, name: str) -> Mapping[str, str] | None:
        if kind != "Secret":
            return await read_config_map(namespace, name)
        data = await read_secret(namespace, name)
        if data is None:
            return None
        return {key: value.decode("utf-8", "replace") for key, value in data.items()}

    async def revisions(ref: ReleaseRef) -> list[StoredRevision]:
        # A remote release's storage is read with that cluster's client.
        return await stored_revisions(ref.api or api, ref.namespace, ref.name)

    pool = ClientPool(
        api,
        read_secret=read_secret,
        read_config_map=read_config_map,
        concurrency=settings.concurrent * 4,
    )

    async def crds(files: Sequence[str], policy: str, ref: ReleaseRef) -> list[str]:
        # CRDs are written as the identity helm acts as (impersonated when set), in
        # the release's cluster.
        target = ref.api or pool.impersonating(ref.as_user).api_client
        return await apply_crds(target, files, policy)  # type: ignore[arg-type]

    helm_charts = WatchCache(HELM_CHART)
    # Read-only: spec.chartRef may name an OCIRepository whose artifact is the chart.
    oci_repositories = WatchCache(OCI_REPOSITORY)
    charts = ChartStore(
        Path(tempfile.mkdtemp(prefix="headwater-helm-charts-")),
        max_size=settings.artifact_max_size,
    )
    writer = ObjectWriter(api, RESOURCE)
    # Read-only: a HelmRelease may depend on a Kustomization (headwater's extension).
    kustomizations = WatchCache(KUSTOMIZATION_RESOURCE)
    queue: Reconciler

    def dependency(ref: DependencyRef) -> Object | None:
        cache = queue if ref.kind == HELM_RELEASE else kustomizations
        return cache.peek(ObjectRef(ref.namespace, ref.name))

    lockdown = Lockdown.of(settings)

    async def client_for(spec: ReleaseSpec, namespace: str) -> ResourceClient:
        """The identity helm acts as, for drift, CRDs and helm's storage: the release's
        serviceAccountName, else the lockdown's default service account; in a remote
        cluster (kubeConfig.secretRef), its kubeconfig's identity (impersonating the
        serviceAccountName there, when set)."""
        secret = spec.kubeconfig_secret
        account = spec.service_account_name or ("" if secret else lockdown.default_service_account)
        return await pool.client(
            namespace,
            service_account=account or None,
            kubeconfig_secret=SecretKeyRef(*secret) if secret else None,
        )

    spec_changes = SpecChanges()

    def heal(change: ForeignChange) -> None:
        """Someone changed or deleted an object of a release that detects drift: look now."""
        origin = release_of(change.obj)
        if origin is None or not releases.detects_drift(*origin):
            return  # every release's objects carry the labels; not all detect drift
        if not spec_changes.worth_a_look(change.event_type, change.obj):
            return
        log.info(
            "%s of a release object by %s: requeue HelmRelease %s/%s",
            change.event_type.lower(),
            change.manager or "someone",
            *origin,
        )
        queue.request(ObjectRef(*origin))

    watcher = InventoryWatcher(
        api, label_selector=NAME_LABEL, field_manager=HELM_FIELD_MANAGER, on_change=heal
    )

    releases = HelmReleaseReconciler(
        frame=ReconcileFrame(
            RESOURCE, writer, make_recorder(CONTROLLER, api, settings), failure_events="on_change"
        ),
        engine=Engine(Helm(helm_executable(), kustomize=_pinned("kustomize")), revisions, crds),
        charts=charts,
        helm_charts=HelmCharts(api, helm_charts.get, oci_repositories.get),
        read_config=read_config,
        lockdown=lockdown,
        dependencies=dependency,
        client_for=client_for,
        observe_kinds=watcher.ensure,
        read_secret=read_secret,
    )
    queue = Reconciler(
        RESOURCE,
        reconcile=releases.reconcile,
        finalize=releases.finalize,
        patch_finalizers=writer.set_finalizers,
        slots=ReconcileSlots(settings.concurrent),
        leadership=leadership,
        selector=settings.watch_selector,
    )
    queue.add_index(BY_CHART, lambda release: [_chart_of(release)])

    def on_chart_change(kind: str) -> ObserverFn:
        """A chart source's new artifact (or its first one), or its readiness changing
        (a failure, or the recovery from one), makes the releases using it run."""

        def on_change(old: Object | None, new: Object | None) -> None:
            if new is None or (
                _artifact_digest(old) == _artifact_digest(new) and readiness(old) == readiness(new)
            ):
                return
            chart = ObjectRef.of(new)
            for release in queue.indexed(BY_CHART, f"{kind}/{chart.namespace}/{chart.name}"):
                queue.request(ObjectRef.of(release))

        return on_change

    queue.add_index(BY_DEPENDENCY, _dependency_keys)

    def dependents_of(kind: str) -> ObserverFn:
        """A dependency's readiness changed: its dependents look again now, not in 30s."""

        def on_change(old: Object | None, new: Object | None) -> None:
            if new is None or readiness(old) == readiness(new):
                return
            for release in queue.indexed(BY_DEPENDENCY, ref_of(kind, new)):
                queue.request(ObjectRef.of(release))

        return on_change

    helm_charts.add_observer(on_chart_change(HELM_CHART.kind))
    oci_repositories.add_observer(on_chart_change(OCI_REPOSITORY.kind))
    queue.add_observer(dependents_of(HELM_RELEASE))
    kustomizations.add_observer(dependents_of(KUSTOMIZATION))
    helm_charts.register(registry)
    oci_repositories.register(registry)
    kustomizations.register(registry)
    queue.register(registry)

    @kopf.on.cleanup(registry=registry, id="helm-cleanup")
    async def close(**_: Any) -> None:
        watcher.close()
        pool.close()
        await charts.close()
        api.close()


def _chart_of(release: Object) -> str:
    """`<kind>/<namespace>/<name>` of the chart source a release reads (as `spec.parse`
    resolves it): its chartRef, else the HelmChart it owns."""
    metadata = release.get("metadata") or {}
    namespace, name = metadata.get("namespace") or "", metadata.get("name") or ""
    spec = release.get("spec") or {}
    chart_ref = spec.get("chartRef")
    if chart_ref:
        kind = chart_ref.get("kind") or HELM_CHART.kind
        return f"{kind}/{chart_ref.get('namespace') or namespace}/{chart_ref.get('name')}"
    source = ((spec.get("chart") or {}).get("spec") or {}).get("sourceRef") or {}
    return f"{HELM_CHART.kind}/{source.get('namespace') or namespace}/{namespace}-{name}"


def _dependency_keys(release: Object) -> list[DependencyRef]:
    namespace = (release.get("metadata") or {}).get("namespace") or ""
    return dependency_refs(release.get("spec") or {}, namespace, HELM_RELEASE)


def _artifact_digest(obj: Object | None) -> str | None:
    if obj is None:
        return None
    digest = ((obj.get("status") or {}).get("artifact") or {}).get("digest")
    return str(digest) if digest else None
