"""A Slack stand-in for the helm tests' alerts; the `charts` fixture they release from
is in tests/support/fixtures.py (the CLI and dashboard tests use it too)."""

from __future__ import annotations

from tests.support.chatservers import slack_server

__all__ = ["slack_server"]
