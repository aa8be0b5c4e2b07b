"""The control plane behaves like a real cluster: what later tests rely on."""

from __future__ import annotations

import pytest

from tests.support.cluster import TestCluster, kubectl_json, wait_for

pytestmark = pytest.mark.integration

DEPLOYMENT = """
apiVersion: apps/v1
kind: Deployment
metadata:
  name: web
spec:
  replicas: {replicas}
  selector:
    matchLabels: {{app: web}}
  template:
    metadata:
      labels: {{app: web}}
    spec:
      containers:
        - name: web
          image: registry.example/web:1.0
"""


def _apply_deployment(cluster: TestCluster, namespace: str, replicas: int) -> None:
    cluster.kubectl("apply", "-n", namespace, "-f", "-", input=DEPLOYMENT.format(replicas=replicas))


def test_nodes_are_ready(cluster: TestCluster) -> None:
    nodes = kubectl_json(cluster, "get", "nodes")["items"]
    ready = [
        node["metadata"]["name"]
        for node in nodes
        if any(c["type"] == "Ready" and c["status"] == "True" for c in node["status"]["conditions"])
    ]
    assert len(ready) >= 3, f"ready nodes: {ready}"


def test_node_leases_are_renewed(cluster: TestCluster) -> None:
    """Node liveness: without renewed Leases the node lifecycle controller marks
    every node Unknown after its grace period and every pod on it NotReady."""

    def renew_times() -> dict[str, str]:
        leases = kubectl_json(cluster, "get", "leases", "-n", "kube-node-lease")["items"]
        return {
            lease["metadata"]["name"]: lease["spec"].get("renewTime", "")
            for lease in leases
            if lease["metadata"]["name"].startswith("kwok-node-")
        }

    first = wait_for(
        lambda: (times := renew_times()) and len(times) >= 3 and times,
        timeout=30,
        what="a Lease for each kwok node",
    )
    # kwok renews every quarter of the 40s lease duration.
    wait_for(
        lambda: all(renew_times()[name] > first[name] for name in first),
        timeout=30,
        what="every node Lease renewed",
    )


def test_deployment_rolls_out_to_three_available_replicas(
    cluster: TestCluster, namespace: str
) -> None:
    _apply_deployment(cluster, namespace, replicas=3)

    def available() -> int | None:
        status = kubectl_json(cluster, "get", "deployment", "web", "-n", namespace)["status"]
        return status.get("availableReplicas") if status.get("availableReplicas") == 3 else None

    assert wait_for(available, timeout=90, what="3 available replicas") == 3
    pods = kubectl_json(cluster, "get", "pods", "-n", namespace, "-l", "app=web")["items"]
    assert len(pods) == 3
    assert all(pod["status"]["phase"] == "Running" for pod in pods)
    assert all(pod["spec"]["nodeName"].startswith("kwok-node-") for pod in pods)

    # What the node lifecycle controller does to the pods of a node it lost:
    # like a kubelet that is back, kwok reports the pod Ready again.
    name = pods[0]["metadata"]["name"]
    cluster.kubectl(
        "patch", "pod", name, "-n", namespace, "--subresource=status", "--type=strategic",
        "-p", '{"status":{"conditions":[{"type":"Ready","status":"False"}]}}',
    )  # fmt: skip

    def pod_ready() -> bool:
        pod = kubectl_json(cluster, "get", "pod", name, "-n", namespace)
        return any(
            c["type"] == "Ready" and c["status"] == "True" for c in pod["status"]["conditions"]
        )

    wait_for(pod_ready, timeout=30, what="the pod Ready again")
    assert wait_for(available, timeout=30, what="3 available replicas again") == 3


def test_namespace_deletion_finishes(cluster: TestCluster) -> None:
    cluster.kubectl("create", "namespace", "doomed-ns")
    wait_for(
        lambda: (
            cluster.kubectl("get", "sa", "default", "-n", "doomed-ns", check=False).returncode == 0
        ),
        what="default service account",
    )
    _apply_deployment(cluster, "doomed-ns", replicas=2)
    cluster.kubectl("create", "configmap", "settings", "-n", "doomed-ns", "--from-literal=a=b")
    wait_for(
        lambda: len(kubectl_json(cluster, "get", "pods", "-n", "doomed-ns")["items"]) == 2,
        what="pods to exist",
    )

    cluster.kubectl("delete", "namespace", "doomed-ns", "--wait=false")

    def gone() -> bool:
        result = cluster.kubectl("get", "namespace", "doomed-ns", check=False)
        return result.returncode != 0 and "NotFound" in result.stderr

    assert wait_for(gone, timeout=120, what="namespace doomed-ns to be gone")


def test_deleting_a_deployment_garbage_collects_its_replicasets(
    cluster: TestCluster, namespace: str
) -> None:
    _apply_deployment(cluster, namespace, replicas=1)
    wait_for(
        lambda: kubectl_json(cluster, "get", "replicasets", "-n", namespace)["items"],
        what="a ReplicaSet",
    )

    # Background propagation: the API server removes the Deployment at once and
    # only the garbage collector can remove the ReplicaSet and its Pods.
    cluster.kubectl("delete", "deployment", "web", "-n", namespace, "--cascade=background")

    def collected() -> bool:
        replicasets = kubectl_json(cluster, "get", "replicasets", "-n", namespace)["items"]
        pods = kubectl_json(cluster, "get", "pods", "-n", namespace)["items"]
        return not replicasets and not pods

    assert wait_for(collected, timeout=90, what="ReplicaSets and Pods to be collected")


def test_rbac_is_enforced(cluster: TestCluster, namespace: str) -> None:
    # A service account with no bindings must be refused: RBAC is really on.
    cluster.kubectl("create", "serviceaccount", "nobody", "-n", namespace)
    result = cluster.kubectl(
        "auth",
        "can-i",
        "list",
        "secrets",
        "-n",
        namespace,
        f"--as=system:serviceaccount:{namespace}:nobody",
        check=False,
    )
    assert result.stdout.strip() == "no"
    admin = cluster.kubectl("auth", "can-i", "list", "secrets", "-n", namespace, check=False)
    assert admin.stdout.strip() == "yes"
