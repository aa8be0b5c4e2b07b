"""Fuzzed postBuild substitution: hostile templates and values give text or a named error.

`expand` and `substitute_manifest` take the repository's text and the values of
ConfigMaps and Secrets. Whatever they hold, the result is a string, an ExpansionError or
a SubstitutionError naming the object, never another exception, never a secret value in
a message, never unbounded time (globs are matched in linear time) or size.
"""

from __future__ import annotations

import re
import time

import pytest
from hypothesis import example, given
from hypothesis import strategies as st

from controllers.toolkit.kustomize.build import Manifest, parse_output
from controllers.toolkit.kustomize.substitute import (
    MAX_EXPANDED,
    ExpansionError,
    SubstitutionError,
    Variables,
    _glob_tokens,
    _trim_prefix,
    expand,
    lenient_lookup,
    strict_lookup,
    substitute_manifest,
)

PIECES = [
    "${",
    "}",
    "$",
    "$$",
    "VAR",
    "X",
    ":",
    ":=",
    ":-",
    "=",
    "-",
    "+",
    "?",
    "#",
    "##",
    "%",
    "%%",
    "/",
    "//",
    "/#",
    "/%",
    "^",
    "^^",
    ",",
    ",,",
    "*",
    "[",
    "]",
    "\\",
    "0",
    "-1",
    "99",
    "\n",
    "'",
    '"',
    "{",
    "\ud800",
    "\x00",
]
templates = st.lists(st.sampled_from(PIECES) | st.text(max_size=4), max_size=30).map("".join)
values = st.dictionaries(
    st.sampled_from(["VAR", "X", "A_1", "_"]), st.text(max_size=20), max_size=4
)
SECRET = "s3cr3t-canary-value"


@given(templates, values, st.booleans())
@example("${VAR:=${VAR:=${VAR}}}", {}, True)
@example("${VAR:99999999999999999999}", {"VAR": "x"}, True)
@example("${VAR:1:-9223372036854775808}", {"VAR": "xyz"}, True)
@example("${VAR/[/]}", {"VAR": "a[b"}, True)
@example("${VAR#[}", {"VAR": "a"}, True)
def test_expand_gives_text_or_expansion_error(
    text: str, variables: dict[str, str], strict: bool
) -> None:
    lookup = strict_lookup(variables) if strict else lenient_lookup(variables)
    try:
        result = expand(text, lookup)
    except ExpansionError as exc:
        assert 0 <= exc.position <= len(text)
        return
    assert isinstance(result, str)


def _reference_trim(value: str, pattern: str, longest: bool) -> str:
    """The quadratic definition: try each prefix, longest first."""
    tokens = _glob_tokens(pattern)
    if tokens is None:
        return value
    regex = re.compile("".join(".*" if t is None else t.pattern for t in tokens), re.DOTALL)
    match = ""
    for end in range(len(value), 0, -1):
        if regex.fullmatch(value[:end]):
            match = value[:end]
            if longest:
                break
    return value[len(match) :] if match else value


@given(
    st.text(alphabet="ab/*?[]^-\\", max_size=12),
    st.text(alphabet="ab/-[", max_size=12),
    st.booleans(),
)
def test_glob_trim_agrees_with_its_definition(pattern: str, value: str, longest: bool) -> None:
    assert _trim_prefix(value, pattern, longest=longest) == _reference_trim(value, pattern, longest)


def test_a_hostile_glob_over_a_large_value_is_linear() -> None:
    value = "a" * 200_000
    started = time.monotonic()
    for op in ("#", "##", "%", "%%"):
        expand(f"${{V{op}*a*a*a*a*a*b}}", strict_lookup({"V": value}))
    # The regex version takes hours here; generous for a loaded machine.
    assert time.monotonic() - started < 60


def test_an_expansion_bomb_is_refused() -> None:
    text = "data: " + "${BIG}" * 100
    with pytest.raises(ExpansionError, match="larger than"):
        expand(text, strict_lookup({"BIG": "x" * (MAX_EXPANDED // 50)}))


HEAD = "apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: cm\n"


@given(templates, st.text(max_size=30))
@example("data: {k: ${SECRET_VALUE}", SECRET)
@example("data:\n  k: ${SECRET_VALUE}\n", "\ud800")
@example("data:\n  k: ${SECRET_VALUE}\n", "- a\n- b")
@example("${SECRET_VALUE}", "[1, 2]")
def test_substitute_manifest_gives_an_object_or_a_named_error(body: str, secret: str) -> None:
    text = HEAD + body + "\n"
    try:
        (manifest,) = parse_output(text)
    except Exception:
        manifest = Manifest(text=text, object={"kind": "ConfigMap", "metadata": {"name": "cm"}})
    variables = Variables(values={"SECRET_VALUE": secret, "X": "1"}, secret={"SECRET_VALUE"})
    try:
        result = substitute_manifest(manifest, variables)
    except SubstitutionError as exc:
        assert "ConfigMap/cm" in str(exc)
        if len(secret) >= 3 and secret.strip():
            assert secret not in str(exc)
        return
    assert isinstance(result.object, dict)
