"""Sealed secrets in a real sync: git holds only ciphertext, the cluster gets the Secrets."""

from __future__ import annotations

import base64
from pathlib import Path
from typing import Any

import pytest
import yaml

from controllers.sealing import format as sealing
from tests.support.builders import git_repository, kustomization
from tests.support.cli import run_headwater
from tests.support.cluster import TestCluster, apply, get_json, wait_for
from tests.support.controllers import RunningControllers
from tests.support.gitrepos import RepoFactory
from tests.support.gitservers import GitHttpServer
from tests.support.sealing import run_kubeseal
from tests.support.status import condition, get_object, request_reconcile

pytestmark = pytest.mark.integration

KEYS_NAMESPACE = "headwater-system"  # the session controllers' HEADWATER_NAMESPACE
PLAINTEXTS = {
    "strict": "s3cr3t-strict-value-4711",
    "namespace": "s3cr3t-namespace-wide-0815",
    "cluster": "s3cr3t-cluster-wide-1234",
    "headwater": "s3cr3t-sealed-by-headwater-42",
    "foreign": "s3cr3t-for-another-name-99",
}


def secret_yaml(name: str, namespace: str, key: str, value: str) -> bytes:
    return yaml.safe_dump(
        {
            "apiVersion": "v1",
            "kind": "Secret",
            "metadata": {"name": name, "namespace": namespace},
            "type": "Opaque",
            "stringData": {key: value},
        }
    ).encode()


def certificate(cluster: TestCluster, tmp_path: Path) -> Path:
    def fetch() -> bytes | None:
        result = run_headwater(
            "seal",
            "--fetch-cert",
            "--controller-namespace",
            KEYS_NAMESPACE,
            kubeconfig=cluster.kubeconfig,
        )
        return (
            result.stdout
            if result.returncode == 0 and b"BEGIN CERTIFICATE" in result.stdout
            else None
        )

    cert = tmp_path / "cert.pem"
    cert.write_bytes(wait_for(fetch, timeout=90, what="the controller's first sealing key"))
    return cert


def kubeseal_whole(kubeseal: Path, cert: Path, secret: bytes, scope: str) -> str:
    result = run_kubeseal(
        kubeseal, "--cert", str(cert), "--scope", scope, "-o", "yaml", input=secret
    )
    assert result.returncode == 0, result.stderr.decode()
    return result.stdout.decode()


def secret_value(cluster: TestCluster, namespace: str, name: str, key: str) -> str | None:
    found = get_json(cluster, "secret", name, "-n", namespace)
    if found is None:
        return None
    data = found.get("data") or {}
    return base64.b64decode(data[key]).decode() if key in data else None


def ks_status(cluster: TestCluster, namespace: str) -> dict[str, Any]:
    return get_object(cluster, namespace, "kustomization", "secrets").get("status") or {}


def test_kubeseal_and_headwater_sealed_values_sync_and_never_leak(
    cluster: TestCluster,
    namespace: str,
    controllers: RunningControllers,
    git_repos: RepoFactory,
    git_http_server: GitHttpServer,
    kubeseal: Path,
    tmp_path: Path,
) -> None:
    cert = certificate(cluster, tmp_path)
    ns = namespace
    files = {
        # Whole Secrets sealed by the real kubeseal, one per scope.
        "deploy/strict.yaml": kubeseal_whole(
            kubeseal, cert, secret_yaml("db-strict", ns, "password", PLAINTEXTS["strict"]), "strict"
        ),
        "deploy/namespace.yaml": kubeseal_whole(
            kubeseal,
            cert,
            secret_yaml("db-namespace", ns, "password", PLAINTEXTS["namespace"]),
            "namespace-wide",
        ),
        "deploy/cluster.yaml": kubeseal_whole(
            kubeseal,
            cert,
            secret_yaml("db-cluster", ns, "password", PLAINTEXTS["cluster"]),
            "cluster-wide",
        ),
    }
    sealed_by_us = run_headwater(
        "seal",
        "--cert",
        str(cert),
        input=secret_yaml("api-token", ns, "token", PLAINTEXTS["headwater"]),
    )
    assert sealed_by_us.returncode == 0, sealed_by_us.stderr.decode()
    files["deploy/headwater.yaml"] = sealed_by_us.stdout.decode()
    for text in files.values():
        assert not any(p in text for p in PLAINTEXTS.values()), "plaintext in git"

    repo = git_repos.create()
    first = repo.commit(files, "sealed secrets")
    apply(
        cluster,
        git_repository(ns, "secrets", git_http_server.url(repo.name)),
        kustomization(
            ns, "secrets", "secrets", "./deploy", decryption={"provider": "sealedsecrets"}
        ),
    )

    wait_for(
        lambda: ks_status(cluster, ns).get("lastAppliedRevision") == f"master@sha1:{first}",
        timeout=90,
        what="the sealed revision applied",
    )
    assert secret_value(cluster, ns, "db-strict", "password") == PLAINTEXTS["strict"]
    assert secret_value(cluster, ns, "db-namespace", "password") == PLAINTEXTS["namespace"]
    assert secret_value(cluster, ns, "db-cluster", "password") == PLAINTEXTS["cluster"]
    assert secret_value(cluster, ns, "api-token", "token") == PLAINTEXTS["headwater"]
    inventory = {e["id"] for e in ks_status(cluster, ns)["inventory"]["entries"]}
    assert inventory == {
        f"{ns}_{name}__Secret" for name in ("db-strict", "db-namespace", "db-cluster", "api-token")
    }

    # A value sealed (strict) for another name cannot open here: the whole revision
    # is refused, and what was applied before stays.
    foreign = kubeseal_whole(
        kubeseal,
        cert,
        secret_yaml("somebody-else", ns, "password", PLAINTEXTS["foreign"]),
        "strict",
    )
    moved = yaml.safe_load(foreign)
    moved["metadata"]["name"] = "stolen"
    moved["spec"]["template"]["metadata"]["name"] = "stolen"
    repo.commit(
        {"deploy/stolen.yaml": yaml.safe_dump(moved), "deploy/strict.yaml": None}, "bad seal"
    )
    request_reconcile(cluster, ns, "gitrepository", "secrets")

    def refused() -> dict[str, Any] | None:
        status = ks_status(cluster, ns)
        ready = condition(status, "Ready")
        return ready if ready and ready["reason"] == "DecryptionFailed" else None

    ready = wait_for(refused, timeout=90, what="DecryptionFailed")
    assert ready["status"] == "False"
    assert f"{ns}/stolen" in ready["message"]
    assert ks_status(cluster, ns)["lastAppliedRevision"] == f"master@sha1:{first}"
    # Nothing of the refused revision applied: strict.yaml's removal was not pruned.
    assert secret_value(cluster, ns, "db-strict", "password") == PLAINTEXTS["strict"]
    assert secret_value(cluster, ns, "stolen", "password") is None

    # No plaintext anywhere a user or an operator could read it.
    events = cluster.kubectl("get", "events", "-A", "-o", "json").stdout
    kustomization_json = cluster.kubectl(
        "get", "kustomization", "secrets", "-n", ns, "-o", "json"
    ).stdout
    for place, text in (
        ("controller log", controllers.logs()),
        ("events", events),
        ("Kustomization", kustomization_json),
    ):
        for value in PLAINTEXTS.values():
            assert value not in text, f"a secret value leaked into the {place}"
            assert base64.b64encode(value.encode()).decode() not in text, place
    assert sealing.API_VERSION == "bitnami.com/v1alpha1"
