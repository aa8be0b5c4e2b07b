"""Ignore rules: JSON pointers, selectors, and what they take out of an object."""

from __future__ import annotations

from typing import Any

import pytest

from controllers.kustomize.spec import KustomizationSpec, SpecError, parse_ignore_rules
from controllers.toolkit.apply.ignore import (
    MISSING,
    IgnoreError,
    IgnoreRule,
    Selector,
    format_pointer,
    ignored_paths,
    keep_live,
    parse_label_selector,
    parse_pointer,
    value_at,
    without_paths,
)


def deployment(**labels: str) -> dict[str, Any]:
    return {
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "metadata": {
            "name": "web",
            "namespace": "apps",
            "labels": labels,
            "annotations": {"example.com/owner": "team-a", "a~b": "x"},
        },
        "spec": {
            "replicas": 2,
            "template": {
                "spec": {
                    "containers": [
                        {"name": "app", "image": "app:1"},
                        {"name": "sidecar", "image": "proxy:1"},
                    ]
                }
            },
        },
    }


@pytest.mark.parametrize(
    ("text", "parts"),
    [
        ("/spec/replicas", ("spec", "replicas")),
        (
            "/metadata/annotations/example.com~1owner",
            ("metadata", "annotations", "example.com/owner"),
        ),
        ("/metadata/annotations/a~0b", ("metadata", "annotations", "a~b")),
        # ~01 is "~1" literally: ~0 is unescaped last, so it never makes a new escape.
        ("/a/~01", ("a", "~1")),
        ("/a//b", ("a", "", "b")),
    ],
)
def test_pointers_unescape_and_format_back(text: str, parts: tuple[str, ...]) -> None:
    assert parse_pointer(text) == parts
    assert format_pointer(parts) == text


@pytest.mark.parametrize(
    ("text", "error"),
    [
        ("", "an empty JSON pointer"),
        ("spec/replicas", "must start with '/'"),
        ("/spec/a~2b", "'~' must be followed by 0 or 1"),
        ("/spec/a~", "'~' must be followed by 0 or 1"),
    ],
)
def test_bad_pointers_are_refused(text: str, error: str) -> None:
    with pytest.raises(IgnoreError, match=error):
        parse_pointer(text)


def test_values_are_found_through_maps_and_list_indexes() -> None:
    obj = deployment()
    assert value_at(obj, parse_pointer("/spec/replicas")) == 2
    image = parse_pointer("/spec/template/spec/containers/1/image")
    assert value_at(obj, image) == "proxy:1"
    for missing in ("/spec/paused", "/spec/template/spec/containers/2", "/spec/replicas/x"):
        assert value_at(obj, parse_pointer(missing)) is MISSING
    # Not an index: leading zeros and "-" (the end of a list) point nowhere.
    assert value_at(obj, parse_pointer("/spec/template/spec/containers/01")) is MISSING
    assert value_at(obj, parse_pointer("/spec/template/spec/containers/-")) is MISSING


def test_without_paths_removes_what_exists_and_skips_the_rest() -> None:
    obj = deployment()
    out = without_paths(
        obj,
        [
            parse_pointer("/spec/replicas"),
            parse_pointer("/metadata/annotations/example.com~1owner"),
            parse_pointer("/spec/not/there"),
        ],
    )
    assert "replicas" not in out["spec"]
    assert out["metadata"]["annotations"] == {"a~b": "x"}
    assert obj["spec"]["replicas"] == 2, "the original is left alone"


def test_without_paths_removes_list_items_without_shifting_the_others() -> None:
    obj = {"items": ["a", "b", "c", "d"]}
    out = without_paths(obj, [parse_pointer("/items/0"), parse_pointer("/items/2")])
    assert out == {"items": ["b", "d"]}


def test_keep_live_applies_the_live_value_at_ignored_paths_the_manifest_sets() -> None:
    desired = deployment()
    live = deployment()
    live["spec"]["replicas"] = 5
    del live["metadata"]["annotations"]["example.com/owner"]
    paths = [
        parse_pointer("/spec/replicas"),
        parse_pointer("/metadata/annotations/example.com~1owner"),
        parse_pointer("/spec/paused"),
    ]
    live["spec"]["paused"] = True
    out = keep_live(desired, live, paths)
    assert out["spec"]["replicas"] == 5
    # Absent in the cluster: left out, so applying does not add it back.
    assert "example.com/owner" not in out["metadata"]["annotations"]
    # Not in the manifest: not claimed either.
    assert "paused" not in out["spec"]
    assert desired["spec"]["replicas"] == 2


def test_label_selectors_follow_kubernetes_syntax() -> None:
    labels = {"app": "web", "tier": "front", "canary": ""}

    def matches(expression: str) -> bool:
        return all(r.matches(labels) for r in parse_label_selector(expression))

    assert matches("")
    assert matches("app=web")
    assert matches("app==web,tier")
    assert matches("app in (web, api), !debug")
    assert matches("tier notin (back)")
    assert matches("missing notin (x)")
    assert matches("app!=api")
    assert not matches("app!=web")
    assert not matches("app=api")
    assert not matches("!tier")
    assert not matches("app in (api)")
    assert not matches("debug")
    for bad in ("app=(x)", "a b", "app in x", ","):
        with pytest.raises(IgnoreError, match="is not a label selector"):
            parse_label_selector(bad)


def test_selectors_match_every_given_field_as_a_whole_regex() -> None:
    obj = deployment(app="web")
    assert Selector.parse().matches(obj)
    assert Selector.parse(group="apps", version="v1", kind="Deployment").matches(obj)
    assert Selector.parse(name="we.*", namespace="apps").matches(obj)
    assert not Selector.parse(name="we").matches(obj), "anchored at both ends"
    assert not Selector.parse(kind="Deploy").matches(obj)
    assert Selector.parse(group="").matches(obj), "an empty field selects any value"
    assert Selector.parse(label_selector="app=web").matches(obj)
    assert not Selector.parse(label_selector="app=api").matches(obj)
    assert Selector.parse(annotation_selector="example.com/owner=team-a").matches(obj)
    assert not Selector.parse(annotation_selector="example.com/owner=team-b").matches(obj)
    config_map = {"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "web"}}
    assert Selector.parse(group="", kind="ConfigMap").matches(config_map)
    assert not Selector.parse(group="apps").matches(config_map)
    with pytest.raises(IgnoreError, match="kind: '\\(' is not a regular expression"):
        Selector.parse(kind="(")


def test_ignored_paths_come_from_the_matching_rules_once_each() -> None:
    replicas, image = parse_pointer("/spec/replicas"), parse_pointer("/spec/x")
    rules = [
        IgnoreRule((replicas,)),
        IgnoreRule((replicas, image), Selector.parse(kind="Deployment")),
        IgnoreRule((parse_pointer("/data"),), Selector.parse(kind="ConfigMap")),
    ]
    assert ignored_paths(deployment(), rules) == (replicas, image)
    assert ignored_paths(deployment(), []) == ()


def test_the_kustomization_spec_parses_ignore_rules() -> None:
    base: dict[str, Any] = {"interval": "10m", "sourceRef": {"name": "repo"}}
    spec = KustomizationSpec.parse(
        {
            **base,
            "ignore": [
                {"paths": ["/spec/replicas"], "target": {"kind": "Deployment", "name": "web"}},
                {"paths": ["/metadata/annotations/example.com~1owner"]},
            ],
        },
        "apps",
    )
    assert [rule.paths for rule in spec.ignore] == [
        (("spec", "replicas"),),
        (("metadata", "annotations", "example.com/owner"),),
    ]
    assert spec.ignore[0].matches(deployment())
    assert spec.ignore[1].target is None
    assert KustomizationSpec.parse(base, "apps").ignore == ()


@pytest.mark.parametrize(
    ("rules", "message"),
    [
        ([{"paths": ["/ok", "spec"]}], "spec.ignore[0].paths[1]: JSON pointer 'spec' must start"),
        ([{"paths": []}], "spec.ignore[0].paths: at least one JSON pointer is required"),
        (
            [{"paths": ["/a"]}, {"paths": ["/a"], "target": {"labelSelector": "a in b"}}],
            "spec.ignore[1].target.labelSelector: 'a in b' is not a label selector",
        ),
        (
            [{"paths": ["/a"], "target": {"name": "web["}}],
            "spec.ignore[0].target.name: 'web[' is not a regular expression",
        ),
    ],
)
def test_bad_ignore_rules_name_the_field(rules: list[dict[str, Any]], message: str) -> None:
    with pytest.raises(SpecError) as error:
        parse_ignore_rules(rules)
    assert str(error.value).startswith(message), str(error.value)
