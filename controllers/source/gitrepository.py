"""Reconcile one GitRepository: storage → source → verify → include → artifact → report.

The steps (checkout, verify, include, archive, storage) are plain functions in
their own modules, the spec is parsed in `spec`; this module composes them in
Flux's order inside the reconcile frame (`toolkit/runtime/frame.py`), which
summarizes the conditions, writes the status once and records the events:

- storage: the advertised artifact must still exist with its digest, else it
  is dropped (and rebuilt below); old artifacts are garbage-collected.
- source: one `git ls-remote` (through spec.proxySecretRef's proxy, if any);
  when the ref still points at the artifact's revision and nothing that shapes
  the artifact changed (ignore, include, sparseCheckout, submodules,
  verification), nothing is cloned and nothing is written.
- otherwise: clone (only the sparseCheckout directories, if given), verify
  signatures, copy includes in, archive with the ignore rules, store
  atomically, and emit `NewArtifact` when the digest moved.

A failing step raises its `SourceError`; its kind's condition (FetchFailed,
IncludeUnavailable, StorageOperationFailed, SourceVerified=False) is set here,
Ready=False (or Stalled) by the frame.
"""

from __future__ import annotations

import asyncio
import logging
import shutil
import tempfile
from collections.abc import Callable, Mapping
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from controllers.source.artifactfile import ARTIFACT_IN_STORAGE, ARTIFACT_VERIFICATION_FAILED
from controllers.source.ignore import load_ignore_rules
from controllers.source.include import Include, apply_includes
from controllers.source.spec import (
    UNSUPPORTED_FIELDS,
    GitRepositorySpec,
    IncludeSpec,
    SpecError,
)
from controllers.source.storage import ObjectKey, Storage, StoredArtifact, artifact_filename
from controllers.source.verify import VerificationResult, keys_from_secret, verify_checkout
from controllers.toolkit.git import errors
from controllers.toolkit.git.checkout import Checkout, Unchanged, fetch
from controllers.toolkit.git.credentials import ProxyConfig, auth_from_secret, proxy_from_secret
from controllers.toolkit.git.giturl import parse_git_url
from controllers.toolkit.runtime import conditions as cond
from controllers.toolkit.runtime.durations import jittered
from controllers.toolkit.runtime.events import NORMAL, WARNING, EventRecorder
from controllers.toolkit.runtime.frame import ReconcileFrame, ReconcileRun
from controllers.toolkit.runtime.kube import SecretReader
from controllers.toolkit.runtime.patching import ObjectWriter
from controllers.toolkit.runtime.reconciler import Object, ObjectRef, Outcome, Resource

log = logging.getLogger(__name__)

RESOURCE = Resource("source.toolkit.fluxcd.io", "v1", "gitrepositories", "GitRepository")
STORAGE_KIND = "gitrepository"

# Condition types of GitRepository (Flux's source API).
FETCH_FAILED = "FetchFailed"
SOURCE_VERIFIED = "SourceVerified"
INCLUDE_UNAVAILABLE = "IncludeUnavailable"
STORAGE_OPERATION_FAILED = "StorageOperationFailed"
# Failure conditions cleared together on success.
FAILURE_CONDITIONS = (FETCH_FAILED, INCLUDE_UNAVAILABLE, STORAGE_OPERATION_FAILED)

# Status fields recording what shaped the stored artifact.
SHAPING_FIELDS = (
    "observedIgnore",
    "observedInclude",
    "observedRecurseSubmodules",
    "observedSparseCheckout",
    "sourceVerificationMode",
)

NEW_ARTIFACT = "NewArtifact"

# Which condition a step failure lands on.
_FAILURE_CONDITION = {
    errors.GIT_OPERATION_FAILED: FETCH_FAILED,
    errors.AUTHENTICATION_FAILED: FETCH_FAILED,
    errors.URL_INVALID: FETCH_FAILED,
    errors.EMPTY_GIT_REPOSITORY: FETCH_FAILED,
    errors.VERIFICATION_ERROR: SOURCE_VERIFIED,
    errors.ARCHIVE_OPERATION_FAILED: STORAGE_OPERATION_FAILED,
    errors.STORAGE_OPERATION_FAILED: STORAGE_OPERATION_FAILED,
}

__all__ = [
    "RESOURCE",
    "STORAGE_KIND",
    "UNSUPPORTED_FIELDS",
    "FetchInputs",
    "GitRepositoryReconciler",
    "GitRepositorySpec",
    "SpecError",
    "produce_artifact",
]


class IncludeUnavailableError(errors.SourceError):
    reason = "IncludeUnavailable"


# -- producing the artifact (blocking; runs in a worker thread) -------------------------

# Removes finished checkouts, one at a time, off the reconcile's path.
_CLEANUP = ThreadPoolExecutor(max_workers=1, thread_name_prefix="git-checkout-cleanup")


@dataclass(frozen=True)
class ResolvedInclude:
    """An included repository's current artifact, found in our own storage."""

    spec: IncludeSpec
    artifact: Mapping[str, Any]


@dataclass(frozen=True)
class FetchInputs:
    key: ObjectKey
    spec: GitRepositorySpec
    secret: Mapping[str, bytes] | None
    verify_keys: Mapping[str, bytes] | None
    includes: tuple[ResolvedInclude, ...]
    current: Mapping[str, Any] | None  # status.artifact as last reported
    reuse_allowed: bool  # nothing that shapes the artifact changed since it was built
    proxy: ProxyConfig | None = None  # spec.proxySecretRef, read


@dataclass
class ArtifactOutcome:
    artifact: StoredArtifact | Mapping[str, Any]
    unchanged: bool
    verification: VerificationResult | None = None
    warnings: list[tuple[str, str]] = field(default_factory=list)  # (reason, message) events


def produce_artifact(storage: Storage, inputs: FetchInputs) -> ArtifactOutcome:
    """Make sure storage holds the artifact for the ref's current revision."""
    warnings: list[tuple[str, str]] = []
    current = inputs.current
    current_name: str | None = None
    if current:
        current_name = Path(str(current.get("path", ""))).name
        if not storage.verify(str(current.get("path", "")), str(current.get("digest", ""))):
            warnings.append(
                (
                    ARTIFACT_VERIFICATION_FAILED,
                    f"stored artifact '{current.get('path')}' is missing or does not match "
                    f"digest {current.get('digest')}; rebuilding it",
                )
            )
            storage.remove(str(current.get("path", "")))
            current, current_name = None, None
        else:
            # As Flux does each reconcile: the URL names this replica's storage
            # address, which after a failover is the new leader's.
            current = {**current, "url": storage.url_for(str(current.get("path", "")))}
    storage.gc(inputs.key, current_name)

    spec = inputs.spec
    url = parse_git_url(spec.url)
    auth = auth_from_secret(inputs.secret, url)
    last_revision = str(current["revision"]) if current and inputs.reuse_allowed else None
    tmp = tempfile.mkdtemp(prefix="headwater-git-")
    try:
        checkout = fetch(
            url,
            spec.ref,
            auth,
            Path(tmp) / "checkout",
            timeout=spec.timeout,
            recurse_submodules=spec.recurse_submodules,
            last_revision=last_revision,
            proxy=inputs.proxy,
            sparse_dirs=spec.sparse_dirs,
        )
        if isinstance(checkout, Unchanged):
            assert current is not None
            return ArtifactOutcome(artifact=current, unchanged=True, warnings=warnings)
        verification = _verify(checkout, spec, inputs.verify_keys)
        apply_includes(
            checkout.path,
            [
                Include(
                    name=inc.spec.name,
                    artifact=storage.local_path(str(inc.artifact["path"])),
                    digest=str(inc.artifact["digest"]),
                    from_path=inc.spec.from_path,
                    to_path=inc.spec.to_path,
                )
                for inc in inputs.includes
            ],
        )
        rules = load_ignore_rules(checkout.path, spec.ignore)
        stored = storage.archive(
            inputs.key, artifact_filename(checkout.commit), checkout.path, checkout.revision, rules
        )
    finally:
        _remove_later(tmp)
    storage.gc(inputs.key, Path(stored.path).name)
    return ArtifactOutcome(
        artifact=stored, unchanged=False, verification=verification, warnings=warnings
    )


def _remove_later(path: str) -> None:
    """Remove a finished checkout behind the reconcile: its status write need not wait."""
    try:
        _CLEANUP.submit(shutil.rmtree, path, ignore_errors=True)
    except RuntimeError:  # the interpreter is shutting down
        shutil.rmtree(path, ignore_errors=True)


def _verify(
    checkout: Checkout, spec: GitRepositorySpec, keys: Mapping[str, bytes] | None
) -> VerificationResult | None:
    if spec.verify_mode is None:
        return None
    if not keys:
        raise errors.VerificationError("spec.verify is set but its secretRef holds no keys")
    return verify_checkout(
        checkout.path, checkout.commit, checkout.tag, spec.verify_mode, keys, timeout=spec.timeout
    )


# -- the reconcile ----------------------------------------------------------------------

RepositoryLookup = Callable[[ObjectRef], Object | None]


@dataclass
class GitRepositoryReconciler:
    storage: Storage
    writer: ObjectWriter
    recorder: EventRecorder
    read_secret: SecretReader  # (namespace, name) -> decoded data, None when missing
    lookup: RepositoryLookup  # other GitRepositories, for include
    frame: ReconcileFrame = field(init=False)

    def __post_init__(self) -> None:
        self.frame = ReconcileFrame(RESOURCE, self.writer, self.recorder)

    async def reconcile(self, obj: Object) -> Outcome:
        return await self.frame.run(obj, self._steps)

    async def _steps(self, run: ReconcileRun) -> None:
        spec = GitRepositorySpec.parse(run.spec)  # stalls naming the field
        run.retry_after = jittered(spec.interval)
        previous = (run.status.get("artifact") or {}).get("digest")
        # Reconciling=True is written while the fetch runs, not before it: the fetch
        # reads nothing that write changes, and the final write waits for it.
        progress = asyncio.ensure_future(run.progressing("building artifact"))
        try:
            try:
                inputs = await self._inputs(run.ref, spec, run.status)
                outcome = await asyncio.to_thread(produce_artifact, self.storage, inputs)
            finally:
                await progress
        except errors.SourceError as exc:
            # The kind's own failure condition, beside the Ready the frame writes.
            condition = _FAILURE_CONDITION.get(exc.reason, INCLUDE_UNAVAILABLE)
            run.status = cond.set_condition(
                run.status,
                condition,
                cond.FALSE if condition == SOURCE_VERIFIED else cond.TRUE,
                exc.reason,
                exc.message,
                generation=run.generation,
            )
            raise
        for reason, message in outcome.warnings:
            run.notify(WARNING, reason, message)
        run.status = self._succeeded(run.status, spec, outcome, inputs, run.generation)
        artifact = run.status["artifact"]
        if artifact["digest"] != previous:
            run.notify(
                NORMAL,
                NEW_ARTIFACT,
                f"stored artifact for revision '{artifact['revision']}'",
                {"revision": artifact["revision"], "digest": artifact["digest"]},
            )
        run.requeue_after = jittered(spec.interval)

    async def finalize(self, obj: Object) -> bool:
        ref = ObjectRef.of(obj)
        await asyncio.to_thread(
            self.storage.delete, ObjectKey(STORAGE_KIND, ref.namespace, ref.name)
        )
        return True

    # -- helpers -----------------------------------------------------------------------

    async def _inputs(
        self, ref: ObjectRef, spec: GitRepositorySpec, status: Mapping[str, Any]
    ) -> FetchInputs:
        secret = None
        if spec.secret_name:
            secret = await self.read_secret(ref.namespace, spec.secret_name)
            if secret is None:
                raise errors.AuthenticationError(
                    f"secret '{ref.namespace}/{spec.secret_name}' (spec.secretRef) not found"
                )
        verify_keys = None
        if spec.verify_mode is not None:
            if not spec.verify_secret:
                raise errors.VerificationError("spec.verify needs a secretRef holding PGP keys")
            data = await self.read_secret(ref.namespace, spec.verify_secret)
            if data is None:
                where = f"'{ref.namespace}/{spec.verify_secret}' (spec.verify.secretRef)"
                raise errors.VerificationError(f"secret {where} not found")
            verify_keys = keys_from_secret(data)
        proxy = await self._proxy(ref.namespace, spec.proxy_secret)
        includes = tuple(self._resolve_include(ref.namespace, inc) for inc in spec.include)
        observed_includes = [
            {"revision": inc.artifact.get("revision"), "digest": inc.artifact.get("digest")}
            for inc in includes
        ]
        recorded_includes = [
            {"revision": a.get("revision"), "digest": a.get("digest")}
            for a in status.get("includedArtifacts") or []
        ]
        observed = spec.observed()
        # Reuse the artifact only if everything that shaped it is as it was then.
        reuse = [status.get(k) for k in SHAPING_FIELDS] == [
            observed.get(k) for k in SHAPING_FIELDS
        ] and observed_includes == recorded_includes
        return FetchInputs(
            key=ObjectKey(STORAGE_KIND, ref.namespace, ref.name),
            spec=spec,
            secret=secret,
            verify_keys=verify_keys,
            includes=includes,
            current=status.get("artifact"),
            reuse_allowed=reuse,
            proxy=proxy,
        )

    async def _proxy(self, namespace: str, name: str | None) -> ProxyConfig | None:
        if not name:
            return None
        where = f"secret '{namespace}/{name}' (spec.proxySecretRef)"
        data = await self.read_secret(namespace, name)
        if data is None:
            raise errors.AuthenticationError(
                f"failed to configure proxy options: {where} not found"
            )
        try:
            return proxy_from_secret(data, where)
        except errors.AuthenticationError as exc:
            raise errors.AuthenticationError(
                f"failed to configure proxy options: {exc.message}"
            ) from None

    def _resolve_include(self, namespace: str, inc: IncludeSpec) -> ResolvedInclude:
        other = self.lookup(ObjectRef(namespace, inc.name))
        if other is None:
            raise IncludeUnavailableError(
                f"included GitRepository '{namespace}/{inc.name}' not found"
            )
        artifact = (other.get("status") or {}).get("artifact")
        if not artifact:
            raise IncludeUnavailableError(
                f"included GitRepository '{namespace}/{inc.name}' has no artifact yet"
            )
        return ResolvedInclude(spec=inc, artifact=artifact)

    def _succeeded(
        self,
        status: Mapping[str, Any],
        spec: GitRepositorySpec,
        outcome: ArtifactOutcome,
        inputs: FetchInputs,
        generation: int,
    ) -> dict[str, Any]:
        artifact = (
            outcome.artifact.to_status()
            if isinstance(outcome.artifact, StoredArtifact)
            else dict(outcome.artifact)
        )
        result = dict(status)
        for stale in SHAPING_FIELDS:
            result.pop(stale, None)
        result.update(spec.observed())
        result["artifact"] = artifact
        if inputs.includes:
            result["includedArtifacts"] = [dict(inc.artifact) for inc in inputs.includes]
        else:
            result.pop("includedArtifacts", None)
        message = f"stored artifact for revision '{artifact['revision']}'"
        for failure in FAILURE_CONDITIONS:
            result = cond.remove_condition(result, failure)
        result = cond.set_condition(
            result, ARTIFACT_IN_STORAGE, cond.TRUE, cond.SUCCEEDED, message, generation=generation
        )
        if spec.verify_mode is None:
            result = cond.remove_condition(result, SOURCE_VERIFIED)
        elif outcome.verification is not None:
            result = cond.set_condition(
                result,
                SOURCE_VERIFIED,
                cond.TRUE,
                cond.SUCCEEDED,
                outcome.verification.message,
                generation=generation,
            )
        return cond.mark_ready(result, message, generation=generation, reason=cond.SUCCEEDED)
