"""A Slack stand-in for the helm controller's alert test."""

from tests.support.chatservers import slack_server

__all__ = ["slack_server"]
