from __future__ import annotations

import base64
import datetime
from typing import Any

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

from controllers.toolkit.apply.diff import FieldChange
from controllers.toolkit.apply.inventory import ObjectId
from controllers.toolkit.apply.resources import ApiError, Cause, NoMatchError
from controllers.toolkit.apply.ssa import (
    Action,
    ApplyError,
    ChangeSet,
    ChangeSetEntry,
    ManagerMatch,
    ObjectFailure,
    default_takeover,
    describe_error,
    is_immutable_error,
    label_selector,
    marked,
    merge_fields,
    normalize,
    owner_labels,
    stage_of,
    takeover_patch,
    without_fields,
)

OWNER = owner_labels("kustomize.toolkit.fluxcd.io", "app", "flux-system")


def test_owner_labels_and_selector() -> None:
    assert OWNER == {
        "kustomize.toolkit.fluxcd.io/name": "app",
        "kustomize.toolkit.fluxcd.io/namespace": "flux-system",
    }
    assert label_selector(OWNER) == (
        "kustomize.toolkit.fluxcd.io/name=app,kustomize.toolkit.fluxcd.io/namespace=flux-system"
    )


def test_normalize_adds_owner_labels_and_drops_server_fields() -> None:
    raw = {
        "apiVersion": "v1",
        "kind": "ConfigMap",
        "metadata": {
            "name": "c",
            "namespace": "ns",
            "labels": {"app": "x"},
            "creationTimestamp": None,
            "resourceVersion": "5",
            "uid": "u",
            "managedFields": [],
        },
        "data": {"a": "b"},
        "status": {"x": 1},
    }
    out = normalize(raw, OWNER)
    assert out == {
        "apiVersion": "v1",
        "kind": "ConfigMap",
        "metadata": {"name": "c", "namespace": "ns", "labels": {"app": "x", **OWNER}},
        "data": {"a": "b"},
    }
    assert raw["metadata"]["labels"] == {"app": "x"}, "the input is not modified"


def test_normalize_defaults_port_protocols() -> None:
    deployment = {
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "metadata": {"name": "d"},
        "spec": {
            "template": {
                "spec": {
                    "containers": [{"name": "a", "ports": [{"containerPort": 80}]}],
                    "initContainers": [
                        {"name": "i", "ports": [{"containerPort": 53, "protocol": "UDP"}]}
                    ],
                }
            }
        },
    }
    pod = normalize(deployment)["spec"]["template"]["spec"]
    assert pod["containers"][0]["ports"] == [{"containerPort": 80, "protocol": "TCP"}]
    assert pod["initContainers"][0]["ports"] == [{"containerPort": 53, "protocol": "UDP"}]
    cronjob = {
        "apiVersion": "batch/v1",
        "kind": "CronJob",
        "metadata": {"name": "c"},
        "spec": {
            "jobTemplate": {
                "spec": {"template": {"spec": {"containers": [{"ports": [{"containerPort": 1}]}]}}}
            }
        },
    }
    job_pod = normalize(cronjob)["spec"]["jobTemplate"]["spec"]["template"]["spec"]
    assert job_pod["containers"][0]["ports"][0]["protocol"] == "TCP"
    service = {
        "apiVersion": "v1",
        "kind": "Service",
        "metadata": {"name": "s"},
        "spec": {"ports": [{"port": 80}]},
    }
    assert normalize(service)["spec"]["ports"] == [{"port": 80, "protocol": "TCP"}]


def test_normalize_folds_secret_string_data_into_data() -> None:
    secret = {
        "apiVersion": "v1",
        "kind": "Secret",
        "metadata": {"name": "s"},
        "data": {"a": base64.b64encode(b"1").decode()},
        "stringData": {"b": "two", "a": "one"},
    }
    out = normalize(secret)
    assert "stringData" not in out
    assert out["data"] == {"a": "b25l", "b": "dHdv"}


def test_normalize_refuses_values_that_are_not_json() -> None:
    obj = {
        "apiVersion": "v1",
        "kind": "ConfigMap",
        "metadata": {"name": "c", "namespace": "ns"},
        "data": {"when": datetime.date(2024, 1, 1)},
    }
    with pytest.raises(ValueError, match="ConfigMap/ns/c: not a JSON value"):
        normalize(obj)


def _ca_bundle() -> str:
    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "ca")])
    now = datetime.datetime.now(datetime.UTC)
    cert = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(1)
        .not_valid_before(now)
        .not_valid_after(now + datetime.timedelta(days=1))
        .sign(key, hashes.SHA256())
    )
    return base64.b64encode(cert.public_bytes(serialization.Encoding.PEM)).decode()


def test_normalize_drops_only_invalid_crd_ca_bundles() -> None:
    def crd(bundle: str) -> dict[str, Any]:
        return {
            "apiVersion": "apiextensions.k8s.io/v1",
            "kind": "CustomResourceDefinition",
            "metadata": {"name": "foos.example.com"},
            "spec": {"conversion": {"webhook": {"clientConfig": {"caBundle": bundle}}}},
        }

    def bundle_of(obj: dict[str, Any]) -> Any:
        return obj["spec"]["conversion"]["webhook"]["clientConfig"].get("caBundle")

    assert bundle_of(normalize(crd("Cg=="))) is None
    valid = _ca_bundle()
    assert bundle_of(normalize(crd(valid))) == valid


def test_marked_reads_labels_and_annotations_case_insensitively() -> None:
    key = "kustomize.toolkit.fluxcd.io/ssa"
    annotated = {"metadata": {"annotations": {key: "ifnotpresent"}}}
    labelled = {"metadata": {"labels": {key: "IfNotPresent"}}}
    assert marked(annotated, key, "IfNotPresent")
    assert marked(labelled, key, "IfNotPresent")
    assert not marked(annotated, key, "Merge")
    assert not marked(None, key, "Merge")


@pytest.mark.parametrize(
    ("obj", "stage"),
    [
        ({"apiVersion": "apiextensions.k8s.io/v1", "kind": "CustomResourceDefinition"}, 0),
        ({"apiVersion": "v1", "kind": "Namespace"}, 0),
        ({"apiVersion": "rbac.authorization.k8s.io/v1", "kind": "ClusterRole"}, 0),
        ({"apiVersion": "rbac.authorization.k8s.io/v1", "kind": "ClusterRoleBinding"}, 2),
        ({"apiVersion": "storage.k8s.io/v1", "kind": "StorageClass"}, 1),
        ({"apiVersion": "example.com/v1", "kind": "FooClass"}, 1),
        ({"apiVersion": "apps/v1", "kind": "Deployment"}, 2),
    ],
)
def test_stages_follow_flux(obj: dict[str, Any], stage: int) -> None:
    assert stage_of(obj) == stage


def entry(manager: str, operation: str, fields: dict[str, Any], **extra: Any) -> dict[str, Any]:
    return {
        "manager": manager,
        "operation": operation,
        "apiVersion": "v1",
        "fieldsType": "FieldsV1",
        "fieldsV1": fields,
        **extra,
    }


def live_with(*entries: dict[str, Any], annotations: dict[str, str] | None = None) -> dict:
    meta: dict[str, Any] = {"name": "c", "resourceVersion": "42", "managedFields": list(entries)}
    if annotations:
        meta["annotations"] = annotations
    return {"apiVersion": "v1", "kind": "ConfigMap", "metadata": meta}


MANAGERS = default_takeover("headwater-kustomize")


def test_takeover_renames_kubectl_entry_when_we_own_nothing() -> None:
    kubectl = entry("kubectl-client-side-apply", "Update", {"f:data": {"f:a": {}}})
    other = entry("kube-controller-manager", "Update", {"f:status": {}})
    ops = takeover_patch(live_with(kubectl, other), "headwater-kustomize", MANAGERS)
    assert ops == [
        {"op": "test", "path": "/metadata/resourceVersion", "value": "42"},
        {
            "op": "replace",
            "path": "/metadata/managedFields",
            "value": [other, {**kubectl, "manager": "headwater-kustomize", "operation": "Apply"}],
        },
    ]


def test_takeover_merges_kubectl_fields_into_ours() -> None:
    ours = entry("headwater-kustomize", "Apply", {"f:data": {"f:a": {}}})
    edit = entry("kubectl-edit", "Update", {"f:data": {"f:b": {}}, "f:metadata": {}})
    status = entry("kubectl", "Update", {"f:status": {}}, subresource="status")
    ops = takeover_patch(live_with(ours, edit, status), "headwater-kustomize", MANAGERS)
    replaced = ops[1]["value"]
    assert replaced == [
        status,  # subresource entries are not ours to take
        {**ours, "fieldsV1": {"f:data": {"f:a": {}, "f:b": {}}, "f:metadata": {}}},
    ]


def test_takeover_leaves_ignored_fields_to_their_manager() -> None:
    ours = entry("headwater-kustomize", "Apply", {"f:data": {"f:a": {}}})
    scaled = entry("kubectl-patch", "Update", {"f:data": {"f:replicas": {}}})
    edit = entry("kubectl-edit", "Update", {"f:data": {"f:b": {}, "f:replicas": {}}})
    ignored = [("data", "replicas")]
    ops = takeover_patch(
        live_with(ours, scaled, edit), "headwater-kustomize", MANAGERS, ignored=ignored
    )
    # Only the ignored field: kubectl-patch keeps it; the rest of kubectl-edit's is ours.
    assert ops[1]["value"] == [scaled, {**ours, "fieldsV1": {"f:data": {"f:a": {}, "f:b": {}}}}]
    only_ignored = live_with(ours, scaled)
    assert takeover_patch(only_ignored, "headwater-kustomize", MANAGERS, ignored=ignored) == []


def test_without_fields_drops_emptied_parents_and_keeps_the_rest() -> None:
    fields = {"f:spec": {"f:replicas": {}}, "f:metadata": {"f:labels": {"f:a": {}}}}
    assert without_fields(fields, [("spec", "replicas")]) == {
        "f:metadata": {"f:labels": {"f:a": {}}}
    }
    assert without_fields(fields, [("spec", "paused"), ("nothing",)]) == fields
    # A list index has no f: name in fieldsV1: nothing is removed for it.
    assert without_fields(fields, [("spec", "replicas", "0")]) == fields


def test_takeover_nothing_to_do_gives_no_patch() -> None:
    ours = entry("headwater-kustomize", "Apply", {"f:data": {}})
    hpa = entry("hpa-controller", "Update", {"f:spec": {"f:replicas": {}}})
    assert takeover_patch(live_with(ours, hpa), "headwater-kustomize", MANAGERS) == []


def test_takeover_removes_kubectl_last_applied_annotation() -> None:
    live = live_with(
        annotations={"kubectl.kubernetes.io/last-applied-configuration": "{}", "keep": "1"}
    )
    ops = takeover_patch(
        live,
        "headwater-kustomize",
        MANAGERS,
        remove_annotations=["kubectl.kubernetes.io/last-applied-configuration", "absent"],
    )
    assert ops[1:] == [
        {
            "op": "remove",
            "path": "/metadata/annotations/kubectl.kubernetes.io~1last-applied-configuration",
        }
    ]


def test_manager_match_exact_and_prefix() -> None:
    assert ManagerMatch("kubectl", "Update").matches(
        {"manager": "kubectl-edit", "operation": "Update"}
    )
    assert not ManagerMatch("kubectl", "Update", exact=True).matches(
        {"manager": "kubectl-edit", "operation": "Update"}
    )
    assert not ManagerMatch("kubectl", "Apply").matches(
        {"manager": "kubectl", "operation": "Update"}
    )


def test_merge_fields_is_a_union() -> None:
    left = {"f:spec": {"f:a": {}, 'k:{"name":"x"}': {".": {}, "f:image": {}}}}
    right = {"f:spec": {"f:b": {}, 'k:{"name":"x"}': {"f:env": {}}}}
    assert merge_fields(left, right) == {
        "f:spec": {"f:a": {}, "f:b": {}, 'k:{"name":"x"}': {".": {}, "f:image": {}, "f:env": {}}}
    }
    assert merge_fields(None, right) == right


def invalid(*causes: tuple[str, str], message: str = "x is invalid") -> ApiError:
    return ApiError(
        422, "Invalid", message, [Cause(field, "FieldValueInvalid", msg) for field, msg in causes]
    )


def test_immutable_errors_are_recognized_from_their_causes() -> None:
    assert is_immutable_error(invalid(("spec.selector", "Invalid value: {}: field is immutable")))
    assert is_immutable_error(
        invalid(("spec.clusterIPs[0]", 'Invalid value: ["1"]: may not change once set'))
    )
    assert is_immutable_error(
        invalid(("spec", "Forbidden: updates to statefulset spec for fields other than 'replicas'"))
    )
    # A bad value next to an immutable one must not lead to a delete.
    assert not is_immutable_error(
        invalid(
            ("spec.selector", "Invalid value: {}: field is immutable"),
            ("spec.replicas", "Invalid value: -1: must be greater than or equal to 0"),
        )
    )
    assert not is_immutable_error(invalid(("spec.replicas", "Invalid value: -1: must be >= 0")))
    assert not is_immutable_error(ApiError(500, "", "field is immutable"))


def test_error_messages_name_object_reason_and_fields() -> None:
    failure = describe_error(
        "Deployment/ns/web",
        "dry-run",
        invalid(("spec.replicas", "Invalid value: -1: must be greater than or equal to 0")),
    )
    assert failure == ObjectFailure(
        "Deployment/ns/web",
        "Deployment/ns/web dry-run failed (Invalid): "
        "spec.replicas: Invalid value: -1: must be greater than or equal to 0",
        ("spec.replicas",),
    )
    typed = ApiError(
        500,
        "",
        "failed to create typed patch object (ns/web; apps/v1, Kind=Deployment): "
        ".spec.replica: field not declared in schema",
    )
    assert describe_error("Deployment/ns/web", "dry-run", typed).message == (
        "Deployment/ns/web dry-run failed: .spec.replica: field not declared in schema"
    )
    nomatch = describe_error("Foo/ns/x", "apply", NoMatchError("example.com/v1", "Foo"))
    assert (
        nomatch.message
        == 'Foo/ns/x apply failed: no matches for kind "Foo" in version "example.com/v1"'
    )


def test_huge_causes_are_shortened() -> None:
    error = invalid(("spec.template", "Invalid value: {" + "x" * 5000 + "}: field is immutable"))
    message = describe_error("Job/ns/j", "dry-run", error).message
    assert len(message) < 400
    assert message.endswith("field is immutable")


def test_changeset_formats_like_flux_and_builds_the_inventory() -> None:
    web = ObjectId("apps", "Deployment", "ns", "web")
    ns = ObjectId("", "Namespace", "", "ns")
    changeset = ChangeSet(
        [
            ChangeSetEntry(ns, "v1", Action.UNCHANGED),
            ChangeSetEntry(web, "v1", Action.CONFIGURED, (FieldChange("spec.replicas", "1", "3"),)),
        ]
    )
    assert str(changeset) == "Namespace/ns unchanged\nDeployment/ns/web configured"
    assert changeset.describe() == "Deployment/ns/web configured\n  spec.replicas: 1 → 3"
    assert [e.id for e in changeset.changed()] == [web]
    assert changeset.by_action() == {
        Action.UNCHANGED: ["Namespace/ns"],
        Action.CONFIGURED: ["Deployment/ns/web"],
    }
    assert changeset.to_inventory().to_status() == {
        "entries": [
            {"id": "_ns__Namespace", "v": "v1"},
            {"id": "ns_web_apps_Deployment", "v": "v1"},
        ]
    }


def test_health_entries_leave_out_skipped_objects() -> None:
    kept = ObjectId("", "ConfigMap", "ns", "a")
    skipped = ObjectId("", "ConfigMap", "ns", "b")
    changeset = ChangeSet(
        [
            ChangeSetEntry(kept, "v1", Action.UNCHANGED),
            ChangeSetEntry(skipped, "v1", Action.SKIPPED),
        ]
    )
    assert [e.id for e in changeset.health_entries()] == [kept]
    assert len(changeset.to_inventory()) == 2


def test_apply_error_lists_failures_bounded() -> None:
    failures = [ObjectFailure(f"ConfigMap/ns/c{i}", f"ConfigMap/ns/c{i} bad") for i in range(12)]
    error = ApplyError(failures, ChangeSet())
    lines = str(error).splitlines()
    assert lines[0] == "ConfigMap/ns/c0 bad"
    assert lines[-1] == "… and 2 more objects failed"
    assert len(lines) == 11
