"""Composing a release's values: order, targetPath, optional refs, digests."""

from __future__ import annotations

import asyncio
from collections.abc import Mapping

import pytest

from controllers.helm.values import (
    ValuesError,
    ValuesReference,
    ValuesSpecError,
    compose,
    config_digest,
    parse_path,
    parse_values_from,
    set_path,
    typed_value,
)

OBJECTS: dict[tuple[str, str], dict[str, str]] = {
    ("ConfigMap", "base"): {"values.yaml": "replicaCount: 1\nweb:\n  image: a\n  port: 80\n"},
    ("ConfigMap", "prod"): {"prod.yaml": "web:\n  image: b\n"},
    ("Secret", "db"): {"password": "s3cret,with=commas"},
    ("ConfigMap", "bad"): {"values.yaml": "password: hunter2\nreplicaCount: [unclosed\n"},
    ("ConfigMap", "list"): {"values.yaml": "- a\n- b\n"},
}


async def read(kind: str, namespace: str, name: str) -> Mapping[str, str] | None:
    assert namespace == "apps"
    return OBJECTS.get((kind, name))


def composed(refs: list[ValuesReference], inline: dict[str, object] | None = None) -> dict:  # type: ignore[type-arg]
    return asyncio.run(compose("apps", refs, inline or {}, read))


def test_values_from_merge_in_order_and_inline_values_win() -> None:
    values = composed(
        [
            ValuesReference("ConfigMap", "base"),
            ValuesReference("ConfigMap", "prod", values_key="prod.yaml"),
            ValuesReference("Secret", "db", values_key="password", target_path="db.password"),
        ],
        {"replicaCount": 3},
    )
    assert values == {
        "replicaCount": 3,
        "web": {"image": "b", "port": 80},
        "db": {"password": "s3cret,with=commas"},
    }


def test_target_path_uses_helm_set_syntax_and_types() -> None:
    assert parse_path(r"a.b\.c[1].d") == ["a", "b.c", 1, "d"]
    values: dict[str, object] = {}
    set_path(values, "list[1].name", "x")
    set_path(values, r"annotations.example\.com/role", "web")
    assert values == {"list": [None, {"name": "x"}], "annotations": {"example.com/role": "web"}}
    assert [typed_value(t) for t in ("true", "false", "null", "42", "042", "1.5")] == [
        True,
        False,
        None,
        42,
        "042",
        "1.5",
    ]


def test_literal_keeps_the_text() -> None:
    OBJECTS[("ConfigMap", "flags")] = {"v": "true"}
    refs = [
        ValuesReference("ConfigMap", "flags", values_key="v", target_path="a"),
        ValuesReference("ConfigMap", "flags", values_key="v", target_path="b", literal=True),
    ]
    assert composed(refs) == {"a": True, "b": "true"}


def test_missing_object_or_key_is_an_error_unless_optional() -> None:
    with pytest.raises(ValuesError, match="could not find ConfigMap 'apps/nope'"):
        composed([ValuesReference("ConfigMap", "nope")])
    with pytest.raises(ValuesError, match=r"missing key 'other\.yaml' in ConfigMap"):
        composed([ValuesReference("ConfigMap", "base", values_key="other.yaml")])
    assert (
        composed(
            [
                ValuesReference("ConfigMap", "nope", optional=True),
                ValuesReference("ConfigMap", "base", values_key="other.yaml", optional=True),
            ]
        )
        == {}
    )


def test_bad_yaml_names_where_but_never_quotes_the_values() -> None:
    with pytest.raises(ValuesError) as caught:
        composed([ValuesReference("ConfigMap", "bad")])
    message = str(caught.value)
    assert "ConfigMap 'apps/bad'" in message and "invalid YAML at line" in message
    assert "hunter2" not in message
    with pytest.raises(ValuesError, match="not a map of values"):
        composed([ValuesReference("ConfigMap", "list")])


def test_parse_values_from_names_the_bad_entry() -> None:
    with pytest.raises(ValuesSpecError, match=r"spec.valuesFrom\[1\].kind"):
        parse_values_from([{"kind": "ConfigMap", "name": "a"}, {"kind": "Bucket", "name": "b"}])
    with pytest.raises(ValuesSpecError, match=r"spec.valuesFrom\[0\].targetPath"):
        parse_values_from([{"kind": "Secret", "name": "a", "targetPath": "a..b"}])
    (ref,) = parse_values_from([{"kind": "Secret", "name": "a"}])
    assert ref.values_key == "values.yaml" and not ref.optional


def test_config_digest_ignores_key_order_and_sees_changes() -> None:
    assert config_digest({"a": 1, "b": {"c": 2}}) == config_digest({"b": {"c": 2}, "a": 1})
    assert config_digest({"a": 1}) != config_digest({"a": 2})
    assert config_digest({}).startswith("sha256:")
