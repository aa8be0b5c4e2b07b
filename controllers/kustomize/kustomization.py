"""Reconcile one Kustomization, in Flux's order:

source → dependencies → fetch → build → substitute → decrypt → apply → prune → health → report

Each step is a plain function in its own module (toolkit.artifacts,
kustomize.build/substitute/decrypt, toolkit.apply ssa/prune/health); this
module composes them inside the reconcile frame (toolkit.runtime.frame),
which turns their outcome, or any error they raise, into conditions, the one
status write and events. The apply, prune and health steps share one
`ApplyContext`. Two things it adds on top:

- Skip unchanged work: the build output is kept per object, keyed by the
  artifact digest, the spec and the substitution inputs, so a periodic
  reconcile does not rebuild. The apply engine dry-runs every object and
  writes only what differs, so an unchanged cluster sees no write.
- Skip unchanged checks: a periodic reconcile with nothing changed, whose
  objects the inventory watch has seen without a gap and unchanged since a
  full verification found them as built, reuses that verification's change
  set instead of dry-running every object again (toolkit.apply.verification;
  at least every --full-verify-interval, and on any request, a full one).
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

from controllers.kustomize import decrypt
from controllers.kustomize.dependencies import Lookup, dependency_not_ready
from controllers.kustomize.spec import (
    DEPENDENCY_REQUEUE_SECONDS,
    GROUP,
    KustomizationSpec,
    expression_status,
)
from controllers.toolkit.apply import health, ssa
from controllers.toolkit.apply.inventory import Inventory, InventoryEntry, ObjectId
from controllers.toolkit.apply.inventory_watch import Owner, WatchedKind, WatchToken
from controllers.toolkit.apply.prune import PruneOptions, PruneResult, delete_all, prune
from controllers.toolkit.apply.resources import ResourceClient
from controllers.toolkit.apply.verification import (
    DEFAULT_FULL_VERIFY_INTERVAL,
    Attempt,
    Verified,
    full_verification_reason,
)
from controllers.toolkit.artifacts import Artifact, ArtifactCache
from controllers.toolkit.kustomize import build as build_step
from controllers.toolkit.kustomize import substitute
from controllers.toolkit.runtime import conditions as cond
from controllers.toolkit.runtime import observability
from controllers.toolkit.runtime.durations import format_duration, jittered
from controllers.toolkit.runtime.events import NORMAL
from controllers.toolkit.runtime.fields import UNSUPPORTED_FIELD
from controllers.toolkit.runtime.frame import ReconcileError, ReconcileFrame, ReconcileRun
from controllers.toolkit.runtime.reconciler import Object, ObjectRef, Outcome, Resource, WatchCache
from controllers.toolkit.runtime.tenancy import Lockdown, Reference

log = logging.getLogger(__name__)

RESOURCE = Resource(GROUP, "v1", "kustomizations", "Kustomization")
FIELD_MANAGER = "headwater-kustomize"

HEALTHY = "Healthy"
DRIFT_DETECTED = "DriftDetected"
HISTORY_LIMIT = 5
# How often a health wait polls; Flux uses 5s, shorter here so syncs feel prompt.
HEALTH_POLL_SECONDS = 2.0
# Reconciling=True / Ready=Unknown is written only once a reconcile has run this
# long (Flux writes it at the start): most end sooner, and then their one status
# write says how it ended, one round trip and one watch event less each.
PROGRESS_WRITE_DELAY = 2.0

# (the client reading as the Kustomization's identity, namespace, kind, name)
# -> decoded data, None when missing.
ConfigReader = Callable[[ResourceClient, str, str, str], Awaitable[Mapping[str, str] | None]]
# (the Kustomization's namespace, spec.decryption.secretRef name or None) -> keys.
KeyLoader = Callable[[str, str | None], Awaitable[Sequence[Any]]]
ObserveKinds = Callable[[Inventory], None]
# Announces objects about to be pruned, so their deletion is not taken for drift.
ExpectDeletions = Callable[[Iterable[ObjectId]], None]
# The apply wing's steps (ssa.apply_all, prune.prune, health.wait_for_health).
ApplyAll = Callable[
    [ResourceClient, Sequence[Mapping[str, Any]], ssa.ApplyOptions], Awaitable[ssa.ChangeSet]
]
PruneStale = Callable[
    [ResourceClient, Sequence[InventoryEntry], PruneOptions], Awaitable[PruneResult]
]
HealthWait = Callable[..., Awaitable[health.HealthResult]]


class WatchProof(Protocol):
    """What the inventory watch can vouch for (InventoryWatcher's ledger)."""

    def token(self, owner: Owner) -> WatchToken | None: ...

    def broken(
        self, token: WatchToken, owner: Owner, kinds: Iterable[WatchedKind]
    ) -> str | None: ...


class IdentityGone(ReconcileError):
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
    """What one build produced, kept to skip the next identical build.

    `revision` is the last source revision this output was built or reused
    for: a commit that leaves the output as it was reuses it.
    """

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


@dataclass(frozen=True)
class ApplyContext:
    """What the apply, prune and health steps of one reconcile share."""

    run: ReconcileRun
    spec: KustomizationSpec
    client: ResourceClient
    built: BuiltRevision
    rebuilt: bool
    # The revision this reconcile works on (the build may be one reused from an older one).
    revision: str
    # Applied before, unchanged since (set from the status the reconcile started from).
    applied_before: bool
    owner: Mapping[str, str]
    cancel: asyncio.Event
    # reconcile.fluxcd.io/requestedAt as this reconcile found it.
    requested_at: str | None = None


@dataclass
class KustomizationReconciler:
    frame: ReconcileFrame
    artifacts: ArtifactCache
    sources: Mapping[str, WatchCache]  # by source kind
    # The objects dependsOn names (Kustomizations, HelmReleases), from the caches.
    dependencies: Lookup
    read_config: ConfigReader
    load_keys: KeyLoader
    client_for: ClientFactory
    observe_kinds: ObserveKinds
    expect_deletions: ExpectDeletions
    lockdown: Lockdown = field(default_factory=Lockdown)
    # Injected so the reconcile can be tested without a cluster.
    apply_all: ApplyAll = ssa.apply_all
    prune_stale: PruneStale = prune
    wait_for_health: HealthWait = health.wait_for_health
    # What vouches that applied objects did not change (None: dry-run every reconcile),
    # and the longest time between two dry-runs of everything (--full-verify-interval).
    watch_proof: WatchProof | None = None
    full_verify_interval: float = DEFAULT_FULL_VERIFY_INTERVAL
    clock: Callable[[], float] = time.monotonic
    _builds: dict[ObjectRef, BuiltRevision] = field(default_factory=dict)
    # The last full verification that found each Kustomization's objects as built.
    _verified: dict[ObjectRef, Verified] = field(default_factory=dict)
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
        self._verified.pop(ref, None)

    async def reconcile(self, obj: Object) -> Outcome:
        ref = ObjectRef.of(obj)
        attempt = self._attempts[ref] = _Attempt()
        try:
            return await self.frame.run(obj, lambda run: self._steps(run, attempt))
        finally:
            self._attempts.pop(ref, None)

    async def _steps(self, run: ReconcileRun, attempt: _Attempt) -> None:
        # Only a reconcile that ends Ready leaves a verification the next one may reuse.
        verified = self._verified.pop(run.ref, None)
        found = await self._reconcile_steps(run, attempt, verified)
        if found is not None:
            self._verified[run.ref] = found

    async def _reconcile_steps(
        self, run: ReconcileRun, attempt: _Attempt, verified: Verified | None
    ) -> Verified | None:
        started = time.monotonic()
        ref = run.ref
        before: Mapping[str, Any] = run.obj.get("status") or {}
        if before.get("lastAttemptedRevision"):
            run.event_metadata["revision"] = str(before["lastAttemptedRevision"])
        spec = KustomizationSpec.parse(run.spec, ref.namespace)
        run.retry_after = spec.retry_interval
        self.lockdown.check_references(ref.namespace, references(spec))

        artifact, revision = self._source_artifact(spec)
        attempt.revision = revision
        run.event_metadata["revision"] = revision
        if artifact.origin_revision:
            run.event_metadata["originRevision"] = artifact.origin_revision
        blocked = dependency_not_ready(run.obj, spec, revision, self.dependencies)
        if blocked:
            # Waiting for a dependency is normal operation, not worth a Warning.
            raise ReconcileError(
                cond.DEPENDENCY_NOT_READY,
                blocked,
                requeue_after=DEPENDENCY_REQUEUE_SECONDS,
                event=NORMAL,
            )
        await run.progressing(
            f"Fetching manifests for revision '{revision}' "
            f"with a timeout of {format_duration(spec.timeout)}",
            revision=revision,
            delay=PROGRESS_WRITE_DELAY,
        )
        # Flux's order: the client first, so the build reads its inputs
        # (postBuild.substituteFrom) as the Kustomization's identity.
        client = await self.client_for(spec, ref.namespace)
        built, rebuilt = await self._build(run, spec, client, artifact, revision)
        ctx = ApplyContext(
            run=run,
            spec=spec,
            client=client,
            built=built,
            rebuilt=rebuilt,
            revision=revision,
            applied_before=before.get("lastAppliedRevision") == built.revision,
            owner=ssa.owner_labels(GROUP, ref.name, ref.namespace),
            cancel=attempt.cancel,
            requested_at=cond.requested_at(run.annotations),
        )
        built.revision = revision  # the reused output is this revision's output too
        changeset, verified = await self._verify_and_apply(ctx, verified)
        await self._prune(ctx, changeset)
        await self._check_health(ctx, changeset)

        # The revision just reconciled, even when its build was reused (Flux's rule).
        run.ready(f"Applied revision: {revision}")
        run.status["lastAppliedRevision"] = revision
        if artifact.origin_revision:
            run.status["lastAppliedOriginRevision"] = artifact.origin_revision
        else:
            run.status.pop("lastAppliedOriginRevision", None)
        run.status = self._record_history(run.status, built, time.monotonic() - started)
        if before.get("lastAppliedRevision") != revision or not cond.is_true(before, cond.READY):
            run.notify(
                NORMAL,
                cond.RECONCILIATION_SUCCEEDED,
                f"Reconciliation finished in {format_duration(time.monotonic() - started)}, "
                f"next run in {format_duration(spec.interval)}",
                {"revision": revision, "commit_status": "update"},
            )
        run.requeue_after = jittered(spec.interval)
        return verified

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
        except ReconcileError:
            return True  # a spec that cannot be read: delete nothing, keep nothing waiting
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
            await self.frame.recorder.warning(obj, cond.PRUNE_FAILED, message)
            return True
        result = await delete_all(
            client,
            list(inventory),
            spec.deletion_policy,
            _prune_options(ssa.owner_labels(GROUP, ref.name, ref.namespace)),
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
            # A kind the CRD accepts but no source wired here serves: stalled,
            # since retrying cannot make one appear.
            raise ReconcileError(
                UNSUPPORTED_FIELD,
                f"spec.sourceRef.kind: {spec.source.kind!r} is not supported by headwater "
                f"(supported: {', '.join(sorted(self.sources))})",
                stalled=True,
            )
        source = cache.get(ObjectRef(spec.source.namespace, spec.source.name))
        # A source not created or not fetched yet is a wait, not an error to
        # page anyone for (Flux records no event): Ready=False and retry.
        if source is None:
            raise ReconcileError(
                cond.ARTIFACT_FAILED,
                f"Source '{spec.source}' not found",
                requeue_after=DEPENDENCY_REQUEUE_SECONDS,
                event=None,
            )
        raw = (source.get("status") or {}).get("artifact")
        if not raw:
            raise ReconcileError(
                cond.ARTIFACT_FAILED,
                f"Source '{spec.source}' is not ready, artifact not found",
                requeue_after=DEPENDENCY_REQUEUE_SECONDS,
                event=None,
            )
        artifact = Artifact.from_status(raw)  # ArtifactError (ArtifactFailed) if malformed
        return artifact, artifact.revision

    async def _build(
        self,
        run: ReconcileRun,
        spec: KustomizationSpec,
        client: ResourceClient,
        artifact: Artifact,
        revision: str,
    ) -> tuple[BuiltRevision, bool]:
        """The objects to apply, built now or reused; True when built now.

        Raises the step's own errors: ArtifactError (ArtifactFailed, a missing
        path too), BuildError (BuildFailed), DecryptionError (DecryptionFailed).
        """
        ref = run.ref
        raw_spec = run.spec
        reads: dict[tuple[str, str], Mapping[str, str] | None] = {}

        async def read(kind: str, name: str) -> Mapping[str, str] | None:
            # As the Kustomization's identity: a tenant reads only what its account may.
            if (kind, name) not in reads:
                reads[(kind, name)] = await self.read_config(client, ref.namespace, kind, name)
            return reads[(kind, name)]

        # The substitution inputs are part of the key: read them first (cached for the build).
        for source in spec.post_build.substitute_from if spec.post_build else ():
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
        async with self.artifacts.checkout(artifact) as tree:
            manifests = await build_step.build(
                tree,
                spec.path,
                spec.build,
                timeout=spec.timeout,
                allow_remote=not self.lockdown.no_remote_bases,
                # Substitution works on kustomize's text; the fast path keeps the files'.
                in_process=spec.post_build is None,
            )
        manifests = await substitute.substitute(manifests, spec.post_build, read)
        objects = build_step.apply_common_metadata(
            [m.object for m in manifests], spec.common_metadata
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
            raise decrypt.DecryptionError(
                "no sealing keys found: the controller creates one at startup, "
                "or spec.decryption.secretRef names a missing Secret"
            )
        # RSA with every key for every value: CPU-bound, so off the event loop.
        return await asyncio.to_thread(
            decrypt.unseal_objects,
            objects,
            keys,
            default_namespace=spec.build.target_namespace or namespace,
        )

    async def _verify_and_apply(
        self, ctx: ApplyContext, last: Verified | None
    ) -> tuple[ssa.ChangeSet, Verified | None]:
        """The apply, or when nothing can have changed since `last`, its change set again.

        Returns the change set and the verification the next reconcile may reuse.
        """
        ref = ctx.run.ref
        owner: Owner = (ref.namespace, ref.name)
        attempt = Attempt(
            key=ctx.built.key,
            digest=ctx.built.digest,
            revision=ctx.revision,
            requested_at=ctx.requested_at,
            force=ctx.spec.force,
            remote=ctx.spec.kubeconfig_secret is not None
            or ctx.spec.kubeconfig_config_map is not None,
            now=self.clock(),
        )
        proof = self.watch_proof
        reason = full_verification_reason(
            last,
            attempt,
            interval=self.full_verify_interval,
            watch=(lambda token, kinds: proof.broken(token, owner, kinds)) if proof else None,
        )
        if reason is None and last is not None:
            log.debug(
                "dry-run of %s skipped: %d objects as verified %.0fs ago, "
                "the inventory watch saw no change since",
                ref,
                len(last.changeset),
                attempt.now - last.at,
                extra={"revision": ctx.revision},
            )
            observability.record_verification(RESOURCE.kind, ref.name, ref.namespace, skipped=True)
            return ssa.ChangeSet(list(last.changeset)), last
        log.debug("full verification of %s: %s", ref, reason, extra={"revision": ctx.revision})
        # Taken before the first dry-run: a change made during it counts as one after it.
        token = proof.token(owner) if proof is not None else None
        changeset = await self._apply(ctx)
        observability.record_verification(RESOURCE.kind, ref.name, ref.namespace, skipped=False)
        return changeset, Verified.of(
            changeset,
            key=attempt.key,
            digest=attempt.digest,
            revision=attempt.revision,
            requested_at=attempt.requested_at,
            at=attempt.now,
            token=token,
        )

    async def _apply(self, ctx: ApplyContext) -> ssa.ChangeSet:
        """Server-side apply of the built objects; reports what changed (or drifted)."""
        options = ssa.ApplyOptions(
            field_manager=FIELD_MANAGER,
            owner_group=GROUP,
            owner_labels=ctx.owner,
            force=ctx.spec.force,
            wait_timeout=ctx.spec.timeout,
            ignore=ctx.spec.ignore,
            before_write=lambda entries: self._record_pending(ctx, entries),
        )
        try:
            changeset = await self.apply_all(ctx.client, ctx.built.objects, options)
        except ssa.ApplyError as exc:
            await self._report_changes(ctx, exc.changeset, drift=False)
            raise ReconcileError(cond.RECONCILIATION_FAILED, str(exc)) from None
        log.info(
            "server-side apply of %s: %s",
            ctx.run.ref,
            ", ".join(f"{len(ids)} {action}" for action, ids in changeset.by_action().items())
            or "nothing to apply",
            extra={"revision": ctx.revision, "rebuilt": ctx.rebuilt},
        )
        await self._report_changes(ctx, changeset, drift=ctx.applied_before and not ctx.rebuilt)
        return changeset

    async def _record_pending(self, ctx: ApplyContext, pending: Inventory) -> None:
        """Before the first write, put what is about to be applied in the inventory.

        The inventory is otherwise recorded once the apply is done; a controller
        killed half way would leave objects it created that no inventory names, and
        if git then drops them nothing ever prunes them. Written now (the old
        inventory plus the new objects), they are pruned by the next reconcile
        like any stale entry; only objects that carry this Kustomization's owner
        labels are ever deleted, so naming one not applied yet is harmless.
        """
        run = ctx.run
        old = Inventory.from_status(run.status.get("inventory"))
        if all(entry in old for entry in pending):
            return
        run.status = dict(run.status, inventory=old.merge(pending).to_status())
        await run.patcher.patch(run.status)

    async def _prune(self, ctx: ApplyContext, changeset: ssa.ChangeSet) -> None:
        """Delete what left the build (with spec.prune) and record the inventory.

        The inventory is in the status before a prune failure is raised, so it
        names what still exists.
        """
        run = ctx.run
        old_inventory = Inventory.from_status(run.status.get("inventory"))
        inventory = changeset.to_inventory()
        stale = old_inventory.stale(inventory)
        prune_failure = ""
        if ctx.spec.prune and stale:
            self.expect_deletions(entry.id for entry in stale)
            pruned = await self.prune_stale(ctx.client, stale, _prune_options(ctx.owner))
            deleted = [e for e in pruned.changeset if e.action is ssa.Action.DELETED]
            if deleted:
                await self.frame.recorder.normal(
                    run.obj,
                    cond.PROGRESSING,
                    "\n".join(str(e) for e in deleted),
                    {"revision": ctx.revision},
                )
            if not pruned.ok:
                inventory = inventory.merge(pruned.survivors)
                prune_failure = pruned.message
        run.status = dict(run.status, inventory=inventory.to_status())
        self.observe_kinds(inventory)
        if prune_failure:
            raise ReconcileError(cond.PRUNE_FAILED, prune_failure)

    async def _check_health(self, ctx: ApplyContext, changeset: ssa.ChangeSet) -> None:
        """Wait for what spec.wait / spec.healthChecks name; the Healthy condition says how."""
        run, spec = ctx.run, ctx.spec
        checks = self._health_entries(spec, changeset)
        if not checks:
            run.status = cond.remove_condition(run.status, HEALTHY)
            return
        result = await self.wait_for_health(
            ctx.client,
            checks,
            timeout=spec.timeout,
            poll_interval=HEALTH_POLL_SECONDS,
            cancel=ctx.cancel,
            ttl_jobs=health.jobs_with_ttl(ctx.built.objects),
            # Read our objects with a LIST per kind rather than a GET each.
            label_selector=ssa.label_selector(ctx.owner),
            custom_status=expression_status(spec.health_check_exprs),
        )
        if result.healthy:
            healthy = cond.get_condition(run.status, HEALTHY)
            if (
                healthy is not None
                and healthy.get("status") == cond.TRUE
                and healthy.get("observedGeneration") == run.generation
                and run.status.get("lastAppliedRevision") == ctx.revision
            ):
                # Healthy as it was: keep the message of the check that made it
                # so, since a new elapsed time would turn a no-op into a write.
                return
            run.status = cond.set_condition(
                run.status,
                HEALTHY,
                cond.TRUE,
                cond.SUCCEEDED,
                f"Health check passed in {format_duration(result.elapsed)}",
                generation=run.generation,
            )
            return
        reason = (
            cond.HEALTH_CHECK_CANCELED
            if result.outcome is health.HealthOutcome.CANCELED
            else cond.HEALTH_CHECK_FAILED
        )
        run.status = cond.set_condition(
            run.status, HEALTHY, cond.FALSE, reason, result.message, generation=run.generation
        )
        raise ReconcileError(reason, result.message)

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
        self, ctx: ApplyContext, changeset: ssa.ChangeSet, *, drift: bool
    ) -> None:
        """Events for what the apply changed, at once: a health wait may follow for minutes."""
        changed = changeset.changed()
        if not changed:
            return
        metadata = {"revision": ctx.revision}
        if drift:
            # Nothing in git changed, yet the cluster had to: someone edited it.
            ref = ctx.run.ref
            observability.record_drift_corrected(RESOURCE.kind, ref.name, ref.namespace)
            await self.frame.recorder.warning(
                ctx.run.obj,
                DRIFT_DETECTED,
                "Drift detected and corrected:\n" + changeset.describe(),
                metadata,
            )
        else:
            await self.frame.recorder.normal(
                ctx.run.obj, cond.PROGRESSING, str(ssa.ChangeSet(changed)), metadata
            )

    # -- status --------------------------------------------------------------------------

    @staticmethod
    def _record_history(
        status: Mapping[str, Any], built: BuiltRevision, duration: float
    ) -> dict[str, Any]:
        """Flux's status.history, updated only when the built output changes.

        Flux bumps lastReconciled on every run; here a no-op reconcile writes
        nothing, so the entry records when each output was applied.
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


def _prune_options(owner: Mapping[str, str]) -> PruneOptions:
    return PruneOptions(owner_labels=owner, owner_group=GROUP)


def _digest(value: Any) -> str:
    return hashlib.sha256(json.dumps(value, sort_keys=True, default=str).encode()).hexdigest()


def references(spec: KustomizationSpec) -> list[Reference]:
    """What --no-cross-namespace-refs checks: the source and every dependency."""
    source = spec.source
    found = [Reference("spec.sourceRef", source.kind, source.name, source.namespace)]
    found += [
        Reference(f"spec.dependsOn[{index}]", dep.kind, dep.name, dep.namespace)
        for index, dep in enumerate(spec.depends_on)
    ]
    return found
