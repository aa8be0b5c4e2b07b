"""Stand-in provider servers for the notification unit tests (loopback, no cluster)."""

from tests.support.chatservers import (
    alertmanager_server,
    discord_server,
    github_server,
    slack_server,
    teams_server,
    webhook_server,
)

__all__ = [
    "alertmanager_server",
    "discord_server",
    "github_server",
    "slack_server",
    "teams_server",
    "webhook_server",
]
