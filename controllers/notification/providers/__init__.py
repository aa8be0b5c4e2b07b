"""Senders per Provider type; `build_sender` picks one for a resolved Provider."""

from __future__ import annotations

from controllers.notification.providers.alertmanager import AlertmanagerSender
from controllers.notification.providers.base import (
    COMMIT_STATUS_TYPES,
    DeliveryError,
    ProviderConfig,
    ProviderConfigError,
    Sender,
)
from controllers.notification.providers.discord import DiscordSender
from controllers.notification.providers.generic import GenericSender
from controllers.notification.providers.github import GitHubSender
from controllers.notification.providers.msteams import TeamsSender
from controllers.notification.providers.slack import SlackSender

SUPPORTED_TYPES = (
    "slack",
    "discord",
    "msteams",
    "generic",
    "generic-hmac",
    "github",
    "alertmanager",
)
GENERIC_TYPES = frozenset({"generic", "generic-hmac"})

__all__ = [
    "COMMIT_STATUS_TYPES",
    "GENERIC_TYPES",
    "SUPPORTED_TYPES",
    "DeliveryError",
    "ProviderConfig",
    "ProviderConfigError",
    "Sender",
    "build_sender",
]


def build_sender(config: ProviderConfig) -> Sender:
    """The sender for `config.type`; ProviderConfigError when it cannot work."""
    kind = config.type
    if kind == "slack":
        return SlackSender(config)
    if kind == "discord":
        return DiscordSender(config)
    if kind == "msteams":
        return TeamsSender(config)
    if kind in GENERIC_TYPES:
        return GenericSender(config, signed=kind == "generic-hmac")
    if kind == "github":
        return GitHubSender(config)
    if kind == "alertmanager":
        return AlertmanagerSender(config)
    raise ProviderConfigError(
        f"provider type {kind!r} is not supported by headwater "
        f"(supported: {', '.join(SUPPORTED_TYPES)})"
    )
