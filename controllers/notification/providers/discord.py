"""Discord: Slack-compatible webhook payload at `<webhook>/slack`, as Flux sends it."""

from __future__ import annotations

from typing import Any
from urllib.parse import urlsplit, urlunsplit

from controllers.notification.event import FluxEvent
from controllers.notification.providers.base import ProviderConfig, ProviderConfigError
from controllers.notification.providers.http import post_json
from controllers.notification.providers.slack import attachment


def slack_compatible_url(address: str) -> str:
    """Discord's Slack-compatible endpoint for a webhook URL."""
    parts = urlsplit(address)
    if parts.path.rstrip("/").endswith("/slack"):
        return address
    return urlunsplit(parts._replace(path=parts.path.rstrip("/") + "/slack"))


def discord_payload(event: FluxEvent, *, username: str) -> dict[str, Any]:
    # Flux sends the Slack shape without a channel or fallback text.
    return {
        "channel": "",
        "username": username or event.reporting_controller,
        "icon_url": "",
        "icon_emoji": "",
        "attachments": [attachment(event, fallback=False)],
    }


class DiscordSender:
    def __init__(self, config: ProviderConfig) -> None:
        if not config.address:
            raise ProviderConfigError(
                "discord provider needs spec.address or 'address' in spec.secretRef"
            )
        self.config = config
        self.url = slack_compatible_url(config.address)

    async def send(self, event: FluxEvent) -> None:
        await post_json(
            self.url, self.config, discord_payload(event, username=self.config.username)
        )
