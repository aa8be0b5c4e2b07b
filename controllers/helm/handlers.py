"""Kopf handlers of the helm controller (HelmRelease).

Handlers are added by `register`, on the registry the runner passes in,
never on kopf's global registry: that is how `headwater run all` combines
every controller in one operator. Keep handlers thin; the work lives in
plain functions in this package's step modules.
"""

from __future__ import annotations

import kopf

from controllers.toolkit.runtime.leader import Leadership
from controllers.toolkit.runtime.settings import Settings

CONTROLLER = "helm"


def register(registry: kopf.OperatorRegistry, settings: Settings, leadership: Leadership) -> None:
    """Add this controller's handlers to `registry` (none yet)."""
    del registry, settings, leadership
