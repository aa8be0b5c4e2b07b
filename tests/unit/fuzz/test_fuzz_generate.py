"""Fuzzed kustomization generation: hostile `spec` values and kustomization files.

`BuildOptions.parse` reads the Kustomization's spec; `write_kustomization` merges it into
the repository's kustomization.yaml (or a generated one) in the private copy;
`check_references` refuses what leaves it. Whatever either holds, the outcome is a file
written inside the copy or BuildError naming the field or file, never another exception,
never a write outside.
"""

from __future__ import annotations

import os
import tempfile
from pathlib import Path
from typing import Any

import yaml
from hypothesis import example, given
from hypothesis import strategies as st

from controllers.toolkit.kustomize.build import BuildError, check_references
from controllers.toolkit.kustomize.generate import BuildOptions, write_kustomization

SPEC_KEYS = [
    "targetNamespace",
    "namePrefix",
    "nameSuffix",
    "patches",
    "images",
    "components",
    "ignoreMissingComponents",
    "buildMetadata",
]
FILE_KEYS = [
    "resources",
    "bases",
    "components",
    "patches",
    "images",
    "patchesStrategicMerge",
    "configMapGenerator",
    "secretGenerator",
    "generators",
    "transformers",
    "crds",
    "openapi",
    "replacements",
    "namespace",
]
STRINGS = [
    "",
    "a",
    "../x",
    "../../etc",
    "/etc/passwd",
    "a\x00b",
    "a\\b",
    "https://x.example/y",
    "github.com/a/b",
    "git@github.com:a/b",
    "file:///etc",
    "a\nb: c",
    "*",
    "..",
    ".",
    "x" * 300,
    "ssh://h/r",
    "c/../..",
    "${X}",
]

leaf = st.none() | st.booleans() | st.integers() | st.sampled_from(STRINGS) | st.text(max_size=6)
values = st.recursive(
    leaf,
    lambda inner: (
        st.lists(inner, max_size=3)
        | st.dictionaries(
            st.sampled_from(
                [
                    "patch",
                    "target",
                    "name",
                    "newTag",
                    "newName",
                    "digest",
                    "path",
                    "files",
                    "envs",
                    "kind",
                    "group",
                ]
            ),
            inner,
            max_size=3,
        )
    ),
    max_leaves=12,
)
specs = st.dictionaries(st.sampled_from(SPEC_KEYS), values, max_size=5)
files = st.dictionaries(st.sampled_from(FILE_KEYS), values, max_size=5)


def _snapshot(root: Path) -> set[str]:
    return {
        os.path.relpath(os.path.join(d, n), root) for d, ds, fs in os.walk(root) for n in ds + fs
    }


@given(spec=specs, kustomization=files | st.none(), manifest=st.booleans())
@example(
    spec={"components": ["a\x00"], "ignoreMissingComponents": True},
    kustomization=None,
    manifest=True,
)
@example(spec={"patches": [{"patch": "x"}]}, kustomization={"patches": 5}, manifest=False)
@example(spec={"images": [{"name": "a"}]}, kustomization={"images": 5}, manifest=False)
@example(spec={"images": [{"name": "a"}]}, kustomization={"images": "abc"}, manifest=False)
@example(spec={"components": ["c"]}, kustomization={"components": "xyz"}, manifest=False)
@example(spec={"components": ["c"]}, kustomization={"components": {"a": 1}}, manifest=False)
@example(spec={"targetNamespace": "x"}, kustomization={"resources": ["../../etc"]}, manifest=False)
@example(spec={}, kustomization={"resources": "x" * 300}, manifest=False)  # name too long
@example(spec={}, kustomization={"configMapGenerator": 1}, manifest=False)
def test_generation_writes_inside_the_copy_or_names_the_problem(
    spec: dict[str, Any], kustomization: dict[str, Any] | None, manifest: bool
) -> None:
    with tempfile.TemporaryDirectory() as tmp:
        outside = Path(tmp) / "outside"
        outside.mkdir()
        root = Path(tmp) / "tree"
        app = root / "app"
        app.mkdir(parents=True)
        if kustomization is not None:
            (app / "kustomization.yaml").write_text(yaml.safe_dump(kustomization))
        if manifest:
            (app / "cm.yaml").write_text("apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: cm\n")
        before = _snapshot(Path(tmp))
        try:
            options = BuildOptions.parse(spec)
            written = write_kustomization(app, options, root)
            assert written.parent == app
            yaml.safe_load(written.read_text())
            check_references(root, app)
        except BuildError as exc:
            assert str(exc)
        after = _snapshot(Path(tmp))
        assert after - before <= {"tree/app/kustomization.yaml"}
        assert not list(outside.iterdir())
