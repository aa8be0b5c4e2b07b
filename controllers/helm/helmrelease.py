"""Reconcile one HelmRelease: chart → values → the release's next helm actions.

The body of each reconcile, on the toolkit's frame:
1. read the spec (`spec.parse`; refused fields stall naming them);
2. wait for `dependsOn` (DependencyNotReady; a dependency turning ready
   requeues this release at once, see handlers);
3. for `spec.chart`, create or update the HelmChart the release owns;
4. take the chart from the HelmChart's `status.artifact`, downloaded and
   digest-verified (ArtifactFailed while there is none);
5. compose the values (InitFailed when a ConfigMap, Secret or key is
   missing or its YAML is bad: the release is left exactly as it was);
6. let the engine decide and carry out the helm actions;
7. with `driftDetection`, compare the deployed objects with the live ones
   and (mode enabled) apply the drifted ones again (`drift`).

A release whose chart and values are unchanged and which is deployed costs
one metadata-only list of helm's storage Secrets and no helm process.
Deleting the HelmRelease uninstalls the release (not when suspended, as in
Flux) and deletes the HelmChart it owns.
"""

from __future__ import annotations

import contextlib
import logging
from collections.abc import AsyncIterator, Awaitable, Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from controllers.helm import drift, remote
from controllers.helm import spec as release_spec
from controllers.helm import values as release_values
from controllers.helm.chart import ChartError, ChartMetadata, ChartStore, read_crds, read_metadata
from controllers.helm.dependencies import dependency_not_ready
from controllers.helm.engine import Engine, ReleaseInputs
from controllers.helm.helmchart import (
    CHART_MUTATE_ERROR,
    OCI_DIGEST_EVENT_KEY,
    ChartNotReady,
    ChartRevisionError,
    HelmCharts,
    chart_artifact,
    oci_chart_digest,
)
from controllers.helm.release import HelmError, ReleaseRef
from controllers.toolkit.apply import ssa
from controllers.toolkit.apply.inventory_watch import WatchedKind
from controllers.toolkit.apply.resources import ResourceClient
from controllers.toolkit.artifacts import ArtifactError
from controllers.toolkit.dependencies import REQUEUE_SECONDS, Lookup
from controllers.toolkit.runtime import conditions as cond
from controllers.toolkit.runtime import observability
from controllers.toolkit.runtime.clients import ClientError, SecretKeyRef
from controllers.toolkit.runtime.durations import jittered
from controllers.toolkit.runtime.events import NORMAL, WARNING
from controllers.toolkit.runtime.frame import ReconcileError, ReconcileFrame, ReconcileRun
from controllers.toolkit.runtime.kube import SecretReader
from controllers.toolkit.runtime.reconciler import Object, Outcome
from controllers.toolkit.runtime.tenancy import Lockdown

log = logging.getLogger(__name__)

INIT_FAILED = "InitFailed"
INVALID_CHART_REFERENCE = "InvalidChartReference"
RESET_AT_ANNOTATION = "reconcile.fluxcd.io/resetAt"
FORCE_AT_ANNOTATION = "reconcile.fluxcd.io/forceAt"
# Chart metadata and CRDs by artifact digest, so an unchanged chart is read once.
_CHART_INFO_LIMIT = 256
# (spec, the HelmRelease's namespace) -> the client to detect and correct drift with.
ClientFor = Callable[[release_spec.HelmReleaseSpec, str], Awaitable[ResourceClient]]


@dataclass
class HelmReleaseReconciler:
    frame: ReconcileFrame
    engine: Engine
    charts: ChartStore
    helm_charts: HelmCharts
    read_config: release_values.ReadConfig
    lockdown: Lockdown = field(default_factory=Lockdown)
    # The objects dependsOn names (HelmReleases, Kustomizations), from the caches.
    dependencies: Lookup = lambda ref: None
    # Drift detection: the client to compare and apply with (the release's
    # identity), and the watch told which kinds the release's objects are.
    client_for: ClientFor | None = None
    observe_kinds: Callable[[set[WatchedKind]], None] = lambda kinds: None
    # spec.kubeConfig.secretRef: where the remote cluster's kubeconfig is read from.
    read_secret: SecretReader | None = None
    _chart_info: dict[str, tuple[ChartMetadata, list[str]]] = field(default_factory=dict)
    # Release manifests by release, for the revision they were read at.
    _manifests: dict[tuple[str, str], tuple[str, list[dict[str, Any]]]] = field(
        default_factory=dict
    )
    # The releases whose last reconcile had drift detection on: every release's
    # objects carry the origin labels, only these releases' changes are worth a look.
    _detecting: set[tuple[str, str]] = field(default_factory=set)

    def detects_drift(self, namespace: str, name: str) -> bool:
        return (namespace, name) in self._detecting

    async def reconcile(self, obj: Object) -> Outcome:
        return await self.frame.run(obj, self._steps)

    async def _steps(self, run: ReconcileRun) -> None:
        try:
            spec = release_spec.parse(run.obj)
        except release_spec.SpecError as exc:
            reason = INVALID_CHART_REFERENCE if "spec.chart" in str(exc) else INIT_FAILED
            raise ReconcileError(reason, str(exc), stalled=True) from None
        run.retry_after = spec.interval
        self.lockdown.check_references(run.ref.namespace, spec.references())
        blocked = dependency_not_ready(run.obj, spec.depends_on, self.dependencies)
        if blocked:
            # Waiting for a dependency is normal operation (Flux's order: before the chart).
            raise ReconcileError(
                cond.DEPENDENCY_NOT_READY,
                blocked,
                requeue_after=REQUEUE_SECONDS,
                event=NORMAL,
            )
        source = spec.chart

        previous_chart = run.status.get("helmChart")
        chart_id = f"{source.namespace}/{source.name}"
        written = None
        if source.template is not None:
            written = await self.helm_charts.ensure(run.obj, spec)
        if previous_chart and previous_chart != chart_id:
            # The template moved (or became a chartRef): the HelmChart we made goes.
            await self.helm_charts.delete_if_owned(str(previous_chart), run.obj)
        if source.kind == release_spec.HELM_CHART.kind:
            run.status["helmChart"] = chart_id
        else:
            run.status.pop("helmChart", None)  # Flux names only a HelmChart there
        run.status["storageNamespace"] = spec.namespace

        try:
            artifact = chart_artifact(source, written or self.helm_charts.get(source))
            chart_path = await self.charts.fetch(artifact)
            metadata, crd_files = self._read_chart(artifact.digest, chart_path)
        except (ChartNotReady, ArtifactError, ChartError) as exc:
            raise ReconcileError(cond.ARTIFACT_FAILED, str(exc)) from None
        # Every event from here on names the chart version being released.
        run.event_metadata["revision"] = metadata.version
        if metadata.app_version:
            run.event_metadata["app-version"] = metadata.app_version

        namespace = run.ref.namespace
        try:
            composed = await release_values.compose(
                namespace, spec.values_from, spec.values, self.read_config
            )
        except release_values.ValuesError as exc:
            raise ReconcileError(INIT_FAILED, f"could not compose values: {exc}") from None
        digest = release_values.config_digest(composed)

        revision, oci_digest = artifact.revision or metadata.version, ""
        if source.kind == release_spec.OCI_REPOSITORY.kind:
            # As Flux: the chart's version, and the manifest digest the OCIRepository pulled
            # (its revision is `<tag>@sha256:…` or a bare digest); it goes on the
            # revisions this chart makes (history[].ociDigest) and on their events.
            revision = metadata.version
            try:
                oci_digest = oci_chart_digest(artifact.revision, metadata.version)
            except ChartRevisionError as exc:
                raise ReconcileError(CHART_MUTATE_ERROR, str(exc)) from None
            run.event_metadata[OCI_DIGEST_EVENT_KEY] = oci_digest
        self._reset_counters(run, revision, digest)
        run.status["lastAttemptedConfigDigest"] = digest
        run.status["lastAttemptedValuesChecksum"] = release_values.values_checksum(composed)
        run.status["lastAttemptedGeneration"] = run.generation
        if oci_digest:
            run.status["lastAttemptedRevisionDigest"] = oci_digest
        else:
            # Flux sets it only for a chart from an OCIRepository.
            run.status.pop("lastAttemptedRevisionDigest", None)
        await run.progressing(f"Fetched revision: {metadata.version}", revision=revision)
        async with self._cluster(spec, namespace) as (kubeconfig, api):
            inputs = ReleaseInputs(
                spec=spec,
                chart=chart_path,
                metadata=metadata,
                values=composed,
                digest=digest,
                crds=crd_files,
                oci_digest=oci_digest,
                as_user=spec.impersonate(namespace, self.lockdown.default_service_account),
                kubeconfig=kubeconfig,
                api=api,
            )
            await self.engine.reconcile(run, inputs, force=self._force_requested(run))
            await self._check_drift(run, inputs)
        run.requeue_after = jittered(spec.interval)

    @contextlib.asynccontextmanager
    async def _cluster(
        self, spec: release_spec.HelmReleaseSpec | None, namespace: str
    ) -> AsyncIterator[tuple[Path | None, Any]]:
        """The release's cluster: (None, None) for ours; for kubeConfig.secretRef,
        helm's kubeconfig file (removed on exit) and the API client of that cluster."""
        if spec is None or spec.kubeconfig_secret is None:
            yield None, None
            return
        if self.read_secret is None or self.client_for is None:
            raise ReconcileError(
                cond.RECONCILIATION_FAILED, "spec.kubeConfig: no client for remote clusters"
            )
        text = await remote.read_kubeconfig(
            self.read_secret, namespace, SecretKeyRef(*spec.kubeconfig_secret)
        )
        client = await self.client_for(spec, namespace)
        async with remote.kubeconfig_file(text) as path:
            yield path, client.api_client

    async def _check_drift(self, run: ReconcileRun, inputs: ReleaseInputs) -> None:
        """Compare the deployed revision's objects with the live ones (see `drift`)."""
        spec, ref = inputs.spec, inputs.ref
        history = run.status.get("history") or []
        if not spec.drift.active or self.client_for is None:
            self._detecting.discard((ref.namespace, ref.name))
            self._manifests.pop((ref.namespace, ref.name), None)
            run.status = cond.remove_condition(run.status, drift.DRIFTED)
            return
        self._detecting.add((ref.namespace, ref.name))
        if not history or history[0].get("status") != "deployed":
            return
        objects = await self._release_objects(inputs, history[0])
        client = await self.client_for(spec, run.ref.namespace)
        try:
            objects = await drift.as_installed(client, objects, ref.name, ref.namespace)
            self.observe_kinds({WatchedKind(str(o["apiVersion"]), str(o["kind"])) for o in objects})
            owner = release_spec.origin_labels(run.ref.namespace, run.ref.name)
            report = await drift.detect(client, objects, spec.drift, owner)
        except ssa.ApplyError as exc:
            raise ReconcileError(
                cond.RECONCILIATION_FAILED, f"drift detection failed: {exc}"
            ) from None
        if not report.drifted:
            self._set_drifted(run, False, "No drift detected")
            return
        subjects = ", ".join(entry.subject for entry in report.drifted)
        if report.corrected:
            observability.record_drift_corrected(
                release_spec.RESOURCE.kind, run.ref.name, run.ref.namespace
            )
            run.notify(
                WARNING, drift.DRIFT_DETECTED, "Drift detected and corrected:\n" + report.describe()
            )
            self._set_drifted(run, False, f"Drift corrected: {subjects}")
        else:
            run.notify(WARNING, drift.DRIFT_DETECTED, "Drift detected:\n" + report.describe())
            self._set_drifted(run, True, f"Drift detected: {subjects}")

    def _set_drifted(self, run: ReconcileRun, drifted: bool, message: str) -> None:
        run.status = cond.set_condition(
            run.status,
            drift.DRIFTED,
            cond.TRUE if drifted else cond.FALSE,
            drift.DRIFT_DETECTED if drifted else drift.NO_DRIFT_DETECTED,
            message,
            generation=run.generation,
        )

    async def _release_objects(
        self, inputs: ReleaseInputs, snapshot: Mapping[str, Any]
    ) -> list[dict[str, Any]]:
        """The deployed revision's manifest objects; helm is asked once per revision."""
        ref = inputs.ref
        key = (ref.namespace, ref.name)
        stamp = f"{snapshot.get('version')}:{snapshot.get('digest')}"
        cached = self._manifests.get(key)
        if cached is not None and cached[0] == stamp:
            return cached[1]
        try:
            manifest = await self.engine.helm.manifest(ref, int(snapshot.get("version") or 0))
        except HelmError as exc:
            raise ReconcileError(
                cond.RECONCILIATION_FAILED, f"drift detection could not read the manifest: {exc}"
            ) from None
        objects = drift.manifest_objects(manifest)
        self._manifests[key] = (stamp, objects)
        return objects

    def _force_requested(self, run: ReconcileRun) -> bool:
        """Flux's forceAt: honoured once, and only together with an equal requestedAt."""
        annotations = run.annotations or {}
        force_at = annotations.get(FORCE_AT_ANNOTATION)
        if not force_at or force_at == run.status.get("lastHandledForceAt"):
            return False
        if force_at != cond.requested_at(annotations):
            return False
        run.status["lastHandledForceAt"] = force_at
        return True

    def _read_chart(self, digest: str, path: Any) -> tuple[ChartMetadata, list[str]]:
        info = self._chart_info.get(digest)
        if info is None:
            info = (read_metadata(path), read_crds(path))
            if len(self._chart_info) >= _CHART_INFO_LIMIT:
                self._chart_info.pop(next(iter(self._chart_info)))
            self._chart_info[digest] = info
        return info

    def _reset_counters(self, run: ReconcileRun, revision: str, digest: str) -> None:
        """Failure counts belong to one chart + values; new ones, or resetAt, start over."""
        status = run.status
        reset_at = (run.annotations or {}).get(RESET_AT_ANNOTATION)
        changed = (
            status.get("lastAttemptedRevision") != revision
            or status.get("lastAttemptedConfigDigest") != digest
        )
        requested = bool(reset_at) and reset_at != status.get("lastHandledResetAt")
        if changed or requested:
            for key in ("failures", "installFailures", "upgradeFailures"):
                status.pop(key, None)
            if cond.is_true(status, cond.STALLED):
                run.status = cond.remove_condition(status, cond.STALLED)
        if requested:
            run.status["lastHandledResetAt"] = reset_at

    async def finalize(self, obj: Object) -> bool:
        """Uninstall the release and delete the owned HelmChart; False to try again."""
        spec_obj: Mapping[str, Any] = obj.get("spec") or {}
        status: Mapping[str, Any] = obj.get("status") or {}
        if spec_obj.get("suspend"):
            log.info("HelmRelease %s is suspended: its release is left installed", obj["metadata"])
            return True
        try:
            spec = release_spec.parse(obj)
        except (release_spec.SpecError, ReconcileError):
            spec = None
        history = status.get("history") or []
        namespace = str(obj["metadata"].get("namespace") or "")
        as_user = (
            spec.impersonate(namespace, self.lockdown.default_service_account)
            if spec is not None
            else None
        )
        if history:
            name, release_namespace = str(history[0]["name"]), str(history[0]["namespace"])
        elif spec is not None:
            name, release_namespace = spec.release_name, spec.namespace
        else:
            return True
        try:
            async with self._cluster(spec, namespace) as (kubeconfig, api):
                ref = ReleaseRef(name, release_namespace, as_user, kubeconfig, api)
                if await self.engine.stored_revisions(ref):
                    await self.engine.helm.uninstall(
                        ref,
                        keep_history=bool(spec and spec.uninstall_keep_history),
                        timeout=spec.uninstall_timeout if spec else release_spec.DEFAULT_TIMEOUT,
                        wait=spec.uninstall_wait if spec else True,
                        hooks=spec.uninstall_hooks if spec else True,
                    )
        except ClientError as exc:
            # As for a Kustomization: nothing can be uninstalled from a cluster whose
            # kubeconfig is gone (or unusable), and waiting for it would keep the
            # HelmRelease forever.
            log.warning("uninstalling release %s/%s skipped: %s", release_namespace, name, exc)
            return True
        except HelmError as exc:
            log.warning("uninstalling release %s/%s failed: %s", release_namespace, name, exc)
            return False
        self._manifests.pop((release_namespace, name), None)
        self._detecting.discard((release_namespace, name))
        owned = status.get("helmChart")
        if owned and spec is not None and spec.chart.template is not None:
            namespace, _, name = str(owned).partition("/")
            await self.helm_charts.delete(namespace, name)
        return True
