"""Installing config/ into the test cluster, and running controllers as its ServiceAccounts.

The devcluster's kwok nodes run no containers, so the installed Deployments
never run headwater. The controllers run out of the cluster instead, each with
a kubeconfig holding a token of its own ServiceAccount (TokenRequest, as the
kubelet gets one for a pod), so every API call they make is checked against
the RBAC that config/ installs.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

import yaml

from tests.support.cluster import TestCluster, kubeconfig_yaml

REPO_ROOT = Path(__file__).resolve().parents[2]
CONFIG_DIR = REPO_ROOT / "config"
ALL_IN_ONE_DIR = CONFIG_DIR / "overlays" / "all-in-one"
LOCKDOWN_COMPONENT = CONFIG_DIR / "components" / "lockdown"
SYSTEM_NAMESPACE = "headwater-system"
TOKEN_DURATION = "2h"


def install(cluster: TestCluster, directory: Path = CONFIG_DIR) -> str:
    """`kubectl apply --server-side -k <directory>`, as the README says; its output."""
    return cluster.kubectl("apply", "--server-side", "-k", str(directory)).stdout


def built(cluster: TestCluster, directory: Path) -> list[dict[str, Any]]:
    """The objects `kubectl apply -k` would send (kubectl's own kustomize)."""
    text = cluster.kubectl("kustomize", str(directory)).stdout
    return [doc for doc in yaml.safe_load_all(text) if doc]


def with_lockdown(workdir: Path, base: Path = CONFIG_DIR) -> Path:
    """A platform team's kustomization: `base` plus the lockdown component."""
    workdir.mkdir(parents=True, exist_ok=True)
    document = {
        "apiVersion": "kustomize.config.k8s.io/v1beta1",
        "kind": "Kustomization",
        # kustomize wants relative paths to other kustomizations.
        "resources": [os.path.relpath(base, workdir)],
        "components": [os.path.relpath(LOCKDOWN_COMPONENT, workdir)],
    }
    (workdir / "kustomization.yaml").write_text(yaml.safe_dump(document))
    return workdir


def service_account_kubeconfig(cluster: TestCluster, account: str, path: Path) -> Path:
    """A kubeconfig for the test cluster that authenticates as `headwater-system/<account>`."""
    token = cluster.kubectl(
        "create", "token", account, "-n", SYSTEM_NAMESPACE, f"--duration={TOKEN_DURATION}"
    ).stdout.strip()
    admin = json.loads(cluster.kubectl("config", "view", "--raw", "--minify", "-o", "json").stdout)
    server = admin["clusters"][0]["cluster"]
    fields = {k: v for k, v in server.items() if k.startswith("certificate-authority")}
    path.write_text(kubeconfig_yaml(server["server"], {"token": token}, **fields))
    return path


def as_account(cluster: TestCluster, kubeconfig: Path) -> TestCluster:
    """kubectl bound to another identity's kubeconfig."""
    return TestCluster(kubeconfig, cluster.kubectl_bin)
