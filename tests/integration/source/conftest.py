"""Real git servers for the source controller's tests (see tests/support/fixtures.py)."""

from tests.support.fixtures import *  # noqa: F403
