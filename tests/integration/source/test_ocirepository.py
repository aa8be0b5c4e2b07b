"""OCIRepository end to end: `headwater push artifact` → real registry → source → Kustomization.

CI's part is played by the `headwater push artifact` command (a subprocess, as a
pipeline runs it); the registry is Debian's docker-registry on loopback, plain, with
basic auth, and with TLS.
"""

from __future__ import annotations

import hashlib
import json
import subprocess
import sys
import time
from pathlib import Path

import pytest

from tests.support.builders import configmap_file, kustomization, oci_repository, secret
from tests.support.cluster import TestCluster, apply
from tests.support.controllers import RunningControllers
from tests.support.registry import OciRegistry
from tests.support.sources import download
from tests.support.status import (
    applied,
    condition,
    configmap_data,
    events_for,
    get_object,
    request_reconcile,
    wait_for_kustomization,
    wait_for_object,
    wait_ready,
)

pytestmark = pytest.mark.integration

SOURCE_URL = "https://git.example/team/app.git"
REPO_ROOT = Path(__file__).resolve().parents[3]


def push(registry: OciRegistry, repository: str, tag: str, tree: Path, revision: str) -> str:
    """`headwater push artifact` as CI runs it; returns the digest it prints."""
    args = [
        sys.executable,
        "-m",
        "controllers.cli",
        "push",
        "artifact",
        f"{registry.url(repository)}:{tag}",
        "--path",
        str(tree),
        "--source",
        SOURCE_URL,
        "--revision",
        revision,
    ]
    if registry.basic:
        args += ["--creds", ":".join(registry.basic)]
    if registry.ca_pem:
        args += ["--ca-file", str(registry.ca_file)]
    else:
        args.append("--insecure-registry")
    done = subprocess.run(
        args, capture_output=True, text=True, timeout=120, check=False, cwd=REPO_ROOT
    )
    assert done.returncode == 0, done.stderr
    return done.stdout.strip()


def manifests(tmp_path: Path, name: str, **data: str) -> Path:
    tree = tmp_path / name
    tree.mkdir()
    (tree / "config.yaml").write_text(configmap_file("app-config", **data))
    return tree


def test_a_pushed_artifact_is_synced_and_a_new_push_is_applied(
    cluster: TestCluster,
    namespace: str,
    controllers: RunningControllers,
    oci_registry: OciRegistry,
    tmp_path: Path,
) -> None:
    repository = f"{namespace}/manifests"
    first = push(oci_registry, repository, "latest", manifests(tmp_path, "v1", color="blue"), "1")
    apply(
        cluster,
        oci_repository(
            namespace, "app", oci_registry.url(repository), interval="2s", insecure=True
        ),
        kustomization(
            namespace,
            "app",
            "app",
            sourceRef={"kind": "OCIRepository", "name": "app"},
            targetNamespace=namespace,
        ),
    )
    repo = wait_ready(cluster, namespace, "OCIRepository", "app")
    artifact = repo["status"]["artifact"]
    assert artifact["revision"] == f"latest@{first}"
    assert artifact["metadata"]["org.opencontainers.image.source"] == SOURCE_URL
    assert artifact["metadata"]["org.opencontainers.image.revision"] == "1"
    data = download(artifact["url"])
    assert artifact["digest"] == "sha256:" + hashlib.sha256(data).hexdigest()
    assert repo["status"]["url"] == artifact["url"]
    assert condition(repo, "ArtifactInStorage")["status"] == "True"  # type: ignore[index]
    ks = wait_for_kustomization(cluster, namespace, "app", applied(f"latest@{first}"))
    assert ks["status"]["lastAppliedOriginRevision"] == "1"  # the pushed --revision
    assert configmap_data(cluster, namespace, "app-config") == {"color": "blue"}
    assert ("Normal", "NewArtifact") in [
        (e["type"], e["reason"]) for e in events_for(cluster, namespace, "OCIRepository", "app")
    ]

    # Intervals with nothing new: a manifest HEAD each, no download, no write.
    oci_registry.clear_requests()
    version = get_object(cluster, namespace, "OCIRepository", "app")["metadata"]["resourceVersion"]
    time.sleep(6)
    heads = [r for r in oci_registry.requests() if r.path.endswith("/manifests/latest")]
    assert heads and {r.method for r in heads} == {"HEAD"}
    assert oci_registry.blob_downloads(repository) == []
    now = get_object(cluster, namespace, "OCIRepository", "app")
    assert now["metadata"]["resourceVersion"] == version

    second = push(oci_registry, repository, "latest", manifests(tmp_path, "v2", color="green"), "2")
    assert second != first
    ks = wait_for_kustomization(cluster, namespace, "app", applied(f"latest@{second}"), timeout=90)
    assert ks["status"]["lastAppliedOriginRevision"] == "2"
    assert configmap_data(cluster, namespace, "app-config") == {"color": "green"}
    stored = controllers.storage_dir / "ocirepository" / namespace / "app"
    assert f"{second.removeprefix('sha256:')}.tar.gz" in [p.name for p in stored.iterdir()]


def test_semver_follows_the_newest_matching_tag(
    cluster: TestCluster,
    namespace: str,
    controllers: RunningControllers,
    oci_registry: OciRegistry,
    tmp_path: Path,
) -> None:
    repository = f"{namespace}/manifests"
    # CI's pushes by the registry helper here (the CLI is the other tests' business).
    for tag in ("1.0.0", "1.1.0", "2.0.0-rc.1"):
        oci_registry.push_flux_artifact(repository, manifests(tmp_path, tag, version=tag), [tag])
    apply(
        cluster,
        oci_repository(
            namespace,
            "app",
            oci_registry.url(repository),
            interval="2s",
            insecure=True,
            ref={"semver": ">=1.0.0"},
        ),
    )
    repo = wait_ready(cluster, namespace, "OCIRepository", "app")
    assert repo["status"]["artifact"]["revision"].startswith("1.1.0@sha256:")

    newest = oci_registry.push_flux_artifact(
        repository, manifests(tmp_path, "1.2.0", version="1.2.0"), ["1.2.0"]
    )
    wait_for_object(
        cluster,
        namespace,
        "OCIRepository",
        "app",
        lambda o: (o.get("status") or {}).get("artifact", {}).get("revision") == f"1.2.0@{newest}",
        timeout=60,
        what="the 1.2.0 artifact",
    )


def test_basic_auth_comes_from_a_dockerconfigjson_secret(
    cluster: TestCluster,
    namespace: str,
    controllers: RunningControllers,
    oci_registry_basic: OciRegistry,
    tmp_path: Path,
) -> None:
    repository = f"{namespace}/private"
    digest = push(oci_registry_basic, repository, "v1", manifests(tmp_path, "t", a="1"), "r")
    user = oci_registry_basic.basic[0]  # type: ignore[index]
    wrong = json.dumps({"auths": {oci_registry_basic.host: {"username": user, "password": "nope"}}})
    apply(
        cluster,
        secret(namespace, "creds", {".dockerconfigjson": oci_registry_basic.dockerconfigjson()})
        | {"type": "kubernetes.io/dockerconfigjson"},
        secret(namespace, "wrong", {".dockerconfigjson": wrong})
        | {"type": "kubernetes.io/dockerconfigjson"},
        *(
            oci_repository(
                namespace,
                name,
                oci_registry_basic.url(repository),
                insecure=True,
                ref={"tag": "v1"},
                **({"secretRef": {"name": ref}} if ref else {}),
            )
            for name, ref in (("good", "creds"), ("bad", "wrong"), ("anonymous", None))
        ),
    )
    good = wait_ready(cluster, namespace, "OCIRepository", "good")
    assert good["status"]["artifact"]["revision"] == f"v1@{digest}"
    for name in ("bad", "anonymous"):
        obj = wait_ready(
            cluster, namespace, "OCIRepository", name, "False", "OCIArtifactPullFailed"
        )
        message = condition(obj, "Ready")["message"]  # type: ignore[index]
        assert "401 unauthorized" in message
        assert "nope" not in message
        fetch = condition(obj, "FetchFailed")
        assert fetch and fetch["status"] == "True" and fetch["reason"] == "OCIArtifactPullFailed"

    apply(
        cluster,
        oci_repository(
            namespace,
            "missing",
            oci_registry_basic.url(repository),
            insecure=True,
            secretRef={"name": "absent"},
        ),
    )
    missing = wait_ready(
        cluster, namespace, "OCIRepository", "missing", "False", "AuthenticationFailed"
    )
    assert "absent" in condition(missing, "Ready")["message"]  # type: ignore[index]


def test_tls_trusts_the_ca_from_cert_secret_ref(
    cluster: TestCluster,
    namespace: str,
    controllers: RunningControllers,
    oci_registry_tls: OciRegistry,
    tmp_path: Path,
) -> None:
    repository = f"{namespace}/tls"
    digest = push(oci_registry_tls, repository, "latest", manifests(tmp_path, "t", a="1"), "r")
    apply(
        cluster,
        secret(namespace, "registry-ca", {"ca.crt": oci_registry_tls.ca_pem}),
        oci_repository(
            namespace,
            "trusted",
            oci_registry_tls.url(repository),
            certSecretRef={"name": "registry-ca"},
        ),
        oci_repository(namespace, "untrusted", oci_registry_tls.url(repository)),
    )
    trusted = wait_ready(cluster, namespace, "OCIRepository", "trusted")
    assert trusted["status"]["artifact"]["revision"] == f"latest@{digest}"
    untrusted = wait_ready(
        cluster, namespace, "OCIRepository", "untrusted", "False", "OCIArtifactPullFailed"
    )
    assert "certificate verify failed" in condition(untrusted, "Ready")["message"]  # type: ignore[index]


def test_a_registry_that_goes_down_keeps_the_last_artifact(
    cluster: TestCluster,
    namespace: str,
    controllers: RunningControllers,
    tmp_path: Path,
) -> None:
    with OciRegistry() as registry:  # its own: the session's registries stay up
        digest = push(registry, "team/app", "latest", manifests(tmp_path, "t", a="1"), "r")
        apply(
            cluster,
            oci_repository(namespace, "app", registry.url("team/app"), insecure=True),
            kustomization(
                namespace,
                "app",
                "app",
                sourceRef={"kind": "OCIRepository", "name": "app"},
                targetNamespace=namespace,
            ),
        )
        artifact = wait_ready(cluster, namespace, "OCIRepository", "app")["status"]["artifact"]
        wait_for_kustomization(cluster, namespace, "app", applied(f"latest@{digest}"))

        registry.stop()
        request_reconcile(cluster, namespace, "OCIRepository", "app")
        down = wait_ready(
            cluster, namespace, "OCIRepository", "app", "False", "OCIArtifactPullFailed"
        )
        assert "cannot connect" in condition(down, "Ready")["message"]  # type: ignore[index]
        assert down["status"]["artifact"] == artifact
        assert download(artifact["url"])  # still served
        ks = get_object(cluster, namespace, "Kustomization", "app")
        assert condition(ks, "Ready")["status"] == "True"  # type: ignore[index]

        registry.start()
        request_reconcile(cluster, namespace, "OCIRepository", "app")
        back = wait_ready(cluster, namespace, "OCIRepository", "app")
        assert back["status"]["artifact"]["revision"] == f"latest@{digest}"
        assert condition(back, "FetchFailed") is None


def test_unsupported_fields_stall_naming_them(
    cluster: TestCluster, namespace: str, controllers: RunningControllers
) -> None:
    apply(
        cluster,
        oci_repository(namespace, "aws", "oci://registry.example/app", provider="aws"),
        oci_repository(
            namespace, "signed", "oci://registry.example/app", verify={"provider": "cosign"}
        ),
    )
    for name, field in (("aws", "spec.provider"), ("signed", "spec.verify")):
        obj = wait_for_object(
            cluster,
            namespace,
            "OCIRepository",
            name,
            lambda o: (condition(o, "Stalled") or {}).get("status") == "True",
            what="Stalled",
        )
        assert condition(obj, "Ready")["reason"] == "UnsupportedField"  # type: ignore[index]
        assert field in condition(obj, "Ready")["message"]  # type: ignore[index]
