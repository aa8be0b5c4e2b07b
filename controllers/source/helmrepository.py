"""Reconcile one HelmRepository: fetch index.yaml, check it, publish it as an artifact.

Type ``default`` (an HTTP(S) chart repository), in Flux's order:

- storage: the advertised artifact must still exist with its digest, else it is
  dropped (Warning ``ArtifactVerificationFailed``) and written again; old ones are
  garbage-collected;
- source: GET ``<url>/index.yaml`` with the Secrets' basic auth and TLS, bounded by
  `spec.timeout` and a size limit (reason ``Failed``: "failed to fetch Helm
  repository index: ..."); parse and check it (reason ``IndexationFailed``);
- artifact: the normalised index (`chartindex.canonical_json`) is stored as
  ``index-<hex>.yaml``, revision and digest ``sha256:<hex>``; when that revision is
  already the stored artifact nothing is written at all.

Type ``oci``: as in Flux, no artifact; it is Ready with a message and holds nothing.
Its HelmCharts pull from the registry themselves (`helmoci`).

On any failure the last good artifact stays in the status and in storage.
"""

from __future__ import annotations

import asyncio
import hashlib
import logging
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any, NoReturn
from urllib.parse import urlsplit

from controllers.source.artifactfile import (
    ARTIFACT_IN_STORAGE,
    store_bytes,
    verified_artifact,
)
from controllers.source.chartindex import ChartIndexError, canonical_json, parse_index
from controllers.source.helmhttp import (
    DEFAULT_TIMEOUT,
    MAX_INDEX_SIZE,
    BasicAuth,
    FetchError,
    RepositoryAuthError,
    RepositoryClient,
    TLSMaterial,
    basic_auth_from_secret,
    tls_from_secret,
)
from controllers.source.storage import ObjectKey, Storage, StoredArtifact
from controllers.toolkit.git import errors
from controllers.toolkit.git.redact import scrub_text
from controllers.toolkit.runtime import conditions as cond
from controllers.toolkit.runtime.durations import DurationError, jittered, parse_duration
from controllers.toolkit.runtime.events import NORMAL
from controllers.toolkit.runtime.fields import UNSUPPORTED_FIELD, refuse_unsupported
from controllers.toolkit.runtime.frame import ReconcileError, ReconcileFrame, ReconcileRun
from controllers.toolkit.runtime.kube import SecretReader
from controllers.toolkit.runtime.reconciler import Object, ObjectRef, Outcome, Resource

log = logging.getLogger(__name__)

RESOURCE = Resource("source.toolkit.fluxcd.io", "v1", "helmrepositories", "HelmRepository")
STORAGE_KIND = "helmrepository"
DEFAULT_INTERVAL = 600.0
TYPE_DEFAULT = "default"
TYPE_OCI = "oci"

# Fields the CRD accepts that headwater does not implement.
UNSUPPORTED_FIELDS: dict[str, str] = {
    # Flux itself documents accessFrom as provisional and not implemented.
    "spec.accessFrom": "cross-namespace access lists are not implemented",
}
SUPPORTED_PROVIDERS = ("generic",)

# Condition types and reasons (Flux's source API).
FETCH_FAILED = "FetchFailed"
STORAGE_OPERATION_FAILED = "StorageOperationFailed"
FAILURE_CONDITIONS = (FETCH_FAILED, STORAGE_OPERATION_FAILED)
INDEXATION_FAILED = "IndexationFailed"
URL_INVALID = "URLInvalid"
AUTHENTICATION_FAILED = "AuthenticationFailed"
NEW_ARTIFACT = "NewArtifact"
OCI_READY_MESSAGE = "Helm repository is Ready"


@dataclass(frozen=True)
class HelmRepositorySpec:
    url: str
    type: str
    interval: float
    timeout: float
    secret_name: str | None
    cert_secret_name: str | None
    pass_credentials: bool
    insecure: bool

    @classmethod
    def parse(cls, obj: Mapping[str, Any]) -> HelmRepositorySpec:
        """The spec, checked; a stalled ReconcileError names the field that cannot work."""
        refuse_unsupported(obj, UNSUPPORTED_FIELDS)
        spec: Mapping[str, Any] = obj.get("spec") or {}
        provider = str(spec.get("provider") or "generic")
        if provider not in SUPPORTED_PROVIDERS:
            raise ReconcileError(
                UNSUPPORTED_FIELD,
                f"spec.provider: provider '{provider}' is not supported by headwater "
                f"(supported: {', '.join(SUPPORTED_PROVIDERS)})",
                stalled=True,
            )
        try:
            interval = (
                parse_duration(str(spec["interval"]), field="spec.interval")
                if spec.get("interval")
                else DEFAULT_INTERVAL
            )
            timeout = (
                parse_duration(str(spec["timeout"]), field="spec.timeout")
                if spec.get("timeout")
                else DEFAULT_TIMEOUT
            )
        except DurationError as exc:
            raise ReconcileError(URL_INVALID, str(exc), stalled=True) from None
        kind = str(spec.get("type") or TYPE_DEFAULT)
        url = str(spec.get("url") or "")
        scheme = urlsplit(url).scheme.lower()
        if kind == TYPE_DEFAULT and scheme == "oci":
            raise ReconcileError(
                URL_INVALID,
                "invalid Helm repository URL: 'oci' URL scheme cannot be used with "
                "'default' HelmRepository type (spec.url)",
                stalled=True,
            )
        if kind == TYPE_OCI and (scheme != "oci" or not urlsplit(url).hostname):
            raise ReconcileError(
                URL_INVALID,
                f"spec.url: an 'oci' HelmRepository needs an oci:// URL, not '{scrub_text(url)}'",
                stalled=True,
            )
        if kind == TYPE_DEFAULT and (scheme not in ("http", "https") or not urlsplit(url).hostname):
            raise ReconcileError(
                URL_INVALID,
                f"spec.url: invalid Helm repository URL '{scrub_text(url)}'",
                stalled=True,
            )
        return cls(
            url=url,
            type=kind,
            interval=interval if interval > 0 else DEFAULT_INTERVAL,
            timeout=timeout if timeout > 0 else DEFAULT_TIMEOUT,
            secret_name=(spec.get("secretRef") or {}).get("name"),
            cert_secret_name=(spec.get("certSecretRef") or {}).get("name"),
            pass_credentials=bool(spec.get("passCredentials")),
            insecure=bool(spec.get("insecure")),
        )


async def repository_client(
    read_secret: SecretReader,
    namespace: str,
    spec: HelmRepositorySpec,
) -> tuple[RepositoryClient, list[bytes]]:
    """The client for `spec` with its Secrets read, and the secret values to scrub.

    Raises ReconcileError(AuthenticationFailed) when a Secret is missing or unusable.
    """
    secrets: list[bytes] = []
    auth: BasicAuth | None = None
    tls: TLSMaterial | None = None
    try:
        if spec.secret_name:
            where = f"'{namespace}/{spec.secret_name}' (spec.secretRef)"
            data = await read_secret(namespace, spec.secret_name)
            if data is None:
                raise RepositoryAuthError(f"secret {where} not found")
            auth = basic_auth_from_secret(data, where)
            secrets.append(auth.password.encode())
        if spec.cert_secret_name:
            where = f"'{namespace}/{spec.cert_secret_name}' (spec.certSecretRef)"
            data = await read_secret(namespace, spec.cert_secret_name)
            if data is None:
                raise RepositoryAuthError(f"secret {where} not found")
            tls = tls_from_secret(data, where)
            if tls.key_pem:
                secrets.append(tls.key_pem)
    except RepositoryAuthError as exc:
        raise ReconcileError(AUTHENTICATION_FAILED, str(exc)) from None
    client = RepositoryClient(
        url=spec.url,
        auth=auth,
        tls=tls,
        pass_credentials=spec.pass_credentials,
        timeout=spec.timeout,
    )
    return client, secrets


def index_revision(data: bytes) -> str:
    return f"sha256:{hashlib.sha256(data).hexdigest()}"


def index_filename(revision: str) -> str:
    """Flux's artifact file name: ``index-<hex>.yaml``."""
    return f"index-{revision.removeprefix('sha256:')}.yaml"


def _human_size(size: int) -> str:
    for unit in ("B", "KiB", "MiB"):
        if size < 1024 or unit == "MiB":
            return f"{size:.0f} {unit}" if unit == "B" else f"{size:.1f} {unit}"
        size = size / 1024  # type: ignore[assignment]
    return f"{size} B"


def fail_on(
    status: Mapping[str, Any], condition: str, reason: str, message: str, generation: int
) -> dict[str, Any]:
    """`status` with the failure condition set and the other failure conditions gone."""
    result = dict(status)
    for other in FAILURE_CONDITIONS:
        if other != condition:
            result = cond.remove_condition(result, other)
    return cond.set_condition(result, condition, cond.TRUE, reason, message, generation=generation)


@dataclass
class HelmRepositoryReconciler:
    frame: ReconcileFrame
    storage: Storage
    read_secret: SecretReader

    async def reconcile(self, obj: Object) -> Outcome:
        return await self.frame.run(obj, self._steps)

    async def finalize(self, obj: Object) -> bool:
        ref = ObjectRef.of(obj)
        await asyncio.to_thread(self.storage.delete, self._key(ref))
        return True

    def _key(self, ref: ObjectRef) -> ObjectKey:
        return ObjectKey(STORAGE_KIND, ref.namespace, ref.name)

    async def _steps(self, run: ReconcileRun) -> None:
        spec = HelmRepositorySpec.parse(run.obj)
        run.retry_after = spec.interval
        if spec.type == TYPE_OCI:
            await self._oci(run)
            return
        await run.progressing("building artifact")
        key = self._key(run.ref)
        current = await asyncio.to_thread(
            verified_artifact, self.storage, run, key, again="fetching it again"
        )

        client, secrets = await repository_client(self.read_secret, run.ref.namespace, spec)
        try:
            raw = await client.fetch_index(MAX_INDEX_SIZE)
        except FetchError as exc:
            message = scrub_text(f"failed to fetch Helm repository index: {exc}", secrets)
            self._fail(run, FETCH_FAILED, cond.FAILED, message)
        try:
            index = await asyncio.to_thread(parse_index, raw)
        except ChartIndexError as exc:
            message = f"failed to load Helm repository from index YAML: {exc}"
            self._fail(run, FETCH_FAILED, INDEXATION_FAILED, message)
        data = canonical_json(index)
        revision = index_revision(data)

        if current is not None and current.get("revision") == revision:
            artifact: Mapping[str, Any] = current
        else:
            try:
                stored: StoredArtifact = await asyncio.to_thread(
                    store_bytes, self.storage, key, index_filename(revision), data, revision
                )
            except errors.SourceError as exc:
                self._fail(run, STORAGE_OPERATION_FAILED, exc.reason, exc.message)
            artifact = stored.to_status()
            await asyncio.to_thread(self.storage.gc, key, Path(stored.path).name)
            run.notify(
                NORMAL,
                NEW_ARTIFACT,
                f"stored fetched index of size {_human_size(len(data))} from "
                f"'{scrub_text(spec.url)}'",
                {"revision": revision, "digest": stored.digest},
            )
        status = dict(run.status)
        for failure in FAILURE_CONDITIONS:
            status = cond.remove_condition(status, failure)
        status["artifact"] = dict(artifact)
        status["url"] = artifact["url"]
        message = f"stored artifact: revision '{revision}'"
        run.status = cond.set_condition(
            status,
            ARTIFACT_IN_STORAGE,
            cond.TRUE,
            cond.SUCCEEDED,
            message,
            generation=run.generation,
        )
        run.ready(message, reason=cond.SUCCEEDED)
        run.requeue_after = jittered(spec.interval)

    def _fail(self, run: ReconcileRun, condition: str, reason: str, message: str) -> NoReturn:
        run.status = fail_on(run.status, condition, reason, message, run.generation)
        raise ReconcileError(reason, message)

    async def _oci(self, run: ReconcileRun) -> None:
        """Flux keeps no artifact for an OCI HelmRepository; say it is usable."""
        await asyncio.to_thread(self.storage.delete, self._key(run.ref))
        status = {k: v for k, v in run.status.items() if k not in ("artifact", "url")}
        for stale in (*FAILURE_CONDITIONS, ARTIFACT_IN_STORAGE):
            status = cond.remove_condition(status, stale)
        run.status = status
        run.ready(OCI_READY_MESSAGE, reason=cond.SUCCEEDED)
        run.requeue_after = None
