"""The next helm action for a release, from its desired and its current state.

Flux's helm-controller decides the same way, from the same facts:
- no release in helm's storage: install;
- the latest revision stuck `pending-install/upgrade/rollback` (a helm
  process that died mid-way, e.g. with its controller): unlock it;
- a release that is not deployed (failed), or deployed by someone else (its
  revision is not the one this controller last wrote), or deployed with
  another chart version, other values or, for a chart from an OCIRepository,
  another artifact digest (a tag pushed again; Flux tracks it in the chart
  version's build metadata): upgrade;
- deployed as desired but not yet tested while tests are enabled: test;
- deployed as desired: nothing, and no helm process at all.

The decision is pure; `engine` carries it out.
"""

from __future__ import annotations

import enum
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from controllers.helm.storage import PENDING, StoredRevision


class Action(enum.Enum):
    INSTALL = "install"
    UPGRADE = "upgrade"
    TEST = "test"
    UNLOCK = "unlock"
    NONE = "none"


@dataclass(frozen=True)
class Desired:
    chart_name: str
    chart_version: str
    config_digest: str
    # The chart's OCI manifest digest when it comes from an OCIRepository, else "".
    oci_digest: str = ""


@dataclass(frozen=True)
class Snapshot:
    """`status.history[0]`: the revision this controller last wrote."""

    version: int
    status: str
    chart_name: str
    chart_version: str
    config_digest: str
    tested: bool
    oci_digest: str = ""

    @classmethod
    def latest_of(cls, status: Mapping[str, Any]) -> Snapshot | None:
        history = status.get("history") or []
        if not history or not isinstance(history[0], Mapping):
            return None
        entry = history[0]
        return cls(
            version=int(entry.get("version") or 0),
            status=str(entry.get("status") or ""),
            chart_name=str(entry.get("chartName") or ""),
            chart_version=str(entry.get("chartVersion") or ""),
            config_digest=str(entry.get("configDigest") or ""),
            # Present (even empty: a chart without test hooks) once tests ran.
            tested="testHooks" in entry,
            oci_digest=str(entry.get("ociDigest") or ""),
        )

    def matches(self, desired: Desired) -> bool:
        return (
            self.chart_name == desired.chart_name
            and self.chart_version == desired.chart_version
            and self.config_digest == desired.config_digest
            and self.oci_digest == desired.oci_digest
        )


def next_action(
    desired: Desired,
    snapshot: Snapshot | None,
    stored: StoredRevision | None,
    *,
    test_enable: bool,
) -> tuple[Action, str]:
    """The action to take and why (for logs)."""
    if stored is None or stored.status in ("uninstalled", "uninstalling"):
        return Action.INSTALL, "no release in storage"
    if stored.status in PENDING:
        return Action.UNLOCK, f"revision {stored.version} is stuck {stored.status}"
    if stored.status != "deployed":
        return Action.UPGRADE, f"revision {stored.version} is {stored.status}"
    if snapshot is None or snapshot.version != stored.version:
        return Action.UPGRADE, f"revision {stored.version} was not made by this controller"
    if not snapshot.matches(desired):
        return Action.UPGRADE, "the chart or the values changed"
    if test_enable and not snapshot.tested:
        return Action.TEST, "the release has not been tested"
    return Action.NONE, "the release is deployed as desired"
