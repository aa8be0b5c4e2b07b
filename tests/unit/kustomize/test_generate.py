"""The kustomization a build uses: Flux's generation rules and overlay merging."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import yaml

from controllers.toolkit.kustomize.generate import (
    BuildError,
    BuildOptions,
    check_manifest_file,
    generated_kustomization,
    is_local_relative,
    load_documents,
    merge_overlays,
    scan_manifests,
    write_kustomization,
)


def cm(name: str) -> str:
    return f"apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: {name}\n"


def tree(root: Path, files: dict[str, str]) -> Path:
    for rel, text in files.items():
        (root / rel).parent.mkdir(parents=True, exist_ok=True)
        (root / rel).write_text(text)
    return root


# --- generation ---------------------------------------------------------------------------


def test_scan_lists_manifests_depth_first_in_lexical_order(tmp_path: Path) -> None:
    root = tree(
        tmp_path,
        {
            "b.yaml": cm("b"),
            "a.yml": cm("a"),
            "sub/z.yaml": cm("z"),
            "sub/deeper/y.yaml": cm("y"),
            "c.yaml": cm("c"),
            "README.md": "# not yaml",
            "values.json": "{}",
            "Upper.YAML": "not: listed",  # the suffix check is case-sensitive, as in Go
        },
    )
    assert scan_manifests(root, root) == [
        "./a.yml",
        "./b.yaml",
        "./c.yaml",
        "./sub/deeper/y.yaml",
        "./sub/z.yaml",
    ]


@pytest.mark.parametrize("kfile", ["kustomization.yaml", "kustomization.yml", "Kustomization"])
def test_a_subdirectory_with_a_kustomization_is_one_directory_resource(
    tmp_path: Path, kfile: str
) -> None:
    root = tree(
        tmp_path,
        {
            "app.yaml": cm("app"),
            f"base/{kfile}": "resources: [only.yaml]\n",
            "base/only.yaml": cm("only"),
            "base/not-listed.yaml": cm("not-listed"),
            "base/inner/x.yaml": cm("x"),
        },
    )
    assert scan_manifests(root, root) == ["./app.yaml", "./base"]


def test_generated_kustomization(tmp_path: Path) -> None:
    root = tree(tmp_path, {"a.yaml": cm("a")})
    assert generated_kustomization(root, root) == {
        "apiVersion": "kustomize.config.k8s.io/v1beta1",
        "kind": "Kustomization",
        "resources": ["./a.yaml"],
    }


def test_an_empty_directory_gets_a_placeholder_namespace(tmp_path: Path) -> None:
    # kustomize refuses an empty kustomization; Flux works around it this way.
    assert generated_kustomization(tmp_path, tmp_path)["namespace"] == "_placeholder"


def test_files_with_several_objects_lists_and_empty_documents_are_accepted(tmp_path: Path) -> None:
    root = tree(
        tmp_path,
        {
            "multi.yaml": cm("one") + "---\n" + cm("two") + "---\n",
            "list.yaml": "apiVersion: v1\nkind: List\nitems:\n- " + cm("i").replace("\n", "\n  "),
            "empty.yaml": "# only a comment\n",
            "nothing.yaml": "",
        },
    )
    assert scan_manifests(root, root) == [
        "./empty.yaml",
        "./list.yaml",
        "./multi.yaml",
        "./nothing.yaml",
    ]


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("a: b\n  c: d\n", "invalid YAML in 'deploy/bad.yaml': line 2, column 4"),
        ("key: [unclosed\n", "invalid YAML in 'deploy/bad.yaml': line 2"),
        ("apiVersion: v1\nmetadata: {name: x}\n", "'deploy/bad.yaml' is not a Kubernetes object"),
        ("apiVersion: v1\nkind: ConfigMap\n", "missing metadata.name"),
        ("- just\n- a list\n", "expected a mapping"),
        ("just a string\n", "expected a mapping"),
        (cm("ok") + "---\nkind: Secret\n", "'deploy/bad.yaml' (document 2)"),
        ("kind: List\nitems:\n- {kind: ConfigMap}\n", "List/items[0]"),
        ("kind: List\nitems: nope\n", "expected an array in List/items"),
    ],
)
def test_a_file_that_is_not_kubernetes_yaml_fails_naming_it(
    tmp_path: Path, text: str, message: str
) -> None:
    root = tree(tmp_path, {"deploy/good.yaml": cm("good"), "deploy/bad.yaml": text})
    with pytest.raises(BuildError) as info:
        scan_manifests(root / "deploy", root)
    assert message in str(info.value)
    assert info.value.reason == "BuildFailed"


def test_yaml_errors_do_not_echo_the_file(tmp_path: Path) -> None:
    path = tree(tmp_path, {"s.yaml": "data:\n  password: hunter2-secret\n   x: y\n"}) / "s.yaml"
    with pytest.raises(BuildError) as info:
        check_manifest_file(path, tmp_path)
    assert "hunter2" not in str(info.value)


def test_timestamps_stay_strings() -> None:
    assert load_documents("a: 2024-01-01\nb: =\n") == [{"a": "2024-01-01", "b": "="}]


# --- overlays -----------------------------------------------------------------------------


def merged(kustomization: dict[str, Any], spec: dict[str, Any], **kw: Any) -> dict[str, Any]:
    return merge_overlays(
        kustomization, BuildOptions.parse(spec), kw.pop("directory", Path("/nonexistent")), **kw
    )


def test_overlays_replace_namespace_prefix_and_suffix() -> None:
    result = merged(
        {"resources": ["a.yaml"], "namespace": "old", "namePrefix": "x-", "nameSuffix": "-y"},
        {"targetNamespace": "new", "namePrefix": "p-", "nameSuffix": "-s"},
        generated=False,
    )
    assert result == {
        "apiVersion": "kustomize.config.k8s.io/v1beta1",
        "kind": "Kustomization",
        "resources": ["a.yaml"],
        "namespace": "new",
        "namePrefix": "p-",
        "nameSuffix": "-s",
    }


def test_an_empty_prefix_in_the_spec_still_replaces() -> None:
    result = merged({"resources": ["a"], "namePrefix": "x-"}, {"namePrefix": ""}, generated=False)
    assert result["namePrefix"] == ""


def test_the_files_own_kind_and_version_are_kept() -> None:
    result = merged(
        {"apiVersion": "kustomize.config.k8s.io/v1alpha1", "kind": "Component", "resources": ["a"]},
        {},
        generated=False,
    )
    assert (result["apiVersion"], result["kind"]) == (
        "kustomize.config.k8s.io/v1alpha1",
        "Component",
    )


def test_patches_are_appended_with_their_targets() -> None:
    existing = {"resources": ["a"], "patches": [{"path": "mine.yaml"}]}
    spec = {
        "patches": [
            {
                "patch": "- op: remove\n  path: /spec/x",
                "target": {
                    "group": "apps",
                    "version": "v1",
                    "kind": "Deployment",
                    "name": "web",
                    "namespace": "ns",
                    "labelSelector": "app=web",
                    "annotationSelector": "a=b",
                    "unknown": "dropped",
                },
            },
            {"patch": "apiVersion: v1\nkind: ConfigMap\nmetadata: {name: c}\n"},
            {"patch": "x", "target": {"kind": "Service", "name": ""}},
        ]
    }
    result = merged(existing, spec, generated=False)
    assert result["patches"] == [
        {"path": "mine.yaml"},
        {
            "patch": "- op: remove\n  path: /spec/x",
            "target": {
                "group": "apps",
                "version": "v1",
                "kind": "Deployment",
                "name": "web",
                "namespace": "ns",
                "labelSelector": "app=web",
                "annotationSelector": "a=b",
            },
        },
        {"patch": "apiVersion: v1\nkind: ConfigMap\nmetadata: {name: c}\n"},
        {"patch": "x", "target": {"kind": "Service"}},
    ]


def test_images_merge_by_name_like_flux() -> None:
    existing = {
        "resources": ["a"],
        "images": [
            {"name": "web", "newName": "reg/web", "newTag": "1.0"},
            {"name": "db", "digest": "sha256:aaa"},
            {"name": "cache", "newTag": "2"},
        ],
    }
    spec = {
        "images": [
            {"name": "web", "newTag": "1.1"},  # keeps newName from the file
            {"name": "db", "newTag": "5"},  # a tag replaces the digest
            {"name": "cache", "newName": "mirror/cache"},  # keeps the file's tag
            {"name": "new", "newName": "x", "digest": "sha256:bbb"},
        ]
    }
    assert merged(existing, spec, generated=False)["images"] == [
        {"name": "web", "newName": "reg/web", "newTag": "1.1"},
        {"name": "db", "newTag": "5"},
        {"name": "cache", "newTag": "2", "newName": "mirror/cache"},
        {"name": "new", "newName": "x", "digest": "sha256:bbb"},
    ]


def test_components_are_appended_and_missing_ones_skipped_when_asked(tmp_path: Path) -> None:
    (tmp_path / "components" / "present").mkdir(parents=True)
    existing = {"resources": ["a"], "components": ["../mine"]}
    spec: dict[str, Any] = {"components": ["components/present", "components/absent"]}
    result = merged(existing, spec, generated=False, directory=tmp_path)
    assert result["components"] == ["../mine", "components/present", "components/absent"]
    spec["ignoreMissingComponents"] = True
    result = merged(existing, spec, generated=False, directory=tmp_path)
    assert result["components"] == ["../mine", "components/present"]


@pytest.mark.parametrize(
    "component",
    [
        "https://example.com/c",
        "github.com/org/repo//c",
        "git@github.com:org/repo",
        "/abs/c",
        "file:///abs/c",
        "ssh://host/c",
    ],
)
def test_components_must_be_local_and_relative(component: str) -> None:
    with pytest.raises(BuildError) as info:
        merged({"resources": ["a"]}, {"components": [component]}, generated=False)
    assert f"component path '{component}' must be local and relative" in str(info.value)


@pytest.mark.parametrize(
    ("path", "local"),
    [("base", True), ("../base", True), ("./x.yaml", True), ("http://h/x", False)],
)
def test_is_local_relative(path: str, local: bool) -> None:
    assert is_local_relative(path) is local


def test_build_metadata_replaces_the_files_list() -> None:
    result = merged(
        {"resources": ["a"], "buildMetadata": ["originAnnotations"]},
        {"buildMetadata": ["transformerAnnotations"]},
        generated=False,
    )
    assert result["buildMetadata"] == ["transformerAnnotations"]


def test_a_users_kustomization_without_resources_gets_origin_annotations() -> None:
    # Flux's guard against kustomize's "kustomization is empty" error.
    result = merged({"components": ["c"]}, {}, generated=False)
    assert result["buildMetadata"] == ["originAnnotations"]
    assert "buildMetadata" not in merged({"namespace": "_placeholder"}, {}, generated=True)


@pytest.mark.parametrize(
    ("spec", "message"),
    [
        ({"patches": [{"target": {"kind": "X"}}]}, "spec.patches[0] must have a 'patch'"),
        ({"patches": [{"patch": "x", "target": "nope"}]}, "spec.patches[0].target"),
        ({"images": [{"newTag": "1"}]}, "spec.images[0] must have a 'name'"),
        ({"targetNamespace": 3}, "spec.targetNamespace must be a string"),
        ({"components": "c"}, "spec.components must be a list"),
    ],
)
def test_malformed_overlays_are_named(spec: dict[str, Any], message: str) -> None:
    with pytest.raises(BuildError) as info:
        merged({"resources": ["a"]}, spec, generated=False)
    assert message in str(info.value)


# --- writing ------------------------------------------------------------------------------


def test_write_generates_kustomization_yaml_with_overlays(tmp_path: Path) -> None:
    root = tree(tmp_path, {"app/a.yaml": cm("a")})
    written = write_kustomization(root / "app", BuildOptions.parse({"targetNamespace": "ns"}), root)
    assert written == root / "app" / "kustomization.yaml"
    assert yaml.safe_load(written.read_text()) == {
        "apiVersion": "kustomize.config.k8s.io/v1beta1",
        "kind": "Kustomization",
        "resources": ["./a.yaml"],
        "namespace": "ns",
    }


def test_write_merges_into_the_users_file_under_its_own_name(tmp_path: Path) -> None:
    root = tree(tmp_path, {"kustomization.yml": "resources:\n- a.yaml\n", "a.yaml": cm("a")})
    written = write_kustomization(root, BuildOptions.parse({"namePrefix": "p-"}), root)
    assert written == root / "kustomization.yml"
    assert not (root / "kustomization.yaml").exists()
    assert yaml.safe_load(written.read_text())["namePrefix"] == "p-"


def test_write_leaves_the_users_file_alone_when_nothing_is_merged(tmp_path: Path) -> None:
    text = "# comments survive\nresources: [a.yaml]\nfuture: field\n"
    root = tree(tmp_path, {"kustomization.yaml": text, "a.yaml": cm("a")})
    write_kustomization(
        root, BuildOptions.parse({"ignoreMissingComponents": True, "patches": []}), root
    )
    assert (root / "kustomization.yaml").read_text() == text


def test_write_replaces_the_file_rather_than_writing_through_it(tmp_path: Path) -> None:
    # The private copy may share inodes with the cache one day; never write in place.
    shared = tmp_path / "shared.yaml"
    shared.write_text("resources: [a.yaml]\n")
    root = tree(tmp_path / "copy", {"a.yaml": cm("a")})
    (root / "kustomization.yaml").hardlink_to(shared)
    write_kustomization(root, BuildOptions.parse({"targetNamespace": "ns"}), root)
    assert shared.read_text() == "resources: [a.yaml]\n"


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("resources: [a\n", "invalid YAML in 'kustomization.yaml': line 2"),
        ("- a\n- b\n", "must hold exactly one kustomization mapping"),
    ],
)
def test_a_broken_users_kustomization_is_named(tmp_path: Path, text: str, message: str) -> None:
    root = tree(tmp_path, {"kustomization.yaml": text})
    with pytest.raises(BuildError) as info:
        write_kustomization(root, BuildOptions.parse({"targetNamespace": "ns"}), root)
    assert message in str(info.value)
