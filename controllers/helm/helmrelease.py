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
6. let the engine decide and carry out the helm actions.

A release whose chart and values are unchanged and which is deployed costs
one metadata-only list of helm's storage Secrets and no helm process.
Deleting the HelmRelease uninstalls the release (not when suspended, as in
Flux) and deletes the HelmChart it owns.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from controllers.helm import spec as release_spec
from controllers.helm import values as release_values
from controllers.helm.chart import ChartError, ChartMetadata, ChartStore, read_crds, read_metadata
from controllers.helm.dependencies import dependency_not_ready
from controllers.helm.engine import Engine, ReleaseInputs
from controllers.helm.helmchart import ChartNotReady, HelmCharts, chart_artifact
from controllers.helm.release import HelmError, ReleaseRef
from controllers.toolkit.artifacts import ArtifactError
from controllers.toolkit.dependencies import REQUEUE_SECONDS, Lookup
from controllers.toolkit.runtime import conditions as cond
from controllers.toolkit.runtime.durations import jittered
from controllers.toolkit.runtime.events import NORMAL
from controllers.toolkit.runtime.frame import ReconcileError, ReconcileFrame, ReconcileRun
from controllers.toolkit.runtime.reconciler import Object, Outcome

log = logging.getLogger(__name__)

INIT_FAILED = "InitFailed"
INVALID_CHART_REFERENCE = "InvalidChartReference"
RESET_AT_ANNOTATION = "reconcile.fluxcd.io/resetAt"
FORCE_AT_ANNOTATION = "reconcile.fluxcd.io/forceAt"
# Chart metadata and CRDs by artifact digest, so an unchanged chart is read once.
_CHART_INFO_LIMIT = 256


@dataclass
class HelmReleaseReconciler:
    frame: ReconcileFrame
    engine: Engine
    charts: ChartStore
    helm_charts: HelmCharts
    read_config: release_values.ReadConfig
    # The objects dependsOn names (HelmReleases, Kustomizations), from the caches.
    dependencies: Lookup = lambda ref: None
    _chart_info: dict[str, tuple[ChartMetadata, list[str]]] = field(default_factory=dict)

    async def reconcile(self, obj: Object) -> Outcome:
        return await self.frame.run(obj, self._steps)

    async def _steps(self, run: ReconcileRun) -> None:
        try:
            spec = release_spec.parse(run.obj)
        except release_spec.SpecError as exc:
            reason = INVALID_CHART_REFERENCE if "spec.chart" in str(exc) else INIT_FAILED
            raise ReconcileError(reason, str(exc), stalled=True) from None
        run.retry_after = spec.interval
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
        run.status["helmChart"] = chart_id
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

        self._reset_counters(run, artifact.revision or metadata.version, digest)
        run.status["lastAttemptedConfigDigest"] = digest
        run.status["lastAttemptedValuesChecksum"] = release_values.values_checksum(composed)
        run.status["lastAttemptedGeneration"] = run.generation
        run.status["lastAttemptedRevisionDigest"] = artifact.digest
        await run.progressing(
            f"Fetched revision: {metadata.version}", revision=artifact.revision or metadata.version
        )
        inputs = ReleaseInputs(
            spec=spec,
            chart=chart_path,
            metadata=metadata,
            values=composed,
            digest=digest,
            crds=crd_files,
            as_user=spec.impersonate(namespace),
        )
        await self.engine.reconcile(run, inputs, force=self._force_requested(run))
        run.requeue_after = jittered(spec.interval)

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
        as_user = spec.impersonate(namespace) if spec is not None else None
        if history:
            ref = ReleaseRef(str(history[0]["name"]), str(history[0]["namespace"]), as_user)
        elif spec is not None:
            ref = ReleaseRef(spec.release_name, spec.namespace, as_user)
        else:
            return True
        try:
            if await self.engine.stored_revisions(ref.namespace, ref.name):
                await self.engine.helm.uninstall(
                    ref,
                    keep_history=bool(spec and spec.uninstall_keep_history),
                    timeout=spec.uninstall_timeout if spec else release_spec.DEFAULT_TIMEOUT,
                    wait=spec.uninstall_wait if spec else True,
                    hooks=spec.uninstall_hooks if spec else True,
                )
        except HelmError as exc:
            log.warning("uninstalling release %s failed: %s", ref, exc.message)
            return False
        owned = status.get("helmChart")
        if owned and spec is not None and spec.chart.template is not None:
            namespace, _, name = str(owned).partition("/")
            await self.helm_charts.delete(namespace, name)
        return True
