"""Reconcile one Kustomization, in Flux's order:

source → dependencies → fetch → build → substitute → decrypt → apply → prune → health → report

Each step is a plain function in its own module (toolkit.artifacts,
kustomize.build/substitute/decrypt, toolkit.ssa/prune/health); this module
composes them and turns their outcome into conditions, inventory, history
and events. Two things it adds on top:

- Skip unchanged work: the build output is kept per object, keyed by the
  artifact digest, the spec and the substitution inputs, so a periodic
  reconcile does not rebuild. The apply engine dry-runs every object and
  writes only what differs, so an unchanged cluster sees no write.
- Drift: when the build is unchanged but the apply still had to change
  objects, someone changed the cluster outside git; the event names each
  object and field (secret values masked by the diff).
"""

from __future__ import annotations

import asyncio
import datetime
import hashlib
import json
import logging
import time
from collections.abc import Awaitable, Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Protocol

from controllers.kustomize import build as build_step
from controllers.kustomize import decrypt, substitute
from controllers.kustomize.dependencies import dependency_not_ready
from controllers.kustomize.generate import BuildError
from controllers.kustomize.spec import (
    DEPENDENCY_REQUEUE_SECONDS,
    GROUP,
    KustomizationSpec,
    SpecError,
    expression_status,
)
from controllers.toolkit.apply import health, ssa
from controllers.toolkit.apply.inventory import Inventory, InventoryEntry, ObjectId
from controllers.toolkit.apply.prune import PruneOptions, delete_all, prune
from controllers.toolkit.apply.resources import ResourceClient
from controllers.toolkit.artifacts import Artifact, ArtifactCache, ArtifactError
from controllers.toolkit.runtime import conditions as cond
from controllers.toolkit.runtime.durations import format_duration, jittered
from controllers.toolkit.runtime.events import EventRecorder
from controllers.toolkit.runtime.patching import ObjectWriter
from controllers.toolkit.runtime.reconciler import Object, ObjectRef, Outcome, Resource, WatchCache

log = logging.getLogger(__name__)

RESOURCE = Resource(GROUP, "v1", "kustomizations", "Kustomization")
FIELD_MANAGER = "headwater-kustomize"

HEALTHY = "Healthy"
DRIFT_DETECTED = "DriftDetected"
HISTORY_LIMIT = 5
# How often a health wait polls; Flux uses 5s, shorter here so syncs feel prompt.
HEALTH_POLL_SECONDS = 2.0

# (namespace, kind, name) -> decoded data, None when missing.
ConfigReader = Callable[[str, str, str], Awaitable[Mapping[str, str] | None]]
# (the Kustomization's namespace, spec.decryption.secretRef name or None) -> keys.
KeyLoader = Callable[[str, str | None], Awaitable[Sequence[Any]]]
ObserveKinds = Callable[[Inventory], None]
# Announces objects about to be pruned, so their deletion is not taken for drift.
ExpectDeletions = Callable[[Iterable[ObjectId]], None]


class StepFailed(Exception):
    """A step failed with a Flux reason.

    `requeue` overrides retryInterval; `status` carries what the steps before
    the failure recorded (e.g. the inventory after an apply whose health
    check then failed), so it is not lost; `stalled`: retrying cannot help
    until the object changes.
    """

    def __init__(
        self,
        reason: str,
        message: str,
        requeue: float | None = None,
        status: dict[str, Any] | None = None,
        *,
        stalled: bool = False,
    ) -> None:
        super().__init__(message)
        self.reason = reason
        self.message = message
        self.requeue = requeue
        self.status = status
        self.stalled = stalled


class IdentityGone(StepFailed):
    """The ServiceAccount or kubeconfig Secret a Kustomization applies as does not exist."""

    def __init__(self, message: str) -> None:
        super().__init__(cond.RECONCILIATION_FAILED, message)


class ClientFactory(Protocol):
    """spec -> the client to apply with (ours, impersonation, remote kubeconfig).

    Raises IdentityGone for a missing kubeconfig Secret and, when
    `account_must_exist`, for a missing ServiceAccount: impersonating a deleted
    account still works, only RBAC refuses it, so only a lookup tells "gone"
    from "denied" (Flux's CanImpersonate).
    """

    async def __call__(
        self, spec: KustomizationSpec, namespace: str, *, account_must_exist: bool = False
    ) -> ResourceClient: ...


@dataclass
class BuiltRevision:
    """What one build produced, kept to skip the next identical build."""

    key: str
    revision: str
    objects: list[dict[str, Any]]
    digest: str  # sha256 of the built YAML, Flux's history digest


@dataclass
class _Attempt:
    """The reconcile running for one Kustomization: the revision it works on, and the
    signal that a newer revision arrived and its health wait should stop."""

    revision: str | None = None
    cancel: asyncio.Event = field(default_factory=asyncio.Event)


@dataclass
class KustomizationReconciler:
    writer: ObjectWriter
    recorder: EventRecorder
    artifacts: ArtifactCache
    sources: Mapping[str, WatchCache]  # by source kind
    kustomizations: Callable[[ObjectRef], Object | None]
    read_config: ConfigReader
    load_keys: KeyLoader
    client_for: ClientFactory
    observe_kinds: ObserveKinds
    expect_deletions: ExpectDeletions
    _builds: dict[ObjectRef, BuiltRevision] = field(default_factory=dict)
    _attempts: dict[ObjectRef, _Attempt] = field(default_factory=dict)

    # -- what the handlers call ---------------------------------------------------------

    def cancel_health_wait(self, ref: ObjectRef, revision: str | None = None) -> None:
        """Source `revision` arrived: stop waiting for an older one to become healthy.

        This holds for the whole reconcile, not only its health wait: a revision
        that lands while the old one is still being built or applied cancels
        the wait that follows, instead of being noticed after the timeout.
        """
        attempt = self._attempts.get(ref)
        if attempt is not None and (revision is None or attempt.revision != revision):
            attempt.cancel.set()

    def forget(self, ref: ObjectRef) -> None:
        self._builds.pop(ref, None)

    async def reconcile(self, obj: Object) -> Outcome:
        ref = ObjectRef.of(obj)
        attempt = self._attempts[ref] = _Attempt()
        try:
            return await self._reconcile(obj, attempt)
        finally:
            self._attempts.pop(ref, None)

    async def _reconcile(self, obj: Object, attempt: _Attempt) -> Outcome:
        started = time.monotonic()
        metadata = obj["metadata"]
        ref = ObjectRef.of(obj)
        generation = int(metadata.get("generation") or 0)
        old_status: dict[str, Any] = dict(obj.get("status") or {})
        if (obj.get("spec") or {}).get("suspend"):
            return Outcome(requeue_after=None)
        try:
            spec = KustomizationSpec.parse(obj.get("spec") or {}, ref.namespace)
        except SpecError as exc:
            status = cond.mark_stalled(old_status, exc.reason, str(exc), generation=generation)
            await self._finish(obj, old_status, status)
            await self.recorder.warning(obj, exc.reason, str(exc))
            return Outcome(requeue_after=None)

        status = old_status
        try:
            artifact, source_revision = self._source_artifact(spec)
            attempt.revision = source_revision
            blocked = dependency_not_ready(obj, spec, source_revision, self.kustomizations)
            if blocked:
                raise StepFailed(cond.DEPENDENCY_NOT_READY, blocked, DEPENDENCY_REQUEUE_SECONDS)
            if self._is_new_work(old_status, generation, obj, source_revision):
                message = (
                    f"Fetching manifests for revision '{source_revision}' "
                    f"with a timeout of {format_duration(spec.timeout)}"
                )
                status = cond.mark_progressing(status, message, generation=generation)
                status["lastAttemptedRevision"] = source_revision
                await self.writer.patch_status(ref, old_status, status)
                old_status = status
            status = dict(status, lastAttemptedRevision=source_revision)
            built, rebuilt = await self._build(obj, spec, artifact, source_revision)
            client = await self.client_for(spec, ref.namespace)
            status = await self._apply_prune_and_wait(
                obj, spec, client, built, rebuilt, status, generation, attempt.cancel
            )
        except StepFailed as exc:
            if exc.status is not None:
                status = exc.status
            if exc.stalled:
                status = cond.mark_stalled(status, exc.reason, exc.message, generation=generation)
            else:
                status = cond.mark_failed(status, exc.reason, exc.message, generation=generation)
            await self._finish(obj, old_status, status)
            if exc.reason == cond.DEPENDENCY_NOT_READY:
                await self.recorder.normal(obj, exc.reason, exc.message)
            else:
                await self.recorder.warning(
                    obj, exc.reason, exc.message, self._revision_metadata(status)
                )
            if exc.stalled:
                return Outcome(requeue_after=None)
            return Outcome(requeue_after=exc.requeue or spec.retry_interval)

        message = f"Applied revision: {built.revision}"
        status = cond.mark_ready(status, message, generation=generation)
        status["lastAppliedRevision"] = built.revision
        status = self._record_history(status, built, time.monotonic() - started)
        await self._finish(obj, old_status, status)
        if old_status.get("lastAppliedRevision") != built.revision or not cond.is_true(
            old_status, cond.READY
        ):
            await self.recorder.normal(
                obj,
                cond.RECONCILIATION_SUCCEEDED,
                f"Reconciliation finished in {format_duration(time.monotonic() - started)}, "
                f"next run in {format_duration(spec.interval)}",
                {"revision": built.revision, "commit_status": "update"},
            )
        return Outcome(requeue_after=jittered(spec.interval))

    async def finalize(self, obj: Object) -> bool:
        """Apply the deletion policy to everything in the inventory."""
        ref = ObjectRef.of(obj)
        self.forget(ref)
        spec_raw = obj.get("spec") or {}
        inventory = Inventory.from_status((obj.get("status") or {}).get("inventory"))
        # Flux deletes nothing for a suspended object or an empty inventory.
        if spec_raw.get("suspend") or not len(inventory):
            return True
        try:
            spec = KustomizationSpec.parse(spec_raw, ref.namespace)
        except SpecError:
            return True
        try:
            client = await self.client_for(spec, ref.namespace, account_must_exist=True)
        except IdentityGone as exc:
            # As Flux does: nothing can be deleted as an identity that is gone
            # (e.g. its namespace is being deleted), and retrying would keep the
            # Kustomization, and so its namespace, forever. Say what stays.
            message = (
                f"{exc.message}: skipping garbage collection, "
                f"{len(inventory)} objects left in place: "
                + ", ".join(str(entry.id) for entry in list(inventory)[:10])
                + (", ..." if len(inventory) > 10 else "")
            )
            log.warning("deleting the objects of %s skipped: %s", ref, message)
            await self.recorder.warning(obj, cond.PRUNE_FAILED, message)
            return True
        result = await delete_all(
            client,
            list(inventory),
            spec.deletion_policy,
            PruneOptions(owner_labels=ssa.owner_labels(GROUP, ref.name, ref.namespace)),
            prune_enabled=spec.prune,
            timeout=spec.timeout,
        )
        if not result.ok:
            log.warning("deleting the objects of %s failed: %s", ref, result.message)
            return False
        return True

    # -- steps ---------------------------------------------------------------------------

    def _source_artifact(self, spec: KustomizationSpec) -> tuple[Artifact, str]:
        cache = self.sources.get(spec.source.kind)
        if cache is None:
            raise StepFailed(
                cond.ARTIFACT_FAILED,
                f"spec.sourceRef.kind '{spec.source.kind}' is not supported "
                f"(supported: {', '.join(sorted(self.sources))})",
            )
        source = cache.get(ObjectRef(spec.source.namespace, spec.source.name))
        if source is None:
            raise StepFailed(
                cond.ARTIFACT_FAILED,
                f"Source '{spec.source}' not found",
                DEPENDENCY_REQUEUE_SECONDS,
            )
        raw = (source.get("status") or {}).get("artifact")
        if not raw:
            raise StepFailed(
                cond.ARTIFACT_FAILED,
                f"Source '{spec.source}' is not ready, artifact not found",
                DEPENDENCY_REQUEUE_SECONDS,
            )
        try:
            artifact = Artifact.from_status(raw)
        except ArtifactError as exc:
            raise StepFailed(cond.ARTIFACT_FAILED, str(exc)) from None
        return artifact, artifact.revision

    @staticmethod
    def _is_new_work(
        status: Mapping[str, Any], generation: int, obj: Object, revision: str
    ) -> bool:
        """A revision, generation or request not attempted yet: report Progressing first.

        A retry of work that already failed writes no Progressing status: until
        this generation first succeeds, every status write wakes the queue
        again (observedGeneration lags), so flipping Ready between Unknown and
        False on each attempt would retry in a tight loop, not every
        retryInterval.
        """
        ready = cond.get_condition(status, cond.READY)
        return (
            cond.reconcile_requested(status, obj["metadata"].get("annotations"))
            or status.get("lastAttemptedRevision") != revision
            or ready is None
            or ready.get("observedGeneration") != generation
        )

    async def _build(
        self, obj: Object, spec: KustomizationSpec, artifact: Artifact, revision: str
    ) -> tuple[BuiltRevision, bool]:
        """The objects to apply, built now or reused; True when built now."""
        ref = ObjectRef.of(obj)
        raw_spec = obj.get("spec") or {}
        reads: dict[tuple[str, str], Mapping[str, str] | None] = {}

        async def read(kind: str, name: str) -> Mapping[str, str] | None:
            if (kind, name) not in reads:
                reads[(kind, name)] = await self.read_config(ref.namespace, kind, name)
            return reads[(kind, name)]

        # The substitution inputs are part of the key: read them first (cached for the build).
        for source in spec.substitute_from:
            await read(source.kind, source.name)
        key = _digest(
            {
                "artifact": artifact.digest,
                "spec": raw_spec,
                "inputs": {f"{k}/{n}": v for (k, n), v in sorted(reads.items())},
            }
        )
        previous = self._builds.get(ref)
        if previous is not None and previous.key == key:
            return previous, False
        try:
            async with self.artifacts.checkout(artifact) as tree:
                manifests = await build_step.build(tree, spec.path, raw_spec, timeout=spec.timeout)
            manifests = await substitute.substitute(manifests, raw_spec.get("postBuild"), read)
        except (ArtifactError, BuildError) as exc:
            # Each carries Flux's reason: ArtifactFailed (a missing path too) or BuildFailed.
            raise StepFailed(exc.reason, str(exc)) from None
        objects = build_step.apply_common_metadata(
            [m.object for m in manifests], raw_spec.get("commonMetadata")
        )
        objects = await self._decrypt(spec, objects, ref.namespace)
        built = BuiltRevision(
            key=key,
            revision=revision,
            objects=objects,
            digest=_digest([m.text for m in manifests]),
        )
        self._builds[ref] = built
        return built, True

    async def _decrypt(
        self, spec: KustomizationSpec, objects: list[dict[str, Any]], namespace: str
    ) -> list[dict[str, Any]]:
        if spec.decryption_provider != decrypt.PROVIDER or not decrypt.has_sealed_secrets(objects):
            return objects
        keys = await self.load_keys(namespace, spec.decryption_secret)
        if not keys:
            raise StepFailed(
                decrypt.DECRYPTION_FAILED,
                "no sealing keys found: the controller creates one at startup, "
                "or spec.decryption.secretRef names a missing Secret",
            )
        try:
            # RSA with every key for every value: CPU-bound, so off the event loop.
            return await asyncio.to_thread(
                decrypt.unseal_objects,
                objects,
                keys,
                default_namespace=spec.target_namespace or namespace,
            )
        except decrypt.DecryptionError as exc:
            raise StepFailed(exc.reason, str(exc)) from None

    async def _apply_prune_and_wait(
        self,
        obj: Object,
        spec: KustomizationSpec,
        client: ResourceClient,
        built: BuiltRevision,
        rebuilt: bool,
        status: dict[str, Any],
        generation: int,
        cancel: asyncio.Event,
    ) -> dict[str, Any]:
        ref = ObjectRef.of(obj)
        owner = ssa.owner_labels(GROUP, ref.name, ref.namespace)
        options = ssa.ApplyOptions(
            field_manager=FIELD_MANAGER,
            owner_labels=owner,
            force=spec.force,
            wait_timeout=spec.timeout,
            ignore=spec.ignore,
        )
        try:
            changeset = await ssa.apply_all(client, built.objects, options)
        except ssa.ApplyError as exc:
            await self._report_changes(obj, exc.changeset, built, drift=False)
            raise StepFailed(cond.RECONCILIATION_FAILED, str(exc)) from None
        applied_before = (obj.get("status") or {}).get("lastAppliedRevision") == built.revision
        log.info(
            "server-side apply of %s: %s",
            ref,
            ", ".join(f"{len(ids)} {action}" for action, ids in changeset.by_action().items())
            or "nothing to apply",
            extra={"revision": built.revision, "rebuilt": rebuilt},
        )
        await self._report_changes(obj, changeset, built, drift=applied_before and not rebuilt)

        old_inventory = Inventory.from_status(status.get("inventory"))
        inventory = changeset.to_inventory()
        stale = old_inventory.stale(inventory)
        prune_failure = ""
        if spec.prune and stale:
            self.expect_deletions(entry.id for entry in stale)
            pruned = await prune(client, stale, PruneOptions(owner_labels=owner))
            deleted = [e for e in pruned.changeset if e.action is ssa.Action.DELETED]
            if deleted:
                await self.recorder.normal(
                    obj,
                    cond.PROGRESSING,
                    "\n".join(str(e) for e in deleted),
                    {"revision": built.revision},
                )
            if not pruned.ok:
                inventory = inventory.merge(pruned.survivors)
                prune_failure = pruned.message
        status = dict(status, inventory=inventory.to_status())
        self.observe_kinds(inventory)
        if prune_failure:
            raise StepFailed(cond.PRUNE_FAILED, prune_failure, status=status)

        checks = self._health_entries(spec, changeset)
        if not checks:
            return cond.remove_condition(status, HEALTHY)
        result = await health.wait_for_health(
            client,
            checks,
            timeout=spec.timeout,
            poll_interval=HEALTH_POLL_SECONDS,
            cancel=cancel,
            ttl_jobs=health.jobs_with_ttl(built.objects),
            # Read our objects with a LIST per kind rather than a GET each.
            label_selector=ssa.label_selector(owner),
            custom_status=expression_status(spec.health_check_exprs),
        )
        if result.healthy:
            healthy = cond.get_condition(status, HEALTHY)
            if (
                healthy is not None
                and healthy.get("status") == cond.TRUE
                and healthy.get("observedGeneration") == generation
                and status.get("lastAppliedRevision") == built.revision
            ):
                # Healthy as it was: keep the message of the check that made it
                # so, since a new elapsed time would turn a no-op into a write.
                return status
            return cond.set_condition(
                status,
                HEALTHY,
                cond.TRUE,
                cond.SUCCEEDED,
                f"Health check passed in {format_duration(result.elapsed)}",
                generation=generation,
            )
        reason = (
            cond.HEALTH_CHECK_CANCELED
            if result.outcome is health.HealthOutcome.CANCELED
            else cond.HEALTH_CHECK_FAILED
        )
        status = cond.set_condition(
            status, HEALTHY, cond.FALSE, reason, result.message, generation=generation
        )
        raise StepFailed(reason, result.message, status=status)

    @staticmethod
    def _health_entries(spec: KustomizationSpec, changeset: ssa.ChangeSet) -> list[InventoryEntry]:
        if spec.wait:
            # Everything applied, less what was skipped (ssa: Ignore, reconcile:
            # disabled), as Flux does: a skipped object may never exist.
            return list(changeset.health_entries())
        entries = []
        for check in spec.health_checks:
            group, _, version = check.api_version.rpartition("/")
            entries.append(
                InventoryEntry(ObjectId(group, check.kind, check.namespace, check.name), version)
            )
        return entries

    async def _report_changes(
        self, obj: Object, changeset: ssa.ChangeSet, built: BuiltRevision, *, drift: bool
    ) -> None:
        changed = changeset.changed()
        if not changed:
            return
        metadata = {"revision": built.revision}
        if drift:
            # Nothing in git changed, yet the cluster had to: someone edited it.
            await self.recorder.warning(
                obj,
                DRIFT_DETECTED,
                "Drift detected and corrected:\n" + changeset.describe(),
                metadata,
            )
        else:
            await self.recorder.normal(obj, cond.PROGRESSING, str(ssa.ChangeSet(changed)), metadata)

    # -- status --------------------------------------------------------------------------

    @staticmethod
    def _revision_metadata(status: Mapping[str, Any]) -> dict[str, str]:
        revision = status.get("lastAttemptedRevision")
        return {"revision": str(revision)} if revision else {}

    @staticmethod
    def _record_history(
        status: Mapping[str, Any], built: BuiltRevision, duration: float
    ) -> dict[str, Any]:
        """Flux's status.history, updated only when the built output changes.

        Flux bumps lastReconciled on every run; here a no-op reconcile writes
        nothing (DESIGN.md), so the entry records when each output was applied.
        """
        history = [dict(entry) for entry in status.get("history") or []]
        if history and history[0].get("digest") == f"sha256:{built.digest}":
            return dict(status, history=history)
        now = datetime.datetime.now(datetime.UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
        entry = {
            "digest": f"sha256:{built.digest}",
            "firstReconciled": now,
            "lastReconciled": now,
            "lastReconciledDuration": format_duration(duration),
            "lastReconciledStatus": cond.RECONCILIATION_SUCCEEDED,
            "totalReconciliations": 1,
            "metadata": {"revision": built.revision},
        }
        return dict(status, history=[entry, *history][:HISTORY_LIMIT])

    async def _finish(
        self, obj: Object, old_status: Mapping[str, Any], status: Mapping[str, Any]
    ) -> None:
        final = cond.summarize(
            status,
            generation=int(obj["metadata"].get("generation") or 0),
            annotations=obj["metadata"].get("annotations"),
        )
        await self.writer.patch_status(ObjectRef.of(obj), old_status, final)


def _digest(value: Any) -> str:
    return hashlib.sha256(json.dumps(value, sort_keys=True, default=str).encode()).hexdigest()
