"""Label selectors as --watch-label-selector takes them (kubectl -l's grammar)."""

from __future__ import annotations

import pytest

from controllers.toolkit.runtime.selectors import SelectorError, parse_selector

KEY = "sharding.fluxcd.io/key"


@pytest.mark.parametrize(
    ("selector", "labels", "expected"),
    [
        ("", {}, True),
        (f"{KEY}=shard1", {KEY: "shard1"}, True),
        (f"{KEY}==shard1", {KEY: "shard2"}, False),
        (f"{KEY}!=shard1", {}, True),
        (f"{KEY}!=shard1", {KEY: "shard1"}, False),
        (f"{KEY} in (shard1, shard2)", {KEY: "shard2"}, True),
        (f"{KEY} in (shard1,shard2)", {}, False),
        (f"{KEY} notin (shard1)", {KEY: "shard3"}, True),
        (f"{KEY} notin (shard1)", {}, True),
        (f"!{KEY}", {}, True),
        (f"!{KEY}", {KEY: "shard1"}, False),
        (KEY, {KEY: ""}, True),
        (f"{KEY} in (shard1),team=a", {KEY: "shard1", "team": "a"}, True),
        (f"{KEY} in (shard1),team=a", {KEY: "shard1", "team": "b"}, False),
    ],
)
def test_matching(selector: str, labels: dict[str, str], expected: bool) -> None:
    assert parse_selector(selector).matches(labels) is expected


@pytest.mark.parametrize(
    ("selector", "complaint"),
    [
        (f"{KEY} in (shard1", "unbalanced"),
        (f"{KEY} in ()", "needs values"),
        ("bad key=1", "invalid label key"),
        ("key=not valid!", "invalid label"),
        ("a=1,,b=2", "empty requirement"),
        ("-x=1", "invalid label key"),
    ],
)
def test_bad_selectors_name_the_part(selector: str, complaint: str) -> None:
    with pytest.raises(SelectorError, match=complaint):
        parse_selector(selector)


def test_objects_without_labels() -> None:
    selector = parse_selector(f"{KEY} in (shard1)")
    assert selector.matches_object({"metadata": {"name": "x"}}) is False
    assert selector.matches_object({"metadata": {"labels": {KEY: "shard1"}}}) is True
