"""The in-process fast path gives what ``kustomize build`` gives, or steps aside.

Each case is a directory (without a kustomization file, or with one listing its own
files) and the spec's build fields, built twice: by the pinned kustomize binary (through
the generated or merged kustomization, as before) and by `inprocess.build_in_process`.
Where the fast path answers, the objects and their order must be kustomize's; the odd
directories must make it step aside (None), so kustomize decides, errors included.
"""

from __future__ import annotations

import asyncio
import json
from pathlib import Path

import pytest
import yaml

from bench import push_to_alert
from controllers.toolkit.kustomize.build import BuildError, Manifest, build
from controllers.toolkit.kustomize.generate import BuildOptions, Image
from controllers.toolkit.kustomize.inprocess import NAMESPACED, build_in_process


def write_tree(root: Path, files: dict[str, str | bytes]) -> Path:
    for rel, content in files.items():
        path = root / rel
        path.parent.mkdir(parents=True, exist_ok=True)
        if isinstance(content, bytes):
            path.write_bytes(content)
        else:
            path.write_text(content, encoding="utf-8")
    return root


def kustomize_objects(
    tree: Path, work: Path, options: BuildOptions | None = None, path: str | None = None
) -> list[dict[str, object]] | None:
    """kustomize's objects for the tree's root (or `path`), or None when kustomize (or
    Flux's generator before it) refuses the directory."""
    try:
        manifests = asyncio.run(build(tree, path, options or BuildOptions(), work_root=work))
    except BuildError:
        return None
    return [m.object for m in manifests]


def fast(
    tree: Path, rel: str = "", options: BuildOptions | None = None, *, max_bytes: int = 1 << 20
) -> list[Manifest] | None:
    return build_in_process(tree, rel, options or BuildOptions(), max_bytes=max_bytes)


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
    got = fast(tree)
    assert got is not None, f"the fast path stepped aside for {case}"
    assert objects(got) == expected


@pytest.mark.parametrize("case", sorted(ODD))
def test_the_fast_path_leaves_odd_directories_to_kustomize(tmp_path: Path, case: str) -> None:
    tree = write_tree(tmp_path / "tree", ODD[case])
    assert fast(tree) is None


def test_a_link_is_left_out_as_the_generator_leaves_it_out(tmp_path: Path) -> None:
    tree = write_tree(tmp_path / "tree", {"a.yaml": obj("ConfigMap", "a")})
    outside = write_tree(tmp_path / "outside", {"b.yaml": obj("ConfigMap", "b")})
    (tree / "b.yaml").symlink_to(outside / "b.yaml")
    (tree / "dir").symlink_to(outside, target_is_directory=True)
    (tmp_path / "work").mkdir()
    expected = kustomize_objects(tree, tmp_path / "work")
    assert expected == [{"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "a"}}]
    assert objects(fast(tree)) == expected


def test_a_subdirectory_path_is_read_alone(tmp_path: Path) -> None:
    tree = write_tree(
        tmp_path / "tree",
        {"apps/a/cm.yaml": obj("ConfigMap", "a"), "apps/b/cm.yaml": obj("ConfigMap", "b")},
    )
    got = fast(tree, "apps/a")
    assert [m.ref for m in got or []] == ["ConfigMap/a"]


def test_aliased_values_are_copies(tmp_path: Path) -> None:
    tree = write_tree(tmp_path / "tree", PLAIN["aliases, as a YAML dumper writes them"])
    [deployment] = fast(tree) or []
    deployment.object["metadata"]["labels"]["owner"] = "me"
    assert deployment.object["spec"]["selector"]["matchLabels"] == {"app": "a"}


def test_an_alias_bomb_is_left_to_kustomize(tmp_path: Path) -> None:
    levels = ["a0: &a0 [x, x, x, x, x, x, x, x, x, x]"]
    levels += [f"a{i}: &a{i} [" + ", ".join([f"*a{i - 1}"] * 10) + "]" for i in range(1, 8)]
    bomb = obj("ConfigMap", "bomb") + "data:\n" + "".join(f"  {line}\n" for line in levels)
    tree = write_tree(tmp_path / "tree", {"a.yaml": bomb})
    assert fast(tree) is None


def test_more_than_the_bound_is_left_to_kustomize(tmp_path: Path) -> None:
    tree = write_tree(
        tmp_path / "tree", {f"{i}.yaml": obj("ConfigMap", f"c{i}") for i in range(10)}
    )
    assert fast(tree, max_bytes=200) is None
    assert fast(tree) is not None


def test_build_uses_the_fast_path_only_when_asked_and_it_can(tmp_path: Path) -> None:
    tree = write_tree(tmp_path / "tree", {"cm.yaml": obj("ConfigMap", "a") + "# kept\n"})
    (tmp_path / "work").mkdir()

    def run(options: BuildOptions, *, in_process: bool) -> list[Manifest]:
        work = tmp_path / "work"
        return asyncio.run(build(tree, None, options, work_root=work, in_process=in_process))

    # The fast path keeps the file's text (comment and all); kustomize prints its own.
    assert "# kept" in run(BuildOptions(), in_process=True)[0].text
    kustomize_text = "apiVersion: v1\nkind: ConfigMap"
    assert run(BuildOptions(), in_process=False)[0].text.startswith(kustomize_text)
    # A namespace set here: the text is what the object became.
    [namespaced] = run(BuildOptions(target_namespace="t"), in_process=True)
    assert namespaced.object["metadata"] == {"name": "a", "namespace": "t"}
    assert json.loads(namespaced.text) == namespaced.object
    # A name prefix is kustomize's to apply.
    [prefixed] = run(BuildOptions(name_prefix="p-"), in_process=True)
    assert prefixed.text.startswith(kustomize_text)
    assert prefixed.object["metadata"] == {"name": "p-a"}


# --- a kustomization listing its own files, and a namespace -------------------------------

KUSTOMIZATION = "apiVersion: kustomize.config.k8s.io/v1beta1\nkind: Kustomization\n"
VERSIONS = {
    "": "v1",
    "apps": "apps/v1",
    "batch": "batch/v1",
    "rbac.authorization.k8s.io": "rbac.authorization.k8s.io/v1",
    "networking.k8s.io": "networking.k8s.io/v1",
    "autoscaling": "autoscaling/v2",
    "policy": "policy/v1",
}


def kustomization(*resources: str, **fields: str) -> str:
    listed = "resources:\n" + "".join(f"- {resource}\n" for resource in resources)
    return KUSTOMIZATION + listed + "".join(f"{key}: {value}\n" for key, value in fields.items())


def documents(*texts: str) -> str:
    return "---\n".join(texts)


CLUSTER_AND_CUSTOM = documents(
    obj("Namespace", "ns"),
    obj("ClusterRole", "cr", "rbac.authorization.k8s.io/v1"),
    obj("RoleBinding", "rb", "rbac.authorization.k8s.io/v1", namespace="x")
    + "subjects:\n- kind: ServiceAccount\n  name: default\nroleRef:\n"
    "  apiGroup: rbac.authorization.k8s.io\n  kind: ClusterRole\n  name: cr\n",
    obj("Widget", "w", "example.com/v1", namespace="x"),
)

# (files, spec.targetNamespace) the fast path must build exactly as kustomize does.
LISTED: dict[str, tuple[dict[str, str | bytes], str | None]] = {
    "only the listed files; others and subdirectories ignored": (
        {
            "kustomization.yaml": kustomization("b.yaml", "a.yml"),
            "a.yml": documents(obj("Secret", "s"), obj("ConfigMap", "a")),
            "b.yaml": obj("Service", "svc", namespace="n"),
            "unlisted.yaml": obj("ConfigMap", "u"),
            "sub/more.yaml": obj("ConfigMap", "m"),
            "README.md": "# docs\n",
        },
        None,
    ),
    "any kind, with no namespace to set": (
        {"kustomization.yaml": kustomization("all.yaml"), "all.yaml": CLUSTER_AND_CUSTOM},
        None,
    ),
    "the kustomization's namespace": (
        {
            "kustomization.yaml": kustomization("a.yaml", namespace="k"),
            "a.yaml": documents(obj("ConfigMap", "a"), obj("Secret", "s", namespace="other")),
        },
        None,
    ),
    "targetNamespace over the kustomization's and the objects' own": (
        {
            "kustomization.yaml": kustomization("a.yaml", "b.yaml", namespace="k"),
            "a.yaml": documents(
                obj("ConfigMap", "z", namespace="a"),
                obj("ConfigMap", "y", namespace="t"),
                obj("Deployment", "d", "apps/v1", namespace="other"),
            ),
            "b.yaml": obj("ConfigMap", "x", namespace="z"),
        },
        "t",
    ),
    "every kind the namespace is set on": (
        {
            "kustomization.yaml": kustomization("kinds.yaml"),
            "kinds.yaml": documents(
                *(
                    obj(kind, f"n{index}", VERSIONS[group], namespace="before")
                    for index, (group, kind) in enumerate(sorted(NAMESPACED))
                )
            ),
        },
        "t",
    ),
    "./ entries, a .yml, kustomization.yml, no apiVersion or kind": (
        {
            "kustomization.yml": "# listed\nresources: [./a.yaml, b.yml]\nnamespace: k\n",
            "a.yaml": obj("ConfigMap", "a"),
            "b.yml": obj("ConfigMap", "b"),
        },
        None,
    ),
    "an empty file listed": (
        {
            "Kustomization": kustomization("a.yaml", "empty.yaml"),
            "a.yaml": obj("ConfigMap", "a"),
            "empty.yaml": "# nothing yet\n",
        },
        "t",
    ),
    "a plain directory and a targetNamespace": (
        {
            "a.yaml": obj("ConfigMap", "a", namespace="x"),
            "d/b.yaml": obj("Service", "b"),
            "d/e/c.yml": obj("Deployment", "c", "apps/v1"),
        },
        "t",
    ),
}

# (files, the spec's build fields) the fast path must leave to kustomize.
LEFT: dict[str, tuple[dict[str, str | bytes], BuildOptions]] = {
    "a namePrefix in the kustomization": (
        {"kustomization.yaml": kustomization("a.yaml", namePrefix="p-")},
        BuildOptions(),
    ),
    "commonLabels in the kustomization": (
        {"kustomization.yaml": kustomization("a.yaml") + "commonLabels:\n  app: x\n"},
        BuildOptions(),
    ),
    "patches in the kustomization": (
        {
            "kustomization.yaml": kustomization("a.yaml") + "patches:\n- path: p.yaml\n",
            "p.yaml": obj("ConfigMap", "a") + "data: {x: y}\n",
        },
        BuildOptions(),
    ),
    "a namePrefix in the spec": (
        {"kustomization.yaml": kustomization("a.yaml")},
        BuildOptions(name_prefix="p-"),
    ),
    "images in the spec, a plain directory": (
        {},
        BuildOptions(images=(Image("nginx", new_tag="1"),)),
    ),
    "a directory resource": (
        {"kustomization.yaml": kustomization("a.yaml", "dir"), "dir/b.yaml": obj("ConfigMap", "b")},
        BuildOptions(),
    ),
    "a kustomization in a subdirectory": (
        {
            "kustomization.yaml": kustomization("a.yaml"),
            "base/kustomization.yaml": kustomization("b.yaml"),
            "base/b.yaml": obj("ConfigMap", "b"),
        },
        BuildOptions(),
    ),
    "two kustomization files": (
        {
            "kustomization.yaml": kustomization("a.yaml"),
            "kustomization.yml": kustomization("a.yaml"),
        },
        BuildOptions(),
    ),
    "a file listed twice": (
        {"kustomization.yaml": kustomization("a.yaml", "./a.yaml")},
        BuildOptions(),
    ),
    "a missing file": (
        {"kustomization.yaml": kustomization("a.yaml", "gone.yaml")},
        BuildOptions(),
    ),
    "a parent path": (
        {
            "kustomization.yaml": kustomization("a.yaml", "../up.yaml"),
        },
        BuildOptions(),
    ),
    "a glob": ({"kustomization.yaml": kustomization("'*.yaml'")}, BuildOptions()),
    "a remote resource": (
        {"kustomization.yaml": kustomization("a.yaml", "https://example.com/x.yaml")},
        BuildOptions(),
    ),
    "a file that is no manifest": (
        {
            "kustomization.yaml": kustomization("a.yaml", "notes.txt"),
            "notes.txt": obj("ConfigMap", "n"),
        },
        BuildOptions(),
    ),
    "no resources": ({"kustomization.yaml": KUSTOMIZATION + "namespace: k\n"}, BuildOptions()),
    "another apiVersion": (
        {"kustomization.yaml": kustomization("a.yaml").replace("v1beta1", "v1alpha1")},
        BuildOptions(),
    ),
    "a Component": (
        {
            "kustomization.yaml": kustomization("a.yaml").replace(
                "kind: Kustomization", "kind: Component"
            )
        },
        BuildOptions(),
    ),
    "a RoleBinding to set a namespace on": (
        {
            "kustomization.yaml": kustomization("a.yaml", "rb.yaml"),
            "rb.yaml": CLUSTER_AND_CUSTOM.split("---\n")[2],
        },
        BuildOptions(target_namespace="t"),
    ),
    "a Namespace with a namespace to set": (
        {
            "kustomization.yaml": kustomization("a.yaml", "ns.yaml", namespace="k"),
            "ns.yaml": obj("Namespace", "k"),
        },
        BuildOptions(),
    ),
    "a custom resource to set a namespace on": (
        {"w.yaml": obj("Widget", "w", "example.com/v1")},
        BuildOptions(target_namespace="t"),
    ),
    "a cluster-scoped kind to set a namespace on": (
        {"cr.yaml": obj("ClusterRole", "cr", "rbac.authorization.k8s.io/v1")},
        BuildOptions(target_namespace="t"),
    ),
    "a Deployment of another group": (
        {"d.yaml": obj("Deployment", "d", "example.com/v1")},
        BuildOptions(target_namespace="t"),
    ),
    "an empty targetNamespace": ({}, BuildOptions(target_namespace="")),
    "a targetNamespace that is not a DNS label": ({}, BuildOptions(target_namespace="Team_A")),
    "a targetNamespace YAML 1.2 reads as a number": ({}, BuildOptions(target_namespace="1e3")),
    "a targetNamespace YAML 1.1 reads as a boolean": ({}, BuildOptions(target_namespace="n")),
    "a namespace that is not a string": (
        {"kustomization.yaml": kustomization("a.yaml", namespace="12")},
        BuildOptions(),
    ),
    "a namespace YAML 1.1 reads as a boolean": (
        {"kustomization.yaml": kustomization("a.yaml", namespace="yes")},
        BuildOptions(),
    ),
}


@pytest.mark.parametrize("case", sorted(LISTED))
def test_a_listing_kustomization_and_a_namespace_build_as_kustomize_builds_them(
    tmp_path: Path, case: str
) -> None:
    files, target_namespace = LISTED[case]
    tree = write_tree(tmp_path / "tree", files)
    options = BuildOptions(target_namespace=target_namespace)
    (tmp_path / "work").mkdir()
    expected = kustomize_objects(tree, tmp_path / "work", options)
    assert expected, f"kustomize built nothing for {case}"
    got = fast(tree, options=options)
    assert got is not None, f"the fast path stepped aside for {case}"
    assert objects(got) == expected


@pytest.mark.parametrize("case", sorted(LEFT))
def test_what_the_fast_path_does_not_reproduce_is_left_to_kustomize(
    tmp_path: Path, case: str
) -> None:
    files, options = LEFT[case]
    tree = write_tree(tmp_path / "tree", {"a.yaml": obj("ConfigMap", "a"), **files})
    assert fast(tree, options=options) is None


def test_linked_kustomization_or_resource_is_left_to_kustomize(tmp_path: Path) -> None:
    tree = write_tree(
        tmp_path / "tree",
        {"real.yaml": obj("ConfigMap", "a"), "k/kustomization.yaml": kustomization("a.yaml")},
    )
    (tree / "a.yaml").symlink_to(tree / "real.yaml")
    (tree / "kustomization.yaml").symlink_to(tree / "k" / "kustomization.yaml")
    assert fast(tree) is None
    (tree / "kustomization.yaml").unlink()
    (tree / "kustomization.yaml").write_text(kustomization("a.yaml"), encoding="utf-8")
    (tree / "k" / "kustomization.yaml").unlink()
    assert fast(tree) is None


def test_the_push_benchmark_apps_build_as_kustomize_builds_them(tmp_path: Path) -> None:
    tree = write_tree(tmp_path / "tree", dict(push_to_alert.repository_tree(2, 3, 7)))
    (tmp_path / "work").mkdir()
    for index in range(2):
        spec = push_to_alert.kustomization(index)["spec"]
        options = BuildOptions.parse(spec)
        rel = spec["path"].removeprefix("./")
        expected = kustomize_objects(tree, tmp_path / "work", options, path=rel)
        got = fast(tree, rel, options)
        assert got is not None
        assert objects(got) == expected
        assert {m.namespace for m in got} == {spec["targetNamespace"]}


def test_the_texts_follow_the_namespace(tmp_path: Path) -> None:
    """The history digest reads the texts: a new namespace must change them."""
    tree = write_tree(
        tmp_path / "tree",
        {
            "kustomization.yaml": kustomization("a.yaml"),
            "a.yaml": documents(obj("ConfigMap", "a", namespace="t"), obj("ConfigMap", "b")),
        },
    )
    in_t = fast(tree, options=BuildOptions(target_namespace="t")) or []
    in_u = fast(tree, options=BuildOptions(target_namespace="u")) or []
    assert in_t[0].text == obj("ConfigMap", "a", namespace="t")  # already there: the file's
    assert yaml.safe_load(in_t[1].text) == in_t[1].object
    assert [m.text for m in in_t] != [m.text for m in in_u]
