"""Kopf wiring of the source controller: GitRepository, and the artifact server.

Handlers are added by `register`, on the registry the runner passes in,
never on kopf's global registry: that is how `headwater run all` combines
every controller in one operator. The work lives in `gitrepository` and the
step modules; this file only connects them to the API and to each other.
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

import kopf

from controllers.source.gitrepository import RESOURCE, GitRepositoryReconciler
from controllers.source.server import ArtifactServer
from controllers.source.storage import Storage
from controllers.toolkit.runtime import kube
from controllers.toolkit.runtime.concurrency import ReconcileSlots
from controllers.toolkit.runtime.events import make_recorder
from controllers.toolkit.runtime.patching import ObjectWriter
from controllers.toolkit.runtime.reconciler import Object, ObjectRef, Reconciler
from controllers.toolkit.runtime.settings import Settings

log = logging.getLogger(__name__)

CONTROLLER = "source"


def register(registry: kopf.OperatorRegistry, settings: Settings) -> None:
    """Add the source controller's handlers to `registry`."""
    api = kube.api_client()
    storage = Storage(
        Path(settings.storage_path),
        str(settings.storage_adv_addr),
        max_artifact_size=settings.artifact_max_size,
    )
    server = ArtifactServer(
        Path(settings.storage_path),
        settings.storage_addr.bind_host or "0.0.0.0",
        settings.storage_addr.port,
    )
    read_secret = kube.secret_reader(api)
    writer = ObjectWriter(api, RESOURCE)
    git: GitRepositoryReconciler
    queue = Reconciler(
        RESOURCE,
        reconcile=lambda obj: git.reconcile(obj),
        finalize=lambda obj: git.finalize(obj),
        patch_finalizers=writer.set_finalizers,
        slots=ReconcileSlots(settings.concurrent),
    )
    git = GitRepositoryReconciler(
        storage=storage,
        writer=writer,
        recorder=make_recorder(CONTROLLER, api, settings),
        read_secret=read_secret,
        lookup=queue.get,
    )
    queue.add_observer(lambda old, new: _requeue_includers(queue, old, new))
    queue.register(registry)

    @kopf.on.startup(registry=registry)
    async def start_artifact_server(**_: Any) -> None:
        await server.start()
        log.info("serving artifacts", extra={"addr": str(settings.storage_addr)})

    @kopf.on.cleanup(registry=registry)
    async def stop_artifact_server(**_: Any) -> None:
        await server.stop()
        api.close()


def _requeue_includers(queue: Reconciler, old: Object | None, new: Object | None) -> None:
    """A repository's new artifact makes every repository that includes it rebuild."""
    changed = new if new is not None else old
    if changed is None or _artifact_digest(old) == _artifact_digest(new):
        return
    ref = ObjectRef.of(changed)
    for other in queue.view():
        includes = (other.get("spec") or {}).get("include") or []
        other_ref = ObjectRef.of(other)
        if other_ref.namespace == ref.namespace and any(
            (inc.get("repository") or {}).get("name") == ref.name for inc in includes
        ):
            queue.request(other_ref)


def _artifact_digest(obj: Object | None) -> str | None:
    if obj is None:
        return None
    digest = ((obj.get("status") or {}).get("artifact") or {}).get("digest")
    return str(digest) if digest else None
