"""Stand-in provider servers for the notification end-to-end tests."""

from tests.support.chatservers import github_server, slack_server, webhook_server

__all__ = ["github_server", "slack_server", "webhook_server"]
