"""The semver range matcher used for spec.ref.semver."""

from __future__ import annotations

import pytest

from controllers.toolkit.semverrange import Constraint, ConstraintError, Version, highest_matching


@pytest.mark.parametrize(
    ("constraint", "version", "allowed"),
    [
        ("1.2.3", "1.2.3", True),
        ("1.2.3", "1.2.4", False),
        ("=1.2.3", "v1.2.3", True),
        ("1.2", "1.2.9", True),
        ("1.2", "1.3.0", False),
        ("1.2.x", "1.2.0", True),
        ("1.x", "1.9.9", True),
        ("1.x", "2.0.0", False),
        ("*", "0.0.1", True),
        ("*", "1.0.0-rc.1", False),
        (">1.2", "1.2.9", False),
        (">1.2", "1.3.0", True),
        (">1.2.3", "1.2.4", True),
        (">=1.2.3", "1.2.3", True),
        ("<1.2.3", "1.2.2", True),
        ("<1.2", "1.2.0", False),
        ("<=1.2", "1.2.9", True),
        ("<=1.2", "1.3.0", False),
        ("<=1.2.3", "1.2.3", True),
        ("!=1.2.3", "1.2.4", True),
        ("!=1.2.3", "1.2.3", False),
        ("~1.2.3", "1.2.9", True),
        ("~1.2.3", "1.3.0", False),
        ("~1.2.3", "1.2.2", False),
        ("~1", "1.9.0", True),
        ("~1", "2.0.0", False),
        ("~>1.2", "1.2.5", True),
        ("^1.2.3", "1.9.0", True),
        ("^1.2.3", "2.0.0", False),
        ("^1.2.3", "1.2.2", False),
        ("^0.2.3", "0.2.9", True),
        ("^0.2.3", "0.3.0", False),
        ("^0.0.3", "0.0.3", True),
        ("^0.0.3", "0.0.4", False),
        ("^0.0", "0.0.9", True),
        ("^0.0", "0.1.0", False),
        ("^0", "0.9.0", True),
        ("^0", "1.0.0", False),
        ("1.2 - 1.4.5", "1.4.5", True),
        ("1.2 - 1.4.5", "1.4.6", False),
        ("1.2 - 1.4.5", "1.1.9", False),
        ("1.2.3 - 2.3", "2.3.9", True),
        (">=1.0.0 <2.0.0", "1.5.0", True),
        (">=1.0.0, <2.0.0", "2.0.0", False),
        (">= 1.0.0 < 2.0.0", "1.0.0", True),
        ("<1.0.0 || >=3.0.0", "0.9.0", True),
        ("<1.0.0 || >=3.0.0", "2.0.0", False),
        ("<1.0.0 || >=3.0.0", "3.1.0", True),
        # pre-releases: only for comparators that name one (each checked on its own)
        ("^1.2", "1.3.0-rc.1", False),
        (">=1.2.0-0", "1.3.0-rc.1", True),
        (">=1.2.0-rc.0", "1.2.0-rc.1", True),
        (">=1.2.0-rc.0 <2", "1.2.0-rc.1", False),
        (">=1.2.0-rc.0 <2.0.0-0", "1.2.0-rc.1", True),
        ("1.2.3-beta.2", "1.2.3-beta.2", True),
        ("^1.2.3-beta.1", "1.2.3-beta.2", True),
        ("^1.2.3-beta.1", "1.2.3", True),
        ("^1.2.3-beta.1", "1.2.3-alpha.9", False),
        # build metadata does not count
        ("1.2.3", "1.2.3+build.7", True),
    ],
)
def test_constraints(constraint: str, version: str, allowed: bool) -> None:
    v = Version.parse(version)
    assert v is not None
    assert Constraint.parse(constraint).allows(v) is allowed


@pytest.mark.parametrize("bad", ["", "   ", "foo", ">=1.0 ||", "1.2.3.4", "=>1", "^", "!=1.x"])
def test_invalid_constraints(bad: str) -> None:
    with pytest.raises(ConstraintError):
        Constraint.parse(bad)


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("1.2.3", (1, 2, 3, ())),
        ("v1.2.3", (1, 2, 3, ())),
        ("v1", (1, 0, 0, ())),
        ("1.2", (1, 2, 0, ())),
        ("1.2.3-rc.1+meta", (1, 2, 3, ("rc", "1"))),
    ],
)
def test_version_parsing(text: str, expected: tuple[int, int, int, tuple[str, ...]]) -> None:
    v = Version.parse(text)
    assert v is not None
    assert (v.major, v.minor, v.patch, v.prerelease) == expected


@pytest.mark.parametrize(
    "text", ["latest", "release-1", "1.2.3.4", "01.2.3", "1.2.3-01", "v", "1.2.3-", ""]
)
def test_not_versions(text: str) -> None:
    assert Version.parse(text) is None


def test_precedence_follows_semver() -> None:
    ordered = [
        "1.0.0-alpha",
        "1.0.0-alpha.1",
        "1.0.0-alpha.beta",
        "1.0.0-beta",
        "1.0.0-beta.2",
        "1.0.0-beta.11",
        "1.0.0-rc.1",
        "1.0.0",
        "1.0.1",
        "1.1.0",
        "1.10.0",
        "2.0.0",
    ]
    versions = [Version.parse(t) for t in ordered]
    assert all(v is not None for v in versions)
    assert sorted(reversed(versions)) == versions  # type: ignore[type-var]


def test_highest_matching_skips_non_versions() -> None:
    tags = ["v1.0.0", "v1.10.0", "v1.9.0", "v2.0.0", "latest", "v1.11.0-rc.1", "stable"]
    assert highest_matching(tags, "^1") == ("v1.10.0", Version.parse("1.10.0"))
    assert highest_matching(tags, ">=1.11.0-0 <2.0.0-0") == (
        "v1.11.0-rc.1",
        Version.parse("1.11.0-rc.1"),
    )
    assert highest_matching(tags, ">3") is None
    assert highest_matching([], "*") is None


def test_equal_versions_pick_the_greatest_tag_name() -> None:
    best = highest_matching(["1.0.0", "v1.0.0"], "1")
    assert best is not None
    assert best[0] == "v1.0.0"
