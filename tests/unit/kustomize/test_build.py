"""The build step's pure parts: paths, the private copy, references, output parsing."""

from __future__ import annotations

import stat
from pathlib import Path
from typing import Any

import pytest

from controllers.toolkit.kustomize.build import (
    BuildError,
    CommonMetadata,
    Manifest,
    PathNotFoundError,
    apply_common_metadata,
    check_references,
    copy_build_inputs,
    copy_tree,
    parse_output,
    resolve_path,
)
from controllers.toolkit.kustomize.generate import BuildOptions


def tree(root: Path, files: dict[str, str]) -> Path:
    for rel, text in files.items():
        (root / rel).parent.mkdir(parents=True, exist_ok=True)
        (root / rel).write_text(text)
    return root


# --- spec.path ----------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("path", "rel"), [(None, ""), ("", ""), ("./", ""), ("./apps/prod", "apps/prod")]
)
def test_resolve_path(tmp_path: Path, path: str | None, rel: str) -> None:
    (tmp_path / "apps" / "prod").mkdir(parents=True)
    assert resolve_path(tmp_path, path) == rel


@pytest.mark.parametrize(
    ("path", "message"),
    [
        ("../other", "must stay inside"),
        ("/etc", "must stay inside"),
        ("apps/../../x", "must stay inside"),
        ("missing", "kustomization path not found: 'missing' is not in the artifact"),
        ("file.yaml", "'file.yaml' is not a directory"),
        ("link", "'link' is not a directory"),
    ],
)
def test_resolve_path_refuses(tmp_path: Path, path: str, message: str) -> None:
    (tmp_path / "file.yaml").write_text("x")
    (tmp_path / "link").symlink_to(tmp_path, target_is_directory=True)
    with pytest.raises(PathNotFoundError) as info:
        resolve_path(tmp_path, path)
    assert message in str(info.value)
    assert info.value.reason == "ArtifactFailed"  # as Flux reports a missing path


# --- the private copy ---------------------------------------------------------------------


def test_copy_tree_is_writable_and_leaves_links_out(tmp_path: Path) -> None:
    source = tree(tmp_path / "src", {"a/b.yaml": "b", "run.sh": "#!/bin/sh"})
    (source / "run.sh").chmod(0o555)
    (source / "a" / "b.yaml").chmod(0o444)
    (source / "a").chmod(0o555)
    (source / "a" / "escape").symlink_to("/etc")
    (source / "passwd").symlink_to("/etc/passwd")
    dest = tmp_path / "dest"
    try:
        copy_tree(source, dest)
    finally:
        (source / "a").chmod(0o755)
    assert sorted(str(p.relative_to(dest)) for p in dest.rglob("*")) == ["a", "a/b.yaml", "run.sh"]
    assert stat.S_IMODE((dest / "a").stat().st_mode) == 0o755
    assert stat.S_IMODE((dest / "a" / "b.yaml").stat().st_mode) == 0o644
    assert stat.S_IMODE((dest / "run.sh").stat().st_mode) == 0o755


def test_a_build_copies_its_directory_and_what_its_kustomizations_name(tmp_path: Path) -> None:
    source = tree(
        tmp_path / "src",
        {
            "apps/web/kustomization.yaml": (
                "resources: [deploy.yaml, ../../bases/web, ../shared/cm.yaml]\n"
                "patches: [{path: ../../patches/p.yaml}]\n"
            ),
            "apps/web/deploy.yaml": "d",
            "apps/web/sub/extra.yaml": "e",
            "apps/shared/cm.yaml": "c",
            "apps/shared/other.yaml": "not named",
            "apps/db/kustomization.yaml": "resources: [db.yaml]\n",
            "apps/db/db.yaml": "db",
            "bases/web/kustomization.yaml": "resources: [svc.yaml, ../common]\n",
            "bases/web/svc.yaml": "s",
            "bases/common/kustomization.yaml": "resources: [ns.yaml]\n",
            "bases/common/ns.yaml": "n",
            "bases/unused/kustomization.yaml": "resources: [u.yaml]\n",
            "components/debug/kustomization.yaml": "kind: Component\n",
            "patches/p.yaml": "p",
        },
    )
    dest = tmp_path / "copy"
    directory = copy_build_inputs(
        source, dest, "apps/web", BuildOptions.parse({"components": ["../../components/debug"]})
    )
    assert directory == dest / "apps" / "web"
    copied = sorted(str(p.relative_to(dest)) for p in dest.rglob("*") if p.is_file())
    assert copied == [
        "apps/shared/cm.yaml",
        "apps/web/deploy.yaml",
        "apps/web/kustomization.yaml",
        "apps/web/sub/extra.yaml",
        "bases/common/kustomization.yaml",
        "bases/common/ns.yaml",
        "bases/web/kustomization.yaml",
        "bases/web/svc.yaml",
        "components/debug/kustomization.yaml",
        "patches/p.yaml",
    ]
    # The spec's component was merged into the copy's kustomization, not the tree's.
    assert "../../components/debug" in (directory / "kustomization.yaml").read_text()
    assert "components" not in (source / "apps/web/kustomization.yaml").read_text()


def test_a_build_copy_leaves_links_and_escaping_entries_out(tmp_path: Path) -> None:
    source = tree(
        tmp_path / "src",
        {"app/kustomization.yaml": "resources: [a.yaml, linked, ../../outside, /etc]\n"},
    )
    (source / "app" / "a.yaml").symlink_to("/etc/passwd")
    (source / "linked").symlink_to("/etc", target_is_directory=True)
    dest = tmp_path / "copy"
    copy_build_inputs(source, dest, "app", BuildOptions())
    assert sorted(str(p.relative_to(dest)) for p in dest.rglob("*")) == [
        "app",
        "app/kustomization.yaml",
    ]
    with pytest.raises(BuildError, match="points outside the artifact"):
        check_references(dest, dest / "app")


# --- references ---------------------------------------------------------------------------


def test_local_references_inside_the_artifact_pass(tmp_path: Path) -> None:
    root = tree(
        tmp_path,
        {
            "apps/prod/kustomization.yaml": (
                "resources: [../base, ./extra.yaml]\n"
                "components: [../../components/c]\n"
                "patches: [{path: patch.yaml}]\n"
                "configMapGenerator: [{name: x, files: [key=../base/data.txt], envs: [e.env]}]\n"
                "transformers:\n- |\n  apiVersion: builtin\n  kind: LabelTransformer\n"
            ),
            "apps/base/kustomization.yaml": "resources: [d.yaml]\n",
            "components/c/kustomization.yaml": "kind: Component\n",
        },
    )
    check_references(root, root / "apps" / "prod")


@pytest.mark.parametrize(
    ("kustomization", "message"),
    [
        (
            "resources: [https://example.com/x.yaml]",
            "resources entry 'https://example.com/x.yaml' is remote",
        ),
        ("resources: [github.com/org/repo//deploy?ref=v1]", "is remote"),
        ("resources: ['git@github.com:org/repo.git']", "is remote"),
        ("bases: ['ssh://git@host/repo']", "bases entry 'ssh://git@host/repo' is remote"),
        ("components: ['gh:org/repo']", "is remote"),
        ("patches: [{path: 'http://127.0.0.1:1/p.yaml'}]", "patches.path entry"),
        ("openapi: {path: 'https://h/schema.json'}", "openapi.path entry"),
        ("resources: [../../../../etc]", "resources entry '../../../../etc' points outside"),
        ("resources: [/etc/kubernetes]", "'/etc/kubernetes' is an absolute path"),
        ("configMapGenerator: [{name: x, files: [k=../../../secret]}]", "points outside"),
        ("crds: [../../../crd.yaml]", "crds entry"),
    ],
)
def test_remote_and_escaping_references_are_refused(
    tmp_path: Path, kustomization: str, message: str
) -> None:
    root = tree(tmp_path, {"app/kustomization.yaml": kustomization + "\n"})
    with pytest.raises(BuildError) as info:
        check_references(root, root / "app")
    assert "'app/kustomization.yaml'" in str(info.value)
    assert message in str(info.value)


def test_references_are_followed_into_bases(tmp_path: Path) -> None:
    root = tree(
        tmp_path,
        {
            "app/kustomization.yaml": "resources: [../base]\n",
            "base/kustomization.yaml": "resources: [../deeper]\n",
            "deeper/kustomization.yml": "resources: [https://example.com/x.yaml]\n",
            "unrelated/kustomization.yaml": "resources: [https://example.com/y.yaml]\n",
        },
    )
    with pytest.raises(BuildError) as info:
        check_references(root, root / "app")
    assert "'deeper/kustomization.yml'" in str(info.value)


def test_unreachable_kustomizations_are_not_judged(tmp_path: Path) -> None:
    root = tree(
        tmp_path,
        {
            "app/kustomization.yaml": "resources: [a.yaml]\n",
            "other/kustomization.yaml": "resources: [https://example.com/y.yaml]\n",
        },
    )
    check_references(root, root / "app")


def test_reference_cycles_end(tmp_path: Path) -> None:
    root = tree(
        tmp_path,
        {
            "a/kustomization.yaml": "resources: [../b]\n",
            "b/kustomization.yaml": "resources: [../a]\n",
        },
    )
    check_references(root, root / "a")


# --- output -------------------------------------------------------------------------------

OUTPUT = """\
apiVersion: v1
data:
  script: |
    echo one
    ---
    echo two
  port: ${PORT}
kind: ConfigMap
metadata:
  name: c
  namespace: ns
---
apiVersion: rbac.authorization.k8s.io/v1
kind: ClusterRole
metadata:
  name: r
"""


def test_parse_output_keeps_each_objects_text() -> None:
    manifests = parse_output(OUTPUT)
    assert [m.ref for m in manifests] == ["ConfigMap/ns/c", "ClusterRole/r"]
    first = manifests[0]
    assert first.text.startswith("apiVersion: v1\ndata:\n")
    assert "---\n    echo two" in first.text
    assert first.object["data"] == {"script": "echo one\n---\necho two\n", "port": "${PORT}"}
    assert manifests[1].text.endswith("name: r\n")


def test_parse_output_of_nothing() -> None:
    assert parse_output("") == []
    assert parse_output("---\n") == []


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("kind: ConfigMap\nmetadata: {name: x}\n", "document 1 (ConfigMap/x) lacks"),
        (
            "apiVersion: v1\nkind: ConfigMap\n",
            "lacks a Kubernetes apiVersion, kind or metadata.name",
        ),
        ("- a\n", "document 1 is not a Kubernetes object"),
        ("a: [\n", "document 1 is invalid YAML: line 2"),
    ],
)
def test_parse_output_refuses_what_is_not_an_object(text: str, message: str) -> None:
    with pytest.raises(BuildError) as info:
        parse_output(text)
    assert message in str(info.value)


def test_manifest_ref() -> None:
    assert Manifest("", {"kind": "Namespace", "metadata": {"name": "n"}}).ref == "Namespace/n"
    assert Manifest("", {"kind": "Secret", "metadata": {"name": "s", "namespace": "x"}}).ref == (
        "Secret/x/s"
    )


# --- commonMetadata -----------------------------------------------------------------------


def test_common_metadata_sets_labels_and_annotations_on_metadata_only() -> None:
    objects: list[dict[str, Any]] = [
        {
            "kind": "Deployment",
            "metadata": {"name": "d", "labels": {"app": "web", "team": "old"}},
            "spec": {"selector": {"matchLabels": {"app": "web"}}},
        },
        {"kind": "ConfigMap", "metadata": {"name": "c"}},
    ]
    result = apply_common_metadata(
        objects,
        CommonMetadata.parse({"labels": {"team": "platform"}, "annotations": {"owner": "ops"}}),
    )
    assert result[0]["metadata"]["labels"] == {"app": "web", "team": "platform"}
    assert result[0]["metadata"]["annotations"] == {"owner": "ops"}
    assert result[0]["spec"] == {"selector": {"matchLabels": {"app": "web"}}}
    assert result[1]["metadata"] == {
        "name": "c",
        "labels": {"team": "platform"},
        "annotations": {"owner": "ops"},
    }
    # The input is not changed.
    assert objects[0]["metadata"]["labels"]["team"] == "old"
    assert apply_common_metadata(objects, None) == objects


def test_remote_bases_pass_the_check_when_no_remote_bases_is_off(tmp_path: Path) -> None:
    root = tree(
        tmp_path,
        {
            "app/kustomization.yaml": "resources: [github.com/org/repo//deploy?ref=v1, ../base]\n",
            "base/kustomization.yaml": "resources: [https://example.com/x.yaml]\n",
        },
    )
    check_references(root, root / "app", allow_remote=True)
    with pytest.raises(BuildError, match=r"is remote; .*\(--no-remote-bases\)"):
        check_references(root, root / "app")


@pytest.mark.parametrize(
    ("files", "message"),
    [
        (
            {
                "app/kustomization.yaml": (
                    "generators:\n- |\n  apiVersion: example.com/v1\n  kind: Gen\n  metadata:\n"
                    "    name: g\n    annotations:\n      config.kubernetes.io/function: |\n"
                    "        exec:\n          path: /bin/sh\n"
                )
            },
            "generators inline entry is refused: it is a KRM function",
        ),
        (
            {
                "app/kustomization.yaml": "transformers: [plugin.yaml]\n",
                "app/plugin.yaml": "apiVersion: someteam.example.com/v1\nkind: SedTransformer\n"
                "metadata: {name: s}\n",
            },
            "transformers entry 'plugin.yaml' is refused: it names the external plugin "
            "someteam.example.com/v1/SedTransformer",
        ),
        (
            {
                "app/kustomization.yaml": "validators: [v.yaml]\n",
                "app/v.yaml": "apiVersion: builtin\nkind: X\nmetadata:\n  name: v\n  annotations:\n"
                "    config.k8s.io/function: 'container: {image: evil}'\n",
            },
            "validators entry 'v.yaml' is refused: it is a KRM function",
        ),
        (
            {"app/kustomization.yaml": "helmCharts: [{name: x, repo: 'https://charts'}]\n"},
            "helmCharts runs helm inside kustomize",
        ),
    ],
)
def test_plugins_and_functions_are_refused_naming_the_file(
    tmp_path: Path, files: dict[str, str], message: str
) -> None:
    root = tree(tmp_path, files)
    with pytest.raises(BuildError) as info:
        check_references(root, root / "app")
    assert str(info.value).startswith("'app/kustomization.yaml': ")
    assert message in str(info.value)
