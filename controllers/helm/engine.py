"""Carry out a release's next actions: install, upgrade, test, unlock, remediate.

One reconcile loops, as Flux's helm-controller does, until the release is as
desired or an action failed: an unlocked release goes on to its upgrade, a
successful install or upgrade to its tests. A failure counts against the
action's `remediation.retries`; while retries remain (and for the last
failure when `remediateLastFailure`), the failed release is remediated,
an install by uninstalling it, an upgrade by rolling back to the revision
before it (or uninstalling, with `strategy: uninstall`). Once the retries are
spent the release is Stalled (RetriesExceeded) until the chart or the values
change or `reconcile.fluxcd.io/resetAt` is set.

Conditions and reasons are Flux's: Released (Install/UpgradeSucceeded|Failed,
PendingRelease), TestSuccess (TestSucceeded|Failed), Remediated
(Rollback/UninstallSucceeded|Failed); Ready mirrors the last of them.
"""

from __future__ import annotations

import hashlib
import json
import logging
from collections.abc import Awaitable, Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from controllers.helm import crds as chart_crds
from controllers.helm.actions import Action, Desired, Snapshot, next_action
from controllers.helm.chart import ChartMetadata
from controllers.helm.release import Helm, HelmError, ReleaseRef, Revision
from controllers.helm.spec import HelmReleaseSpec, Remediation
from controllers.helm.storage import PENDING, StoredRevision, latest
from controllers.toolkit.runtime import conditions as cond
from controllers.toolkit.runtime.events import NORMAL, WARNING
from controllers.toolkit.runtime.frame import ReconcileError, ReconcileRun

log = logging.getLogger(__name__)

RELEASED = "Released"
TEST_SUCCESS = "TestSuccess"
REMEDIATED = "Remediated"

INSTALL_SUCCEEDED = "InstallSucceeded"
INSTALL_FAILED = "InstallFailed"
UPGRADE_SUCCEEDED = "UpgradeSucceeded"
UPGRADE_FAILED = "UpgradeFailed"
TEST_SUCCEEDED = "TestSucceeded"
TEST_FAILED = "TestFailed"
ROLLBACK_SUCCEEDED = "RollbackSucceeded"
ROLLBACK_FAILED = "RollbackFailed"
UNINSTALL_SUCCEEDED = "UninstallSucceeded"
UNINSTALL_FAILED = "UninstallFailed"
PENDING_RELEASE = "PendingRelease"
RETRIES_EXCEEDED = "RetriesExceeded"

# Status keeps this many release snapshots, newest first, as Flux does.
HISTORY_SNAPSHOTS = 5
# An unlock, then an upgrade, then its test: more steps than that is a loop.
MAX_STEPS = 5

# The release's revisions as helm's storage labels them (in its cluster).
StoredRevisions = Callable[[ReleaseRef], Awaitable[list[StoredRevision]]]
# (CRD files, policy, the release: its cluster and the user helm acts as) -> CRDs written.
ApplyCrds = Callable[[Sequence[str], str, ReleaseRef], Awaitable[list[str]]]


@dataclass
class ReleaseInputs:
    """Everything one reconcile releases: the chart file, its metadata, the values."""

    spec: HelmReleaseSpec
    chart: Path
    metadata: ChartMetadata
    values: Mapping[str, Any]
    digest: str
    crds: Sequence[str] = field(default_factory=list)
    # The chart's OCI manifest digest (chartRef to an OCIRepository), else "".
    oci_digest: str = ""

    as_user: str | None = None
    # A remote cluster (kubeConfig.secretRef): helm's kubeconfig file and an API client.
    kubeconfig: Path | None = None
    api: Any = None

    @property
    def ref(self) -> ReleaseRef:
        return ReleaseRef(
            self.spec.release_name, self.spec.namespace, self.as_user, self.kubeconfig, self.api
        )

    @property
    def desired(self) -> Desired:
        return Desired(self.metadata.name, self.metadata.version, self.digest, self.oci_digest)


def _release(ref: ReleaseRef, version: int | None) -> str:
    return f"{ref}.v{version}" if version else str(ref)


def _split_chart(chart: str, known_name: str) -> tuple[str, str]:
    if known_name and chart.startswith(known_name + "-"):
        return known_name, chart[len(known_name) + 1 :]
    name, _, version = chart.rpartition("-")
    return (name, version) if name else (chart, "")


def history_snapshots(
    ref: ReleaseRef,
    revisions: Sequence[Revision],
    previous: Sequence[Mapping[str, Any]],
    made: Mapping[int, Mapping[str, Any]],
    chart_name: str,
) -> list[dict[str, Any]]:
    """`status.history` from helm's history: newest first, at most HISTORY_SNAPSHOTS.

    What helm's history does not say (the values digest, test hooks, the chart's
    OCI digest) comes from the snapshots already in status or from what this
    reconcile made.
    """
    known = {int(s.get("version") or 0): s for s in previous if isinstance(s, Mapping)}
    first = revisions[0].updated if revisions else ""
    result = []
    for revision in sorted(revisions, key=lambda r: r.version, reverse=True)[:HISTORY_SNAPSHOTS]:
        name, version = _split_chart(revision.chart, chart_name)
        snapshot: dict[str, Any] = {
            "name": ref.name,
            "namespace": ref.namespace,
            "version": revision.version,
            "status": revision.status,
            "chartName": name,
            "chartVersion": version,
            "firstDeployed": first,
            "lastDeployed": revision.updated,
            "digest": revision_digest(ref, revision),
            # Unknown for a revision someone else made: it never matches desired values.
            "configDigest": "",
        }
        if revision.app_version:
            snapshot["appVersion"] = revision.app_version
        extra = made.get(revision.version) or known.get(revision.version) or {}
        for key in ("configDigest", "testHooks", "ociDigest"):
            if key in extra:
                snapshot[key] = extra[key]
        result.append(snapshot)
    return result


def revision_digest(ref: ReleaseRef, revision: Revision) -> str:
    """`sha256:` of what helm's history says of a revision.

    Flux digests the stored release object; headwater never decodes helm's
    storage, so it digests the revision's history entry, which changes
    whenever that revision's status or deploy time does.
    """
    entry = [ref.namespace, ref.name, revision.version, revision.status, revision.chart]
    entry += [revision.app_version, revision.updated, revision.description]
    return "sha256:" + hashlib.sha256(json.dumps(entry).encode()).hexdigest()


class Engine:
    def __init__(
        self,
        helm: Helm,
        stored_revisions: StoredRevisions,
        apply_crds: ApplyCrds,
    ) -> None:
        self.helm = helm
        self.stored_revisions = stored_revisions
        self.apply_crds = apply_crds

    # -- status helpers -------------------------------------------------------------------

    def _set(self, run: ReconcileRun, type_: str, ok: bool, reason: str, message: str) -> None:
        run.status = cond.set_condition(
            run.status,
            type_,
            cond.TRUE if ok else cond.FALSE,
            reason,
            message,
            generation=run.generation,
        )

    def _drop(self, run: ReconcileRun, type_: str) -> None:
        run.status = cond.remove_condition(run.status, type_)

    async def _refresh_history(
        self, run: ReconcileRun, inputs: ReleaseInputs, made: Mapping[int, Mapping[str, Any]]
    ) -> list[Revision]:
        revisions = await self.helm.history(inputs.ref)
        run.status["history"] = history_snapshots(
            inputs.ref, revisions, run.status.get("history") or [], made, inputs.metadata.name
        )
        deployed = [r.version for r in revisions if r.status == "deployed"]
        if deployed:
            run.status["lastReleaseRevision"] = max(deployed)
        return revisions

    def _count_failure(self, run: ReconcileRun, action: str) -> int:
        key = "installFailures" if action == "install" else "upgradeFailures"
        run.status[key] = int(run.status.get(key) or 0) + 1
        run.status["failures"] = int(run.status.get("failures") or 0) + 1
        return int(run.status[key])

    # -- the loop ---------------------------------------------------------------------------

    async def reconcile(
        self, run: ReconcileRun, inputs: ReleaseInputs, *, force: bool = False
    ) -> None:
        """Bring the release to the desired state; ReconcileError when it cannot.

        `force` (the forceAt annotation) upgrades a release that is in sync.
        """
        spec, ref = inputs.spec, inputs.ref
        for _ in range(MAX_STEPS):
            stored = latest(await self.stored_revisions(ref))
            snapshot = Snapshot.latest_of(run.status)
            action, why = next_action(
                inputs.desired, snapshot, stored, test_enable=spec.test_enable
            )
            if force and action in (Action.NONE, Action.TEST):
                action, why = Action.UPGRADE, "a release was forced"
            elif action in (Action.NONE, Action.TEST) and spec.post_renderers_digest != str(
                run.status.get("observedPostRenderersDigest") or ""
            ):
                action, why = Action.UPGRADE, "the post-renderers changed"
            force = False
            log.debug("release %s: %s (%s)", ref, action.value, why)
            if action is Action.NONE:
                self._in_sync(run, inputs)
                self._ready(run)
                return
            if action is Action.UNLOCK:
                assert stored is not None
                await self._unlock(run, inputs, stored)
                continue
            if action is Action.TEST:
                await self._test(run, inputs, str(run.status.get("lastAttemptedReleaseAction")))
                self._ready(run)
                return
            await self._release(run, inputs, action, stored)
            if spec.test_enable:
                await self._test(run, inputs, action.value)
            self._ready(run)
            return
        raise ReconcileError(
            cond.RECONCILIATION_FAILED,
            f"release {ref} did not settle after {MAX_STEPS} helm actions",
        )

    def _in_sync(self, run: ReconcileRun, inputs: ReleaseInputs) -> None:
        """The deployed revision is the desired one, though not by a release of this run
        (a rollback or an unlock got it there): Released says so."""
        if cond.is_true(run.status, RELEASED):
            return
        history = run.status.get("history") or [{}]
        version = int(history[0].get("version") or 0)
        reason = INSTALL_SUCCEEDED if version == 1 else UPGRADE_SUCCEEDED
        message = (
            f"Helm release {_release(inputs.ref, version)} with chart {inputs.metadata.ref} "
            "is deployed with the desired values"
        )
        self._set(run, RELEASED, True, reason, message)

    def _ready(self, run: ReconcileRun) -> None:
        """Ready mirrors a passed TestSuccess, else Released (test failures got here ignored)."""
        source = (
            cond.get_condition(run.status, TEST_SUCCESS)
            if cond.is_true(run.status, TEST_SUCCESS)
            else cond.get_condition(run.status, RELEASED)
        )
        if source is None:
            run.ready("Helm release is deployed")
            return
        run.ready(source["message"], reason=source["reason"])

    async def _release(
        self,
        run: ReconcileRun,
        inputs: ReleaseInputs,
        action: Action,
        before: StoredRevision | None,
    ) -> None:
        spec, ref, chart = inputs.spec, inputs.ref, inputs.metadata
        name = "install" if action is Action.INSTALL else "upgrade"
        remediation = spec.install_remediation if name == "install" else spec.upgrade_remediation
        failures_key = "installFailures" if name == "install" else "upgradeFailures"
        failures = int(run.status.get(failures_key) or 0)
        if failures and remediation.exhausted(failures):
            self._stall(run, inputs, name, failures)
        self._stall_a_failed_install(run, inputs, action, before)
        run.status["lastAttemptedReleaseAction"] = name
        try:
            if name == "install":
                skip_crds = spec.install_crds != "Create"
                if spec.install_crds == "CreateReplace":
                    await self.apply_crds(inputs.crds, "CreateReplace", ref)
                await self.helm.install(
                    ref,
                    inputs.chart,
                    inputs.values,
                    timeout=spec.install_timeout,
                    wait=spec.install_wait,
                    create_namespace=spec.create_namespace,
                    skip_crds=skip_crds,
                    max_history=spec.max_history,
                    hooks=spec.install_hooks,
                    take_ownership=spec.install_take_ownership,
                    server_side=spec.install_server_side,
                    post_renderers=spec.renderers,
                    validation_args=spec.install_validation_args,
                )
            else:
                await self.apply_crds(inputs.crds, spec.upgrade_crds, ref)
                await self.helm.upgrade(
                    ref,
                    inputs.chart,
                    inputs.values,
                    timeout=spec.upgrade_timeout,
                    wait=spec.upgrade_wait,
                    force=spec.upgrade_force,
                    max_history=spec.max_history,
                    hooks=spec.upgrade_hooks,
                    take_ownership=spec.upgrade_take_ownership,
                    server_side=spec.upgrade_server_side,
                    cleanup_on_fail=spec.upgrade_cleanup_on_fail,
                    post_renderers=spec.renderers,
                    preserve_values=spec.upgrade_preserve_values,
                    validation_args=spec.upgrade_validation_args,
                )
        except (HelmError, chart_crds.CrdError) as exc:
            reason = INSTALL_FAILED if name == "install" else UPGRADE_FAILED
            message = f"Helm {name} failed for release {ref} with chart {chart.ref}: {exc}"
            self._set(run, RELEASED, False, reason, message)
            try:
                revisions = await self._refresh_history(run, inputs, {})
            except HelmError as history_error:
                # Whatever denied the action may deny reading history too: report the action.
                log.warning("release %s: history after a failure: %s", ref, history_error)
                revisions = []
            self._record_oci_digest(run, inputs, before, revisions)
            await self._after_failure(run, inputs, name, reason, message, before, revisions)
            return
        revisions = await self._refresh_history(run, inputs, {})
        self._record_oci_digest(run, inputs, before, revisions)
        if spec.post_renderers_digest:
            run.status["observedPostRenderersDigest"] = spec.post_renderers_digest
        else:
            run.status.pop("observedPostRenderersDigest", None)
        current = max(revisions, key=lambda r: r.version) if revisions else None
        version = current.version if current else None
        # The revision just made carries the values it was made with.
        if version is not None:
            for snapshot in run.status["history"]:
                if snapshot["version"] == version:
                    snapshot["configDigest"] = inputs.digest
                    snapshot.pop("testHooks", None)
        reason = INSTALL_SUCCEEDED if name == "install" else UPGRADE_SUCCEEDED
        message = (
            f"Helm {name} succeeded for release {_release(ref, version)} with chart {chart.ref}"
        )
        self._set(run, RELEASED, True, reason, message)
        self._drop(run, TEST_SUCCESS)
        self._drop(run, REMEDIATED)
        run.notify(NORMAL, reason, message)

    def _record_oci_digest(
        self,
        run: ReconcileRun,
        inputs: ReleaseInputs,
        before: StoredRevision | None,
        revisions: Sequence[Revision],
    ) -> None:
        """The revision an install or upgrade just made (deployed or failed) carries the
        chart's OCI digest, as Flux's `history[].ociDigest`; older ones keep theirs."""
        newest = max(revisions, key=lambda r: r.version) if revisions else None
        if newest is None or (before is not None and newest.version <= before.version):
            return
        for snapshot in run.status.get("history") or []:
            if snapshot.get("version") == newest.version:
                if inputs.oci_digest:
                    snapshot["ociDigest"] = inputs.oci_digest
                else:
                    snapshot.pop("ociDigest", None)

    async def _after_failure(
        self,
        run: ReconcileRun,
        inputs: ReleaseInputs,
        action: str,
        reason: str,
        message: str,
        before: StoredRevision | None,
        revisions: Sequence[Revision],
    ) -> None:
        spec = inputs.spec
        remediation = spec.install_remediation if action == "install" else spec.upgrade_remediation
        failures = self._count_failure(run, action)
        exhausted = remediation.exhausted(failures)
        newest = max(revisions, key=lambda r: r.version) if revisions else None
        # A chart that fails to render (or values helm refuses) makes no revision:
        # the release is as it was, and there is nothing to remediate.
        changed = newest is not None and (before is None or newest.version > before.version)
        if changed and (not exhausted or remediation.remediate_last_failure):
            run.notify(WARNING, reason, message)
            await self._remediate(run, inputs, action, remediation, revisions)
            remediated = cond.get_condition(run.status, REMEDIATED)
            assert remediated is not None
            if exhausted:
                self._mark_stalled(run, action, failures)
            raise ReconcileError(
                remediated["reason"],
                remediated["message"],
                event=None,
                requeue_after=spec.interval if exhausted else None,
            )
        if exhausted:
            self._mark_stalled(run, action, failures)
            raise ReconcileError(reason, message, requeue_after=spec.interval)
        raise ReconcileError(reason, message)

    def _mark_stalled(self, run: ReconcileRun, action: str, failures: int) -> None:
        # Stalled is set here rather than by the frame: Ready keeps mirroring the
        # release's own condition (what failed, or how it was remediated).
        run.status = cond.set_condition(
            run.status,
            cond.STALLED,
            cond.TRUE,
            RETRIES_EXCEEDED,
            f"Failed to {action} after {failures} attempt(s)",
            generation=run.generation,
        )

    def _stall_a_failed_install(
        self,
        run: ReconcileRun,
        inputs: ReleaseInputs,
        action: Action,
        before: StoredRevision | None,
    ) -> None:
        """An install that failed with its retries spent (and was not remediated) leaves a
        failed release: as Flux's "cannot remediate failed release", it stays Stalled
        rather than being upgraded, which would skip what failed (a pre-install hook, say)
        and report success."""
        if action is not Action.UPGRADE or before is None or before.status != "failed":
            return
        if run.status.get("lastAttemptedReleaseAction") != "install":
            return
        failures = int(run.status.get("installFailures") or 0)
        if failures and inputs.spec.install_remediation.exhausted(failures):
            self._stall(run, inputs, "install", failures)

    def _stall(self, run: ReconcileRun, inputs: ReleaseInputs, action: str, failures: int) -> None:
        """Retries are spent for this chart and values: nothing to do until they change."""
        self._mark_stalled(run, action, failures)
        source = cond.get_condition(run.status, REMEDIATED) or cond.get_condition(
            run.status, RELEASED
        )
        reason = source["reason"] if source else RETRIES_EXCEEDED
        message = source["message"] if source else f"Failed to {action} after {failures} attempt(s)"
        raise ReconcileError(reason, message, event=None, requeue_after=inputs.spec.interval)

    async def _remediate(
        self,
        run: ReconcileRun,
        inputs: ReleaseInputs,
        action: str,
        remediation: Remediation,
        revisions: Sequence[Revision],
    ) -> None:
        spec, ref = inputs.spec, inputs.ref
        newest = max(revisions, key=lambda r: r.version)
        target = _rollback_target(revisions, newest.version)
        if action == "install" or remediation.strategy == "uninstall" or target is None:
            await self._uninstall(run, inputs, newest)
            return
        chart_name, chart_version = _split_chart(target.chart, inputs.metadata.name)
        where = f"{_release(ref, target.version)} with chart {chart_name}@{chart_version}"
        try:
            await self.helm.rollback(
                ref,
                target.version,
                timeout=spec.rollback_timeout,
                force=spec.rollback_force,
                max_history=spec.max_history,
                wait=spec.rollback_wait,
                hooks=spec.rollback_hooks,
                cleanup_on_fail=spec.rollback_cleanup_on_fail,
            )
        except HelmError as exc:
            message = f"Helm rollback to previous release {where} failed: {exc}"
            self._set(run, REMEDIATED, False, ROLLBACK_FAILED, message)
            await self._refresh_history(run, inputs, {})
            run.notify(WARNING, ROLLBACK_FAILED, message)
            return
        target_snapshot: Mapping[str, Any] = next(
            (s for s in run.status.get("history") or [] if s.get("version") == target.version),
            {},
        )
        after = await self.helm.history(ref)
        rolled = max(after, key=lambda r: r.version)
        made = {rolled.version: {"configDigest": target_snapshot.get("configDigest", "")}}
        run.status["history"] = history_snapshots(
            ref, after, run.status.get("history") or [], made, inputs.metadata.name
        )
        run.status["lastReleaseRevision"] = rolled.version
        message = f"Helm rollback to previous release {where} succeeded"
        self._set(run, REMEDIATED, True, ROLLBACK_SUCCEEDED, message)
        run.notify(NORMAL, ROLLBACK_SUCCEEDED, message)

    async def _uninstall(self, run: ReconcileRun, inputs: ReleaseInputs, newest: Revision) -> None:
        spec, ref = inputs.spec, inputs.ref
        chart_name, chart_version = _split_chart(newest.chart, inputs.metadata.name)
        where = f"{_release(ref, newest.version)} with chart {chart_name}@{chart_version}"
        try:
            await self.helm.uninstall(
                ref,
                keep_history=spec.uninstall_keep_history,
                timeout=spec.uninstall_timeout,
                wait=spec.uninstall_wait,
                hooks=spec.uninstall_hooks,
            )
        except HelmError as exc:
            message = f"Helm uninstall failed for release {where}: {exc}"
            self._set(run, REMEDIATED, False, UNINSTALL_FAILED, message)
            run.notify(WARNING, UNINSTALL_FAILED, message)
            return
        await self._refresh_history(run, inputs, {})
        if not run.status.get("history"):
            run.status.pop("history", None)
            run.status.pop("lastReleaseRevision", None)
        message = f"Helm uninstall succeeded for release {where}"
        self._set(run, REMEDIATED, True, UNINSTALL_SUCCEEDED, message)
        run.notify(NORMAL, UNINSTALL_SUCCEEDED, message)

    async def _unlock(
        self, run: ReconcileRun, inputs: ReleaseInputs, stored: StoredRevision
    ) -> None:
        ref = inputs.ref
        revisions = await self.helm.history(ref)
        pending = next((r for r in revisions if r.version == stored.version), None)
        chart = pending.chart if pending else "unknown"
        target = _rollback_target(revisions, stored.version)
        try:
            if stored.status == "pending-install" or target is None:
                await self.helm.uninstall(
                    ref, keep_history=False, timeout=inputs.spec.uninstall_timeout
                )
            else:
                await self.helm.rollback(
                    ref,
                    target.version,
                    timeout=inputs.spec.rollback_timeout,
                    force=inputs.spec.rollback_force,
                    max_history=inputs.spec.max_history,
                    wait=inputs.spec.rollback_wait,
                    hooks=inputs.spec.rollback_hooks,
                )
        except HelmError as exc:
            raise ReconcileError(
                PENDING_RELEASE,
                f"unable to unlock Helm release {_release(ref, stored.version)} in "
                f"{stored.status} state: {exc}",
            ) from None
        message = (
            f"Unlocked Helm release {_release(ref, stored.version)} with chart {chart} "
            f"in {stored.status} state"
        )
        self._set(run, RELEASED, False, PENDING_RELEASE, message)
        run.notify(WARNING, PENDING_RELEASE, message)
        made: dict[int, Mapping[str, Any]] = {}
        if target is not None and stored.status != "pending-install":
            after = await self.helm.history(ref)
            previous = {int(s.get("version") or 0): s for s in run.status.get("history") or []}
            if after:
                rolled = max(after, key=lambda r: r.version)
                made[rolled.version] = {
                    "configDigest": (previous.get(target.version) or {}).get("configDigest", "")
                }
        await self._refresh_history(run, inputs, made)
        if not run.status.get("history"):
            run.status.pop("history", None)

    async def _test(self, run: ReconcileRun, inputs: ReleaseInputs, action: str) -> None:
        spec, ref, chart = inputs.spec, inputs.ref, inputs.metadata
        history = run.status.get("history") or []
        version = history[0].get("version") if history else None
        where = f"{_release(ref, version)} with chart {chart.ref}"
        failed: HelmError | None = None
        try:
            await self.helm.test(ref, timeout=spec.test_timeout, filters=spec.test_filters)
        except HelmError as exc:
            failed = exc
        # Only the hooks that ran, as Flux observes them (test.filters may leave some out).
        hooks = {k: v for k, v in (await self.helm.test_hooks(ref)).items() if v.get("phase")}
        if history:
            history[0]["testHooks"] = hooks
        if failed is None:
            message = (
                f"Helm test succeeded for release {where}: "
                f"{len(hooks)} test hooks completed successfully"
            )
            self._set(run, TEST_SUCCESS, True, TEST_SUCCEEDED, message)
            run.notify(NORMAL, TEST_SUCCEEDED, message)
            return
        message = f"Helm test failed for release {where}: {failed}"
        self._set(run, TEST_SUCCESS, False, TEST_FAILED, message)
        if spec.ignores_test_failures(action):
            # Ignored: the release stands on its Released condition.
            run.notify(WARNING, TEST_FAILED, message)
            return
        revisions = await self.helm.history(ref)
        newest = max(revisions, key=lambda r: r.version) if revisions else None
        before = StoredRevision(newest.version - 1, "") if newest else None
        await self._after_failure(run, inputs, action, TEST_FAILED, message, before, revisions)


def _rollback_target(revisions: Sequence[Revision], below: int) -> Revision | None:
    """The newest revision before `below` that was deployed: what a rollback returns to."""
    candidates = [
        r
        for r in revisions
        if r.version < below and r.status in ("deployed", "superseded") and r.status not in PENDING
    ]
    return max(candidates, key=lambda r: r.version) if candidates else None
