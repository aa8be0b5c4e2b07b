"""Choosing the latest tag as Flux's ImagePolicy does."""

from __future__ import annotations

import re

import pytest

from controllers.image.policy import Policy, PolicyError, go_expand, select_latest
from controllers.image.policyspec import ImagePolicySpec
from controllers.toolkit.runtime.frame import ReconcileError

TAGS = ["1.0.0", "1.0.1", "1.1.0-rc1", "0.9.9", "latest", "1.0.1.sig"]


def test_semver_range_leaves_prereleases_out() -> None:
    assert select_latest(TAGS, Policy("semver", semver_range=">=1.0.0")) == "1.0.1"


def test_semver_range_naming_a_prerelease_takes_it() -> None:
    assert select_latest(TAGS, Policy("semver", semver_range=">=1.1.0-rc0")) == "1.1.0-rc1"


def test_semver_range_matching_nothing_says_so() -> None:
    with pytest.raises(PolicyError, match=r"no tag matches semver range '>=2.0.0'"):
        select_latest(TAGS, Policy("semver", semver_range=">=2.0.0"))


def test_alphabetical_asc_takes_the_last_and_desc_the_first() -> None:
    tags = ["RELEASE.2024-01-02", "RELEASE.2024-03-01", "RELEASE.2023-12-31"]
    assert select_latest(tags, Policy("alphabetical")) == "RELEASE.2024-03-01"
    assert select_latest(tags, Policy("alphabetical", order="desc")) == "RELEASE.2023-12-31"


def test_numerical_compares_numbers_not_text() -> None:
    tags = ["9", "10", "2.5"]
    assert select_latest(tags, Policy("numerical")) == "10"
    assert select_latest(tags, Policy("numerical", order="desc")) == "2.5"


def test_numerical_fails_on_a_value_that_is_no_number() -> None:
    with pytest.raises(PolicyError, match="invalid numeric value 'latest'"):
        select_latest(["1", "latest"], Policy("numerical"))


def test_filter_tags_extract_compares_the_extracted_part_and_returns_the_tag() -> None:
    tags = ["main-abc1234-1700000100", "main-def5678-1700000200", "dev-0000000-1800000000"]
    policy = Policy(
        "numerical",
        pattern=re.compile(r"^main-[a-f0-9]+-(?P<ts>[0-9]+)"),
        extract="$ts",
    )
    assert select_latest(tags, policy) == "main-def5678-1700000200"


def test_filter_pattern_matching_nothing_says_so() -> None:
    with pytest.raises(PolicyError, match="filterTags"):
        select_latest(TAGS, Policy("alphabetical", pattern=re.compile("^nope")))


def test_go_expand_syntax() -> None:
    m = re.search(r"(?P<a>x+)-(y+)", "xx-yyy")
    assert m is not None
    assert go_expand("$a/${a}/$2/$$/$missing", m) == "xx/xx/yyy/$/"


def test_spec_takes_go_named_groups_and_refuses_two_policies() -> None:
    spec = ImagePolicySpec.parse(
        {
            "imageRepositoryRef": {"name": "app"},
            "policy": {"alphabetical": {}},
            "filterTags": {"pattern": r"^RELEASE\.(?<ts>.*)Z$", "extract": "$ts"},
        }
    )
    assert spec.policy.pattern is not None and spec.policy.pattern.groupindex == {"ts": 1}
    with pytest.raises(ReconcileError, match="exactly one"):
        ImagePolicySpec.parse(
            {
                "imageRepositoryRef": {"name": "a"},
                "policy": {"semver": {"range": "*"}, "numerical": {}},
            }
        )


def test_digest_reflection_is_refused_by_value() -> None:
    with pytest.raises(ReconcileError, match="digestReflectionPolicy 'Always'") as info:
        ImagePolicySpec.parse(
            {
                "imageRepositoryRef": {"name": "a"},
                "policy": {"semver": {"range": "*"}},
                "digestReflectionPolicy": "Always",
            }
        )
    assert info.value.stalled
