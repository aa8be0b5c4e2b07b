"""Artifacts pushed with the real `oras` CLI are synced like `flux push artifact`'s.

CI's part is played by `oras push` (built from its Go module, `tests/support/oras.py`)
against Debian's docker-registry on loopback. Two ways Flux users publish with oras:

- a tar+gzip of the manifests pushed as a layer of Flux's content media type: an
  OCIRepository without `layerSelector` takes it (the first layer), as Flux does;
- a tarball of the user's own media type behind another layer (a README): the
  OCIRepository selects it with `layerSelector.mediaType`, and either extracts it
  (`operation: extract`) or stores it byte for byte (`operation: copy`); without a
  selector the first layer, not a tarball, fails by name.
"""

from __future__ import annotations

import hashlib
from pathlib import Path

import pytest

from tests.support.builders import configmap_file, kustomization, oci_repository, secret
from tests.support.cluster import TestCluster, apply
from tests.support.controllers import RunningControllers
from tests.support.oras import OrasCLI
from tests.support.registry import (
    FLUX_CONFIG_MEDIA_TYPE,
    FLUX_LAYER_MEDIA_TYPE,
    OciRegistry,
    directory_tarball,
)
from tests.support.sources import download
from tests.support.status import (
    applied,
    condition,
    configmap_data,
    wait_for_kustomization,
    wait_ready,
)

pytestmark = pytest.mark.integration

SOURCE_URL = "https://git.example/team/app.git"
# A media type of the user's own, as `oras push file:type` sets it.
OWN_LAYER_TYPE = "application/vnd.acme.manifests.v1.tar+gzip"


def manifests_tarball(workdir: Path, filename: str, name: str, **data: str) -> Path:
    """`filename` in `workdir`: a tar+gzip of one ConfigMap, as CI would pack it."""
    tree = workdir / f"{filename}.d"
    tree.mkdir(parents=True)
    (tree / "config.yaml").write_text(configmap_file(name, **data))
    path = workdir / filename
    path.write_bytes(directory_tarball(tree))
    return path


def synced_by(namespace: str, name: str, source: str, path: str = "./") -> dict[str, object]:
    return kustomization(
        namespace,
        name,
        source,
        path,
        sourceRef={"kind": "OCIRepository", "name": source},
        targetNamespace=namespace,
    )


def test_an_oras_push_of_flux_media_types_is_synced_without_a_layer_selector(
    cluster: TestCluster,
    namespace: str,
    controllers: RunningControllers,
    oci_registry: OciRegistry,
    oras: OrasCLI,
    tmp_path: Path,
) -> None:
    repository = f"{namespace}/manifests"
    manifests_tarball(tmp_path, "manifests.tgz", "app-config", color="blue")
    digest = oras.push(
        oci_registry,
        f"{repository}:v1",
        [("manifests.tgz", FLUX_LAYER_MEDIA_TYPE)],
        workdir=tmp_path,
        artifact_type=FLUX_CONFIG_MEDIA_TYPE,
        annotations={
            "org.opencontainers.image.source": SOURCE_URL,
            "org.opencontainers.image.revision": "main@sha1:1234567",
        },
    )
    manifest = oci_registry.manifest(repository, "v1")
    assert [layer["mediaType"] for layer in manifest["layers"]] == [FLUX_LAYER_MEDIA_TYPE]
    apply(
        cluster,
        oci_repository(
            namespace, "app", oci_registry.url(repository), insecure=True, ref={"tag": "v1"}
        ),
        synced_by(namespace, "app", "app"),
    )
    repo = wait_ready(cluster, namespace, "OCIRepository", "app")
    artifact = repo["status"]["artifact"]
    assert artifact["revision"] == f"v1@{digest}"
    assert artifact["metadata"]["org.opencontainers.image.source"] == SOURCE_URL
    ks = wait_for_kustomization(cluster, namespace, "app", applied(f"v1@{digest}"))
    assert ks["status"]["lastAppliedOriginRevision"] == "main@sha1:1234567"
    assert configmap_data(cluster, namespace, "app-config") == {"color": "blue"}


def test_a_layer_selector_extracts_or_copies_the_layer_oras_pushed(
    cluster: TestCluster,
    namespace: str,
    controllers: RunningControllers,
    oci_registry_basic: OciRegistry,
    oras: OrasCLI,
    tmp_path: Path,
) -> None:
    repository = f"{namespace}/bundle"
    (tmp_path / "README.md").write_text("# deploy bundle\n")
    tarball = manifests_tarball(tmp_path, "deploy.tgz", "bundle-config", tier="web")
    digest = oras.push(
        oci_registry_basic,
        f"{repository}:1.0.0",
        [("README.md", "text/markdown"), ("deploy.tgz", OWN_LAYER_TYPE)],
        workdir=tmp_path,
        artifact_type="application/vnd.acme.bundle.v1",
    )
    selector = {"mediaType": OWN_LAYER_TYPE}
    url = oci_registry_basic.url(repository)
    common = {"insecure": True, "ref": {"semver": "1.x"}, "secretRef": {"name": "creds"}}
    apply(
        cluster,
        secret(namespace, "creds", {".dockerconfigjson": oci_registry_basic.dockerconfigjson()})
        | {"type": "kubernetes.io/dockerconfigjson"},
        oci_repository(
            namespace, "extract", url, layerSelector={**selector, "operation": "extract"}, **common
        ),
        oci_repository(
            namespace, "copy", url, layerSelector={**selector, "operation": "copy"}, **common
        ),
        oci_repository(namespace, "first-layer", url, **common),
        synced_by(namespace, "extracted", "extract"),
    )
    revision = f"1.0.0@{digest}"
    extracted = wait_ready(cluster, namespace, "OCIRepository", "extract")
    assert extracted["status"]["artifact"]["revision"] == revision
    assert extracted["status"]["observedLayerSelector"] == {**selector, "operation": "extract"}
    wait_for_kustomization(cluster, namespace, "extracted", applied(revision))
    assert configmap_data(cluster, namespace, "bundle-config") == {"tier": "web"}

    # copy: the artifact is the layer itself, byte for byte.
    copied = wait_ready(cluster, namespace, "OCIRepository", "copy")["status"]["artifact"]
    assert copied["revision"] == revision
    data = download(copied["url"])
    assert data == tarball.read_bytes()
    assert copied["digest"] == "sha256:" + hashlib.sha256(data).hexdigest()

    # No selector: the first layer (the README) is not a tarball, and the status says so.
    failed = "OCIArtifactLayerOperationFailed"
    first = wait_ready(cluster, namespace, "OCIRepository", "first-layer", "False", failed)
    message = condition(first, "Ready")["message"]  # type: ignore[index]
    assert "failed to extract layer" in message
    assert "artifact" not in first["status"]
