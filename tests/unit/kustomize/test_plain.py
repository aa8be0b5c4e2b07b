"""The plain-directory fast path gives what ``kustomize build`` gives, or steps aside.

Each case is a directory without a kustomization file, built twice: by the pinned
kustomize binary (through the generated kustomization, as before) and by
`plain.read_plain`. Where the fast path answers, the objects and their order must be
kustomize's; the odd directories must make it step aside (None), so kustomize decides,
errors included.
"""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest

from controllers.toolkit.kustomize import plain
from controllers.toolkit.kustomize.build import BuildError, Manifest, build
from controllers.toolkit.kustomize.generate import BuildOptions


def write_tree(root: Path, files: dict[str, str | bytes]) -> Path:
    for rel, content in files.items():
        path = root / rel
        path.parent.mkdir(parents=True, exist_ok=True)
        if isinstance(content, bytes):
            path.write_bytes(content)
        else:
            path.write_text(content, encoding="utf-8")
    return root


def kustomize_objects(tree: Path, work: Path) -> list[dict[str, object]] | None:
    """kustomize's objects for the tree's root, or None when kustomize (or Flux's
    generator before it) refuses the directory."""
    try:
        manifests = asyncio.run(build(tree, None, BuildOptions(), work_root=work))
    except BuildError:
        return None
    return [m.object for m in manifests]


def objects(manifests: list[Manifest] | None) -> list[dict[str, object]] | None:
    return None if manifests is None else [m.object for m in manifests]


def obj(kind: str, name: str, api: str = "v1", namespace: str | None = None, **extra: str) -> str:
    ns = f"\n  namespace: {namespace}" if namespace else ""
    more = "".join(f"\n{key}: {value}" for key, value in extra.items())
    return f"apiVersion: {api}\nkind: {kind}\nmetadata:\n  name: {name}{ns}{more}\n"


ALL_KINDS = [
    ("ValidatingWebhookConfiguration", "admissionregistration.k8s.io/v1"),
    ("MutatingWebhookConfiguration", "admissionregistration.k8s.io/v1"),
    ("PodDisruptionBudget", "policy/v1"),
    ("CronJob", "batch/v1"),
    ("Job", "batch/v1"),
    ("StatefulSet", "apps/v1"),
    ("Deployment", "apps/v1"),
    ("DaemonSet", "apps/v1"),
    ("PersistentVolumeClaim", "v1"),
    ("PersistentVolume", "v1"),
    ("PriorityClass", "scheduling.k8s.io/v1"),
    ("LimitRange", "v1"),
    ("Service", "v1"),
    ("Endpoints", "v1"),
    ("Secret", "v1"),
    ("ConfigMap", "v1"),
    ("ClusterRoleBinding", "rbac.authorization.k8s.io/v1"),
    ("RoleBinding", "rbac.authorization.k8s.io/v1"),
    ("ClusterRole", "rbac.authorization.k8s.io/v1"),
    ("Role", "rbac.authorization.k8s.io/v1"),
    ("PodSecurityPolicy", "policy/v1beta1"),
    ("ServiceAccount", "v1"),
    ("CustomResourceDefinition", "apiextensions.k8s.io/v1"),
    ("StorageClass", "storage.k8s.io/v1"),
    ("ResourceQuota", "v1"),
    ("Namespace", "v1"),
    ("Widget", "example.com/v1"),
    ("Widget", "example.com/v2"),
    ("Widget", "other.example.com/v1"),
    ("Gadget", "v1"),
    ("Ingress", "networking.k8s.io/v1"),
]

# Directories the fast path must read, each exactly as kustomize does.
PLAIN: dict[str, dict[str, str | bytes]] = {
    "every ordered kind, reversed": {
        f"k{index:02d}.yaml": obj(kind, f"n{index}", api)
        for index, (kind, api) in enumerate(ALL_KINDS)
    },
    "one file, many documents, separators and comments": {
        "all.yaml": "---\n# leading comment\n"
        + obj("ConfigMap", "b", namespace="z")
        + "--- # a comment after the separator\n"
        + obj("ConfigMap", "a", namespace="z")
        + "---\n---\n# only a comment\n---\n"
        + obj("ConfigMap", "c")
        + "---\n",
    },
    "namespaces and names sorting by kustomize's strings": {
        "a.yaml": obj("ConfigMap", "x", namespace="b")
        + "---\n"
        + obj("ConfigMap", "x-y", namespace="a")
        + "---\n"
        + obj("ConfigMap", "w")
        + "---\n"
        + obj("Secret", "a.b", namespace="a-b")
        + "---\n"
        + obj("Secret", "a", namespace="a"),
    },
    "nested directories and both suffixes": {
        "z/deep/er/one.yml": obj("Service", "s1", namespace="n"),
        "a/two.yaml": obj("Deployment", "d", "apps/v1", namespace="n"),
        "three.yaml": obj("Namespace", "n"),
        "README.md": "# not a manifest\n",
        "notes.txt": "kind: nothing",
        ".hidden.yaml": obj("ConfigMap", "hidden", namespace="n"),
    },
    "scalars both YAMLs read alike": {
        "values.yaml": (
            "apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: scalars\n"
            "  labels:\n    app: web\n    tier: 'front'\n"
            '  annotations:\n    note: "yes"\n    multi: |\n      line one\n      line two\n'
            "data:\n"
            "  a: 'yes'\n  e: 0755\n  l: 0x1F\n  m: +12\n  n: 1_000\n  neg: -0\n"
            "  i: ~\n  j: null\n  k: ''\n  q: 'it''s'\n  r: \"tab\\tand \\u00e9\"\n"
            "  s: >\n    folded\n    text\n\n    para\n  t: |-\n    keep\n    strip\n"
            "  u: plain text spanning\n    two lines\n  v: \"---\"\n  w: 'a: b'\n"
            "  x: [1, two, {three: 3}]\n  y: {}\n  z: []\n  unicode: ünïcødé ✓\n"
            "  empty:\n  true_str: 'true'\n  t1: true\n  f1: False\n  ip: 10.0.0.1\n"
            "  cpu: 100m\n  mem: 64Mi\n  ver: v1.2.3\n  yy: y\n  nn: n\n  dotted: 1.2.3\n"
            "  hash: a#b\n  comment: a # comment\n  url: http://x.example/a?b=c\n"
            "  1x: digit key\n  star: '*'\n"
        ),
    },
    "a Deployment as people write it": {
        "deploy.yaml": (
            "apiVersion: apps/v1\nkind: Deployment\nmetadata:\n  name: web\n"
            "  namespace: apps\n  labels: {app: web}\nspec:\n  replicas: 3\n"
            "  selector:\n    matchLabels:\n      app: web\n  template:\n"
            "    metadata:\n      labels:\n        app: web\n"
            "    spec:\n      containers:\n      - name: web\n        image: nginx:1.27\n"
            '        args: ["--port=80", --verbose]\n        ports:\n'
            "          - containerPort: 80\n            protocol: TCP\n"
            '        env:\n        - name: A\n          value: "1"\n'
            "        resources: {limits: {cpu: 100m, memory: 64Mi}}\n"
        ),
    },
    "aliases, as a YAML dumper writes them": {
        "a.yaml": "apiVersion: apps/v1\nkind: Deployment\nmetadata:\n  name: d\n"
        "  labels: &l {app: a}\n  annotations: *l\nspec:\n  selector:\n"
        "    matchLabels: *l\n  template:\n    metadata:\n      labels: &id001\n"
        "        app: a\n        tier: &t web\n    spec:\n      containers:\n"
        "      - name: *t\n        image: x\n        env: &e\n        - {name: A, value: '1'}\n"
        "      - name: sidecar\n        image: y\n        env: *e\n",
    },
    "kubectl create --dry-run output, nulls and empty maps": {
        "d.yaml": "apiVersion: apps/v1\nkind: Deployment\nmetadata:\n  creationTimestamp: null\n"
        "  labels:\n    app: x\n  name: x\nspec:\n  replicas: 1\n  selector:\n"
        "    matchLabels:\n      app: x\n  strategy: {}\n  template:\n    metadata:\n"
        "      creationTimestamp: null\n      labels:\n        app: x\n    spec:\n"
        "      containers:\n      - image: nginx\n        name: nginx\n        resources: {}\n"
        "status: {}\n",
    },
    "a document end marker at the end": {
        "end.yaml": obj("ConfigMap", "e") + "...\n",
    },
    "a CRD and its custom objects": {
        "crd.yaml": obj(
            "CustomResourceDefinition", "widgets.example.com", "apiextensions.k8s.io/v1"
        )
        + "spec:\n  group: example.com\n",
        "w.yaml": obj("Widget", "w2", "example.com/v1", namespace="n")
        + "---\n"
        + obj("Widget", "w1", "example.com/v1", namespace="n"),
    },
}

# Directories the fast path must leave to kustomize.
ODD: dict[str, dict[str, str | bytes]] = {
    "a List": {
        "list.yaml": "apiVersion: v1\nkind: List\nitems:\n- "
        + obj("ConfigMap", "i").replace("\n", "\n  ").rstrip()
        + "\n",
    },
    "a ConfigMapList": {"l.yaml": "apiVersion: v1\nkind: ConfigMapList\nitems: []\n"},
    "a merge key": {
        "a.yaml": "apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: a\n"
        "data:\n  base: &b {x: '1'}\n  more:\n    <<: *b\n    y: '2'\n"
    },
    "a duplicate key": {"a.yaml": obj("ConfigMap", "a") + "data: {}\ndata: {x: y}\n"},
    "a duplicate name in metadata": {
        "a.yaml": "apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: a\n  name: b\n"
    },
    "a null list item": {"a.yaml": obj("ConfigMap", "a") + "x:\n- 1\n-\n- 2\n"},
    "a custom tag": {"a.yaml": obj("ConfigMap", "a") + "data: !secret {x: y}\n"},
    "a binary tag": {"a.yaml": obj("ConfigMap", "a") + "binaryData: !!binary aGk=\n"},
    "an integer key": {"a.yaml": obj("ConfigMap", "a") + "data:\n  1: one\n"},
    "a boolean key": {"a.yaml": obj("ConfigMap", "a") + "data:\n  yes: one\n"},
    "a kustomization in a subdirectory": {
        "base/kustomization.yaml": "resources: [cm.yaml]\n",
        "base/cm.yaml": obj("ConfigMap", "b"),
        "top.yaml": obj("ConfigMap", "t"),
    },
    "a directory named like a kustomization": {
        "kustomization.yml/x.yaml": obj("ConfigMap", "k"),
    },
    "a helm values file": {"values.yaml": "replicaCount: 1\nimage: nginx\n"},
    "an object without a name": {"a.yaml": "apiVersion: v1\nkind: ConfigMap\nmetadata: {}\n"},
    "an object without an apiVersion": {"a.yaml": "kind: ConfigMap\nmetadata: {name: a}\n"},
    "a local-config annotation": {
        "a.yaml": obj("ConfigMap", "a")
        + "  annotations:\n    config.kubernetes.io/local-config: 'true'\n"
    },
    "kustomize's index annotation": {
        "a.yaml": obj("ConfigMap", "a") + "  annotations:\n    config.kubernetes.io/index: '0'\n"
    },
    "empty annotations": {"a.yaml": obj("ConfigMap", "a") + "  annotations: {}\n"},
    "an integer label": {"a.yaml": obj("ConfigMap", "a") + "  labels:\n    n: 1\n"},
    "windows line ends": {"a.yaml": obj("ConfigMap", "a").replace("\n", "\r\n")},
    "a byte-order mark": {"a.yaml": "\ufeff" + obj("ConfigMap", "a")},
    "not UTF-8": {"a.yaml": obj("ConfigMap", "a").encode() + b"data: {x: \xff}\n"},
    "a separator with content": {"a.yaml": obj("ConfigMap", "a") + "--- {x: 1}\n"},
    "a separator glued to text": {"a.yaml": obj("ConfigMap", "a") + "---x\n" + obj("Secret", "s")},
    "two documents without a --- line": {
        "a.yaml": obj("ConfigMap", "a") + "...\n" + obj("ConfigMap", "b")
    },
    "the same object twice": {"a.yaml": obj("ConfigMap", "a"), "b.yaml": obj("ConfigMap", "a")},
    "the same name in two namespaces": {
        "a.yaml": obj("ConfigMap", "a", namespace="x") + "---\n" + obj("ConfigMap", "a"),
    },
    "a space in a file name": {"my file.yaml": obj("ConfigMap", "a")},
    "a kustomization kind": {
        "k.yaml": "apiVersion: kustomize.config.k8s.io/v1beta1\nkind: Kustomization\n"
        "metadata: {name: k}\n"
    },
    "an empty directory": {"README.md": "nothing here\n"},
    "only comments": {"a.yaml": "# nothing\n---\n# still nothing\n"},
    "invalid YAML": {"a.yaml": obj("ConfigMap", "a") + "data: [\n"},
    "a YAML 1.1 boolean (yes)": {"a.yaml": obj("ConfigMap", "a") + "data:\n  x: yes\n"},
    "a YAML 1.1 boolean (on)": {"a.yaml": obj("ConfigMap", "a") + "data:\n  x: On\n"},
    "an exponent without a dot": {"a.yaml": obj("ConfigMap", "a") + "data:\n  x: 1e3\n"},
    "a float": {"a.yaml": obj("ConfigMap", "a") + "data:\n  x: 1.5\n"},
    "a float with an exponent": {"a.yaml": obj("ConfigMap", "a") + "data:\n  x: 1.5e3\n"},
    "a date": {"a.yaml": obj("ConfigMap", "a") + "data:\n  x: 2001-12-14\n"},
    "a sexagesimal number": {"a.yaml": obj("ConfigMap", "a") + "data:\n  x: 12:30:00\n"},
    "an integer beyond int64": {
        "a.yaml": obj("ConfigMap", "a") + "data:\n  x: 123456789012345678901234567890\n"
    },
    "a YAML 1.2 octal": {"a.yaml": obj("ConfigMap", "a") + "data:\n  x: 0o17\n"},
    "an infinite float": {"a.yaml": obj("ConfigMap", "a") + "data:\n  x: .inf\n"},
    "a float 1.": {"a.yaml": obj("ConfigMap", "a") + "data:\n  x: 1.\n"},
    "a tagged quoted scalar": {"a.yaml": obj("ConfigMap", "a") + "data:\n  x: !!int '3'\n"},
    "a plain str tag on true": {"a.yaml": obj("ConfigMap", "a") + "data:\n  x: !!str true\n"},
    "a key YAML 1.2 reads as a number": {"a.yaml": obj("ConfigMap", "a") + "data:\n  1e3: x\n"},
    "a YAML 1.1 line break": {"a.yaml": obj("ConfigMap", "a") + "data:\n  x: a\u2028b\n"},
    "a non-ASCII name": {"a.yaml": obj("ConfigMap", "ä")},
    "a top-level scalar": {"a.yaml": "just text\n"},
}


@pytest.mark.parametrize("case", sorted(PLAIN))
def test_the_fast_path_gives_kustomizes_objects_in_its_order(tmp_path: Path, case: str) -> None:
    tree = write_tree(tmp_path / "tree", PLAIN[case])
    (tmp_path / "work").mkdir()
    expected = kustomize_objects(tree, tmp_path / "work")
    assert expected, f"kustomize built nothing for {case}"
    got = plain.read_plain(tree, "", max_bytes=1 << 20)
    assert got is not None, f"the fast path stepped aside for {case}"
    assert objects(got) == expected


@pytest.mark.parametrize("case", sorted(ODD))
def test_the_fast_path_leaves_odd_directories_to_kustomize(tmp_path: Path, case: str) -> None:
    tree = write_tree(tmp_path / "tree", ODD[case])
    assert plain.read_plain(tree, "", max_bytes=1 << 20) is None


def test_a_link_is_left_out_as_the_generator_leaves_it_out(tmp_path: Path) -> None:
    tree = write_tree(tmp_path / "tree", {"a.yaml": obj("ConfigMap", "a")})
    outside = write_tree(tmp_path / "outside", {"b.yaml": obj("ConfigMap", "b")})
    (tree / "b.yaml").symlink_to(outside / "b.yaml")
    (tree / "dir").symlink_to(outside, target_is_directory=True)
    (tmp_path / "work").mkdir()
    expected = kustomize_objects(tree, tmp_path / "work")
    assert expected == [{"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "a"}}]
    assert objects(plain.read_plain(tree, "", max_bytes=1 << 20)) == expected


def test_a_subdirectory_path_is_read_alone(tmp_path: Path) -> None:
    tree = write_tree(
        tmp_path / "tree",
        {"apps/a/cm.yaml": obj("ConfigMap", "a"), "apps/b/cm.yaml": obj("ConfigMap", "b")},
    )
    got = plain.read_plain(tree, "apps/a", max_bytes=1 << 20)
    assert [m.ref for m in got or []] == ["ConfigMap/a"]


def test_aliased_values_are_copies(tmp_path: Path) -> None:
    tree = write_tree(tmp_path / "tree", PLAIN["aliases, as a YAML dumper writes them"])
    [deployment] = plain.read_plain(tree, "", max_bytes=1 << 20) or []
    deployment.object["metadata"]["labels"]["owner"] = "me"
    assert deployment.object["spec"]["selector"]["matchLabels"] == {"app": "a"}


def test_an_alias_bomb_is_left_to_kustomize(tmp_path: Path) -> None:
    levels = ["a0: &a0 [x, x, x, x, x, x, x, x, x, x]"]
    levels += [f"a{i}: &a{i} [" + ", ".join([f"*a{i - 1}"] * 10) + "]" for i in range(1, 8)]
    bomb = obj("ConfigMap", "bomb") + "data:\n" + "".join(f"  {line}\n" for line in levels)
    tree = write_tree(tmp_path / "tree", {"a.yaml": bomb})
    assert plain.read_plain(tree, "", max_bytes=1 << 20) is None


def test_more_than_the_bound_is_left_to_kustomize(tmp_path: Path) -> None:
    tree = write_tree(
        tmp_path / "tree", {f"{i}.yaml": obj("ConfigMap", f"c{i}") for i in range(10)}
    )
    assert plain.read_plain(tree, "", max_bytes=200) is None
    assert plain.read_plain(tree, "", max_bytes=1 << 20) is not None


def test_build_uses_the_fast_path_only_when_asked_and_nothing_is_merged(tmp_path: Path) -> None:
    tree = write_tree(tmp_path / "tree", {"cm.yaml": obj("ConfigMap", "a") + "# kept\n"})
    (tmp_path / "work").mkdir()

    def run(options: BuildOptions, *, fast: bool) -> list[Manifest]:
        return asyncio.run(build(tree, None, options, work_root=tmp_path / "work", plain=fast))

    # The fast path keeps the file's text (comment and all); kustomize prints its own.
    assert "# kept" in run(BuildOptions(), fast=True)[0].text
    assert run(BuildOptions(), fast=False)[0].text.startswith("apiVersion: v1\nkind: ConfigMap")
    namespaced = run(BuildOptions(target_namespace="t"), fast=True)
    assert namespaced[0].object["metadata"] == {"name": "a", "namespace": "t"}
