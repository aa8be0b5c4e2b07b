"""Fuzzed directories: where the in-process fast path answers, kustomize answers the same.

`inprocess.build_in_process` reads a directory without a kustomization file, or with one
listing its own files, and sets a namespace; whenever it returns objects, the pinned
kustomize binary, building the same directory through Flux's generated (or merged)
kustomization, must succeed with the same objects in the same order. (When it returns
None the build goes to kustomize anyway, so there is nothing to compare.) Directories
are made of Kubernetes-looking documents with scalars in YAML's many spellings, split
into files with every separator style, and of raw token soup; kustomizations list some
of them, with namespaces spelled well and badly.
"""

from __future__ import annotations

import asyncio
import tempfile
from pathlib import Path

from hypothesis import example, given, settings
from hypothesis import strategies as st

from controllers.toolkit.kustomize.build import BuildError, build
from controllers.toolkit.kustomize.generate import BuildOptions
from controllers.toolkit.kustomize.inprocess import build_in_process

KINDS = [
    ("v1", "ConfigMap"),
    ("v1", "Secret"),
    ("v1", "Namespace"),
    ("v1", "Service"),
    ("apps/v1", "Deployment"),
    ("rbac.authorization.k8s.io/v1", "Role"),
    ("admissionregistration.k8s.io/v1", "ValidatingWebhookConfiguration"),
    ("example.com/v1", "Widget"),
    ("example.com/v1beta1", "Widget"),
    ("v1", "Widget"),
    ("a.b/c", "Widget"),
]
NAMES = st.text("abxoz-.019", min_size=1, max_size=6).filter(lambda s: s[0].isalnum())
# Scalars both YAMLs read alike, and (RISKY) ones the fast path must leave to kustomize.
SAFE = [
    "'yes'",
    "0755",
    "0x1f",
    "-0",
    "+1",
    "1_000",
    "~",
    "null",
    "''",
    '""',
    "'a''b'",
    '"a\\tb\\u00e9"',
    "|\n    one\n    two",
    ">-\n    folded\n    lines",
    "plain words",
    "a#b",
    "a # comment",
    "'#'",
    "[1, 'x', {k: v}]",
    "{}",
    "[]",
    "=",
    "'---'",
    "ünï ✓",
    "true",
    "'true'",
    "10.0.0.1",
    "100m",
    "y",
    "",
]
RISKY = [
    "yes",
    "No",
    "on",
    "0o17",
    "1e3",
    "1.0e+3",
    ".5",
    "12:30",
    "2001-12-14",
    "2001-12-14t21:59:43.10-05:00",
    "123456789012345678901234567890",
    "!!str 1",
]
SEPARATORS = ["---\n", "--- # c\n", "---   \n", "---\n# note\n", "---\n---\n"]


@st.composite
def documents(draw: st.DrawFn, kinds: list[tuple[str, str]] = KINDS) -> str:
    api, kind = draw(st.sampled_from(kinds))
    lines = [f"apiVersion: {api}", f"kind: {kind}", "metadata:", f"  name: {draw(NAMES)}-@@"]
    if draw(st.booleans()):
        lines.append(f"  namespace: {draw(NAMES)}")
    if draw(st.booleans()):
        lines += ["  labels:", f"    app: {draw(NAMES)}"]
    keys = draw(st.lists(st.text("abcxyz", min_size=1, max_size=3), max_size=4, unique=True))
    if keys:
        lines.append("data:")
        scalars = st.sampled_from(SAFE) | st.sampled_from(RISKY)
        lines += [
            f"  {key}: {draw(st.sampled_from(SAFE) if draw(st.integers(0, 9)) else scalars)}"
            for key in keys
        ]
    if draw(st.booleans()):
        lines.insert(draw(st.integers(0, len(lines))), "# a comment")
    return "\n".join(lines) + "\n"


@st.composite
def files(draw: st.DrawFn, kinds: list[tuple[str, str]] = KINDS) -> str:
    docs = draw(st.lists(documents(kinds), min_size=1, max_size=4))
    text = "---\n" if draw(st.booleans()) else ""
    for index, doc in enumerate(docs):
        if index:
            text += draw(st.sampled_from(SEPARATORS))
        text += doc
    if draw(st.booleans()):
        text += draw(st.sampled_from(["---\n", "...\n", "# end\n"]))
    return text


def compare(tree_files: dict[str, str], options: BuildOptions | None = None) -> None:
    options = options or BuildOptions()
    with tempfile.TemporaryDirectory() as scratch:
        tree = Path(scratch) / "tree"
        serial = 0
        for rel, text in tree_files.items():
            # Each document its own name: the same name twice is left to kustomize.
            while "@@" in text:
                serial += 1
                text = text.replace("@@", str(serial), 1)
            (tree / rel).parent.mkdir(parents=True, exist_ok=True)
            (tree / rel).write_text(text, encoding="utf-8")
        got = build_in_process(tree, "", options, max_bytes=1 << 20)
        if got is None:
            return
        try:
            built = asyncio.run(build(tree, None, options, work_root=Path(scratch)))
        except BuildError as exc:
            raise AssertionError(f"the fast path answered where kustomize failed: {exc}") from None
        assert [m.object for m in got] == [m.object for m in built]


@settings(max_examples=60)
@given(st.dictionaries(st.sampled_from(["a.yaml", "b.yml", "d/c.yaml", "d/e/f.yaml"]), files()))
# go-yaml v3 reads "0b-1" as the integer -1: the object had no name for kustomize.
@example({"a.yaml": "apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: 0b-@@\n"})
def test_plain_directories_read_as_kustomize_builds_them(tree_files: dict[str, str]) -> None:
    compare(tree_files)


FILE_NAMES = ["a.yaml", "b.yml", "c.yaml"]
# Mostly kinds a namespace is set on here, and one it is not (left to kustomize).
NAMESPACED_KINDS = [
    ("v1", "ConfigMap"),
    ("v1", "Secret"),
    ("v1", "Service"),
    ("apps/v1", "Deployment"),
    ("rbac.authorization.k8s.io/v1", "Role"),
    ("batch/v1", "CronJob"),
    ("example.com/v1", "Widget"),
]
# Namespaces as a kustomization or a Kustomization spells them, some left to kustomize.
NAMESPACES = st.sampled_from(["apps", "a-b", "x1", "n", "y", "on", "1e3", "0x1f", "true", "Ab", ""])


@st.composite
def listing_kustomizations(draw: st.DrawFn) -> tuple[dict[str, str], BuildOptions]:
    kinds = draw(st.sampled_from([KINDS, NAMESPACED_KINDS]))
    tree = draw(st.dictionaries(st.sampled_from(FILE_NAMES), files(kinds), min_size=1))
    present = sorted(tree)
    if draw(st.booleans()):
        tree["d/e.yaml"] = draw(files(kinds))  # not listed: not read
    listed = draw(st.lists(st.sampled_from(present), min_size=1, max_size=3, unique=True))
    if draw(st.integers(0, 9)) == 9:
        listed.append("gone.yaml")  # kustomize's error: left to it
    lines = ["resources:", *(f"- {draw(st.sampled_from(['', './']))}{name}" for name in listed)]
    if draw(st.booleans()):
        lines.append(f"namespace: {draw(NAMESPACES)}")
    if draw(st.booleans()):
        lines[:0] = ["apiVersion: kustomize.config.k8s.io/v1beta1", "kind: Kustomization"]
    name = draw(st.sampled_from(["kustomization.yaml", "kustomization.yml", "Kustomization"]))
    tree[name] = "\n".join(lines) + "\n"
    target = draw(st.none() | NAMESPACES)
    return tree, BuildOptions(target_namespace=target)


@settings(max_examples=60)
@given(listing_kustomizations())
# kustomize reads its kustomization as YAML 1.1, where the "n" written there is false.
@example(
    (
        {
            "a.yaml": "apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: a\n",
            "kustomization.yaml": "resources: [a.yaml]\n",
        },
        BuildOptions(target_namespace="n"),
    )
)
def test_listing_kustomizations_and_namespaces_build_as_kustomize_builds_them(
    case: tuple[dict[str, str], BuildOptions],
) -> None:
    compare(*case)


@settings(max_examples=30)
@given(
    st.dictionaries(st.sampled_from(["a.yaml", "d/c.yaml"]), files(NAMESPACED_KINDS)), NAMESPACES
)
def test_plain_directories_with_a_target_namespace_build_as_kustomize_builds_them(
    tree_files: dict[str, str], namespace: str
) -> None:
    compare(tree_files, BuildOptions(target_namespace=namespace))


TOKENS = [
    "apiVersion: v1\n",
    "kind: ConfigMap\n",
    "metadata:\n",
    "  name: a\n",
    "  name: b\n",
    "  namespace: n\n",
    "data:\n",
    "  k: ",
    "  - ",
    "---\n",
    "...\n",
    "# c\n",
    "&a ",
    "*a",
    "!!str ",
    "<<: ",
    "{",
    "}",
    "[",
    "]",
    ", ",
    ": ",
    "\n",
    "  ",
    "\t",
    "'",
    '"',
    "|\n",
    "yes",
    "1",
    "~",
]


@settings(max_examples=150)
@given(st.lists(st.sampled_from(TOKENS), max_size=30))
# kustomize drops a "<<" key even when tagged !!str; PyYAML keeps it.
@example(["!!str ", "<<: "])
def test_token_soup_is_read_as_kustomize_reads_it_or_left_to_it(tokens: list[str]) -> None:
    compare({"a.yaml": "apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: x\n" + "".join(tokens)})
