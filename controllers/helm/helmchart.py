"""The HelmChart (or OCIRepository) a release takes its chart from, and the HelmChart it
owns for `spec.chart`.

For `spec.chart` the release creates HelmChart `<namespace>-<name>` in the
source's namespace, as Flux does, labelled with the release it belongs to
(and owned by it when both live in one namespace, so garbage collection
also removes it). The spec is written only when it differs from what the
watch cache holds, so an unchanged release makes no API call here.
"""

from __future__ import annotations

import asyncio
import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

import kubernetes.client
from kubernetes.client.rest import ApiException

from controllers.helm.spec import HELM_CHART, OCI_REPOSITORY, ChartSource, HelmReleaseSpec
from controllers.toolkit.artifacts import Artifact, ArtifactError
from controllers.toolkit.runtime import conditions as cond
from controllers.toolkit.runtime.reconciler import Object, ObjectRef
from controllers.toolkit.semverrange import Version

NAME_LABEL = "helm.toolkit.fluxcd.io/name"
NAMESPACE_LABEL = "helm.toolkit.fluxcd.io/namespace"


class ChartNotReady(Exception):
    """The HelmChart is missing or has no usable artifact yet."""


def chart_artifact(source: ChartSource, helm_chart: Mapping[str, Any] | None) -> Artifact:
    where = f"{source.kind} '{source.namespace}/{source.name}'"
    if helm_chart is None:
        raise ChartNotReady(f"{where} not found")
    status = helm_chart.get("status") or {}
    artifact = status.get("artifact")
    ready = cond.get_condition(status, cond.READY)
    if not artifact:
        detail = ready["message"] if ready and ready.get("message") else "it has no artifact yet"
        raise ChartNotReady(f"{where} is not ready: {detail}")
    if ready is not None and ready.get("status") == cond.FALSE:
        # It failed (a version range nothing matches, a chart the index lacks): its
        # old artifact is not what the spec asks for, so nothing is released from it.
        # While it is only progressing, the artifact it has is still the one to use.
        raise ChartNotReady(f"{where} is not ready: {ready.get('message') or ready.get('reason')}")
    try:
        return Artifact.from_status(artifact)
    except ArtifactError as exc:
        raise ChartNotReady(f"{where} has an unusable artifact: {exc}") from None


# Flux's event metadata key (under helm.toolkit.fluxcd.io/) for the chart's OCI digest.
OCI_DIGEST_EVENT_KEY = "oci-digest"
# Flux's Ready reason when an OCIRepository's revision does not fit the chart in it.
CHART_MUTATE_ERROR = "ChartMutateError"
_DIGEST = re.compile(r"^[a-z0-9]+(?:[+._-][a-z0-9]+)*:[a-zA-Z0-9=_-]{12,}$")


class ChartRevisionError(ValueError):
    """An OCIRepository's artifact revision that does not fit the chart it holds."""


def oci_chart_digest(revision: str | None, chart_version: str) -> str:
    """The manifest digest in an OCIRepository's artifact revision, checked as Flux does.

    The revision is `<tag>@<algorithm>:<hex>` (the tag must be the chart's version,
    with OCI's `_` for semver's `+`) or, for a digest reference, the digest alone.
    """
    text = revision or ""
    tag, at, digest = text.rpartition("@")
    if at:
        tag_version = Version.parse(tag.replace("_", "+"))
        if tag_version is None:
            raise ChartRevisionError(f"failed parsing artifact revision {tag}")
        if tag_version != Version.parse(chart_version):
            raise ChartRevisionError(
                f"artifact revision {tag} does not match chart version {chart_version}"
            )
    if not _DIGEST.match(digest):
        raise ChartRevisionError(f"invalid artifact revision {text}")
    return digest


def _spec_differs(live: Mapping[str, Any] | None, wanted: Mapping[str, Any]) -> bool:
    if live is None:
        return True
    spec = live.get("spec") or {}
    return any(spec.get(key) != value for key, value in wanted.items())


@dataclass
class HelmCharts:
    """HelmChart reads (from the watch cache) and the writes of owned HelmCharts."""

    api: kubernetes.client.ApiClient
    lookup: Callable[[ObjectRef], Object | None]
    oci_lookup: Callable[[ObjectRef], Object | None] = lambda ref: None

    def get(self, source: ChartSource) -> Object | None:
        """The source object from its watch cache: the HelmChart, or the OCIRepository."""
        lookup = self.oci_lookup if source.kind == OCI_REPOSITORY.kind else self.lookup
        return lookup(ObjectRef(source.namespace, source.name))

    async def ensure(self, release: Mapping[str, Any], spec: HelmReleaseSpec) -> Object | None:
        """Create or update the release's own HelmChart; what was written, if anything.

        The watch brings the written object back a moment later; until then the
        caller reads it from the return value.
        """
        template = spec.chart.template
        if template is None:
            return None
        wanted = template.helm_chart_spec()
        if not _spec_differs(self.get(spec.chart), wanted):
            return None
        metadata = release["metadata"]
        body: dict[str, Any] = {
            "apiVersion": HELM_CHART.api_version,
            "kind": HELM_CHART.kind,
            "metadata": {
                "name": spec.chart.name,
                "namespace": spec.chart.namespace,
                "labels": {
                    NAME_LABEL: metadata["name"],
                    NAMESPACE_LABEL: metadata["namespace"],
                },
            },
            "spec": wanted,
        }
        if spec.chart.namespace == metadata["namespace"] and metadata.get("uid"):
            body["metadata"]["ownerReferences"] = [
                {
                    "apiVersion": str(release.get("apiVersion") or "helm.toolkit.fluxcd.io/v2"),
                    "kind": "HelmRelease",
                    "name": metadata["name"],
                    "uid": metadata["uid"],
                    "controller": True,
                    "blockOwnerDeletion": True,
                }
            ]
        objects = kubernetes.client.CustomObjectsApi(self.api)

        def write() -> None:
            try:
                objects.create_namespaced_custom_object(
                    HELM_CHART.group,
                    HELM_CHART.version,
                    spec.chart.namespace,
                    HELM_CHART.plural,
                    body,
                )
            except ApiException as exc:
                if exc.status != 409:
                    raise
                objects.patch_namespaced_custom_object(
                    HELM_CHART.group,
                    HELM_CHART.version,
                    spec.chart.namespace,
                    HELM_CHART.plural,
                    spec.chart.name,
                    {"metadata": {"labels": body["metadata"]["labels"]}, "spec": wanted},
                )

        await asyncio.to_thread(write)
        return body

    async def delete_if_owned(self, chart_id: str, release: Mapping[str, Any]) -> None:
        """Delete HelmChart `namespace/name` if this release made it (by its labels)."""
        namespace, _, name = chart_id.partition("/")
        live = self.lookup(ObjectRef(namespace, name))
        labels = ((live or {}).get("metadata") or {}).get("labels") or {}
        metadata = release["metadata"]
        if (
            labels.get(NAME_LABEL) == metadata["name"]
            and labels.get(NAMESPACE_LABEL) == metadata["namespace"]
        ):
            await self.delete(namespace, name)

    async def delete(self, namespace: str, name: str) -> None:
        objects = kubernetes.client.CustomObjectsApi(self.api)

        def remove() -> None:
            try:
                objects.delete_namespaced_custom_object(
                    HELM_CHART.group, HELM_CHART.version, namespace, HELM_CHART.plural, name
                )
            except ApiException as exc:
                if exc.status != 404:
                    raise

        await asyncio.to_thread(remove)
