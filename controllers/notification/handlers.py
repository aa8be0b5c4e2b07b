"""Kopf wiring of the notification controller: event intake, Alerts, Providers, Receivers.

Handlers are added by `register`, on the registry the runner passes in,
never on kopf's global registry: that is how `headwater run all` combines
every controller in one operator. The work lives in the step modules:
`intake` (HTTP in), `dispatch` + `matching` + `providers` (out to chat and
webhooks), `receiver` + `webhooks` + `targets` (git hosts in).
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from typing import Any

import kopf

from controllers.notification.dedup import DuplicateFilter
from controllers.notification.dispatch import Dispatcher
from controllers.notification.index import NotificationIndex
from controllers.notification.intake import make_app as make_intake_app
from controllers.notification.labels import LabelCache, kubernetes_label_fetch
from controllers.notification.providers.base import ProviderConfig
from controllers.notification.providers.config import resolve_provider
from controllers.notification.receiver import RESOURCE, ReceiverReconciler
from controllers.notification.targets import TargetAnnotator
from controllers.notification.webhooks import make_app as make_webhook_app
from controllers.toolkit.runtime import kube
from controllers.toolkit.runtime.concurrency import ReconcileSlots
from controllers.toolkit.runtime.events import make_recorder
from controllers.toolkit.runtime.frame import ReconcileFrame
from controllers.toolkit.runtime.http import HttpServer
from controllers.toolkit.runtime.leader import Leadership
from controllers.toolkit.runtime.patching import ObjectWriter
from controllers.toolkit.runtime.reconciler import Reconciler
from controllers.toolkit.runtime.settings import Settings

log = logging.getLogger(__name__)

CONTROLLER = "notification"


def register(registry: kopf.OperatorRegistry, settings: Settings, leadership: Leadership) -> None:
    """Add the notification controller's handlers and servers to `registry`.

    Receivers reconcile only while `leadership` leads; the event intake and
    the webhooks answer on every replica, from the watch caches.
    """
    api = kube.api_client()
    recorder = make_recorder(CONTROLLER, api, settings)
    read_secret = kube.secret_reader(api)

    index = NotificationIndex()
    index.register(registry)
    labels = LabelCache(kubernetes_label_fetch(api))

    async def resolve(obj: Mapping[str, Any]) -> ProviderConfig:
        return await resolve_provider(obj, read_secret)

    dispatcher = Dispatcher(index, labels.labels_of, resolve, recorder)
    intake = HttpServer(
        make_intake_app(dispatcher, DuplicateFilter(settings.events_dedup_window)),
        settings.events_addr.bind_host,
        settings.events_addr.port,
    )

    writer = ObjectWriter(api, RESOURCE)
    receivers = ReceiverReconciler(
        frame=ReconcileFrame(RESOURCE, writer, recorder, failure_events="on_change"),
        read_secret=read_secret,
    )
    queue = Reconciler(
        RESOURCE,
        reconcile=receivers.reconcile,
        finalize=receivers.finalize,
        patch_finalizers=writer.set_finalizers,
        slots=ReconcileSlots(settings.concurrent),
        leadership=leadership,
        selector=settings.watch_selector,
    )
    queue.register(registry)
    annotator = TargetAnnotator(api)

    webhooks = HttpServer(
        make_webhook_app(
            queue.view,
            read_secret,
            annotator.request,
            rate_limit=settings.receiver_rate_limit,
        ),
        settings.receiver_addr.bind_host,
        settings.receiver_addr.port,
    )

    @kopf.on.startup(registry=registry, id="notification-start-servers")
    async def start_notification_servers(**_: Any) -> None:
        await dispatcher.start()
        await intake.start()
        await webhooks.start()
        log.info(
            "notification servers started",
            extra={
                "events_addr": str(settings.events_addr),
                "receiver_addr": str(settings.receiver_addr),
            },
        )

    @kopf.on.cleanup(registry=registry, id="notification-stop-servers")
    async def stop_notification_servers(**_: Any) -> None:
        await webhooks.stop()
        await intake.stop()
        await dispatcher.close()
        api.close()
