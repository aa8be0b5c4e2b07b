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
import kubernetes.client
import kubernetes.config

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
from controllers.kustomize.substitute import read_as
from controllers.sealing import keys as sealing_keys
from controllers.toolkit.apply.inventory import Inventory
from controllers.toolkit.apply.inventory_watch import ForeignChange, InventoryWatcher, WatchedKind
from controllers.toolkit.apply.resources import ResourceClient
from controllers.toolkit.artifacts import ArtifactCache
from controllers.toolkit.runtime import conditions as cond
from controllers.toolkit.runtime import kube
from controllers.toolkit.runtime.concurrency import ReconcileSlots
from controllers.toolkit.runtime.events import make_recorder
from controllers.toolkit.runtime.frame import ReconcileError, ReconcileFrame
from controllers.toolkit.runtime.patching import ObjectWriter
from controllers.toolkit.runtime.reconciler import (
    Object,
    ObjectRef,
    Reconciler,
    Resource,
    WatchCache,
)
from controllers.toolkit.runtime.settings import Settings

log = logging.getLogger(__name__)

CONTROLLER = "kustomize"
GIT_REPOSITORY = Resource(SOURCE_GROUP, "v1", "gitrepositories", "GitRepository")
NAME_LABEL = f"{GROUP}/name"
NAMESPACE_LABEL = f"{GROUP}/namespace"
# How long the client of a rotated kubeconfig is kept for reconciles still using it.
RETIRED_CLIENT_SECONDS = 3600.0
# Index names on the Kustomization cache.
BY_SOURCE = "sourceRef"
BY_DEPENDENCY = "dependsOn"


def register(registry: kopf.OperatorRegistry, settings: Settings) -> None:
    """Add the kustomize controller's handlers to `registry`."""
    api = kube.api_client()
    default_client = ResourceClient(api, concurrency=settings.concurrent * 4)
    clients: dict[tuple[str, ...], ResourceClient] = {}
    # Per kubeConfig Secret: the kubeconfig text its client was built from.
    kubeconfig_texts: dict[tuple[str, ...], str] = {}
    artifacts = ArtifactCache(
        Path(tempfile.mkdtemp(prefix="headwater-kustomize-artifacts-")),
        max_size=settings.artifact_max_size,
    )
    git_repositories = WatchCache(GIT_REPOSITORY)
    writer = ObjectWriter(api, RESOURCE)

    read_secret = kube.secret_reader(api)
    read_config_map = kube.config_map_reader(api)

    async def read_config(namespace: str, kind: str, name: str) -> Mapping[str, str] | None:
        """A ConfigMap's or Secret's data as text, read as the controller (kubeConfig).

        postBuild.substituteFrom is not read here: it is read as the
        Kustomization's own identity (substitute.read_as).
        """
        if kind != "Secret":
            return await read_config_map(namespace, name)
        data = await read_secret(namespace, name)
        if data is None:
            return None
        return {key: value.decode("utf-8", "replace") for key, value in data.items()}

    async def load_keys(namespace: str, secret_name: str | None) -> Sequence[Any]:
        # A named key Secret is the Kustomization's own (Flux's secretRef meaning);
        # otherwise every key the controller keeps in its namespace.
        if secret_name:
            return await sealing_keys.load_keys(api, namespace, secret_name)
        return await sealing_keys.load_keys(api, settings.namespace)

    core = kubernetes.client.CoreV1Api(api)

    async def client_for(
        spec: KustomizationSpec, namespace: str, *, account_must_exist: bool = False
    ) -> ResourceClient:
        """The client to apply with: ours, impersonating a service account, or remote."""
        if spec.kubeconfig_secret is not None:
            name, key = spec.kubeconfig_secret
            data = await read_config(namespace, "Secret", name)
            if data is None or key not in data:
                raise IdentityGone(
                    f"spec.kubeConfig.secretRef: key '{key}' of Secret '{namespace}/{name}' "
                    "not found"
                )
            cache_key: tuple[str, ...] = ("kubeconfig", namespace, name, key)
            if kubeconfig_texts.get(cache_key) != data[key]:
                try:
                    configuration = kube.configuration_from_text(data[key])
                except kube.KubeConfigError as exc:
                    where = f"key '{key}' of Secret '{namespace}/{name}'"
                    raise ReconcileError(
                        cond.RECONCILIATION_FAILED, f"spec.kubeConfig.secretRef: {where}: {exc}"
                    ) from None
                replaced = clients.get(cache_key)
                if replaced is not None:
                    # The Secret was rotated. A reconcile may still be using the old
                    # client, so it is closed later rather than now.
                    asyncio.get_running_loop().call_later(RETIRED_CLIENT_SECONDS, replaced.close)
                clients[cache_key] = ResourceClient(kubernetes.client.ApiClient(configuration))
                kubeconfig_texts[cache_key] = data[key]
            return clients[cache_key]
        if spec.service_account_name:
            if account_must_exist:
                await _require_service_account(core, namespace, spec.service_account_name)
            user = f"system:serviceaccount:{namespace}:{spec.service_account_name}"
            cache_key = ("impersonate", user)
            if cache_key not in clients:
                impersonating = kubernetes.client.ApiClient(api.configuration)
                impersonating.set_default_header("Impersonate-User", user)
                clients[cache_key] = ResourceClient(impersonating)
            return clients[cache_key]
        return default_client

    queue: Reconciler

    def observe_kinds(inventory: Inventory) -> None:
        watcher.ensure({WatchedKind(entry.api_version, entry.id.kind) for entry in inventory})

    kustomizations = KustomizationReconciler(
        frame=ReconcileFrame(RESOURCE, writer, make_recorder(CONTROLLER, api, settings)),
        artifacts=artifacts,
        sources={"GitRepository": git_repositories},
        kustomizations=lambda ref: queue.peek(ref),
        read_config=read_as,
        load_keys=load_keys,
        client_for=client_for,
        observe_kinds=observe_kinds,
        expect_deletions=lambda ids: watcher.expect_deletions(ids),
    )
    queue = Reconciler(
        RESOURCE,
        reconcile=kustomizations.reconcile,
        finalize=kustomizations.finalize,
        patch_finalizers=writer.set_finalizers,
        slots=ReconcileSlots(settings.concurrent),
    )

    def heal(change: ForeignChange) -> None:
        labels = (change.obj.get("metadata") or {}).get("labels") or {}
        name, namespace = labels.get(NAME_LABEL), labels.get(NAMESPACE_LABEL)
        if name and namespace:
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
    )

    # Flux's field indexes: who uses a source, who depends on a Kustomization.
    queue.add_index(BY_SOURCE, _source_key)
    queue.add_index(BY_DEPENDENCY, _dependency_keys)

    def on_source_change(old: Object | None, new: Object | None) -> None:
        if _artifact_revision(old) == _artifact_revision(new) or new is None:
            return
        source = ObjectRef.of(new)
        for ks in queue.indexed(BY_SOURCE, ("GitRepository", source.namespace, source.name)):
            ref = ObjectRef.of(ks)
            kustomizations.cancel_health_wait(ref, _artifact_revision(new))
            queue.request(ref)

    def on_kustomization_change(old: Object | None, new: Object | None) -> None:
        if new is None:
            if old is not None:
                kustomizations.forget(ObjectRef.of(old))
            return
        if _readiness(old) == _readiness(new):
            return
        changed = ObjectRef.of(new)
        for ks in queue.indexed(BY_DEPENDENCY, (changed.namespace, changed.name)):
            queue.request(ObjectRef.of(ks))

    git_repositories.add_observer(on_source_change)
    queue.add_observer(on_kustomization_change)
    git_repositories.register(registry)
    queue.register(registry)

    key_manager = sealing_keys.KeyManager(
        api, settings.namespace, renew_period=settings.sealing_key_renew_period
    )
    background: list[asyncio.Task[None]] = []

    @kopf.on.startup(registry=registry, id="kustomize-sealing-keys")
    async def start_key_manager(**_: Any) -> None:
        # Creates the first sealing key and renews it; never fails the startup.
        background.append(asyncio.create_task(key_manager.run(), name="sealing keys"))

    @kopf.on.cleanup(registry=registry, id="kustomize-cleanup")
    async def close(**_: Any) -> None:
        for task in background:
            task.cancel()
        watcher.close()
        await artifacts.close()
        for client in [default_client, *clients.values()]:
            client.close()


async def _require_service_account(
    core: kubernetes.client.CoreV1Api, namespace: str, name: str
) -> None:
    try:
        await asyncio.to_thread(core.read_namespaced_service_account, name, namespace)
    except kubernetes.client.ApiException as exc:
        if exc.status == 404:
            raise IdentityGone(f"ServiceAccount '{namespace}/{name}' not found") from None
        raise


def _source_key(obj: Object) -> list[tuple[str, str, str]]:
    source = SourceRef.of(obj.get("spec") or {}, ObjectRef.of(obj).namespace)
    return [(source.kind, source.namespace, source.name)]


def _dependency_keys(obj: Object) -> list[tuple[str, str]]:
    return dependency_refs(obj.get("spec") or {}, ObjectRef.of(obj).namespace)


def _artifact_revision(obj: Object | None) -> str | None:
    if obj is None:
        return None
    revision = ((obj.get("status") or {}).get("artifact") or {}).get("revision")
    return str(revision) if revision else None


def _readiness(obj: Object | None) -> tuple[Any, ...]:
    if obj is None:
        return ()
    status = obj.get("status") or {}
    return (
        cond.condition_status(status, cond.READY),
        status.get("lastAppliedRevision"),
        status.get("observedGeneration"),
    )
