"""Alertmanager: one firing alert per event, POSTed as a JSON array (API v2).

As Flux builds it: the metadata become labels, plus `alertname`
(`Flux<Kind><Reason>` with the reason title-cased as one word), `severity`,
`reason`, `kind`, `name`, `namespace` and `reportingcontroller`; annotations
carry `message` and the `summary` (moved out of the labels). `startsAt` is the
event's time; `endsAt` is left to Alertmanager's resolve timeout.
"""

from __future__ import annotations

import base64
from typing import Any

from controllers.notification.event import FluxEvent
from controllers.notification.providers.base import ProviderConfig, ProviderConfigError
from controllers.notification.providers.http import post_json


def alertname(event: FluxEvent) -> str:
    reason = event.reason[:1].upper() + event.reason[1:].lower()
    return f"Flux{event.kind}{reason}"


def alertmanager_payload(event: FluxEvent) -> list[dict[str, Any]]:
    labels = dict(event.metadata)
    annotations = {"message": event.message}
    summary = labels.pop("summary", None)
    if summary is not None:
        annotations["summary"] = summary
    labels.update(
        {
            "alertname": alertname(event),
            "severity": event.severity,
            "reason": event.reason,
            "kind": event.kind,
            "name": event.name,
            "namespace": event.namespace,
            "reportingcontroller": event.reporting_controller,
        }
    )
    return [
        {
            "status": "firing",
            "labels": labels,
            "annotations": annotations,
            "startsAt": event.timestamp,
        }
    ]


def auth_headers(config: ProviderConfig) -> dict[str, str]:
    if config.basic_username and config.password:
        pair = f"{config.basic_username}:{config.password}".encode()
        return {"Authorization": "Basic " + base64.b64encode(pair).decode()}
    if config.token:
        return {"Authorization": f"Bearer {config.token}"}
    return {}


class AlertmanagerSender:
    def __init__(self, config: ProviderConfig) -> None:
        if not config.address:
            raise ProviderConfigError(
                "alertmanager provider needs spec.address or 'address' in spec.secretRef"
            )
        self.config = config

    async def send(self, event: FluxEvent) -> None:
        await post_json(
            self.config.address,
            self.config,
            alertmanager_payload(event),
            headers=auth_headers(self.config),
        )
