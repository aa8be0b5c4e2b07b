"""Fuzzed YAML of build output: objects or BuildError, never a crash or a bomb.

`parse_output` reads what kustomize printed; `check_manifest_file` and
`read_kustomization` read the repository's own files. Whatever the text, they return
objects that serialise as JSON (what the API server is sent) or raise BuildError naming
the document. Alias bombs, alias cycles, deep nesting and non-JSON tags are refused.
"""

from __future__ import annotations

import json
import tempfile
from pathlib import Path

import yaml
from hypothesis import example, given
from hypothesis import strategies as st

from controllers.toolkit.kustomize.build import BuildError, parse_output
from controllers.toolkit.kustomize.generate import check_manifest_file, read_kustomization

TOKENS = [
    "apiVersion: v1\n",
    "kind: ConfigMap\n",
    "metadata:\n",
    "  name: a\n",
    "---\n",
    "- ",
    "&a ",
    "*a",
    "&b ",
    "*b",
    "[",
    "]",
    "{",
    "}",
    ", ",
    ": ",
    "\n",
    "  ",
    "<<: *a\n",
    "!!binary ",
    "!!set ",
    "!!timestamp 2001-01-01",
    "!!python/object:os.system ",
    "? ",
    "|\n",
    ">-\n",
    "'",
    '"',
    "\\",
    "\t",
    "%YAML 1.1\n",
    "%TAG ! tag:x,2000:\n",
    "!x ",
    "~",
    "null",
    "1e309",
    ".nan",
    "0x1F",
    "=",
    "\x00",
    "\ud800",
    "\ufeff",
    "...\n",
    "#",
    "@",
    "`",
    "1: 2\n",
    "kind: List\nitems:\n",
    "kind: [x]\n",
    "name: 7\n",
    "data: &d {k: v}\n",
    "x: *d\n",
]
texts = st.lists(st.sampled_from(TOKENS) | st.text(max_size=8), max_size=40).map("".join)

json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(max_size=10),
    lambda inner: (
        st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=6), inner, max_size=4)
    ),
    max_leaves=20,
)
objects = st.fixed_dictionaries(
    {
        "apiVersion": st.just("v1"),
        "kind": st.text(min_size=1, max_size=8),
        "metadata": st.fixed_dictionaries({"name": st.text(min_size=1, max_size=8)}),
    },
    optional={"data": json_values, "spec": json_values},
)

LAUGHS = (
    "apiVersion: v1\nkind: ConfigMap\nmetadata: {name: a}\nx0: &a0 [q,q,q,q,q,q,q,q,q]\n"
    + "".join(f"x{i}: &a{i} [" + ",".join([f"*a{i - 1}"] * 9) + "]\n" for i in range(1, 10))
)
HEAD = "apiVersion: v1\nkind: ConfigMap\nmetadata: {name: a}\n"


def _serialisable(text: str) -> None:
    try:
        manifests = parse_output(text)
    except BuildError:
        return
    for manifest in manifests:
        assert isinstance(manifest.object, dict)
        json.dumps(manifest.object)
        assert isinstance(manifest.kind, str) and manifest.name


@given(texts)
@example(LAUGHS)
@example(HEAD + "data: &x [*x]\n")
@example(HEAD + "data: " + "[" * 5000 + "]" * 5000 + "\n")
@example(HEAD + "data: " + "{a: " * 2000 + "1" + "}" * 2000 + "\n")
@example(HEAD + "data: !!binary aGVsbG8=\n")
@example(HEAD + "data: !!set {a, b}\n")
@example(HEAD + "data: !!timestamp 2001-12-14\n")
@example("apiVersion: v1\nkind: [1]\nmetadata: {name: [2]}\n")
@example("- a\n- b\n")
@example("just a scalar\n")
def test_build_output_parses_to_json_objects_or_build_error(text: str) -> None:
    _serialisable(text)


@given(st.lists(objects, max_size=5))
def test_well_formed_output_round_trips(items: list[dict[str, object]]) -> None:
    text = "".join("---\n" + yaml.safe_dump(item) for item in items)
    manifests = parse_output(text)
    assert [m.object for m in manifests] == items


@given(texts)
@example(LAUGHS)
@example("resources: &r [*r]\n")
def test_repository_files_parse_or_are_refused_by_name(text: str) -> None:
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        path = root / "kustomization.yaml"
        path.write_text(text, encoding="utf-8", errors="surrogatepass")
        for read in (check_manifest_file, read_kustomization):
            try:
                result = read(path, root)
            except BuildError as exc:
                assert "kustomization.yaml" in str(exc)
                continue
            if result is not None:
                json.dumps(result)


def test_a_large_flat_document_is_accepted() -> None:
    # The bounds are on nesting and alias expansion, not on honest size.
    text = HEAD + "data:\n" + "".join(f"  k{i}: v{i}\n" for i in range(50_000))
    (manifest,) = parse_output(text)
    assert len(manifest.object["data"]) == 50_000
