"""Index parsing, normalisation and version selection for HelmRepository/HelmChart."""

from __future__ import annotations

import json

import pytest

from controllers.source.chartindex import (
    ChartIndexError,
    ChartReferenceError,
    canonical_json,
    parse_index,
    select_version,
)
from controllers.toolkit.semverrange import ConstraintError

INDEX = b"""
apiVersion: v1
entries:
  podinfo:
  - name: podinfo
    version: 5.1.0
    urls: [podinfo-5.1.0.tgz]
    digest: aaa
  - name: podinfo
    version: 6.0.3
    urls: [https://charts.example/podinfo-6.0.3.tgz]
  - name: podinfo
    version: 5.2.1
    urls: [podinfo-5.2.1.tgz]
  - name: podinfo
    version: 6.1.0-rc.1
    urls: [podinfo-6.1.0-rc.1.tgz]
  - name: podinfo
    version: not-a-version
    urls: [broken.tgz]
generated: "2026-01-01T00:00:00Z"
"""


def test_versions_are_sorted_newest_first_and_non_semver_dropped() -> None:
    index = parse_index(INDEX)
    assert [v.version for v in index.versions("podinfo")] == [
        "6.1.0-rc.1",
        "6.0.3",
        "5.2.1",
        "5.1.0",
    ]


@pytest.mark.parametrize(
    ("version_range", "expected"),
    [
        ("*", "6.0.3"),  # a pre-release only matches a range naming one
        ("5.*", "5.2.1"),
        ("~5.1", "5.1.0"),
        (">=6.1.0-rc.0", "6.1.0-rc.1"),
        ("5.1.0", "5.1.0"),
        ("", "6.0.3"),  # unset is Flux's default '*'
    ],
)
def test_select_version_picks_the_newest_match(version_range: str, expected: str) -> None:
    assert select_version(parse_index(INDEX), "podinfo", version_range).version == expected


def test_no_match_and_missing_chart_are_chart_reference_errors() -> None:
    index = parse_index(INDEX)
    with pytest.raises(
        ChartReferenceError, match=r"no 'podinfo' chart with version matching '9\.\*'"
    ):
        select_version(index, "podinfo", "9.*")
    with pytest.raises(ChartReferenceError, match="no chart name 'nginx'"):
        select_version(index, "nginx", "*")
    with pytest.raises(ConstraintError):
        select_version(index, "podinfo", ">>1")


def test_relative_urls_resolve_against_the_repository_url() -> None:
    index = parse_index(INDEX)
    by_version = {v.version: v for v in index.versions("podinfo")}
    assert (
        by_version["5.2.1"].download_url("http://127.0.0.1:8080/charts")
        == "http://127.0.0.1:8080/charts/podinfo-5.2.1.tgz"
    )
    assert (
        by_version["6.0.3"].download_url("http://127.0.0.1:8080/charts")
        == "https://charts.example/podinfo-6.0.3.tgz"
    )


def test_canonical_form_is_stable_json_whatever_the_input_order() -> None:
    shuffled = INDEX.replace(b"generated", b"serverInfo: {}\ngenerated")
    a = canonical_json(parse_index(INDEX))
    assert canonical_json(parse_index(INDEX)) == a
    doc = json.loads(a)
    assert [e["version"] for e in doc["entries"]["podinfo"]][:2] == ["6.1.0-rc.1", "6.0.3"]
    assert canonical_json(parse_index(shuffled)) != a  # content changed, revision changes


@pytest.mark.parametrize(
    ("data", "message"),
    [
        (b"apiVersion: v1\nentries: [\n", "invalid YAML"),
        (b"- a\n- b\n", "not a YAML mapping"),
        (b"entries: {}\n", "no API version specified"),
        (b"apiVersion: v1\nentries: [a]\n", "'entries' must map"),
        (b"apiVersion: v1\nentries:\n  a: nope\n", "entries.a must be a list"),
    ],
)
def test_bad_indexes_are_refused_with_the_reason(data: bytes, message: str) -> None:
    with pytest.raises(ChartIndexError, match=message):
        parse_index(data)


def test_aliases_are_refused_so_an_index_cannot_expand() -> None:
    bomb = b"apiVersion: v1\na: &a [x, x, x]\nb: &b [*a, *a, *a]\nc: [*b, *b, *b]\nentries: {}\n"
    with pytest.raises(ChartIndexError, match="aliases are not allowed"):
        parse_index(bomb)
