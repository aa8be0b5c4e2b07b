"""Charts from an OCI HelmRepository (``type: oci``): pick the version, pull it with helm.

- Credentials: the HelmRepository's `secretRef`, either a ``.dockerconfigjson`` (the
  entry for the registry host) or ``username``/``password``; TLS from `certSecretRef`;
  `insecure` means plain HTTP, as in Flux.
- Version: an exact version is used as written (no registry call); a range is
  resolved against the repository's tags (one tag listing through the toolkit's OCI
  client), helm's ``_`` in tags read back as ``+``.
- Pull: the pinned helm binary (``helm pull oci://...``, `helmexec.pull_oci`) with the
  credentials in that run's own registry config; helm checks the layer digests.

Errors are `ChartPullError` (Flux's ``ChartPullError``) or, for a range nothing
matches, `ChartVersionError` (``InvalidChartReference``), never carrying a password.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

from controllers.source import helmexec
from controllers.source.helmhttp import basic_auth_from_secret, tls_from_secret
from controllers.source.helmrepository import HelmRepositorySpec
from controllers.toolkit import oci
from controllers.toolkit.semverrange import ConstraintError, Version, highest_matching

DOCKER_CONFIG_KEY = ".dockerconfigjson"


class ChartPullError(Exception):
    """The registry or helm failed; retried at the interval."""


class ChartVersionError(Exception):
    """No tag satisfies the version range (or the range is invalid)."""


@dataclass(frozen=True)
class OCIChartSource:
    url: oci.OCIURL  # oci://<registry>/<path>/<chart>
    credentials: oci.Credentials | None
    tls: oci.TLSMaterial | None
    plain_http: bool
    timeout: float

    @property
    def ref(self) -> str:
        return str(self.url)


def credentials_from_secret(
    data: Mapping[str, bytes], host: str, where: str
) -> oci.Credentials | None:
    """A dockerconfigjson entry for `host`, or username/password (RepositoryAuthError)."""
    if DOCKER_CONFIG_KEY in data:
        return oci.credentials_from_dockerconfig(data[DOCKER_CONFIG_KEY], host, where)
    auth = basic_auth_from_secret(data, where)
    return oci.Credentials(auth.username, auth.password)


def chart_url(repository: HelmRepositorySpec, chart: str) -> oci.OCIURL:
    """The chart's repository in the registry: ``<spec.url>/<chart>`` (OCIURLError)."""
    return oci.OCIURL.parse(f"{repository.url.rstrip('/')}/{chart}")


def tls_material(data: Mapping[str, bytes], where: str) -> oci.TLSMaterial:
    material = tls_from_secret(data, where)
    return oci.TLSMaterial(material.ca_pem, material.cert_pem, material.key_pem)


def resolve_version(source: OCIChartSource, constraint: str) -> str:
    """The newest chart version in the registry satisfying `constraint` (blocking)."""
    exact = Version.parse(constraint.strip())
    if exact is not None:
        return constraint.strip()
    try:
        with oci.RegistryClient(
            source.url,
            credentials=source.credentials,
            tls=source.tls,
            insecure=source.plain_http,
            timeout=source.timeout,
        ) as client:
            tags = client.tags()
    except oci.OCIError as exc:
        raise ChartPullError(str(exc)) from None
    try:
        found = highest_matching((tag.replace("_", "+") for tag in tags), constraint)
    except ConstraintError as exc:
        raise ChartVersionError(f"invalid version range '{constraint}': {exc}") from None
    if found is None:
        raise ChartVersionError(
            f"could not locate a version matching provided version string {constraint} "
            f"in '{source.ref}'"
        )
    return found[0]


def pull(source: OCIChartSource, version: str, workdir: Path) -> Path:
    """`helm pull` of `version` into `workdir`; returns the archive (blocking)."""
    workdir.mkdir(parents=True, exist_ok=True)
    files: dict[str, Path] = {}
    tls = source.tls
    for name, data in (
        ("ca.crt", tls.ca_pem if tls else None),
        ("tls.crt", tls.cert_pem if tls else None),
        ("tls.key", tls.key_pem if tls else None),
    ):
        if data:
            path = workdir / name
            fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
            with os.fdopen(fd, "wb") as fh:
                fh.write(data)
            files[name] = path
    credentials = source.credentials
    auth = (source.url.host, credentials.username, credentials.password) if credentials else None
    try:
        return helmexec.pull_oci(
            source.ref,
            version,
            workdir / "pulled",
            registry_auth=auth,
            plain_http=source.plain_http,
            ca_file=files.get("ca.crt"),
            cert_file=files.get("tls.crt"),
            key_file=files.get("tls.key"),
            timeout=source.timeout,
        )
    except helmexec.HelmError as exc:
        raise ChartPullError(f"failed to pull '{source.ref}' version {version}: {exc}") from None
