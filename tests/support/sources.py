"""Builders and readers shared by the GitRepository tests."""

from __future__ import annotations

import base64
import io
import tarfile
import urllib.request
from typing import Any

import yaml

from tests.helpers import TestCluster, condition, kubectl_json, wait_for


def apply_gitrepository(
    cluster: TestCluster, namespace: str, name: str, spec: dict[str, Any]
) -> None:
    manifest = {
        "apiVersion": "source.toolkit.fluxcd.io/v1",
        "kind": "GitRepository",
        "metadata": {"name": name, "namespace": namespace},
        "spec": {"interval": "1m", **spec},
    }
    cluster.kubectl("apply", "-f", "-", input=yaml.safe_dump(manifest))


def get_repo(cluster: TestCluster, namespace: str, name: str) -> dict[str, Any]:
    return kubectl_json(cluster, "get", "gitrepository", name, "-n", namespace)


def wait_ready(
    cluster: TestCluster, namespace: str, name: str, status: str = "True", timeout: float = 60
) -> dict[str, Any]:
    def check() -> dict[str, Any] | None:
        obj = get_repo(cluster, namespace, name)
        ready = condition(obj, "Ready")
        if not ready or ready["status"] != status:
            return None
        # Like Flux, observedGeneration moves only on success (or a stall); a
        # failure that will be retried keeps the last one it fully handled.
        if (
            status == "True"
            and obj["status"].get("observedGeneration") != obj["metadata"]["generation"]
        ):
            return None
        return obj

    return wait_for(check, timeout=timeout, what=f"GitRepository {name} Ready={status}")


def download(url: str) -> bytes:
    with urllib.request.urlopen(url, timeout=10) as response:
        return bytes(response.read())


def tar_listing(data: bytes) -> dict[str, bytes]:
    with tarfile.open(fileobj=io.BytesIO(data), mode="r:gz") as tar:
        return {
            member.name: (tar.extractfile(member).read() if member.isfile() else b"")  # type: ignore[union-attr]
            for member in tar.getmembers()
            if member.isfile()
        }


def secret(cluster: TestCluster, namespace: str, name: str, data: dict[str, str | bytes]) -> None:
    encoded = {
        key: base64.b64encode(value if isinstance(value, bytes) else value.encode()).decode()
        for key, value in data.items()
    }
    manifest = {
        "apiVersion": "v1",
        "kind": "Secret",
        "metadata": {"name": name, "namespace": namespace},
        "data": encoded,
    }
    cluster.kubectl("apply", "-f", "-", input=yaml.safe_dump(manifest))
