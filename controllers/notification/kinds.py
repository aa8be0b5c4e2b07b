"""The Flux kinds that Alerts and Receivers may name, with their default API versions.

The CRDs restrict `eventSources[].kind` and `resources[].kind` to these, so a
fixed table gives the plural without a discovery round trip. Kinds Flux
leaves without a default apiVersion get their current Flux version here;
an explicit `apiVersion` always wins.
"""

from __future__ import annotations

from controllers.toolkit.apply.resources import split_api_version
from controllers.toolkit.runtime.reconciler import Resource

DEFAULT_API_VERSIONS: dict[str, str] = {
    "Bucket": "source.toolkit.fluxcd.io/v1",
    "GitRepository": "source.toolkit.fluxcd.io/v1",
    "HelmChart": "source.toolkit.fluxcd.io/v1",
    "HelmRepository": "source.toolkit.fluxcd.io/v1",
    "OCIRepository": "source.toolkit.fluxcd.io/v1",
    "Kustomization": "kustomize.toolkit.fluxcd.io/v1",
    "HelmRelease": "helm.toolkit.fluxcd.io/v2",
    "ImageRepository": "image.toolkit.fluxcd.io/v1",
    "ImagePolicy": "image.toolkit.fluxcd.io/v1",
    "ImageUpdateAutomation": "image.toolkit.fluxcd.io/v1",
    "ArtifactGenerator": "source.extensions.fluxcd.io/v1beta1",
    "ExternalArtifact": "source.toolkit.fluxcd.io/v1",
}


class UnknownKindError(ValueError):
    pass


def plural_of(kind: str) -> str:
    """The resource name of a Flux kind: `gitrepositories`, `kustomizations`."""
    lower = kind.lower()
    return lower[:-1] + "ies" if lower.endswith("y") else lower + "s"


def resolve_kind(kind: str, api_version: str = "") -> Resource:
    """The API location of `kind`, using `api_version` when given."""
    version_text = api_version or DEFAULT_API_VERSIONS.get(kind, "")
    if not version_text:
        raise UnknownKindError(f"apiVersion must be given for kind {kind!r}")
    if kind not in DEFAULT_API_VERSIONS:
        raise UnknownKindError(f"kind {kind!r} is not a Flux kind this controller knows")
    group, version = split_api_version(version_text)
    return Resource(group=group, version=version, plural=plural_of(kind), kind=kind)
