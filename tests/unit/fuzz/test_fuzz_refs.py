"""Fuzzed semver ranges and git refs.

Constraints parse or raise ConstraintError and pick the highest allowed tag; versions parse
or are None; a GitRepository's `spec.ref` is accepted or refused with GitOperationError,
and every branch or tag name accepted is one `git check-ref-format` accepts too (so none
can be read as an option or escape refs/).
"""

from __future__ import annotations

import contextlib
import subprocess
import time
from typing import Any

from hypothesis import example, given
from hypothesis import strategies as st

from controllers.toolkit.git.errors import GitOperationError
from controllers.toolkit.git.gitref import GitRef, check_ref_name, parse_revision
from controllers.toolkit.semverrange import Constraint, ConstraintError, Version, highest_matching

OPS = ["", "=", "!=", ">", ">=", "<", "<=", "~", "^", "~>", " ", "||", " - ", ",", "x", "*", "X"]
PARTS = ["0", "1", "2", "10", "01", "-rc.1", "+build", ".", "v", "-", "a", "9" * 30]
constraints = st.lists(st.sampled_from(OPS + PARTS) | st.text(max_size=3), max_size=12).map("".join)
versions = st.lists(st.sampled_from(PARTS), min_size=1, max_size=8).map("".join)


@given(constraints, st.lists(versions, max_size=8))
@example("1" * 5000, ["1.0.0"])
@example(">=" + "9" * 5000 + ".0.0", ["1.0.0"])
@example("1.0.0 " + " " * 10000 + "x", ["1.0.0"])
@example("^0.0", ["0.0.1", "0.1.0"])
def test_constraints_pick_the_highest_allowed_tag_or_are_refused(
    text: str, tags: list[str]
) -> None:
    try:
        constraint = Constraint.parse(text)
        best = highest_matching(tags, text)
    except ConstraintError:
        return
    allowed = [(v, t) for t in tags if (v := Version.parse(t)) is not None and constraint.allows(v)]
    if not allowed:
        assert best is None
    else:
        assert best is not None and (best[1], best[0]) == max(allowed)


@given(versions | st.text(max_size=20))
@example("9" * 5000 + ".0.0")
def test_versions_parse_or_are_none(text: str) -> None:
    parsed = Version.parse(text)
    assert parsed is None or Version.parse(str(parsed)) == parsed


def test_a_long_constraint_is_parsed_quickly() -> None:
    started = time.monotonic()
    for text in ("1 " * 20_000 + "-", "1.0.0 " + " " * 50_000 + "- 2", "||" * 20_000 + "1"):
        with contextlib.suppress(ConstraintError):
            Constraint.parse(text)
    assert time.monotonic() - started < 30  # generous for a loaded machine


REF_CHARS = st.sampled_from([*list("ab/.-@{}~^:?*[\\ \t\x00\x7f"), "..", ".lock", "refs/", "é"])
ref_names = st.lists(REF_CHARS | st.text(max_size=2), max_size=10).map("".join)


def _git_accepts(name: str) -> bool:
    result = subprocess.run(
        ["git", "check-ref-format", f"refs/heads/{name}"], capture_output=True, check=False
    )
    return result.returncode == 0


@given(ref_names)
@example("-upload-pack=evil")
@example("a/../../b")
@example("a.lock")
@example("@")
def test_every_accepted_ref_name_is_one_git_accepts(name: str) -> None:
    try:
        check_ref_name(name, "branch")
    except GitOperationError:
        return
    assert "\x00" not in name and not name.startswith("-")
    assert _git_accepts(name), name


leaf = st.none() | st.integers() | st.booleans() | ref_names
specs = st.dictionaries(
    st.sampled_from(["branch", "tag", "semver", "name", "commit"]), leaf, max_size=4
)


@given(specs)
@example({"commit": "zz"})
@example({"name": "refs/../x"})
@example({"semver": "["})
def test_a_spec_ref_is_accepted_or_refused_by_name(ref: dict[str, Any]) -> None:
    try:
        parsed = GitRef.from_spec(ref)
    except GitOperationError as exc:
        assert str(exc).startswith("invalid")
        return
    assert parsed.describe()


@given(st.text(max_size=80))
def test_revisions_parse_or_raise_value_error(text: str) -> None:
    with contextlib.suppress(ValueError):
        parse_revision(text)
