"""Kopf wiring of the image controller: ImageRepository, ImagePolicy, ImageUpdateAutomation.

Flux runs these as two controllers (image-reflector and image-automation); here they
are one, because policies read the scanned tags from the reflector's in-memory
`TagStore`, which a second process could not see. The work lives in
`imagerepository`, `imagepolicy` and `imageupdateautomation`; this file connects them:
a scan with a new tag set requeues the policies of that repository (index
`imageRepositoryRef`), a policy whose latest image moved (seen in its watch) requeues the
automations of its namespace (index `namespace`), and a GitRepository whose artifact moved
requeues the automations that write to it (index `sourceRef`). GitRepositories are
read from a watch cache, never written.
"""

from __future__ import annotations

import asyncio
from collections.abc import Mapping
from typing import Any

import kopf
import kubernetes
from kubernetes.client.rest import ApiException

from controllers.image import imagepolicy, imagerepository, imageupdateautomation
from controllers.image.tags import TagStore
from controllers.toolkit.runtime import kube
from controllers.toolkit.runtime.concurrency import ReconcileSlots
from controllers.toolkit.runtime.events import make_recorder
from controllers.toolkit.runtime.frame import ReconcileFrame
from controllers.toolkit.runtime.leader import Leadership
from controllers.toolkit.runtime.patching import ObjectWriter
from controllers.toolkit.runtime.reconciler import (
    Object,
    ObjectRef,
    Reconciler,
    Resource,
    WatchCache,
)
from controllers.toolkit.runtime.settings import Settings
from controllers.toolkit.runtime.tenancy import Lockdown

CONTROLLER = "image"
GIT_REPOSITORY = Resource("source.toolkit.fluxcd.io", "v1", "gitrepositories", "GitRepository")
BY_REPOSITORY = "imageRepositoryRef"
BY_NAMESPACE = "namespace"
BY_SOURCE = "sourceRef"


def register(registry: kopf.OperatorRegistry, settings: Settings, leadership: Leadership) -> None:
    """Add the image controller's handlers to `registry`."""
    api = kube.api_client()
    read_secret = kube.secret_reader(api)
    recorder = make_recorder(CONTROLLER, api, settings)
    slots = ReconcileSlots(settings.concurrent)
    store = TagStore()
    core = kubernetes.client.CoreV1Api(api)

    async def namespace_labels(name: str) -> Mapping[str, str] | None:
        try:
            namespace = await asyncio.to_thread(core.read_namespace, name)
        except ApiException as exc:
            if exc.status == 404:
                return None
            raise
        return dict(namespace.metadata.labels or {})

    def queue_for(resource: Resource, reconciler: Any, writer: ObjectWriter) -> Reconciler:
        return Reconciler(
            resource,
            reconcile=lambda obj: reconciler().reconcile(obj),
            finalize=lambda obj: _finalize(reconciler(), obj),
            patch_finalizers=writer.set_finalizers,
            slots=slots,
            leadership=leadership,
            selector=settings.watch_selector,
        )

    repo_writer = ObjectWriter(api, imagerepository.RESOURCE)
    policy_writer = ObjectWriter(api, imagepolicy.RESOURCE)
    auto_writer = ObjectWriter(api, imageupdateautomation.RESOURCE)
    holders: dict[str, Any] = {}
    repo_queue = queue_for(imagerepository.RESOURCE, lambda: holders["repo"], repo_writer)
    policy_queue = queue_for(imagepolicy.RESOURCE, lambda: holders["policy"], policy_writer)
    auto_queue = queue_for(imageupdateautomation.RESOURCE, lambda: holders["auto"], auto_writer)
    git_repositories = WatchCache(GIT_REPOSITORY)

    def requeue_policies(ref: ObjectRef) -> None:
        for policy in policy_queue.indexed(BY_REPOSITORY, (ref.namespace, ref.name)):
            policy_queue.request(ObjectRef.of(policy))

    def requeue_automations(ref: ObjectRef) -> None:
        for automation in auto_queue.indexed(BY_NAMESPACE, ref.namespace):
            auto_queue.request(ObjectRef.of(automation))

    holders["repo"] = imagerepository.ImageRepositoryReconciler(
        frame=ReconcileFrame(imagerepository.RESOURCE, repo_writer, recorder),
        read_secret=read_secret,
        store=store,
        max_tags=settings.image_max_tags,
        on_new_tags=requeue_policies,
    )
    holders["policy"] = imagepolicy.ImagePolicyReconciler(
        frame=ReconcileFrame(imagepolicy.RESOURCE, policy_writer, recorder),
        store=store,
        repositories=repo_queue.get,
        namespace_labels=namespace_labels,
        lockdown=Lockdown.of(settings),
    )
    holders["auto"] = imageupdateautomation.ImageUpdateAutomationReconciler(
        frame=ReconcileFrame(imageupdateautomation.RESOURCE, auto_writer, recorder),
        read_secret=read_secret,
        git_repositories=git_repositories.peek,
        policies=policy_queue.view,
        lockdown=Lockdown.of(settings),
    )

    policy_queue.add_index(
        BY_REPOSITORY,
        lambda obj: [
            (imagepolicy.repository_ref(obj).namespace, imagepolicy.repository_ref(obj).name)
        ],
    )
    auto_queue.add_index(BY_NAMESPACE, lambda obj: [ObjectRef.of(obj).namespace])
    auto_queue.add_index(
        BY_SOURCE,
        lambda obj: [
            (
                imageupdateautomation.source_ref(obj).namespace,
                imageupdateautomation.source_ref(obj).name,
            )
        ],
    )

    def on_source_change(old: Object | None, new: Object | None) -> None:
        if new is None or _revision(old) == _revision(new):
            return
        ref = ObjectRef.of(new)
        for automation in auto_queue.indexed(BY_SOURCE, (ref.namespace, ref.name)):
            auto_queue.request(ObjectRef.of(automation))

    def on_policy_change(old: Object | None, new: Object | None) -> None:
        # Seen in the watch, not from inside the policy's reconcile: an automation
        # requeued before the new latestRef is written would read the old one.
        changed = new if new is not None else old
        if changed is not None and _latest(old) != _latest(new):
            requeue_automations(ObjectRef.of(changed))

    git_repositories.add_observer(on_source_change)
    policy_queue.add_observer(on_policy_change)
    git_repositories.register(registry)
    repo_queue.register(registry)
    policy_queue.register(registry)
    auto_queue.register(registry)

    @kopf.on.cleanup(registry=registry, id="image-cleanup")
    async def close(**_: Any) -> None:
        api.close()


async def _finalize(reconciler: Any, obj: Object) -> bool:
    finalize = getattr(reconciler, "finalize", None)
    if finalize is None:
        return True
    result: bool = await finalize(obj)
    return result


def _latest(obj: Object | None) -> object:
    """A policy's latest image; a policy appearing or going counts as a change too."""
    if obj is None:
        return None
    return (obj.get("status") or {}).get("latestRef") or {}


def _revision(obj: Object | None) -> str | None:
    if obj is None:
        return None
    revision = ((obj.get("status") or {}).get("artifact") or {}).get("revision")
    return str(revision) if revision else None
