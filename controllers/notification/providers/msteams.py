"""Microsoft Teams: an Adaptive Card (workflows), or a MessageCard for old connectors.

Flux sends the legacy MessageCard only to `*.webhook.office.com` (Office 365
connectors, being retired) and an Adaptive Card 1.4 to anything else, such
as a Power Automate workflow URL. The card: the object as a large bold
title, the message (red for errors), and the metadata as facts, `summary`
first and the rest by key.
"""

from __future__ import annotations

from typing import Any
from urllib.parse import urlsplit

from controllers.notification.event import ERROR, FluxEvent
from controllers.notification.providers.base import (
    ProviderConfig,
    ProviderConfigError,
    object_name,
    sorted_fields,
)
from controllers.notification.providers.http import post_json

ADAPTIVE_CARD_VERSION = "1.4"


def is_legacy_connector(address: str) -> bool:
    return (urlsplit(address).hostname or "").endswith(".webhook.office.com")


def message_card(event: FluxEvent) -> dict[str, Any]:
    name = object_name(event)
    return {
        "@type": "MessageCard",
        "@context": "http://schema.org/extensions",
        "themeColor": "FF0000" if event.severity == ERROR else "0076D7",
        "summary": name,
        "sections": [
            {
                "activityTitle": event.message,
                "activitySubtitle": name,
                "facts": [{"name": k, "value": v} for k, v in sorted_fields(event.metadata)],
            }
        ],
    }


def adaptive_card(event: FluxEvent) -> dict[str, Any]:
    message: dict[str, Any] = {"type": "TextBlock", "text": event.message, "wrap": True}
    if event.severity == ERROR:
        message["color"] = "attention"
    facts = [{"title": k, "value": v} for k, v in sorted_fields(event.metadata)]
    return {
        "type": "message",
        "attachments": [
            {
                "contentType": "application/vnd.microsoft.card.adaptive",
                "content": {
                    "$schema": "http://adaptivecards.io/schemas/adaptive-card.json",
                    "type": "AdaptiveCard",
                    "version": ADAPTIVE_CARD_VERSION,
                    "msteams": {"width": "Full"},
                    "body": [
                        {
                            "type": "Container",
                            "items": [
                                {
                                    "type": "TextBlock",
                                    "text": object_name(event),
                                    "size": "large",
                                    "weight": "bolder",
                                    "wrap": True,
                                },
                                message,
                                {"type": "FactSet", "facts": facts},
                            ],
                        }
                    ],
                },
            }
        ],
    }


def teams_payload(event: FluxEvent, address: str) -> dict[str, Any]:
    return message_card(event) if is_legacy_connector(address) else adaptive_card(event)


class TeamsSender:
    def __init__(self, config: ProviderConfig) -> None:
        if not config.address:
            raise ProviderConfigError(
                "msteams provider needs spec.address or 'address' in spec.secretRef"
            )
        self.config = config

    async def send(self, event: FluxEvent) -> None:
        await post_json(self.config.address, self.config, teams_payload(event, self.config.address))
