"""Reconcile one OCIRepository: resolve the reference, pull the layer, publish it as an artifact.

In Flux's order, inside the reconcile frame:

- storage: the advertised artifact must still exist with its digest, else it is
  dropped (Warning ``ArtifactVerificationFailed``) and pulled again; old ones are
  garbage-collected;
- source: `spec.ref` is resolved to a manifest digest: ``digest`` as given, ``semver``
  as the highest matching tag (after ``semverFilter``) from one tag listing, else
  ``tag`` (default ``latest``) with one manifest HEAD request. When the revision
  (``<tag>@sha256:<hex>``, or ``sha256:<hex>`` for a digest ref) is the stored
  artifact's and neither `ignore` nor `layerSelector` changed, nothing is downloaded
  and nothing is written;
- otherwise the manifest is read, the layer chosen (the first, or the first of
  `layerSelector.mediaType`), downloaded (bounded, digest-verified), and either
  extracted safely and archived deterministically with the ignore rules
  (``operation: extract``, the default) or stored byte for byte (``copy``). The
  manifest's annotations become ``artifact.metadata`` (Flux's), so a Kustomization
  can report ``org.opencontainers.image.revision`` as its origin revision.

Failures carry Flux's reasons on ``FetchFailed``: ``OCIArtifactPullFailed`` (the
registry is unreachable, refuses the credentials, or has no such tag),
``AuthenticationFailed`` (a Secret is missing or unusable),
``OCIArtifactLayerOperationFailed`` (no matching layer, or one that will not unpack);
``StorageOperationFailed`` for storage. The last good artifact stays in the status and
in storage. The registry client is the toolkit's (`controllers/toolkit/oci.py`, on
oras-py).
"""

from __future__ import annotations

import asyncio
import re
import tempfile
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any, NoReturn

from controllers.source.artifactfile import ARTIFACT_IN_STORAGE, store_file, verified_artifact
from controllers.source.helmhttp import RepositoryAuthError, tls_from_secret
from controllers.source.ignore import load_ignore_rules
from controllers.source.storage import ObjectKey, Storage, StoredArtifact
from controllers.toolkit import oci
from controllers.toolkit.artifacts import ArtifactError, safe_extract
from controllers.toolkit.git import errors
from controllers.toolkit.runtime import conditions as cond
from controllers.toolkit.runtime.durations import DurationError, jittered, parse_duration
from controllers.toolkit.runtime.events import NORMAL
from controllers.toolkit.runtime.fields import UNSUPPORTED_FIELD, unsupported_in
from controllers.toolkit.runtime.frame import ReconcileError, ReconcileFrame, ReconcileRun
from controllers.toolkit.runtime.kube import SecretReader
from controllers.toolkit.runtime.reconciler import Object, ObjectRef, Outcome, Resource
from controllers.toolkit.semverrange import ConstraintError, highest_matching

RESOURCE = Resource("source.toolkit.fluxcd.io", "v1", "ocirepositories", "OCIRepository")
STORAGE_KIND = "ocirepository"
DEFAULT_TIMEOUT = 60.0
DEFAULT_TAG = "latest"
EXTRACT = "extract"
COPY = "copy"
GENERIC_PROVIDER = "generic"
DOCKER_CONFIG_KEY = ".dockerconfigjson"

# Fields the CRD accepts that headwater refuses (dotted path -> why).
UNSUPPORTED_FIELDS: dict[str, str] = {
    "spec.serviceAccountName": "image pull secrets of a ServiceAccount and workload "
    "identity are not implemented; use spec.secretRef",
    "spec.proxySecretRef": "registry traffic through a proxy is not implemented",
    "spec.verify": "cosign and notation signature verification are not implemented",
}

# Condition types and reasons (Flux's source API).
FETCH_FAILED = "FetchFailed"
STORAGE_OPERATION_FAILED = "StorageOperationFailed"
FAILURE_CONDITIONS = (FETCH_FAILED, STORAGE_OPERATION_FAILED)
OCI_PULL_FAILED = "OCIArtifactPullFailed"
OCI_LAYER_FAILED = "OCIArtifactLayerOperationFailed"
AUTHENTICATION_FAILED = "AuthenticationFailed"
URL_INVALID = "URLInvalid"
NEW_ARTIFACT = "NewArtifact"
# Status fields recording what shaped the stored artifact.
SHAPING_FIELDS = ("observedIgnore", "observedLayerSelector")


class PullError(Exception):
    """A pull step failed: `reason` is Flux's, `condition` where it lands."""

    def __init__(self, reason: str, message: str, condition: str = FETCH_FAILED) -> None:
        super().__init__(message)
        self.reason = reason
        self.message = message
        self.condition = condition


@dataclass(frozen=True)
class OCIRepositorySpec:
    url: oci.OCIURL
    tag: str | None
    semver: str | None
    semver_filter: re.Pattern[str] | None
    digest: str | None
    media_type: str | None
    operation: str
    interval: float
    timeout: float
    secret_name: str | None
    cert_secret_name: str | None
    insecure: bool
    ignore: str | None
    # As written, for status.observedLayerSelector (None when not set).
    layer_selector: Mapping[str, str] | None

    @classmethod
    def parse(cls, obj: Mapping[str, Any]) -> OCIRepositorySpec:
        """The spec, checked; a stalled ReconcileError names the field that cannot work."""
        refused = unsupported_in(obj, UNSUPPORTED_FIELDS)
        spec: Mapping[str, Any] = obj.get("spec") or {}
        provider = str(spec.get("provider") or GENERIC_PROVIDER)
        if provider != GENERIC_PROVIDER:
            refused.insert(
                0,
                f"spec.provider: '{provider}' is not supported by headwater: only "
                f"'{GENERIC_PROVIDER}' (credentials from spec.secretRef) is implemented",
            )
        if refused:
            raise ReconcileError(UNSUPPORTED_FIELD, "; ".join(refused), stalled=True)
        try:
            url = oci.OCIURL.parse(str(spec.get("url") or ""))
        except oci.OCIError as exc:
            raise ReconcileError(URL_INVALID, f"spec.url: {exc}", stalled=True) from None
        try:
            interval = parse_duration(str(spec.get("interval", "")), field="spec.interval")
            timeout = (
                parse_duration(str(spec["timeout"]), field="spec.timeout")
                if spec.get("timeout")
                else DEFAULT_TIMEOUT
            )
        except DurationError as exc:
            raise ReconcileError(URL_INVALID, str(exc), stalled=True) from None
        ref: Mapping[str, Any] = spec.get("ref") or {}
        digest = str(ref["digest"]) if ref.get("digest") else None
        tag = str(ref["tag"]) if ref.get("tag") else None
        try:
            if digest:
                oci.check_digest(digest)
            if tag:
                oci.check_tag(tag)
        except oci.OCIError as exc:
            raise ReconcileError(URL_INVALID, f"spec.ref: {exc}", stalled=True) from None
        semver_filter = None
        if ref.get("semverFilter"):
            try:
                semver_filter = re.compile(str(ref["semverFilter"]))
            except re.error as exc:
                raise ReconcileError(
                    OCI_PULL_FAILED, f"spec.ref.semverFilter: invalid regex: {exc}", stalled=True
                ) from None
        selector: Mapping[str, Any] | None = spec.get("layerSelector")
        operation = str((selector or {}).get("operation") or EXTRACT)
        media_type = (selector or {}).get("mediaType")
        if operation not in (EXTRACT, COPY):
            raise ReconcileError(
                OCI_LAYER_FAILED,
                f"spec.layerSelector.operation: '{operation}' is not 'extract' or 'copy'",
                stalled=True,
            )
        return cls(
            url=url,
            tag=tag,
            semver=str(ref["semver"]) if ref.get("semver") else None,
            semver_filter=semver_filter,
            digest=digest,
            media_type=str(media_type) if media_type else None,
            operation=operation,
            interval=interval,
            timeout=timeout if timeout > 0 else DEFAULT_TIMEOUT,
            secret_name=(spec.get("secretRef") or {}).get("name"),
            cert_secret_name=(spec.get("certSecretRef") or {}).get("name"),
            insecure=bool(spec.get("insecure")),
            ignore=spec.get("ignore"),
            layer_selector=(
                {str(k): str(v) for k, v in selector.items() if v is not None} if selector else None
            ),
        )

    def observed(self) -> dict[str, Any]:
        fields: dict[str, Any] = {}
        if self.ignore is not None:
            fields["observedIgnore"] = self.ignore
        if self.layer_selector is not None:
            fields["observedLayerSelector"] = dict(self.layer_selector)
        return fields


# -- pulling (blocking; runs in a worker thread) ------------------------------------------


@dataclass(frozen=True)
class PullInputs:
    key: ObjectKey
    spec: OCIRepositorySpec
    credentials: oci.Credentials | None
    tls: oci.TLSMaterial | None
    current: Mapping[str, Any] | None  # the verified status.artifact, or None
    reuse_allowed: bool  # nothing that shapes the artifact changed since it was built


@dataclass(frozen=True)
class PullOutcome:
    artifact: Mapping[str, Any]
    unchanged: bool


def resolve_reference(client: oci.RegistryClient, spec: OCIRepositorySpec) -> tuple[str, str]:
    """(revision, manifest digest) for `spec.ref`: digest > semver > tag, as in Flux."""
    if spec.digest:
        return spec.digest, spec.digest
    if spec.semver:
        tags = client.tags()
        if spec.semver_filter is not None:
            pattern = spec.semver_filter
            tags = [t for t in tags if pattern.search(t)]
        try:
            found = highest_matching(tags, spec.semver)
        except ConstraintError as exc:
            raise PullError(OCI_PULL_FAILED, f"spec.ref.semver: {exc}") from None
        if found is None:
            raise PullError(
                OCI_PULL_FAILED,
                f"failed to determine artifact digest: no match found for semver: {spec.semver}",
            )
        tag = found[0]
    else:
        tag = spec.tag or DEFAULT_TAG
    digest = client.resolve(tag)
    return f"{tag}@{digest}", digest


def select_layer(manifest: oci.Manifest, media_type: str | None) -> oci.Descriptor:
    for layer in manifest.layers:
        if media_type is None or layer.media_type == media_type:
            return layer
    if media_type is None:
        raise PullError(OCI_LAYER_FAILED, f"no layers found in artifact {manifest.digest}")
    raise PullError(
        OCI_LAYER_FAILED,
        f"failed to find layer with media type '{media_type}' in artifact {manifest.digest}",
    )


def pull_artifact(storage: Storage, inputs: PullInputs) -> PullOutcome:
    spec = inputs.spec
    where = f"failed to pull artifact from '{spec.url}'"
    try:
        with oci.RegistryClient(
            spec.url,
            credentials=inputs.credentials,
            tls=inputs.tls,
            insecure=spec.insecure,
            timeout=spec.timeout,
        ) as client:
            revision, digest = resolve_reference(client, spec)
            current = inputs.current
            if current and inputs.reuse_allowed and current.get("revision") == revision:
                return PullOutcome(artifact=current, unchanged=True)
            manifest = client.manifest(digest)
            layer = select_layer(manifest, spec.media_type)
            with tempfile.TemporaryDirectory(prefix="headwater-oci-") as tmp:
                blob = Path(tmp) / "layer.tar.gz"
                with open(blob, "wb") as out:
                    client.fetch_blob(layer, out, storage.max_artifact_size)
                stored = _store(storage, inputs, digest, revision, blob, Path(tmp) / "tree")
    except oci.OCIError as exc:
        raise PullError(OCI_PULL_FAILED, f"{where}: {exc}") from None
    storage.gc(inputs.key, Path(stored.path).name)
    artifact = stored.to_status()
    if manifest.annotations:
        artifact["metadata"] = dict(manifest.annotations)
    return PullOutcome(artifact=artifact, unchanged=False)


def _store(
    storage: Storage, inputs: PullInputs, digest: str, revision: str, blob: Path, tree: Path
) -> StoredArtifact:
    filename = f"{digest.removeprefix('sha256:')}.tar.gz"
    try:
        if inputs.spec.operation == COPY:
            return store_file(storage, inputs.key, filename, blob, revision)
        tree.mkdir()
        try:
            safe_extract(blob, tree, max_size=storage.max_artifact_size)
        except ArtifactError as exc:
            raise PullError(OCI_LAYER_FAILED, f"failed to extract layer: {exc.message}") from None
        rules = load_ignore_rules(tree, inputs.spec.ignore)
        return storage.archive(inputs.key, filename, tree, revision, rules)
    except errors.SourceError as exc:
        raise PullError(exc.reason, exc.message, STORAGE_OPERATION_FAILED) from None


# -- the reconcile ------------------------------------------------------------------------


@dataclass
class OCIRepositoryReconciler:
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
        spec = OCIRepositorySpec.parse(run.obj)
        run.retry_after = jittered(spec.interval)
        await run.progressing("building artifact")
        key = self._key(run.ref)
        current = await asyncio.to_thread(
            verified_artifact, self.storage, run, key, again="pulling it again"
        )
        previous = (current or {}).get("digest")
        credentials, tls = await self._secrets(run, spec)
        observed = spec.observed()
        reuse = [run.status.get(k) for k in SHAPING_FIELDS] == [
            observed.get(k) for k in SHAPING_FIELDS
        ]
        inputs = PullInputs(key, spec, credentials, tls, current, reuse)
        try:
            outcome = await asyncio.to_thread(pull_artifact, self.storage, inputs)
        except PullError as exc:
            self._fail(run, exc.condition, exc.reason, exc.message)
        artifact = outcome.artifact
        status = {k: v for k, v in run.status.items() if k not in SHAPING_FIELDS}
        status.update(observed)
        for failure in FAILURE_CONDITIONS:
            status = cond.remove_condition(status, failure)
        status["artifact"] = dict(artifact)
        status["url"] = artifact["url"]
        message = f"stored artifact for revision '{artifact['revision']}'"
        run.status = cond.set_condition(
            status,
            ARTIFACT_IN_STORAGE,
            cond.TRUE,
            cond.SUCCEEDED,
            message,
            generation=run.generation,
        )
        if artifact["digest"] != previous:
            run.notify(
                NORMAL,
                NEW_ARTIFACT,
                f"stored artifact with revision '{artifact['revision']}' from '{spec.url}'",
                {"revision": artifact["revision"], "digest": artifact["digest"]},
            )
        run.ready(message, reason=cond.SUCCEEDED)
        run.requeue_after = jittered(spec.interval)

    async def _secrets(
        self, run: ReconcileRun, spec: OCIRepositorySpec
    ) -> tuple[oci.Credentials | None, oci.TLSMaterial | None]:
        namespace = run.ref.namespace
        credentials = tls = None
        try:
            if spec.secret_name:
                where = f"secret '{namespace}/{spec.secret_name}' (spec.secretRef)"
                data = await self.read_secret(namespace, spec.secret_name)
                if data is None:
                    raise oci.OCIAuthError(f"{where} not found")
                if DOCKER_CONFIG_KEY not in data:
                    raise oci.OCIAuthError(f"{where} has no '{DOCKER_CONFIG_KEY}' key")
                credentials = oci.credentials_from_dockerconfig(
                    data[DOCKER_CONFIG_KEY], spec.url.host, where
                )
            if spec.cert_secret_name:
                where = f"'{namespace}/{spec.cert_secret_name}' (spec.certSecretRef)"
                data = await self.read_secret(namespace, spec.cert_secret_name)
                if data is None:
                    raise oci.OCIAuthError(f"secret {where} not found")
                material = tls_from_secret(data, where)
                tls = oci.TLSMaterial(material.ca_pem, material.cert_pem, material.key_pem)
        except (oci.OCIAuthError, RepositoryAuthError) as exc:
            self._fail(run, FETCH_FAILED, AUTHENTICATION_FAILED, str(exc))
        return credentials, tls

    def _fail(self, run: ReconcileRun, condition: str, reason: str, message: str) -> NoReturn:
        status = dict(run.status)
        for other in FAILURE_CONDITIONS:
            if other != condition:
                status = cond.remove_condition(status, other)
        run.status = cond.set_condition(
            status, condition, cond.TRUE, reason, message, generation=run.generation
        )
        raise ReconcileError(reason, message)
