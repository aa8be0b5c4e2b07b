"""When a periodic reconcile may skip the dry-run of every object it applied.

A full verification is today's apply: a server-side dry-run of every built
object, compared with the live one. When it finds nothing to change, the
cluster matched the build at that moment. From then on the inventory watch
(`inventory_watch.ChangeLedger`) sees every change to those objects; if it
stayed connected on every kind without a gap and saw none, and nothing about
the build changed, another dry-run can only find the same: the reconcile reuses
the verified change set instead (`Verified.changeset`), and prune, health
checks, events and status run on it exactly as after a dry-run.

`full_verification_reason` is the one rule; it names why a full verification
is needed, or returns None to skip. Anything it cannot vouch for is a reason:
no verification since the controller started (or since one that changed
something or failed), a new revision, a changed spec, substitution input or
build output, a requested reconcile (`reconcile.fluxcd.io/requestedAt`),
`spec.force`, a remote cluster (the watch sees only its own), the
full-verification interval elapsed, or a watch that is not running, restarted
(a 410 Gone relist, a reconnect), went silent, or saw a change.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable

from controllers.toolkit.apply.inventory_watch import WatchedKind, WatchToken
from controllers.toolkit.apply.ssa import CHANGED, ChangeSet

# Flux dry-runs every object at every interval; headwater then, at the latest,
# once an hour: the longest a change the watch could not see goes unnoticed.
DEFAULT_FULL_VERIFY_INTERVAL = 3600.0


@dataclasses.dataclass(frozen=True)
class Verified:
    """A full verification that found every object as built: what it vouches for."""

    key: str  # the build's key: artifact digest, spec, substitution inputs
    digest: str  # the built output's digest
    revision: str
    requested_at: str | None  # reconcile.fluxcd.io/requestedAt when it ran
    at: float  # monotonic time it began
    token: WatchToken | None  # what the watches had seen when it began
    changeset: ChangeSet  # every object unchanged or skipped

    @classmethod
    def of(
        cls,
        changeset: ChangeSet,
        *,
        key: str,
        digest: str,
        revision: str,
        requested_at: str | None,
        at: float,
        token: WatchToken | None,
    ) -> Verified | None:
        """The record of a dry-run that changed nothing; None if it changed something
        (its own writes come back as watch events: only the next one can vouch)."""
        if any(entry.action in CHANGED for entry in changeset):
            return None
        return cls(key, digest, revision, requested_at, at, token, ChangeSet(list(changeset)))

    def kinds(self) -> set[WatchedKind]:
        """The kinds the watch must have seen without a gap."""
        return {
            WatchedKind(entry.api_version, entry.id.kind) for entry in self.changeset.to_inventory()
        }


@dataclasses.dataclass(frozen=True)
class Attempt:
    """What one reconcile is about to apply."""

    key: str
    digest: str
    revision: str
    requested_at: str | None
    force: bool  # spec.force
    remote: bool  # applies through a kubeconfig: not the cluster the watch sees
    now: float  # monotonic


# token, kinds -> why the watch cannot vouch for them, None when it can.
WatchCheck = Callable[[WatchToken, set[WatchedKind]], str | None]


def full_verification_reason(
    last: Verified | None,
    attempt: Attempt,
    *,
    interval: float,
    watch: WatchCheck | None,
) -> str | None:
    """Why `attempt` must dry-run every object; None when `last` still vouches for them.

    `interval` is the longest time between full verifications (0: every reconcile).
    """
    if interval <= 0:
        return "full verification on every reconcile (full-verify interval 0)"
    if last is None:
        return "no full verification that found the objects as built since the controller started"
    if attempt.requested_at != last.requested_at:
        return "reconcile requested (reconcile.fluxcd.io/requestedAt)"
    if attempt.revision != last.revision:
        return f"new revision {attempt.revision}"
    if attempt.key != last.key or attempt.digest != last.digest:
        return "the spec, substitution inputs or build output changed"
    if attempt.force:
        return "spec.force is set"
    if attempt.remote:
        return "applied to a remote cluster, which the inventory watch does not see"
    elapsed = attempt.now - last.at
    if elapsed >= interval:
        return f"the last full verification was {elapsed:.0f}s ago (interval {interval:.0f}s)"
    if watch is None or last.token is None:
        return "no inventory watch"
    return watch(last.token, last.kinds())
