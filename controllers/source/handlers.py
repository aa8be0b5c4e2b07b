"""Kopf wiring of the source controller: GitRepository, HelmRepository, HelmChart,
OCIRepository, artifacts.

Handlers are added by `register`, on the registry the runner passes in,
never on kopf's global registry: that is how `headwater run all` combines
every controller in one operator. The work lives in `gitrepository`,
`helmrepository`, `helmchart`, `ocirepository` and their step modules; this file only connects
them to the API and to each other: a repository that includes another, and a
HelmChart built from a source, are found through indexes on the watch caches
and requeued when that source's artifact moves.
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

import kopf

from controllers.source import helmchart, helmrepository, ocirepository
from controllers.source.gitrepository import RESOURCE, GitRepositoryReconciler
from controllers.source.server import ArtifactServer
from controllers.source.storage import Storage
from controllers.toolkit.runtime import kube
from controllers.toolkit.runtime.concurrency import ReconcileSlots
from controllers.toolkit.runtime.events import make_recorder
from controllers.toolkit.runtime.frame import ReconcileFrame
from controllers.toolkit.runtime.leader import Leadership
from controllers.toolkit.runtime.patching import ObjectWriter
from controllers.toolkit.runtime.reconciler import Object, ObjectRef, Reconciler
from controllers.toolkit.runtime.settings import Settings

log = logging.getLogger(__name__)

CONTROLLER = "source"
# Index names: (namespace, name) of the GitRepositories a repository includes;
# (source kind, namespace, name) of a HelmChart's source.
BY_INCLUDE = "include"
BY_CHART_SOURCE = "sourceRef"


def register(registry: kopf.OperatorRegistry, settings: Settings, leadership: Leadership) -> None:
    """Add the source controller's handlers to `registry`.

    Every kind reconciles only while `leadership` leads and only objects
    matching --watch-label-selector; the artifact server runs on every replica.
    """
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
        leadership=leadership,
        selector=settings.watch_selector,
    )
    git = GitRepositoryReconciler(
        storage=storage,
        writer=writer,
        recorder=make_recorder(CONTROLLER, api, settings),
        read_secret=read_secret,
        lookup=queue.get,
    )
    queue.add_index(BY_INCLUDE, _include_keys)
    queue.add_observer(lambda old, new: _requeue_includers(queue, old, new))
    queue.register(registry)
    _register_helm(
        registry, settings, api, storage, read_secret, git_queue=queue, leadership=leadership
    )
    _register_oci(registry, settings, api, storage, read_secret, leadership=leadership)

    @kopf.on.startup(registry=registry)
    async def start_artifact_server(**_: Any) -> None:
        await server.start()
        log.info("serving artifacts", extra={"addr": str(settings.storage_addr)})

    @kopf.on.cleanup(registry=registry)
    async def stop_artifact_server(**_: Any) -> None:
        await server.stop()
        api.close()


def _register_helm(
    registry: kopf.OperatorRegistry,
    settings: Settings,
    api: Any,
    storage: Storage,
    read_secret: kube.SecretReader,
    *,
    git_queue: Reconciler,
    leadership: Leadership,
) -> None:
    """HelmRepository and HelmChart; a chart is rebuilt when its source's artifact moves."""
    recorder = make_recorder(CONTROLLER, api, settings)
    slots = ReconcileSlots(settings.concurrent)
    repo_writer = ObjectWriter(api, helmrepository.RESOURCE)
    repos: helmrepository.HelmRepositoryReconciler
    repo_queue = Reconciler(
        helmrepository.RESOURCE,
        reconcile=lambda obj: repos.reconcile(obj),
        finalize=lambda obj: repos.finalize(obj),
        patch_finalizers=repo_writer.set_finalizers,
        slots=slots,
        leadership=leadership,
        selector=settings.watch_selector,
    )
    repos = helmrepository.HelmRepositoryReconciler(
        frame=ReconcileFrame(helmrepository.RESOURCE, repo_writer, recorder),
        storage=storage,
        read_secret=read_secret,
    )
    chart_writer = ObjectWriter(api, helmchart.RESOURCE)
    charts: helmchart.HelmChartReconciler
    chart_queue = Reconciler(
        helmchart.RESOURCE,
        reconcile=lambda obj: charts.reconcile(obj),
        finalize=lambda obj: charts.finalize(obj),
        patch_finalizers=chart_writer.set_finalizers,
        slots=slots,
        leadership=leadership,
        selector=settings.watch_selector,
    )
    charts = helmchart.HelmChartReconciler(
        frame=ReconcileFrame(helmchart.RESOURCE, chart_writer, recorder),
        storage=storage,
        read_secret=read_secret,
        helm_repositories=repo_queue.get,
        git_repositories=git_queue.get,
    )
    chart_queue.add_index(BY_CHART_SOURCE, _chart_source_key)
    repo_queue.add_observer(
        lambda old, new: _requeue_charts(chart_queue, helmchart.HELM_REPOSITORY, old, new)
    )
    git_queue.add_observer(
        lambda old, new: _requeue_charts(chart_queue, helmchart.GIT_REPOSITORY, old, new)
    )
    repo_queue.register(registry)
    chart_queue.register(registry)


def _register_oci(
    registry: kopf.OperatorRegistry,
    settings: Settings,
    api: Any,
    storage: Storage,
    read_secret: kube.SecretReader,
    *,
    leadership: Leadership,
) -> None:
    """OCIRepository: its own queue and slots (a slow registry does not hold up git)."""
    writer = ObjectWriter(api, ocirepository.RESOURCE)
    repos = ocirepository.OCIRepositoryReconciler(
        frame=ReconcileFrame(
            ocirepository.RESOURCE, writer, make_recorder(CONTROLLER, api, settings)
        ),
        storage=storage,
        read_secret=read_secret,
    )
    queue = Reconciler(
        ocirepository.RESOURCE,
        reconcile=repos.reconcile,
        finalize=repos.finalize,
        patch_finalizers=writer.set_finalizers,
        slots=ReconcileSlots(settings.concurrent),
        leadership=leadership,
        selector=settings.watch_selector,
    )
    queue.register(registry)


def _include_keys(obj: Object) -> list[tuple[str, str]]:
    namespace = ObjectRef.of(obj).namespace
    includes = (obj.get("spec") or {}).get("include") or []
    return [(namespace, str((inc.get("repository") or {}).get("name"))) for inc in includes]


def _chart_source_key(obj: Object) -> list[tuple[str, str, str]]:
    source = (obj.get("spec") or {}).get("sourceRef") or {}
    return [(str(source.get("kind")), ObjectRef.of(obj).namespace, str(source.get("name")))]


def _requeue_charts(queue: Reconciler, kind: str, old: Object | None, new: Object | None) -> None:
    """A source's new artifact (or its arrival) makes every HelmChart built from it look again."""
    changed = new if new is not None else old
    if changed is None or _artifact_digest(old) == _artifact_digest(new):
        return
    ref = ObjectRef.of(changed)
    for chart in queue.indexed(BY_CHART_SOURCE, (kind, ref.namespace, ref.name)):
        queue.request(ObjectRef.of(chart))


def _requeue_includers(queue: Reconciler, old: Object | None, new: Object | None) -> None:
    """A repository's new artifact makes every repository that includes it rebuild."""
    changed = new if new is not None else old
    if changed is None or _artifact_digest(old) == _artifact_digest(new):
        return
    ref = ObjectRef.of(changed)
    for other in queue.indexed(BY_INCLUDE, (ref.namespace, ref.name)):
        queue.request(ObjectRef.of(other))


def _artifact_digest(obj: Object | None) -> str | None:
    if obj is None:
        return None
    digest = ((obj.get("status") or {}).get("artifact") or {}).get("digest")
    return str(digest) if digest else None
