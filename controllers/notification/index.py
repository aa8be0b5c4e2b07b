"""Alerts and Providers held in memory, fed by kopf's watch events.

Provider and Alert (v1beta3) have no status, so nothing is ever written to
them: the controller only needs their latest versions when an event
arrives, which a watch keeps current without a list call per event.
"""

from __future__ import annotations

import kopf

from controllers.toolkit.runtime.reconciler import Resource, WatchCache

GROUP = "notification.toolkit.fluxcd.io"
VERSION = "v1beta3"


class NotificationIndex:
    """The Alerts and Providers of the cluster."""

    def __init__(self) -> None:
        self.alerts = WatchCache(Resource(GROUP, VERSION, "alerts", "Alert"))
        self.providers = WatchCache(Resource(GROUP, VERSION, "providers", "Provider"))

    def register(self, registry: kopf.OperatorRegistry) -> None:
        self.alerts.register(registry)
        self.providers.register(registry)
