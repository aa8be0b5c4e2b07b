"""Reconcile one HelmChart: resolve the chart in its source, pull or package it, store it.

Sources (`spec.sourceRef.kind`):

- HelmRepository: the index comes from the repository's own artifact in our storage
  (digest-checked, parsed once per revision); `spec.version` (a semver range, default
  ``*``) picks the newest matching version; the archive is downloaded with the
  repository's credentials and TLS under its `spec.timeout`, checked against the
  index digest, and stored as is (revision = chart version), or, with `valuesFiles`,
  unpacked, given the merged values.yaml and packaged again (revision
  ``<version>+<generation>``).
- HelmRepository of type ``oci``: no index; an exact `spec.version` is pulled as
  written, a range is resolved with one tag listing of ``<url>/<chart>`` (`helmoci`),
  and when that version is already the artifact nothing more happens; otherwise the
  pinned helm pulls it with the repository's credentials and TLS (revision = chart
  version; repackaged with `valuesFiles` as above).
- GitRepository: the repository's artifact is unpacked safely, `spec.chart` is the
  chart directory in it; dependencies are filled with ``helm dependency build``,
  `valuesFiles` (relative to the artifact root) are merged into values.yaml, and the
  chart is packaged with ``helm package``. Revision: the chart version, plus
  ``+<12 chars of the source commit>`` for `reconcileStrategy: Revision` and the
  generation when values files are merged (``6.0.3+4e5cbb7b97d0.2``), as Flux writes it.

The artifact is ``helmchart/<ns>/<name>/<chart>-<revision>.tgz``, served by the
artifact server, its digest the sha256 of the archive; old ones are garbage-collected.
When nothing changed (same source revision, same generation, artifact intact)
nothing is downloaded, built or written. On failure the last artifact stays.
"""

from __future__ import annotations

import asyncio
import hashlib
import logging
import tempfile
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, NoReturn

from controllers.source import chartbuild, helmoci
from controllers.source.artifactfile import ARTIFACT_IN_STORAGE, store_file, verified_artifact
from controllers.source.chartbuild import ChartBuildError
from controllers.source.chartindex import (
    ChartIndex,
    ChartIndexError,
    ChartReferenceError,
    ConstraintError,
    parse_index,
    select_version,
)
from controllers.source.helmhttp import MAX_CHART_SIZE, FetchError, RepositoryAuthError
from controllers.source.helmrepository import (
    AUTHENTICATION_FAILED,
    FETCH_FAILED,
    STORAGE_OPERATION_FAILED,
    TYPE_OCI,
    HelmRepositorySpec,
    repository_client,
)
from controllers.source.storage import ObjectKey, Storage, StoredArtifact
from controllers.toolkit import oci
from controllers.toolkit.git import errors
from controllers.toolkit.git.redact import scrub_text
from controllers.toolkit.runtime import conditions as cond
from controllers.toolkit.runtime.durations import DurationError, jittered, parse_duration
from controllers.toolkit.runtime.events import NORMAL, WARNING
from controllers.toolkit.runtime.fields import UNSUPPORTED_FIELD, refuse_unsupported
from controllers.toolkit.runtime.frame import ReconcileError, ReconcileFrame, ReconcileRun
from controllers.toolkit.runtime.kube import SecretReader
from controllers.toolkit.runtime.reconciler import Object, ObjectRef, Outcome, Resource

log = logging.getLogger(__name__)

RESOURCE = Resource("source.toolkit.fluxcd.io", "v1", "helmcharts", "HelmChart")
STORAGE_KIND = "helmchart"

HELM_REPOSITORY = "HelmRepository"
GIT_REPOSITORY = "GitRepository"
SUPPORTED_SOURCES = (HELM_REPOSITORY, GIT_REPOSITORY)
STRATEGY_CHART_VERSION = "ChartVersion"
STRATEGY_REVISION = "Revision"

# Fields the CRD accepts that headwater does not implement.
UNSUPPORTED_FIELDS: dict[str, str] = {
    # Flux verifies signatures only for charts pulled from OCI registries.
    "spec.verify": "cosign and notation signature verification are not implemented",
}

BUILD_FAILED = "BuildFailed"
FAILURE_CONDITIONS = (FETCH_FAILED, BUILD_FAILED, STORAGE_OPERATION_FAILED)
CHART_PULL_SUCCEEDED = "ChartPullSucceeded"
CHART_PACKAGE_SUCCEEDED = "ChartPackageSucceeded"
SOURCE_UNAVAILABLE = "SourceUnavailable"
NO_SOURCE_ARTIFACT = "NoSourceArtifact"
# A source that does not exist yet or has no artifact: look again soon (its own
# change also requeues us, see handlers.py).
SOURCE_RETRY = 30.0
PACKAGE_TIMEOUT = 120.0
_INDEX_CACHE_SIZE = 16


@dataclass(frozen=True)
class HelmChartSpec:
    chart: str
    version: str
    source_kind: str
    source_name: str
    interval: float
    strategy: str
    values_files: tuple[str, ...]
    ignore_missing_values_files: bool

    @classmethod
    def parse(cls, obj: Mapping[str, Any]) -> HelmChartSpec:
        refuse_unsupported(obj, UNSUPPORTED_FIELDS)
        spec: Mapping[str, Any] = obj.get("spec") or {}
        source = spec.get("sourceRef") or {}
        kind = str(source.get("kind") or "")
        if kind not in SUPPORTED_SOURCES:
            raise ReconcileError(
                UNSUPPORTED_FIELD,
                f"spec.sourceRef.kind: {kind or 'an empty kind'} is not supported by headwater "
                f"(supported: {', '.join(SUPPORTED_SOURCES)})",
                stalled=True,
            )
        api_version = str(source.get("apiVersion") or "")
        if api_version and not api_version.startswith("source.toolkit.fluxcd.io/"):
            raise ReconcileError(
                UNSUPPORTED_FIELD,
                f"spec.sourceRef.apiVersion: '{api_version}' is not a source.toolkit.fluxcd.io "
                "version",
                stalled=True,
            )
        name = str(source.get("name") or "")
        chart = str(spec.get("chart") or "")
        if not name or not chart:
            raise ReconcileError(
                chartbuild.INVALID_CHART_REFERENCE,
                "spec.chart and spec.sourceRef.name are required",
                stalled=True,
            )
        try:
            interval = parse_duration(str(spec.get("interval") or ""), field="spec.interval")
        except DurationError as exc:
            raise ReconcileError(
                chartbuild.INVALID_CHART_REFERENCE, str(exc), stalled=True
            ) from None
        strategy = str(spec.get("reconcileStrategy") or STRATEGY_CHART_VERSION)
        if strategy not in (STRATEGY_CHART_VERSION, STRATEGY_REVISION):
            raise ReconcileError(
                UNSUPPORTED_FIELD,
                f"spec.reconcileStrategy: unknown strategy '{strategy}'",
                stalled=True,
            )
        return cls(
            chart=chart,
            version=str(spec.get("version") or "*"),
            source_kind=kind,
            source_name=name,
            interval=interval,
            strategy=strategy,
            values_files=tuple(str(v) for v in spec.get("valuesFiles") or []),
            ignore_missing_values_files=bool(spec.get("ignoreMissingValuesFiles")),
        )


def short_source_revision(revision: str) -> str:
    """The first 12 characters of the commit in a GitRepository revision.

    ``main@sha1:<hex>`` -> ``<hex>[:12]``; a bare ``sha1:<hex>`` or ``<hex>`` too.
    """
    text = revision.rsplit("@", 1)[-1]
    text = text.split(":", 1)[1] if ":" in text else text
    return text[:12]


def version_metadata(spec: HelmChartSpec, source_revision: str, generation: int) -> list[str]:
    """Flux's build metadata: source commit for Revision, generation with values files."""
    parts: list[str] = []
    if spec.source_kind == GIT_REPOSITORY and spec.strategy == STRATEGY_REVISION:
        parts.append(short_source_revision(source_revision))
    if spec.values_files:
        parts.append(str(generation))
    return parts


def ready_message(name: str, revision: str, packaged: bool) -> str:
    verb = "packaged" if packaged else "pulled"
    return f"{verb} '{name}' chart with version '{revision}'"


class IndexCache:
    """Parsed repository indexes by artifact digest, so 100 charts parse one index once."""

    def __init__(self, size: int = _INDEX_CACHE_SIZE) -> None:
        self.size = size
        self._entries: dict[str, ChartIndex] = {}

    def load(self, storage: Storage, artifact: Mapping[str, Any]) -> ChartIndex:
        """The index of a HelmRepository artifact, digest-checked; ChartIndexError if unusable."""
        path, digest = str(artifact.get("path") or ""), str(artifact.get("digest") or "")
        cached = self._entries.get(digest)
        if cached is not None and storage.exists(path):
            return cached
        data = storage.local_path(path).read_bytes() if storage.exists(path) else None
        if data is None or f"sha256:{hashlib.sha256(data).hexdigest()}" != digest:
            raise ChartIndexError(f"the repository's index artifact '{path}' is missing or damaged")
        index = parse_index(data)
        if len(self._entries) >= self.size:
            self._entries.pop(next(iter(self._entries)))
        self._entries[digest] = index
        return index


SourceLookup = Callable[[ObjectRef], Object | None]


@dataclass
class _Built:
    """What a build step produced: a file to store, or the current artifact to keep."""

    name: str
    revision: str
    packaged: bool
    archive: Path | None = None
    values_files: tuple[str, ...] = ()


@dataclass
class HelmChartReconciler:
    frame: ReconcileFrame
    storage: Storage
    read_secret: SecretReader
    helm_repositories: SourceLookup
    git_repositories: SourceLookup
    indexes: IndexCache = field(default_factory=IndexCache)

    async def reconcile(self, obj: Object) -> Outcome:
        return await self.frame.run(obj, self._steps)

    async def finalize(self, obj: Object) -> bool:
        ref = ObjectRef.of(obj)
        await asyncio.to_thread(self.storage.delete, self._key(ref))
        return True

    def _key(self, ref: ObjectRef) -> ObjectKey:
        return ObjectKey(STORAGE_KIND, ref.namespace, ref.name)

    # -- the body ------------------------------------------------------------------

    async def _steps(self, run: ReconcileRun) -> None:
        spec = HelmChartSpec.parse(run.obj)
        run.retry_after = spec.interval
        await run.progressing("building artifact")
        key = self._key(run.ref)
        current = await asyncio.to_thread(
            verified_artifact, self.storage, run, key, again="building it again"
        )
        source = self._source(run, spec)
        from_oci = _is_oci(spec, source)
        source_artifact: Mapping[str, Any] = (source.get("status") or {}).get("artifact") or {}
        source_revision = str(source_artifact.get("revision") or "")
        # Flux moves observedGeneration only on success: equal means this spec was built.
        unchanged_spec = run.status.get("observedGeneration") == run.generation
        kept = current if unchanged_spec else None

        with tempfile.TemporaryDirectory(prefix="headwater-chart-") as tmp:
            if from_oci:
                # No index to watch: the registry is asked every interval.
                built = await self._from_oci(run, spec, source, kept, Path(tmp))
            elif (
                kept is not None
                and run.status.get("observedSourceArtifactRevision") == source_revision
            ):
                # Same source revision, same spec, artifact intact: nothing to do.
                built = _Built(
                    name=str(run.status.get("observedChartName") or spec.chart),
                    revision=str(kept.get("revision")),
                    packaged=spec.source_kind == GIT_REPOSITORY or bool(spec.values_files),
                    values_files=tuple(run.status.get("observedValuesFiles") or ()),
                )
            elif spec.source_kind == HELM_REPOSITORY:
                built = await self._from_repository(
                    run, spec, source, source_artifact, kept, Path(tmp)
                )
            else:
                built = await self._from_git(run, spec, source_artifact, kept, Path(tmp))
            artifact = current
            if built.archive is not None:
                stored = await self._store(run, key, built)
                artifact = stored.to_status()
                run.notify(
                    NORMAL,
                    CHART_PACKAGE_SUCCEEDED if built.packaged else CHART_PULL_SUCCEEDED,
                    ready_message(built.name, built.revision, built.packaged),
                    {"revision": built.revision, "digest": stored.digest},
                )
        assert artifact is not None
        self._succeeded(run, spec, built, artifact, source_revision)
        run.requeue_after = jittered(spec.interval)

    # -- steps -----------------------------------------------------------------------

    def _source(self, run: ReconcileRun, spec: HelmChartSpec) -> Object:
        ref = ObjectRef(run.ref.namespace, spec.source_name)
        lookup = (
            self.helm_repositories if spec.source_kind == HELM_REPOSITORY else self.git_repositories
        )
        source = lookup(ref)
        where = f"{spec.source_kind} '{ref}'"
        if source is None:
            self._fail(
                run,
                FETCH_FAILED,
                SOURCE_UNAVAILABLE,
                f"failed to get source: {where} not found",
                requeue_after=SOURCE_RETRY,
            )
        if _is_oci(spec, source):
            return source  # an OCI HelmRepository holds no artifact, as in Flux
        if not (source.get("status") or {}).get("artifact"):
            self._fail(
                run,
                FETCH_FAILED,
                NO_SOURCE_ARTIFACT,
                f"no artifact available for {where}",
                requeue_after=SOURCE_RETRY,
                event=False,
            )
        return source

    async def _from_repository(
        self,
        run: ReconcileRun,
        spec: HelmChartSpec,
        repository: Object,
        index_artifact: Mapping[str, Any],
        current: Mapping[str, Any] | None,
        workdir: Path,
    ) -> _Built:
        try:
            index = await asyncio.to_thread(self.indexes.load, self.storage, index_artifact)
        except (ChartIndexError, OSError, errors.SourceError) as exc:
            self._fail(run, FETCH_FAILED, chartbuild.CHART_PULL_ERROR, f"chart pull error: {exc}")
        try:
            chosen = select_version(index, spec.chart, spec.version)
        except (ChartReferenceError, ConstraintError) as exc:
            message = (
                f"invalid chart reference: failed to get chart version for remote reference: {exc}"
            )
            self._fail(run, FETCH_FAILED, chartbuild.INVALID_CHART_REFERENCE, message, stalled=True)
        revision = chartbuild.version_with_metadata(
            chosen.version, version_metadata(spec, "", run.generation)
        )
        packaged = bool(spec.values_files)
        if current is not None and current.get("revision") == revision:
            return _Built(
                name=chosen.name,
                revision=revision,
                packaged=packaged,
                values_files=tuple(run.status.get("observedValuesFiles") or ()),
            )
        repo_spec = HelmRepositorySpec.parse(repository)
        client, secrets = await repository_client(self.read_secret, run.ref.namespace, repo_spec)
        archive = workdir / "pulled.tgz"
        url = chosen.download_url(repo_spec.url)
        try:
            await client.fetch_chart(url, archive, MAX_CHART_SIZE)
        except FetchError as exc:
            message = scrub_text(f"chart pull error: failed to download chart: {exc}", secrets)
            self._fail(run, FETCH_FAILED, chartbuild.CHART_PULL_ERROR, message)
        if chosen.digest:
            actual = await asyncio.to_thread(_sha256_hex, archive)
            if actual != chosen.digest.lower().removeprefix("sha256:"):
                self._fail(
                    run,
                    FETCH_FAILED,
                    chartbuild.CHART_PULL_ERROR,
                    f"chart pull error: '{spec.chart}' {chosen.version} does not match the "
                    f"index digest {chosen.digest} (got {actual})",
                )
        return await self._pulled(run, spec, chosen.name, revision, archive, workdir)

    async def _from_oci(
        self,
        run: ReconcileRun,
        spec: HelmChartSpec,
        repository: Object,
        current: Mapping[str, Any] | None,
        workdir: Path,
    ) -> _Built:
        source = await self._oci_source(run, spec, repository)
        try:
            version = await asyncio.to_thread(helmoci.resolve_version, source, spec.version)
        except helmoci.ChartVersionError as exc:
            message = f"invalid chart reference: failed to get chart version: {exc}"
            self._fail(run, FETCH_FAILED, chartbuild.INVALID_CHART_REFERENCE, message)
        except helmoci.ChartPullError as exc:
            self._fail(run, FETCH_FAILED, chartbuild.CHART_PULL_ERROR, f"chart pull error: {exc}")
        revision = chartbuild.version_with_metadata(
            version, version_metadata(spec, "", run.generation)
        )
        packaged = bool(spec.values_files)
        if current is not None and current.get("revision") == revision:
            return _Built(
                name=spec.chart,
                revision=revision,
                packaged=packaged,
                values_files=tuple(run.status.get("observedValuesFiles") or ()),
            )
        try:
            archive = await asyncio.to_thread(helmoci.pull, source, version, workdir / "oci")
        except helmoci.ChartPullError as exc:
            self._fail(run, FETCH_FAILED, chartbuild.CHART_PULL_ERROR, f"chart pull error: {exc}")
        return await self._pulled(run, spec, spec.chart, revision, archive, workdir)

    async def _pulled(
        self,
        run: ReconcileRun,
        spec: HelmChartSpec,
        name: str,
        revision: str,
        archive: Path,
        workdir: Path,
    ) -> _Built:
        """A pulled chart archive as the artifact: stored as it is, or packaged again with
        `spec.valuesFiles` merged into its values."""
        if not spec.values_files:
            return _Built(name=name, revision=revision, packaged=False, archive=archive)
        try:
            built = await asyncio.to_thread(
                chartbuild.repackage_with_values,
                archive,
                version=revision,
                values_files=spec.values_files,
                ignore_missing=spec.ignore_missing_values_files,
                workdir=workdir / "build",
                timeout=PACKAGE_TIMEOUT,
            )
        except ChartBuildError as exc:
            self._build_failed(run, exc)
        return _Built(
            name=built.name,
            revision=revision,
            packaged=True,
            archive=built.path,
            values_files=built.values_files,
        )

    async def _oci_source(
        self, run: ReconcileRun, spec: HelmChartSpec, repository: Object
    ) -> helmoci.OCIChartSource:
        repo_spec = HelmRepositorySpec.parse(repository)
        namespace = run.ref.namespace
        try:
            url = helmoci.chart_url(repo_spec, spec.chart)
        except oci.OCIError as exc:
            self._fail(
                run,
                FETCH_FAILED,
                chartbuild.INVALID_CHART_REFERENCE,
                f"invalid chart reference: {exc}",
                stalled=True,
            )
        credentials = tls = None
        try:
            if repo_spec.secret_name:
                where = f"'{namespace}/{repo_spec.secret_name}' (spec.secretRef)"
                data = await self.read_secret(namespace, repo_spec.secret_name)
                if data is None:
                    raise RepositoryAuthError(f"secret {where} not found")
                credentials = helmoci.credentials_from_secret(data, url.host, where)
            if repo_spec.cert_secret_name:
                where = f"'{namespace}/{repo_spec.cert_secret_name}' (spec.certSecretRef)"
                data = await self.read_secret(namespace, repo_spec.cert_secret_name)
                if data is None:
                    raise RepositoryAuthError(f"secret {where} not found")
                tls = helmoci.tls_material(data, where)
        except (RepositoryAuthError, oci.OCIError) as exc:
            self._fail(run, FETCH_FAILED, AUTHENTICATION_FAILED, str(exc))
        return helmoci.OCIChartSource(
            url=url,
            credentials=credentials,
            tls=tls,
            plain_http=repo_spec.insecure,
            timeout=repo_spec.timeout,
        )

    async def _from_git(
        self,
        run: ReconcileRun,
        spec: HelmChartSpec,
        source_artifact: Mapping[str, Any],
        current: Mapping[str, Any] | None,
        workdir: Path,
    ) -> _Built:
        path = str(source_artifact.get("path") or "")
        digest = str(source_artifact.get("digest") or "")
        source_revision = str(source_artifact.get("revision") or "")
        # The artifact is ours: read it from storage, digest-checked before unpacking.
        if not await asyncio.to_thread(self.storage.verify, path, digest):
            self._fail(
                run,
                FETCH_FAILED,
                NO_SOURCE_ARTIFACT,
                f"the GitRepository artifact '{path}' is missing or does not match its digest",
                requeue_after=SOURCE_RETRY,
            )
        try:
            root = await asyncio.to_thread(
                chartbuild.extract,
                self.storage.local_path(path),
                workdir / "source",
                "source artifact",
            )
            chart_dir = chartbuild.locate_chart(root, spec.chart)
            meta = await asyncio.to_thread(chartbuild.read_chart_metadata, chart_dir)
        except ChartBuildError as exc:
            self._build_failed(run, exc)
        revision = chartbuild.version_with_metadata(
            meta.version, version_metadata(spec, source_revision, run.generation)
        )
        if (
            current is not None
            and current.get("revision") == revision
            and (run.status.get("observedChartName") == meta.name)
        ):
            # ChartVersion strategy and the version did not move: keep the artifact.
            return _Built(
                name=meta.name,
                revision=revision,
                packaged=True,
                values_files=tuple(run.status.get("observedValuesFiles") or ()),
            )
        try:
            built = await asyncio.to_thread(
                chartbuild.build_local,
                root,
                chart_dir,
                meta,
                version=revision,
                values_files=spec.values_files,
                ignore_missing=spec.ignore_missing_values_files,
                workdir=workdir / "build",
                timeout=PACKAGE_TIMEOUT,
            )
        except ChartBuildError as exc:
            self._build_failed(run, exc)
        return _Built(
            name=built.name,
            revision=revision,
            packaged=True,
            archive=built.path,
            values_files=built.values_files,
        )

    async def _store(self, run: ReconcileRun, key: ObjectKey, built: _Built) -> StoredArtifact:
        assert built.archive is not None
        filename = chartbuild.archive_file_name(built.name, built.revision)
        try:
            stored: StoredArtifact = await asyncio.to_thread(
                store_file, self.storage, key, filename, built.archive, built.revision
            )
            await asyncio.to_thread(self.storage.gc, key, Path(stored.path).name)
        except errors.SourceError as exc:
            self._fail(run, STORAGE_OPERATION_FAILED, exc.reason, exc.message)
        return stored

    def _succeeded(
        self,
        run: ReconcileRun,
        spec: HelmChartSpec,
        built: _Built,
        artifact: Mapping[str, Any],
        source_revision: str,
    ) -> None:
        status = dict(run.status)
        for failure in FAILURE_CONDITIONS:
            status = cond.remove_condition(status, failure)
        status["artifact"] = dict(artifact)
        status["url"] = artifact["url"]
        status["observedChartName"] = built.name
        status["observedSourceArtifactRevision"] = source_revision
        if spec.values_files:
            status["observedValuesFiles"] = list(built.values_files)
        else:
            status.pop("observedValuesFiles", None)
        message = ready_message(built.name, built.revision, built.packaged)
        reason = CHART_PACKAGE_SUCCEEDED if built.packaged else CHART_PULL_SUCCEEDED
        run.status = cond.set_condition(
            status, ARTIFACT_IN_STORAGE, cond.TRUE, reason, message, generation=run.generation
        )
        run.ready(message, reason=reason)

    # -- failures --------------------------------------------------------------------

    def _build_failed(self, run: ReconcileRun, exc: ChartBuildError) -> NoReturn:
        condition = BUILD_FAILED if exc.build_failure else FETCH_FAILED
        self._fail(run, condition, exc.reason, exc.message, stalled=exc.persistent)

    def _fail(
        self,
        run: ReconcileRun,
        condition: str,
        reason: str,
        message: str,
        *,
        stalled: bool = False,
        requeue_after: float | None = None,
        event: bool = True,
    ) -> NoReturn:
        status = dict(run.status)
        for other in FAILURE_CONDITIONS:
            if other != condition:
                status = cond.remove_condition(status, other)
        run.status = cond.set_condition(
            status, condition, cond.TRUE, reason, message, generation=run.generation
        )
        raise ReconcileError(
            reason,
            message,
            stalled=stalled,
            requeue_after=requeue_after,
            event=WARNING if event else None,
        )


def _is_oci(spec: HelmChartSpec, source: Object) -> bool:
    if spec.source_kind != HELM_REPOSITORY:
        return False
    return str((source.get("spec") or {}).get("type") or "") == TYPE_OCI


def _sha256_hex(path: Path) -> str:
    sha = hashlib.sha256()
    with open(path, "rb") as fh:
        while chunk := fh.read(1 << 20):
            sha.update(chunk)
    return sha.hexdigest()
