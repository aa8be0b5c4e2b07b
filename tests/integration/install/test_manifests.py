"""config/ installs with `kubectl apply --server-side -k`, and the cluster takes every object."""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
import yaml

from tests.support.cluster import TestCluster, kubectl_json, wait_for
from tests.support.install import (
    ALL_IN_ONE_DIR,
    CONFIG_DIR,
    SYSTEM_NAMESPACE,
    built,
    install,
    with_lockdown,
)

pytestmark = pytest.mark.integration

# Deployment -> replicas, and why: source keeps artifacts on its own emptyDir.
REPLICAS = {
    "source-controller": 1,
    "kustomize-controller": 2,
    "helm-controller": 2,
    "notification-controller": 2,
    "image-controller": 1,
}


def live_objects(cluster: TestCluster, objects: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """The cluster's copy of every object in `objects` (kubectl get -f)."""
    text = yaml.safe_dump_all(objects)
    listing = json.loads(cluster.kubectl("get", "-f", "-", "-o", "json", input=text).stdout)
    items: list[dict[str, Any]] = listing.get("items") or [listing]
    return items


def identity(obj: dict[str, Any]) -> tuple[str, str, str]:
    meta = obj["metadata"]
    return obj["kind"], meta.get("namespace") or "", meta["name"]


def pods_of(cluster: TestCluster, selector: dict[str, str]) -> list[dict[str, Any]]:
    label = ",".join(f"{k}={v}" for k, v in sorted(selector.items()))
    listing = kubectl_json(cluster, "get", "pods", "-n", SYSTEM_NAMESPACE, "-l", label)
    return [p for p in listing["items"] if not p["metadata"].get("deletionTimestamp")]


def admitted(cluster: TestCluster, selector: dict[str, str], count: int) -> Callable[[], bool]:
    return lambda: len(pods_of(cluster, selector)) == count


def container(deployment: dict[str, Any]) -> dict[str, Any]:
    [only] = deployment["spec"]["template"]["spec"]["containers"]
    return dict(only)


def env_of(deployment: dict[str, Any]) -> dict[str, str]:
    return {e["name"]: e.get("value", "") for e in container(deployment).get("env") or []}


def test_config_installs_and_every_object_is_accepted(cluster: TestCluster, installed: str) -> None:
    objects = built(cluster, CONFIG_DIR)
    kinds = sorted({o["kind"] for o in objects})
    assert kinds == sorted(
        {
            "ClusterRole",
            "ClusterRoleBinding",
            "CustomResourceDefinition",
            "Deployment",
            "Namespace",
            "NetworkPolicy",
            "Role",
            "RoleBinding",
            "Service",
            "ServiceAccount",
        }
    )
    # Every object built is in the cluster, as written (server-side apply
    # validates each against its schema and refuses unknown fields).
    assert sorted(map(identity, live_objects(cluster, objects))) == sorted(map(identity, objects))
    crds = [o["metadata"]["name"] for o in objects if o["kind"] == "CustomResourceDefinition"]
    assert len(crds) == len(list((CONFIG_DIR.parent / "crds").glob("*.yaml")))

    namespace = kubectl_json(cluster, "get", "namespace", SYSTEM_NAMESPACE)
    assert namespace["metadata"]["labels"]["pod-security.kubernetes.io/enforce"] == "restricted"

    for name, replicas in REPLICAS.items():
        deployment = kubectl_json(cluster, "get", "deployment", name, "-n", SYSTEM_NAMESPACE)
        spec = deployment["spec"]
        assert spec["replicas"] == replicas, name
        pod = spec["template"]["spec"]
        assert pod["serviceAccountName"] == name
        main = container(deployment)
        assert main["image"] == "headwater:dev"
        assert main["args"][:3] == [
            "run",
            name.removesuffix("-controller"),
            "--enable-leader-election",
        ]
        assert main["livenessProbe"]["httpGet"]["path"] == "/healthz"
        assert main["readinessProbe"]["httpGet"]["path"] == "/readyz"
        assert {p["containerPort"] for p in main["ports"]} >= {8080, 9440}
        assert main["resources"]["requests"] and main["resources"]["limits"]
        annotations = spec["template"]["metadata"]["annotations"]
        assert annotations["prometheus.io/scrape"] == "true"
        assert annotations["prometheus.io/port"] == "8080"
        # The restricted profile is enforced by the API server: the pods the
        # ReplicaSets created were admitted (kwok then pretends to run them).
        wait_for(
            admitted(cluster, spec["selector"]["matchLabels"], replicas),
            timeout=60,
            what=f"{replicas} pod(s) of {name} admitted",
        )


def test_the_namespace_refuses_a_pod_that_is_not_restricted(
    cluster: TestCluster, installed: str
) -> None:
    pod = {
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {"name": "privileged", "namespace": SYSTEM_NAMESPACE},
        "spec": {"containers": [{"name": "c", "image": "headwater:dev"}]},
    }
    result = cluster.kubectl(
        "apply", "--dry-run=server", "-f", "-", input=json.dumps(pod), check=False
    )
    assert result.returncode != 0
    assert 'violates PodSecurity "restricted' in result.stderr


def test_services_reach_the_servers_and_only_webhooks_are_open_to_all(
    cluster: TestCluster, installed: str
) -> None:
    def target(service: str) -> tuple[int, str, dict[str, str]]:
        svc = kubectl_json(cluster, "get", "service", service, "-n", SYSTEM_NAMESPACE)["spec"]
        [port] = svc["ports"]
        return port["port"], port["targetPort"], svc["selector"]

    expected = {
        "source-controller": ("artifacts", 9090, "source-controller"),
        "notification-controller": ("events", 9091, "notification-controller"),
        "webhook-receiver": ("webhooks", 9292, "notification-controller"),
    }
    for service, (port_name, number, deployment) in expected.items():
        port, target_port, selector = target(service)
        assert (port, target_port) == (80, port_name)
        [pod] = pods_of(cluster, selector)[:1]
        assert pod["metadata"]["labels"]["app.kubernetes.io/component"] == deployment
        ports = {p["name"]: p["containerPort"] for p in pod["spec"]["containers"][0]["ports"]}
        assert ports[port_name] == number

    policies = {
        p["metadata"]["name"]: p["spec"]
        for p in kubectl_json(cluster, "get", "networkpolicy", "-n", SYSTEM_NAMESPACE)["items"]
    }
    # Inside the namespace everything may talk; from elsewhere only metrics
    # scraping (8080) and the webhooks (9292, from anywhere).
    assert policies["allow-egress"]["ingress"] == [{"from": [{"podSelector": {}}]}]
    opened = sorted(
        port["port"]
        for name in ("allow-scraping", "allow-webhooks")
        for rule in policies[name]["ingress"]
        for port in rule["ports"]
    )
    assert opened == [8080, 9292]
    webhook_sources = policies["allow-webhooks"]["ingress"][0]["from"]
    assert {"ipBlock": {"cidr": "0.0.0.0/0"}} in webhook_sources
    assert policies["allow-webhooks"]["podSelector"] == {
        "matchLabels": {"headwater.io/serves-webhooks": "true"}
    }


def test_the_all_in_one_overlay_runs_every_controller_in_one_pod(
    cluster: TestCluster, installed: str
) -> None:
    install(cluster, ALL_IN_ONE_DIR)
    objects = built(cluster, ALL_IN_ONE_DIR)
    assert sorted(map(identity, live_objects(cluster, objects))) == sorted(map(identity, objects))
    [deployment] = [o for o in objects if o["kind"] == "Deployment"]
    assert deployment["spec"]["replicas"] == 1
    assert container(deployment)["args"][:2] == ["run", "all"]
    labels = deployment["spec"]["template"]["metadata"]["labels"]
    pods = wait_for(
        lambda: pods_of(cluster, deployment["spec"]["selector"]["matchLabels"]),
        what="the all-in-one pod admitted",
    )
    # The one pod backs all three Services.
    for service in ("source-controller", "notification-controller", "webhook-receiver"):
        selector = kubectl_json(cluster, "get", "service", service, "-n", SYSTEM_NAMESPACE)["spec"][
            "selector"
        ]
        assert all(labels.get(k) == v for k, v in selector.items()), service
    assert pods[0]["spec"]["serviceAccountName"] == "headwater"
    binding = kubectl_json(cluster, "get", "clusterrolebinding", "headwater")
    assert binding["roleRef"]["name"] == "cluster-admin"
    cluster.kubectl("delete", "deployment", "headwater", "-n", SYSTEM_NAMESPACE)


def test_the_lockdown_component_configures_only_the_applying_controllers(
    cluster: TestCluster, installed: str, tmp_path: Path
) -> None:
    locked = with_lockdown(tmp_path / "platform")
    install(cluster, locked)
    lockdown = {"HEADWATER_DEFAULT_SERVICE_ACCOUNT": "default"}
    lockdown["HEADWATER_NO_CROSS_NAMESPACE_REFS"] = "true"
    lockdown["HEADWATER_NO_REMOTE_BASES"] = "true"
    try:
        for name in REPLICAS:
            live = kubectl_json(cluster, "get", "deployment", name, "-n", SYSTEM_NAMESPACE)
            env = env_of(live)
            has = {k: env.get(k) for k in lockdown}
            if name in ("kustomize-controller", "helm-controller"):
                assert has == lockdown, name
            else:
                assert set(has.values()) == {None}, name
        # The same component on the all-in-one overlay locks its one process down.
        [single] = [
            o
            for o in built(cluster, with_lockdown(tmp_path / "single", ALL_IN_ONE_DIR))
            if o["kind"] == "Deployment"
        ]
        assert {k: env_of(single).get(k) for k in lockdown} == lockdown
    finally:
        install(cluster)  # back to the default install for the other tests


def test_the_dashboard_runs_restricted_behind_its_service_and_may_only_impersonate_users(
    cluster: TestCluster, installed: str
) -> None:
    deployment = kubectl_json(cluster, "get", "deployment", "dashboard", "-n", SYSTEM_NAMESPACE)
    main = container(deployment)
    assert main["args"][0] == "dashboard"
    assert "--user-header=X-Forwarded-User" in main["args"]
    wait_for(
        admitted(cluster, deployment["spec"]["selector"]["matchLabels"], 1),
        timeout=60,
        what="the dashboard pod admitted",
    )
    service = kubectl_json(cluster, "get", "service", "dashboard", "-n", SYSTEM_NAMESPACE)["spec"]
    [pod] = pods_of(cluster, service["selector"])
    assert pod["metadata"]["labels"]["app.kubernetes.io/component"] == "dashboard"
    # Not 8080: the namespace's policies open that port to every namespace (metrics).
    assert {p["containerPort"] for p in pod["spec"]["containers"][0]["ports"]} == {9400}

    account = f"system:serviceaccount:{SYSTEM_NAMESPACE}:dashboard"

    def can(*args: str, who: str = account) -> bool:
        result = cluster.kubectl("auth", "can-i", *args, f"--as={who}", check=False)
        return result.stdout.strip() == "yes"

    assert can("impersonate", "users")
    assert not can("impersonate", "groups")
    assert not can("impersonate", "serviceaccounts", "-n", SYSTEM_NAMESPACE)
    assert can("watch", "kustomizations.kustomize.toolkit.fluxcd.io", "-A")
    assert not can("patch", "kustomizations.kustomize.toolkit.fluxcd.io", "-A")
    assert not can("get", "secrets", "-A")

    # Flux's kinds are in the built-in view and edit roles, as flux-view / flux-edit do.
    cluster.kubectl("create", "namespace", "dashboard-roles", check=False)
    cluster.kubectl(
        "create",
        "rolebinding",
        "viewer",
        "--clusterrole=view",
        "--user=viewer",
        "-n",
        "dashboard-roles",
        check=False,
    )
    cluster.kubectl(
        "create",
        "rolebinding",
        "editor",
        "--clusterrole=edit",
        "--user=editor",
        "-n",
        "dashboard-roles",
        check=False,
    )
    ks = "kustomizations.kustomize.toolkit.fluxcd.io"
    assert wait_for(
        lambda: can("list", ks, "-n", "dashboard-roles", who="viewer"),
        timeout=30,
        what="view aggregated the Flux kinds",
    )
    assert not can("patch", ks, "-n", "dashboard-roles", who="viewer")
    assert wait_for(
        lambda: can(
            "patch", "helmreleases.helm.toolkit.fluxcd.io", "-n", "dashboard-roles", who="editor"
        ),
        timeout=30,
        what="edit aggregated the Flux kinds",
    )
