"""The OCI HelmRepository's chart steps without a cluster: credentials, version resolution.

The tags live in a real registry on loopback; the pull itself (helm) is covered by the
helm integration tests.
"""

from __future__ import annotations

import json

import pytest

from controllers.source import helmoci
from controllers.source.helmhttp import RepositoryAuthError
from controllers.source.helmrepository import HelmRepositorySpec
from controllers.toolkit import oci
from tests.support.registry import Blob, OciRegistry


def _source(registry: OciRegistry, repository: str) -> helmoci.OCIChartSource:
    return helmoci.OCIChartSource(
        url=oci.OCIURL(registry.host, repository),
        credentials=None,
        tls=None,
        plain_http=True,
        timeout=10,
    )


def test_credentials_come_from_a_dockerconfigjson_or_username_and_password() -> None:
    config = {"auths": {"registry.example": {"username": "u", "password": "p"}}}
    data = {".dockerconfigjson": json.dumps(config).encode()}
    found = helmoci.credentials_from_secret(data, "registry.example", "s")
    assert found == oci.Credentials("u", "p")
    basic = {"username": b"v", "password": b"q"}
    assert helmoci.credentials_from_secret(basic, "registry.example", "s") == oci.Credentials(
        "v", "q"
    )
    with pytest.raises(RepositoryAuthError, match="'username' and 'password'"):
        helmoci.credentials_from_secret({"token": b"x"}, "registry.example", "s")


def test_the_chart_lives_under_the_repository_url() -> None:
    spec = HelmRepositorySpec.parse(
        {"spec": {"type": "oci", "url": "oci://registry.example:5000/team/charts/"}}
    )
    assert helmoci.chart_url(spec, "web") == oci.OCIURL("registry.example:5000", "team/charts/web")


def test_a_range_is_resolved_from_the_tags_and_an_exact_version_asks_nothing(
    oci_registry: OciRegistry,
) -> None:
    layer = [Blob(oci.HELM_CHART_LAYER_MEDIA_TYPE, b"chart")]
    for tag in ("0.9.0", "1.0.0", "1.1.0_build.7", "2.0.0-rc.1", "latest"):
        oci_registry.push_artifact("unit-helm/charts/app", [tag], layers=layer)
    source = _source(oci_registry, "unit-helm/charts/app")
    assert helmoci.resolve_version(source, "1.x") == "1.1.0+build.7"
    assert helmoci.resolve_version(source, "*") == "1.1.0+build.7"
    oci_registry.clear_requests()
    assert helmoci.resolve_version(source, "3.0.0") == "3.0.0"
    assert oci_registry.requests() == []
    with pytest.raises(helmoci.ChartVersionError, match="matching provided version string >=3"):
        helmoci.resolve_version(source, ">=3")
    with pytest.raises(helmoci.ChartPullError, match="not found"):
        helmoci.resolve_version(_source(oci_registry, "unit-helm/charts/absent"), "1.x")
