"""The server-side apply engine against the real control plane."""

from __future__ import annotations

import copy
import json
import secrets
from collections.abc import Iterator
from typing import Any

import pytest

from controllers.toolkit.apply.ignore import IgnoreRule, Selector, parse_pointer
from controllers.toolkit.apply.inventory import ObjectId
from controllers.toolkit.apply.resources import ResourceClient
from controllers.toolkit.apply.ssa import Action, ApplyError, ApplyOptions, ChangeSet, apply_all
from tests.integration.toolkit.conftest import FIELD_MANAGER, GROUP, limited_client, options
from tests.support.builders import (
    configmap,
    custom_resource_definition,
    deployment,
    job,
    secret,
    service,
)
from tests.support.cluster import TestCluster, kubectl_json

pytestmark = pytest.mark.integration

WRITES = ("apply", "patch", "delete")


def actions(changeset: ChangeSet) -> dict[str, str]:
    return {entry.subject: str(entry.action) for entry in changeset}


def live(cluster: TestCluster, kind: str, name: str, namespace: str) -> dict[str, Any]:
    return kubectl_json(cluster, "get", kind, name, "-n", namespace, "--show-managed-fields")


def app(namespace: str) -> list[dict[str, Any]]:
    return [
        configmap(namespace, "settings", {"mode": "blue"}),
        secret(namespace, "creds", {"password": "hunter2"}, string=True),
        service(namespace, "web", port={"port": 80, "targetPort": 80}),
        deployment(namespace, "web", image="nginx:1", ports=(80,)),
    ]


async def test_first_apply_creates_and_a_second_is_a_no_op(
    resources: ResourceClient, cluster: TestCluster, namespace: str
) -> None:
    created = await apply_all(resources, app(namespace), options())
    assert actions(created) == {
        f"ConfigMap/{namespace}/settings": "created",
        f"Secret/{namespace}/creds": "created",
        f"Service/{namespace}/web": "created",
        f"Deployment/{namespace}/web": "created",
    }
    # Flux's reconcile order: ConfigMap, Secret, Service, Deployment.
    assert [e.id.kind for e in created] == ["ConfigMap", "Secret", "Service", "Deployment"]
    web = live(cluster, "deployment", "web", namespace)
    assert web["metadata"]["labels"] == {
        f"{GROUP}/name": "app",
        f"{GROUP}/namespace": "flux-system",
    }
    assert [m["manager"] for m in web["metadata"]["managedFields"]].count(FIELD_MANAGER) == 1
    assert live(cluster, "service", "web", namespace)["spec"]["ports"][0]["protocol"] == "TCP"

    versions = {
        kind: live(cluster, kind, name, namespace)["metadata"]["resourceVersion"]
        for kind, name in [("configmap", "settings"), ("secret", "creds"), ("service", "web")]
    }
    before = resources.counter.snapshot()
    again = await apply_all(resources, app(namespace), options())
    made = resources.counter.since(before)
    assert set(actions(again).values()) == {"unchanged"}
    assert not any(made.get(verb) for verb in WRITES), made
    for kind, name in [("configmap", "settings"), ("secret", "creds"), ("service", "web")]:
        assert live(cluster, kind, name, namespace)["metadata"]["resourceVersion"] == versions[kind]
    assert again.to_inventory().to_status()["entries"] == [
        {"id": f"{namespace}_settings__ConfigMap", "v": "v1"},
        {"id": f"{namespace}_creds__Secret", "v": "v1"},
        {"id": f"{namespace}_web__Service", "v": "v1"},
        {"id": f"{namespace}_web_apps_Deployment", "v": "v1"},
    ]


async def test_a_change_is_configured_with_its_fields(
    resources: ResourceClient, cluster: TestCluster, namespace: str
) -> None:
    await apply_all(resources, app(namespace), options())
    changed = app(namespace)
    changed[0]["data"] = {"mode": "green", "extra": "1"}
    changed[3]["spec"]["replicas"] = 2
    changed[3]["spec"]["template"]["spec"]["containers"][0]["image"] = "nginx:2"
    result = await apply_all(resources, changed, options())
    assert actions(result) == {
        f"ConfigMap/{namespace}/settings": "configured",
        f"Secret/{namespace}/creds": "unchanged",
        f"Service/{namespace}/web": "unchanged",
        f"Deployment/{namespace}/web": "configured",
    }
    settings = result.get(ObjectId("", "ConfigMap", namespace, "settings"))
    assert settings is not None
    assert [str(c) for c in settings.changes] == [
        'data.extra: (none) → "1"',
        'data.mode: "blue" → "green"',
    ]
    web = result.get(ObjectId("apps", "Deployment", namespace, "web"))
    assert web is not None
    assert [str(c) for c in web.changes] == [
        "spec.replicas: 1 → 2",
        'spec.template.spec.containers[name=app].image: "nginx:1" → "nginx:2"',
    ]
    assert live(cluster, "deployment", "web", namespace)["spec"]["replicas"] == 2


async def test_a_secret_change_never_shows_its_value(
    resources: ResourceClient, namespace: str
) -> None:
    await apply_all(
        resources, [secret(namespace, "creds", {"password": "hunter2"}, string=True)], options()
    )
    result = await apply_all(
        resources,
        [secret(namespace, "creds", {"password": "correct-horse", "user": "admin"}, string=True)],
        options(),
    )
    text = result.describe()
    assert text == (
        f"Secret/{namespace}/creds configured\n"
        "  data.password: (sensitive) → (sensitive)\n"
        "  data.user: (none) → (sensitive)"
    )
    for value in ("hunter2", "correct-horse", "admin", "aHVudGVyMg", "Y29ycmVjd"):
        assert value not in text


async def test_drift_made_outside_is_detected_and_reverted(
    resources: ResourceClient, cluster: TestCluster, namespace: str
) -> None:
    await apply_all(resources, app(namespace), options())
    cluster.kubectl("scale", "deployment/web", "--replicas=3", "-n", namespace)
    cluster.kubectl(
        "patch", "configmap", "settings", "-n", namespace, "-p", '{"data":{"mode":"red"}}'
    )
    result = await apply_all(resources, app(namespace), options())
    settings = result.get(ObjectId("", "ConfigMap", namespace, "settings"))
    web = result.get(ObjectId("apps", "Deployment", namespace, "web"))
    assert settings is not None and web is not None
    assert settings.action is Action.CONFIGURED
    assert [str(c) for c in settings.changes] == ['data.mode: "red" → "blue"']
    assert web.action is Action.CONFIGURED
    assert [str(c) for c in web.changes] == ["spec.replicas: 3 → 1"]
    assert live(cluster, "configmap", "settings", namespace)["data"] == {"mode": "blue"}
    assert live(cluster, "deployment", "web", namespace)["spec"]["replicas"] == 1


async def test_ignored_paths_are_neither_drift_nor_applied(
    resources: ResourceClient, cluster: TestCluster, namespace: str
) -> None:
    rules = (
        IgnoreRule((parse_pointer("/spec/replicas"),), Selector.parse(kind="Deployment")),
        IgnoreRule((parse_pointer("/data/mode"),), Selector.parse(name="other")),
    )
    await apply_all(resources, app(namespace), options(ignore=rules))
    # Created with the manifest's value.
    assert live(cluster, "deployment", "web", namespace)["spec"]["replicas"] == 1
    cluster.kubectl("scale", "deployment/web", "--replicas=3", "-n", namespace)
    # Not selected: the ConfigMap's drift is still corrected.
    cluster.kubectl(
        "patch", "configmap", "settings", "-n", namespace, "-p", '{"data":{"mode":"red"}}'
    )
    result = await apply_all(resources, app(namespace), options(ignore=rules))
    assert actions(result)[f"Deployment/{namespace}/web"] == "unchanged"
    assert actions(result)[f"ConfigMap/{namespace}/settings"] == "configured"
    assert live(cluster, "deployment", "web", namespace)["spec"]["replicas"] == 3
    # A kubectl patch (a field manager whose fields are otherwise taken over)
    # of only the ignored field is not taken over either.
    cluster.kubectl(
        "patch", "deployment", "web", "-n", namespace, "-p", '{"spec":{"replicas":4}}'
    )  # fmt: skip
    result = await apply_all(resources, app(namespace), options(ignore=rules))
    assert actions(result)[f"Deployment/{namespace}/web"] == "unchanged"
    assert live(cluster, "deployment", "web", namespace)["spec"]["replicas"] == 4

    # Another field of the same object still applies, and the ignored one stays.
    objects = app(namespace)
    objects[3] = deployment(namespace, "web", image="nginx:2", ports=(80,))
    result = await apply_all(resources, objects, options(ignore=rules))
    web = result.get(ObjectId("apps", "Deployment", namespace, "web"))
    assert web is not None and web.action is Action.CONFIGURED
    assert [str(c) for c in web.changes] == [
        'spec.template.spec.containers[name=app].image: "nginx:1" → "nginx:2"'
    ]
    deployed = live(cluster, "deployment", "web", namespace)["spec"]
    assert deployed["replicas"] == 4
    assert deployed["template"]["spec"]["containers"][0]["image"] == "nginx:2"


async def test_fields_added_with_kubectl_are_taken_over_and_removed(
    resources: ResourceClient, cluster: TestCluster, namespace: str
) -> None:
    # Created with client-side `kubectl apply`, with a field git does not have.
    first = configmap(namespace, "legacy", {"a": "1", "kubectl-only": "x"})
    merged_one = configmap(
        namespace,
        "kept",
        {"a": "1", "kubectl-only": "x"},
        metadata={"annotations": {f"{GROUP}/ssa": "Merge"}},
    )
    cluster.kubectl(
        "apply",
        "-f",
        "-",
        input=json.dumps({"kind": "List", "apiVersion": "v1", "items": [first, merged_one]}),
    )
    desired = [
        configmap(namespace, "legacy", {"a": "1"}),
        configmap(
            namespace, "kept", {"a": "1"}, metadata={"annotations": {f"{GROUP}/ssa": "Merge"}}
        ),
    ]
    result = await apply_all(resources, desired, options())
    legacy = result.get(ObjectId("", "ConfigMap", namespace, "legacy"))
    assert legacy is not None and legacy.action is Action.CONFIGURED
    assert "took over fields from kubectl-client-side-apply" in legacy.note
    assert 'data.kubectl-only: "x" → (none)' in [str(c) for c in legacy.changes]
    legacy_live = live(cluster, "configmap", "legacy", namespace)
    assert legacy_live["data"] == {"a": "1"}
    assert "kubectl.kubernetes.io/last-applied-configuration" not in (
        legacy_live["metadata"].get("annotations") or {}
    )
    managers = {m["manager"] for m in legacy_live["metadata"]["managedFields"]}
    assert managers == {FIELD_MANAGER}
    # Merge keeps what other managers own.
    assert live(cluster, "configmap", "kept", namespace)["data"] == {"a": "1", "kubectl-only": "x"}
    again = await apply_all(resources, desired, options())
    assert set(actions(again).values()) == {"unchanged"}


@pytest.fixture
def crd_group(cluster: TestCluster) -> Iterator[str]:
    group = f"t{secrets.token_hex(4)}.example.com"
    yield group
    cluster.kubectl("delete", "crd", f"widgets.{group}", "--wait=false", check=False)


def widget_crd(group: str) -> dict[str, Any]:
    return custom_resource_definition(
        group, "Widget", spec_schema={"type": "object", "properties": {"size": {"type": "integer"}}}
    )


def widget(group: str, namespace: str, size: int = 1) -> dict[str, Any]:
    return {
        "apiVersion": f"{group}/v1",
        "kind": "Widget",
        "metadata": {"name": "w", "namespace": namespace},
        "spec": {"size": size},
    }


async def test_a_crd_and_its_custom_resource_apply_together(
    resources: ResourceClient, cluster: TestCluster, namespace: str, crd_group: str
) -> None:
    # The custom resource comes first in the input; staging must still work.
    objects = [widget(crd_group, namespace), widget_crd(crd_group)]
    result = await apply_all(resources, objects, options())
    assert actions(result) == {
        f"CustomResourceDefinition/widgets.{crd_group}": "created",
        f"Widget/{namespace}/w": "created",
    }
    assert live(cluster, f"widgets.{crd_group}", "w", namespace)["spec"] == {"size": 1}
    again = await apply_all(
        resources, [widget(crd_group, namespace, 2), widget_crd(crd_group)], options()
    )
    assert actions(again) == {
        f"CustomResourceDefinition/widgets.{crd_group}": "unchanged",
        f"Widget/{namespace}/w": "configured",
    }


async def test_a_new_namespace_and_its_objects_apply_together(
    resources: ResourceClient, cluster: TestCluster
) -> None:
    name = f"ssa-ns-{secrets.token_hex(3)}"
    objects = [
        configmap(name, "c", {"a": "1"}),
        {"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": name}},
    ]
    try:
        result = await apply_all(resources, objects, options())
        assert actions(result) == {f"Namespace/{name}": "created", f"ConfigMap/{name}/c": "created"}
    finally:
        cluster.kubectl("delete", "namespace", name, "--wait=false", check=False)


async def test_a_rejected_object_fails_naming_object_and_field_and_nothing_is_lost(
    resources: ResourceClient, cluster: TestCluster, namespace: str
) -> None:
    await apply_all(resources, app(namespace), options())
    bad = app(namespace)
    bad[0]["data"] = {"mode": "green"}
    bad[3]["spec"]["replicas"] = -1
    with pytest.raises(ApplyError) as caught:
        await apply_all(resources, bad, options())
    message = str(caught.value)
    assert message == (
        f"Deployment/{namespace}/web dry-run failed (Invalid): "
        "spec.replicas: Invalid value: -1: must be greater than or equal to 0"
    )
    assert caught.value.failures[0].fields == ("spec.replicas",)
    # Nothing of the stage was written: the ConfigMap kept its old data.
    assert live(cluster, "configmap", "settings", namespace)["data"] == {"mode": "blue"}
    assert live(cluster, "deployment", "web", namespace)["spec"]["replicas"] == 1


async def test_an_unknown_field_is_refused_by_name(
    resources: ResourceClient, namespace: str
) -> None:
    bad = deployment(namespace, "web", image="nginx:1", ports=(80,))
    bad["spec"]["replica"] = 3
    with pytest.raises(
        ApplyError,
        match=r"Deployment/\S+/web dry-run failed: "
        r"\.spec\.replica: field not declared in schema",
    ):
        await apply_all(resources, [bad], options())


async def test_bad_input_is_refused_before_anything_is_written(
    resources: ResourceClient, cluster: TestCluster, namespace: str
) -> None:
    objects = [
        configmap(namespace, "would-be-created", {"a": "1"}),
        {
            "apiVersion": "example.com/v1",
            "kind": "Gadget",
            "metadata": {"name": "g", "namespace": namespace},
        },
        {"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "no-namespace"}},
        {"apiVersion": "v1", "kind": "ConfigMap", "metadata": {}},
        configmap(namespace, "would-be-created", {"a": "2"}),
    ]
    with pytest.raises(ApplyError) as caught:
        await apply_all(resources, objects, options())
    assert str(caught.value).splitlines() == [
        f'Gadget/{namespace}/g apply failed: no matches for kind "Gadget" in version '
        '"example.com/v1": the API version is not served',
        "ConfigMap/no-namespace namespace not specified",
        "object #4 (ConfigMap): metadata.name is required",
        f"ConfigMap/{namespace}/would-be-created appears twice (objects #1 and #5)",
    ]
    missing = cluster.kubectl("get", "configmap", "would-be-created", "-n", namespace, check=False)
    assert missing.returncode != 0


async def test_cluster_scoped_objects_ignore_a_namespace(
    resources: ResourceClient, cluster: TestCluster, namespace: str
) -> None:
    name = f"ssa-{namespace}"
    role = {
        "apiVersion": "rbac.authorization.k8s.io/v1",
        "kind": "ClusterRole",
        "metadata": {"name": name, "namespace": namespace},
        "rules": [{"apiGroups": [""], "resources": ["configmaps"], "verbs": ["get"]}],
    }
    try:
        result = await apply_all(resources, [role], options())
        assert [e.id.format() for e in result] == [f"_{name}_rbac.authorization.k8s.io_ClusterRole"]
    finally:
        cluster.kubectl("delete", "clusterrole", name, check=False)


async def test_immutable_change_fails_without_force_and_is_recreated_with_it(
    resources: ResourceClient, cluster: TestCluster, namespace: str
) -> None:
    await apply_all(
        resources, [deployment(namespace, "web", image="nginx:1", ports=(80,))], options()
    )
    uid = live(cluster, "deployment", "web", namespace)["metadata"]["uid"]
    moved = deployment(namespace, "web", image="nginx:1", ports=(80,))
    moved["spec"]["selector"]["matchLabels"]["tier"] = "front"
    moved["spec"]["template"]["metadata"]["labels"]["tier"] = "front"
    with pytest.raises(ApplyError) as caught:
        await apply_all(resources, [moved], options())
    message = str(caught.value)
    assert message.startswith(f"Deployment/{namespace}/web dry-run failed (Invalid): spec.selector")
    assert "field is immutable" in message
    assert f"{GROUP}/force: enabled" in message
    assert live(cluster, "deployment", "web", namespace)["metadata"]["uid"] == uid

    result = await apply_all(resources, [moved], options(force=True, wait_interval=0.2))
    (entry,) = result.entries
    assert entry.action is Action.CREATED
    assert entry.note == "recreated: spec.selector changed"
    recreated = live(cluster, "deployment", "web", namespace)
    assert recreated["metadata"]["uid"] != uid
    assert recreated["spec"]["selector"]["matchLabels"] == {"app": "web", "tier": "front"}


async def test_force_annotation_recreates_one_object(
    resources: ResourceClient, cluster: TestCluster, namespace: str
) -> None:
    force = {"annotations": {f"{GROUP}/force": "enabled"}}
    await apply_all(resources, [job(namespace, "once", "busybox:1", metadata=force)], options())
    uid = live(cluster, "job", "once", namespace)["metadata"]["uid"]
    result = await apply_all(
        resources, [job(namespace, "once", "busybox:2", metadata=force)], options(wait_interval=0.2)
    )
    assert result.entries[0].action is Action.CREATED
    assert result.entries[0].note == "recreated: spec.template changed"
    after = live(cluster, "job", "once", namespace)
    assert after["metadata"]["uid"] != uid
    assert after["spec"]["template"]["spec"]["containers"][0]["image"] == "busybox:2"


async def test_ssa_annotations(
    resources: ResourceClient, cluster: TestCluster, namespace: str
) -> None:
    ssa = f"{GROUP}/ssa"
    objects = [
        configmap(namespace, "once", {"v": "1"}, metadata={"annotations": {ssa: "IfNotPresent"}}),
        configmap(namespace, "ignored", {"v": "1"}, metadata={"annotations": {ssa: "Ignore"}}),
        configmap(namespace, "paused", {"v": "1"}),
        configmap(namespace, "normal", {"v": "1"}),
    ]
    first = await apply_all(resources, objects, options())
    assert actions(first) == {
        f"ConfigMap/{namespace}/once": "created",
        f"ConfigMap/{namespace}/ignored": "skipped",
        f"ConfigMap/{namespace}/paused": "created",
        f"ConfigMap/{namespace}/normal": "created",
    }
    assert cluster.kubectl("get", "cm", "ignored", "-n", namespace, check=False).returncode != 0
    cluster.kubectl("annotate", "cm", "paused", "-n", namespace, f"{GROUP}/reconcile=disabled")
    changed = copy.deepcopy(objects)
    for obj in changed:
        obj["data"] = {"v": "2"}
    second = await apply_all(resources, changed, options())
    assert actions(second) == {
        f"ConfigMap/{namespace}/once": "skipped",
        f"ConfigMap/{namespace}/ignored": "skipped",
        f"ConfigMap/{namespace}/paused": "skipped",
        f"ConfigMap/{namespace}/normal": "configured",
    }
    assert live(cluster, "cm", "once", namespace)["data"] == {"v": "1"}
    assert live(cluster, "cm", "paused", namespace)["data"] == {"v": "1"}
    assert live(cluster, "cm", "normal", namespace)["data"] == {"v": "2"}
    # Skipped objects stay in the inventory, as in Flux.
    assert len(second.to_inventory()) == 4


async def test_dry_run_plans_without_writing(
    resources: ResourceClient, cluster: TestCluster, namespace: str
) -> None:
    await apply_all(resources, [configmap(namespace, "c", {"a": "1"})], options())
    before = resources.counter.snapshot()
    plan = await apply_all(
        resources,
        [configmap(namespace, "c", {"a": "2"}), configmap(namespace, "new", {"a": "1"})],
        options(dry_run=True),
    )
    assert not any(resources.counter.since(before).get(verb) for verb in WRITES)
    assert actions(plan) == {
        f"ConfigMap/{namespace}/c": "configured",
        f"ConfigMap/{namespace}/new": "created",
    }
    assert live(cluster, "cm", "c", namespace)["data"] == {"a": "1"}


async def test_a_no_op_apply_costs_one_request_per_object(
    resources: ResourceClient, namespace: str
) -> None:
    count = 60
    objects = [configmap(namespace, f"c{i}", {"i": str(i)}) for i in range(count)]
    objects += [
        service(namespace, f"s{i}", port={"port": 80, "targetPort": 80}) for i in range(count // 2)
    ]
    await apply_all(resources, objects, options())
    before = resources.counter.snapshot()
    result = await apply_all(resources, objects, options())
    made = resources.counter.since(before)
    assert set(actions(result).values()) == {"unchanged"}
    # One dry-run per object, one LIST per kind and namespace, nothing else.
    assert made == {"apply-dry-run": len(objects), "list": 2}


async def test_without_owner_labels_objects_are_read_one_by_one(
    resources: ResourceClient, namespace: str
) -> None:
    objects = [configmap(namespace, f"c{i}", {"i": str(i)}) for i in range(5)]
    bare = ApplyOptions(field_manager=FIELD_MANAGER, owner_group=GROUP)
    assert set(actions(await apply_all(resources, objects, bare)).values()) == {"created"}
    before = resources.counter.snapshot()
    again = await apply_all(resources, objects, bare)
    assert set(actions(again).values()) == {"unchanged"}
    assert resources.counter.since(before) == {"apply-dry-run": 5, "get": 5}


async def test_an_identity_that_may_not_list_still_applies(
    cluster: TestCluster, namespace: str
) -> None:
    with limited_client(cluster, namespace, "applier", "get,create,patch", "configmaps") as limited:
        objects = [configmap(namespace, "c", {"a": "1"})]
        assert actions(await apply_all(limited, objects, options())) == {
            f"ConfigMap/{namespace}/c": "created"
        }
        before = limited.counter.snapshot()
        again = await apply_all(limited, objects, options())
        assert actions(again) == {f"ConfigMap/{namespace}/c": "unchanged"}
        # The LIST is refused, so the object is read with a GET instead.
        assert limited.counter.since(before) == {"list": 1, "apply-dry-run": 1, "get": 1}
