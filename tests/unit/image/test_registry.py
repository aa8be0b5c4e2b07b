"""Image names and registry credentials, as Flux reads them."""

from __future__ import annotations

import base64
import json

import pytest

from controllers.image.imagerepository import latest_tags
from controllers.image.registry import (
    RegistryError,
    credentials_from_dockerconfig,
    parse_image,
)
from controllers.image.repositoryspec import ImageRepositorySpec
from controllers.toolkit.runtime.frame import ReconcileError


@pytest.mark.parametrize(
    ("image", "canonical"),
    [
        ("alpine", "index.docker.io/library/alpine"),
        ("stefanprodan/podinfo", "index.docker.io/stefanprodan/podinfo"),
        ("docker.io/fluxcd/flux", "index.docker.io/fluxcd/flux"),
        ("ghcr.io/org/app", "ghcr.io/org/app"),
        ("127.0.0.1:5000/team/app", "127.0.0.1:5000/team/app"),
        ("localhost/app", "localhost/app"),
    ],
)
def test_canonical_names(image: str, canonical: str) -> None:
    assert parse_image(image).canonical == canonical


@pytest.mark.parametrize(
    "image", ["ghcr.io/org/app:1.0", "app@sha256:abc", "https://ghcr.io/a", "Bad/Name"]
)
def test_tags_digests_schemes_and_bad_names_are_refused(image: str) -> None:
    with pytest.raises(RegistryError) as info:
        parse_image(image)
    assert info.value.reason == "ImageURLInvalid"


def test_dockerconfigjson_credentials_by_host_from_auth_or_fields() -> None:
    auth = base64.b64encode(b"bob:s3cret").decode()
    config = {
        "auths": {"127.0.0.1:5000": {"auth": auth}, "other:1": {"username": "x", "password": "y"}}
    }
    data = {".dockerconfigjson": json.dumps(config).encode()}
    creds = credentials_from_dockerconfig(data, "127.0.0.1:5000", "secret 'a/b'")
    assert (creds.username, creds.password) == ("bob", "s3cret")
    assert "s3cret" not in repr(creds)
    with pytest.raises(RegistryError, match=r"no credentials for 'ghcr\.io'"):
        credentials_from_dockerconfig(data, "ghcr.io", "secret 'a/b'")


def test_latest_tags_are_ten_in_reverse_alphabetical_order() -> None:
    tags = [f"1.0.{i}" for i in range(12)]
    assert latest_tags(tags) == sorted(tags, reverse=True)[:10]


def test_default_exclusion_list_drops_cosign_signatures() -> None:
    spec = ImageRepositorySpec.parse({"image": "ghcr.io/org/app", "interval": "1m"})
    assert spec.exclusion_list == (r"^.*\.sig$",)
    assert spec.excluded("sha256-abc.sig") and not spec.excluded("1.0.0")
    assert spec.timeout == 60.0


def test_cloud_providers_are_refused_by_value() -> None:
    with pytest.raises(ReconcileError, match=r"spec\.provider 'aws'"):
        ImageRepositorySpec.parse({"image": "a/b", "interval": "1m", "provider": "aws"})
