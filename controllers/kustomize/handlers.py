"""Kopf wiring of the kustomize controller.

It reconciles Kustomizations, reads (never writes) the GitRepositories they
point at, and watches every object it applied: a source's new revision, a
dependency becoming ready, or an out-of-band edit of an applied object each
requeue the Kustomizations concerned, so nothing waits for the interval.
"""

from __future__ import annotations

import asyncio
import logging
import tempfile
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import kopf

from controllers.kustomize.kustomization import (
    FIELD_MANAGER,
    RESOURCE,
    IdentityGone,
    KustomizationReconciler,
)
from controllers.kustomize.spec import (
    GROUP,
    SOURCE_GROUP,
    KustomizationSpec,
    SourceRef,
    dependency_refs,
)
from controllers.sealing import keys as sealing_keys
from controllers.toolkit.apply.inventory import Inventory
from controllers.toolkit.apply.inventory_watch import ForeignChange, InventoryWatcher, WatchedKind
from controllers.toolkit.apply.resources import ResourceClient
from controllers.toolkit.artifacts import ArtifactCache
from controllers.toolkit.dependencies import (
    HELM_RELEASE,
    KUSTOMIZATION,
    DependencyRef,
    readiness,
    ref_of,
)
from controllers.toolkit.kustomize.substitute import read_as
from controllers.toolkit.runtime import kube
from controllers.toolkit.runtime.clients import (
    ClientPool,
    IdentityNotFound,
    SecretKeyRef,
)
from controllers.toolkit.runtime.concurrency import ReconcileSlots
from controllers.toolkit.runtime.events import make_recorder
from controllers.toolkit.runtime.frame import ReconcileFrame
from controllers.toolkit.runtime.leader import Leadership, while_leading
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

CONTROLLER = "kustomize"
GIT_REPOSITORY = Resource(SOURCE_GROUP, "v1", "gitrepositories", "GitRepository")
OCI_REPOSITORY = Resource(SOURCE_GROUP, "v1", "ocirepositories", "OCIRepository")
HELM_RELEASE_RESOURCE = Resource("helm.toolkit.fluxcd.io", "v2", "helmreleases", HELM_RELEASE)
NAME_LABEL = f"{GROUP}/name"
NAMESPACE_LABEL = f"{GROUP}/namespace"
# How long shutdown waits for the events still being recorded (a post's own timeout).
EVENT_DRAIN_SECONDS = 5.0
# Index names on the Kustomization cache.
BY_SOURCE = "sourceRef"
BY_DEPENDENCY = "dependsOn"


def register(registry: kopf.OperatorRegistry, settings: Settings, leadership: Leadership) -> None:
    """Add the kustomize controller's handlers to `registry`.

    Kustomizations reconcile only while `leadership` leads, and only those
    matching --watch-label-selector. As in Flux, the selector filters the
    Kustomizations alone: the GitRepository cache holds every source, so a
    shard's Kustomization may use a source of any shard (or of none).
    """
    api = kube.api_client()
    artifacts = ArtifactCache(
        Path(tempfile.mkdtemp(prefix="headwater-kustomize-artifacts-")),
        max_size=settings.artifact_max_size,
    )
    git_repositories = WatchCache(GIT_REPOSITORY)
    oci_repositories = WatchCache(OCI_REPOSITORY)
    writer = ObjectWriter(api, RESOURCE)

    read_secret = kube.secret_reader(api)
    read_config_map = kube.config_map_reader(api)

    async def load_keys(namespace: str, secret_name: str | None) -> Sequence[Any]:
        # A named key Secret is the Kustomization's own (Flux's secretRef meaning);
        # otherwise every key the controller keeps in its namespace.
        if secret_name:
            return await sealing_keys.load_keys(api, namespace, secret_name)
        return await sealing_keys.load_keys(api, settings.namespace)

    lockdown = Lockdown.of(settings)
    pool = ClientPool(
        api,
        read_secret=read_secret,
        read_config_map=read_config_map,
        concurrency=settings.concurrent * 4,
    )

    async def client_for(
        spec: KustomizationSpec, namespace: str, *, account_must_exist: bool = False
    ) -> ResourceClient:
        """The client to apply with: ours, impersonating a service account, or remote."""
        secret = spec.kubeconfig_secret
        account = spec.service_account_name
        if secret is None and spec.kubeconfig_config_map is None:
            # The lockdown's default account is local; a remote cluster's
            # kubeconfig is its own identity (as in Flux's impersonator).
            account = lockdown.service_account(account)
        try:
            return await pool.client(
                namespace,
                service_account=account,
                kubeconfig_secret=SecretKeyRef(*secret) if secret else None,
                cluster_config_map=spec.kubeconfig_config_map,
                account_must_exist=account_must_exist,
            )
        except IdentityNotFound as exc:
            # Finalize tells a gone identity from a refused one by this type.
            raise IdentityGone(exc.message) from None

    queue: Reconciler

    def heal(change: ForeignChange) -> None:
        owner = _owner_of(change.obj)
        if owner is None:
            return
        namespace, name = owner
        log.info(
            "%s of an applied object by %s: requeue Kustomization %s/%s",
            change.event_type.lower(),
            change.manager or "someone",
            namespace,
            name,
        )
        queue.request(ObjectRef(namespace, name))

    watcher = InventoryWatcher(
        api,
        label_selector=NAME_LABEL,
        field_manager=FIELD_MANAGER,
        on_change=heal,
        owner_of=_owner_of,
    )

    def observe_kinds(inventory: Inventory) -> None:
        watcher.ensure({WatchedKind(entry.api_version, entry.id.kind) for entry in inventory})

    # Read-only: a Kustomization may depend on a HelmRelease (headwater's extension).
    helm_releases = WatchCache(HELM_RELEASE_RESOURCE)

    def dependency(ref: DependencyRef) -> Object | None:
        cache = queue if ref.kind == KUSTOMIZATION else helm_releases
        return cache.peek(ObjectRef(ref.namespace, ref.name))

    # Events are delivered in the background, in order per Kustomization: a
    # reconcile (and its slot) does not wait two round trips per event.
    recorder = make_recorder(CONTROLLER, api, settings, queued=True)
    kustomizations = KustomizationReconciler(
        frame=ReconcileFrame(RESOURCE, writer, recorder),
        artifacts=artifacts,
        sources={"GitRepository": git_repositories, "OCIRepository": oci_repositories},
        dependencies=dependency,
        read_config=read_as,
        load_keys=load_keys,
        client_for=client_for,
        observe_kinds=observe_kinds,
        expect_deletions=lambda ids: watcher.expect_deletions(ids),
        lockdown=lockdown,
        watch_proof=watcher,
        full_verify_interval=settings.full_verify_interval,
    )
    queue = Reconciler(
        RESOURCE,
        reconcile=kustomizations.reconcile,
        finalize=kustomizations.finalize,
        patch_finalizers=writer.set_finalizers,
        slots=ReconcileSlots(settings.concurrent),
        leadership=leadership,
        selector=settings.watch_selector,
    )

    # Flux's field indexes: who uses a source, who depends on a Kustomization.
    queue.add_index(BY_SOURCE, _source_key)
    queue.add_index(BY_DEPENDENCY, _dependency_keys)

    def on_source_change(kind: str) -> ObserverFn:
        def on_change(old: Object | None, new: Object | None) -> None:
            if _artifact_revision(old) == _artifact_revision(new) or new is None:
                return
            source = ObjectRef.of(new)
            for ks in queue.indexed(BY_SOURCE, (kind, source.namespace, source.name)):
                ref = ObjectRef.of(ks)
                kustomizations.cancel_health_wait(ref, _artifact_revision(new))
                queue.request(ref)

        return on_change

    def dependents_of(kind: str) -> ObserverFn:
        def on_change(old: Object | None, new: Object | None) -> None:
            if new is None or readiness(old) == readiness(new):
                return
            for ks in queue.indexed(BY_DEPENDENCY, ref_of(kind, new)):
                queue.request(ObjectRef.of(ks))

        return on_change

    def on_kustomization_change(old: Object | None, new: Object | None) -> None:
        if new is None and old is not None:
            kustomizations.forget(ObjectRef.of(old))

    git_repositories.add_observer(on_source_change(GIT_REPOSITORY.kind))
    oci_repositories.add_observer(on_source_change(OCI_REPOSITORY.kind))
    queue.add_observer(on_kustomization_change)
    queue.add_observer(dependents_of(KUSTOMIZATION))
    helm_releases.add_observer(dependents_of(HELM_RELEASE))
    git_repositories.register(registry)
    oci_repositories.register(registry)
    helm_releases.register(registry)
    queue.register(registry)

    key_manager = sealing_keys.KeyManager(
        api, settings.namespace, renew_period=settings.sealing_key_renew_period
    )
    background: list[asyncio.Task[None]] = []

    @kopf.on.startup(registry=registry, id="kustomize-sealing-keys")
    async def start_key_manager(**_: Any) -> None:
        # Creates the first sealing key and renews it; never fails the startup.
        # Only the leader writes keys, so two replicas never add one each.
        background.append(
            asyncio.create_task(
                while_leading(leadership, key_manager.run, "sealing keys"), name="sealing keys"
            )
        )

    @kopf.on.cleanup(registry=registry, id="kustomize-cleanup")
    async def close(**_: Any) -> None:
        for task in background:
            task.cancel()
        watcher.close()
        try:
            await asyncio.wait_for(recorder.drain(), EVENT_DRAIN_SECONDS)
        except TimeoutError:
            log.warning("stopping with events not yet recorded")
        await artifacts.close()
        pool.close()


def _owner_of(obj: Mapping[str, Any]) -> tuple[str, str] | None:
    """(namespace, name) of the Kustomization that applied `obj`, from its owner labels."""
    labels = (obj.get("metadata") or {}).get("labels") or {}
    name, namespace = labels.get(NAME_LABEL), labels.get(NAMESPACE_LABEL)
    return (str(namespace), str(name)) if name and namespace else None


def _source_key(obj: Object) -> list[tuple[str, str, str]]:
    source = SourceRef.of(obj.get("spec") or {}, ObjectRef.of(obj).namespace)
    return [(source.kind, source.namespace, source.name)]


def _dependency_keys(obj: Object) -> list[DependencyRef]:
    return dependency_refs(obj.get("spec") or {}, ObjectRef.of(obj).namespace)


def _artifact_revision(obj: Object | None) -> str | None:
    if obj is None:
        return None
    revision = ((obj.get("status") or {}).get("artifact") or {}).get("revision")
    return str(revision) if revision else None
