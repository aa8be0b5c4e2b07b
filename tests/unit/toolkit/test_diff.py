from __future__ import annotations

import copy
from typing import Any

from controllers.toolkit.apply.diff import (
    SENSITIVE,
    FieldChange,
    field_changes,
    format_path,
    has_drifted,
)


def deployment(**spec: Any) -> dict[str, Any]:
    return {
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "metadata": {
            "name": "web",
            "namespace": "default",
            "labels": {"app": "web"},
            "resourceVersion": "10",
            "generation": 2,
            "uid": "u1",
            "managedFields": [{"manager": "x"}],
        },
        "spec": {
            "replicas": 1,
            "template": {
                "spec": {
                    "containers": [
                        {"name": "app", "image": "nginx:1"},
                        {"name": "sidecar", "image": "envoy:1"},
                    ]
                }
            },
            **spec,
        },
        "status": {"replicas": 1},
    }


def strings(changes: list[FieldChange]) -> list[str]:
    return [str(c) for c in changes]


def test_server_managed_metadata_and_status_are_not_drift() -> None:
    live = deployment()
    merged = copy.deepcopy(live)
    merged["metadata"].update(resourceVersion="11", generation=3, managedFields=[], uid="u2")
    merged["status"] = {"replicas": 5}
    assert not has_drifted(live, merged)
    assert field_changes(live, merged) == []


def test_spec_labels_and_annotations_are_drift() -> None:
    live = deployment()
    merged = deployment(replicas=3)
    assert has_drifted(live, merged)
    labelled = deployment()
    labelled["metadata"]["labels"]["tier"] = "front"
    assert has_drifted(live, labelled)
    annotated = deployment()
    annotated["metadata"]["annotations"] = {"a": "b"}
    assert has_drifted(live, annotated)


def test_scalar_change_gives_path_old_and_new() -> None:
    assert strings(field_changes(deployment(), deployment(replicas=3))) == ["spec.replicas: 1 → 3"]


def test_named_list_items_are_matched_by_name() -> None:
    merged = deployment()
    merged["spec"]["template"]["spec"]["containers"][1]["image"] = "envoy:2"
    assert strings(field_changes(deployment(), merged)) == [
        'spec.template.spec.containers[name=sidecar].image: "envoy:1" → "envoy:2"'
    ]


def test_added_and_removed_items_and_fields() -> None:
    merged = deployment(paused=True)
    containers = merged["spec"]["template"]["spec"]["containers"]
    containers.pop(1)
    containers.append({"name": "log", "image": "fluent"})
    assert strings(field_changes(deployment(), merged)) == [
        "spec.paused: (none) → true",
        "spec.template.spec.containers[name=sidecar]: "
        '{"image":"envoy:1","name":"sidecar"} → (none)',
        'spec.template.spec.containers[name=log]: (none) → {"image":"fluent","name":"log"}',
    ]


def test_reordered_named_list_is_reported_as_a_whole() -> None:
    merged = deployment()
    merged["spec"]["template"]["spec"]["containers"].reverse()
    assert strings(field_changes(deployment(), merged)) == [
        'spec.template.spec.containers: ["app","sidecar"] → ["sidecar","app"]'
    ]


def test_unnamed_lists_are_compared_by_index() -> None:
    live = {"apiVersion": "v1", "kind": "X", "spec": {"args": ["a", "b"]}}
    merged = {"apiVersion": "v1", "kind": "X", "spec": {"args": ["a", "c", "d"]}}
    assert strings(field_changes(live, merged)) == [
        'spec.args[1]: "b" → "c"',
        'spec.args[2]: (none) → "d"',
    ]


def test_keys_with_dots_or_slashes_are_quoted() -> None:
    assert format_path(["metadata", "labels", "app.kubernetes.io/name"]) == (
        'metadata.labels["app.kubernetes.io/name"]'
    )
    assert format_path(["spec", "ports", 0, "port"]) == "spec.ports[0].port"


def test_long_values_are_shortened() -> None:
    live = {"apiVersion": "v1", "kind": "ConfigMap", "data": {"big": "x" * 1000}}
    merged = {"apiVersion": "v1", "kind": "ConfigMap", "data": {"big": "y" * 1000}}
    (change,) = field_changes(live, merged)
    assert len(change.old) <= 120 and change.old.endswith("…")


def test_many_changes_are_capped_with_a_count() -> None:
    live = {"apiVersion": "v1", "kind": "ConfigMap", "data": {f"k{i}": "a" for i in range(80)}}
    merged = {"apiVersion": "v1", "kind": "ConfigMap", "data": {f"k{i}": "b" for i in range(80)}}
    changes = field_changes(live, merged, limit=10)
    assert len(changes) == 11
    assert str(changes[-1]) == "…: 70 more changes → not shown"


def secret(data: dict[str, str] | None, **extra: Any) -> dict[str, Any]:
    obj: dict[str, Any] = {
        "apiVersion": "v1",
        "kind": "Secret",
        "metadata": {"name": "db", "namespace": "default"},
        **extra,
    }
    if data is not None:
        obj["data"] = data
    return obj


def test_secret_values_are_never_shown() -> None:
    live = secret({"password": "aHVudGVyMg==", "user": "YWRtaW4="})
    merged = secret({"password": "c2VjcmV0", "token": "dG9r"}, stringData={"extra": "plain"})
    text = "\n".join(strings(field_changes(live, merged)))
    assert "aHVudGVy" not in text and "c2VjcmV0" not in text
    assert "YWRtaW4=" not in text and "dG9r" not in text and "plain" not in text
    assert strings(field_changes(live, merged)) == [
        f"data.password: {SENSITIVE} → {SENSITIVE}",
        f"data.token: (none) → {SENSITIVE}",
        f"data.user: {SENSITIVE} → (none)",
        f'stringData: (none) → {{"extra":"{SENSITIVE}"}}',
    ]


def test_secret_data_added_whole_is_masked_but_keys_shown() -> None:
    changes = field_changes(secret(None), secret({"password": "c2VjcmV0"}))
    assert strings(changes) == [f'data: (none) → {{"password":"{SENSITIVE}"}}']


def test_last_applied_annotation_of_a_secret_is_masked() -> None:
    annotation = "kubectl.kubernetes.io/last-applied-configuration"
    live = secret({"a": "Yg=="})
    live["metadata"]["annotations"] = {annotation: '{"data":{"a":"Yg=="}}', "keep": "1"}
    merged = secret({"a": "Yg=="})
    merged["metadata"]["annotations"] = {"keep": "1"}
    text = "\n".join(strings(field_changes(live, merged)))
    assert "Yg==" not in text
    assert f'metadata.annotations["{annotation}"]: {SENSITIVE} → (none)' in text


def test_configmap_values_are_shown() -> None:
    live = {"apiVersion": "v1", "kind": "ConfigMap", "data": {"a": "1"}}
    merged = {"apiVersion": "v1", "kind": "ConfigMap", "data": {"a": "2"}}
    assert strings(field_changes(live, merged)) == ['data.a: "1" → "2"']
