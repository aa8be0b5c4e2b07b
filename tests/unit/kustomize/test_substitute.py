"""Post-build substitution: Flux's envsubst syntax, variable sources, strictness, opt-out."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import pytest

from controllers.toolkit.kustomize import substitute as substitution
from controllers.toolkit.kustomize.build import Manifest, parse_output
from controllers.toolkit.kustomize.substitute import (
    ExpansionError,
    PostBuild,
    SubstitutionError,
    Variables,
    expand,
    lenient_lookup,
    strict_lookup,
    substitute_manifest,
)


async def load_variables(post_build: Mapping[str, Any], read: substitution.Reader) -> Variables:
    """The step, given ``spec.postBuild`` as written (parsed as the spec parser does)."""
    parsed = PostBuild.parse(post_build)
    assert parsed is not None
    return await substitution.load_variables(parsed, read)


async def substitute(
    manifests: list[Manifest],
    post_build: Mapping[str, Any] | None,
    read: substitution.Reader,
    **options: Any,
) -> list[Manifest]:
    """The step, given ``spec.postBuild`` as written (parsed as the spec parser does)."""
    return await substitution.substitute(manifests, PostBuild.parse(post_build), read, **options)


VALUES = {
    "name": "web",
    "path": "/srv/app/config.d/main.yaml",
    "file": "archive.tar.gz",
    "mixed": "Hello World",
    "empty": "",
    "n": "3",
    "neg": "-9",
}


# --- syntax -------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "out"),
    [
        ("plain text", "plain text"),
        ("${name}", "web"),
        ("a-${name}-b ${name}", "a-web-b web"),
        ("$name stays", "$name stays"),  # only braces are expanded
        ("cost: $5 and $", "cost: $5 and $"),
        ("$${name}", "${name}"),  # $$ escapes a dollar
        ("$$name", "$name"),
        ("$$$${name}", "$${name}"),
        ("$$${name}", "$web"),
        ("${missing:=fallback}", "fallback"),
        ("${missing:-fallback}", "fallback"),
        ("${missing=fallback}", "fallback"),
        ("${empty:=fallback}", "fallback"),  # empty counts as unset for every default form
        ("${empty=fallback}", "fallback"),
        ("${name:=fallback}", "web"),
        ("${missing:=a-${name}-b}", "a-web-b"),
        ("${missing:=}", ""),
        ("${missing:=x:y/z#}", "x:y/z#"),
        ("${#name}", "3"),
        ("${mixed^}", "Hello World"),
        ("${name^}", "Web"),
        ("${name^^}", "WEB"),
        ("${mixed,}", "hello World"),
        ("${mixed,,}", "hello world"),
        ("${path:5}", "app/config.d/main.yaml"),
        ("${path:5:3}", "app"),
        ("${path:${neg}}", "main.yaml"),  # a negative offset counts from the end
        ("${path:-9}", "/srv/app/config.d/main.yaml"),  # ":-" is the default operator
        ("${path:100}", ""),
        ("${path:18:100}", "main.yaml"),
        ("${name:x}", "web"),  # an offset that is not a number gives the value, like bash
        ("${name:1:y}", "web"),
        ("${path:${n}:3}", "v/a"),
        ("${file#*.}", "tar.gz"),
        ("${file##*.}", "gz"),
        ("${file%.*}", "archive.tar"),
        ("${file%%.*}", "archive"),
        ("${path##*/}", "main.yaml"),
        ("${path%/*}", "/srv/app/config.d"),
        ("${file#nomatch}", "archive.tar.gz"),
        ("${file#a[rx]c}", "hive.tar.gz"),
        ("${file#[^x]}", "rchive.tar.gz"),
        ("${file#?r}", "chive.tar.gz"),
        ("${file#[}", "archive.tar.gz"),  # a bad pattern leaves the value alone
        ("${mixed/o/0}", "Hell0 World"),
        ("${mixed//o/0}", "Hell0 W0rld"),
        ("${mixed/#Hello/Bye}", "Bye World"),
        ("${mixed/%World/All}", "Hello All"),
        ("${mixed/#World/All}", "Hello World"),
        ("${path//\\//-}", "-srv-app-config.d-main.yaml"),
        ("${mixed/ /${name}}", "Hello" + "web" + "World"),
        ("${name/e/$$}", "w$b"),
        ("${mixed/o/}", "Hell World"),
    ],
)
def test_expand(text: str, out: str) -> None:
    assert expand(text, strict_lookup(VALUES)) == out


@pytest.mark.parametrize(
    "text",
    [
        "${missing}",
        "${#missing}",
        "${missing^^}",
        "${missing,}",
        "${missing:0:2}",
        "${missing/a/b}",
        "${missing#x}",
        "${missing%%x}",
        "${name:=${missing}}",  # defaults are evaluated first, as in Flux
    ],
)
def test_strict_mode_refuses_unset_variables(text: str) -> None:
    with pytest.raises(ExpansionError) as info:
        expand(text, strict_lookup(VALUES))
    assert info.value.variable == "missing"
    assert "variable 'missing' is not set" in info.value.message


def test_lenient_mode_expands_unset_variables_to_nothing() -> None:
    assert expand("[${missing}] [${#missing}]", lenient_lookup(VALUES)) == "[] [0]"


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("${", "unable to parse variable name"),
        ("${}", "unable to parse variable name"),
        ("${-x}", "unable to parse variable name"),
        ("${name", "missing closing brace"),
        ("${name-default}", "missing closing brace"),  # Flux only knows the colon forms
        ("${name+x}", "missing closing brace"),
        ("${name:=abc", "unable to parse substitution within function"),
        ("${name:}", "unable to parse substitution within function"),
        ("${name:1:2", "bad substitution"),
        ("${name//e}", "bad substitution"),  # Flux needs the second "/" even to delete
        ("${name/a}", "bad substitution"),
        ("${#}", "bad substitution"),
        ("${#name:1}", "bad substitution"),
        ("${name^x}", "bad substitution"),
        ("${name#}", "unable to parse substitution within function"),
    ],
)
def test_parse_errors(text: str, message: str) -> None:
    with pytest.raises(ExpansionError) as info:
        expand("ok: 1\n" + text, strict_lookup(VALUES))
    assert info.value.message == message
    assert info.value.position == len("ok: 1\n")


# --- variables ----------------------------------------------------------------------------


class Sources:
    """A reader over fixed ConfigMaps and Secrets that records what was read."""

    def __init__(self, objects: Mapping[tuple[str, str], Mapping[str, str]]) -> None:
        self.objects = objects
        self.reads: list[tuple[str, str]] = []

    async def __call__(self, kind: str, name: str) -> Mapping[str, str] | None:
        self.reads.append((kind, name))
        return self.objects.get((kind, name))


async def test_later_sources_win_and_inline_wins_over_all() -> None:
    read = Sources(
        {
            ("ConfigMap", "one"): {"a": "cm-a", "b": "cm-b", "c": "cm-c"},
            ("Secret", "two"): {"b": "secret-b", "c": "multi\nline\n"},
        }
    )
    variables = await load_variables(
        {
            "substitute": {"a": "inline-a"},
            "substituteFrom": [
                {"kind": "ConfigMap", "name": "one"},
                {"kind": "Secret", "name": "two"},
                {"kind": "ConfigMap", "name": "absent", "optional": True},
            ],
        },
        read,
    )
    assert variables.values == {"a": "inline-a", "b": "secret-b", "c": "multiline"}
    assert variables.origins == {
        "a": "spec.postBuild.substitute",
        "b": "Secret/two",
        "c": "Secret/two",
    }
    assert variables.secret == {"b", "c"}
    assert read.reads == [("ConfigMap", "one"), ("Secret", "two"), ("ConfigMap", "absent")]


@pytest.mark.parametrize(
    ("post_build", "message"),
    [
        (
            {"substituteFrom": [{"kind": "Secret", "name": "gone"}]},
            "substituteFrom Secret/gone not found",
        ),
        (
            {"substituteFrom": [{"kind": "Service", "name": "x"}]},
            "substituteFrom[0]: kind must be ConfigMap or Secret",
        ),
        ({"substituteFrom": [{"kind": "ConfigMap"}]}, "substituteFrom[0]: name is required"),
    ],
)
async def test_source_errors_name_the_source(post_build: dict[str, Any], message: str) -> None:
    with pytest.raises(SubstitutionError) as info:
        await load_variables(post_build, Sources({}))
    assert message in str(info.value)
    assert info.value.reason == "BuildFailed"


# --- objects ------------------------------------------------------------------------------

DEPLOYMENT = """\
apiVersion: apps/v1
kind: Deployment
metadata:
  name: web
  namespace: apps
spec:
  replicas: ${REPLICAS}
  template:
    spec:
      containers:
      - image: nginx:${TAG:=1.27}
        name: web
"""


def manifests(*texts: str) -> list[Manifest]:
    return parse_output("---\n".join(texts))


async def test_substitution_changes_types_through_the_yaml_text() -> None:
    [result] = await substitute(
        manifests(DEPLOYMENT), {"substitute": {"REPLICAS": "3"}}, Sources({})
    )
    assert result.object["spec"]["replicas"] == 3
    assert result.object["spec"]["template"]["spec"]["containers"][0]["image"] == "nginx:1.27"
    assert "replicas: 3\n" in result.text


async def test_a_missing_variable_names_the_variable_the_object_and_the_line() -> None:
    with pytest.raises(SubstitutionError) as info:
        await substitute(manifests(DEPLOYMENT), {"substitute": {"OTHER": "x"}}, Sources({}))
    assert str(info.value) == (
        "substitution in Deployment/apps/web failed at line 7: variable 'REPLICAS' is not set "
        "(strict mode) and has no default"
    )
    assert info.value.reason == "BuildFailed"


async def test_not_strict_leaves_missing_variables_empty() -> None:
    [result] = await substitute(
        manifests(DEPLOYMENT), {"substitute": {"OTHER": "x"}}, Sources({}), strict=False
    )
    assert result.object["spec"]["replicas"] is None


async def test_without_variables_nothing_is_expanded_unless_always() -> None:
    text = "apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: c\ndata:\n  v: ${X:=d}$${y}\n"
    [kept] = await substitute(manifests(text), {}, Sources({}))
    assert kept.object["data"]["v"] == "${X:=d}$${y}"
    [expanded] = await substitute(manifests(text), {"substituteStrategy": "Always"}, Sources({}))
    assert expanded.object["data"]["v"] == "d${y}"
    [untouched] = await substitute(manifests(text), None, Sources({}))
    assert untouched is kept or untouched.text == kept.text


@pytest.mark.parametrize("where", ["labels", "annotations"])
async def test_objects_can_opt_out(where: str) -> None:
    text = (
        "apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: script\n"
        f"  {where}:\n    kustomize.toolkit.fluxcd.io/substitute: disabled\n"
        "data:\n  run.sh: echo ${HOME} ${UNSET}\n"
    )
    other = "apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: c\ndata:\n  v: ${HOME}\n"
    opted_out, expanded = await substitute(
        manifests(text, other), {"substitute": {"HOME": "/home"}}, Sources({})
    )
    assert opted_out.object["data"]["run.sh"] == "echo ${HOME} ${UNSET}"
    assert expanded.object["data"]["v"] == "/home"


async def test_sources_are_not_read_when_every_object_opts_out() -> None:
    text = (
        "apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: c\n  annotations:\n"
        "    kustomize.toolkit.fluxcd.io/substitute: disabled\n"
    )
    read = Sources({})
    await substitute(manifests(text), {"substituteFrom": [{"kind": "Secret", "name": "x"}]}, read)
    assert read.reads == []


@pytest.mark.parametrize("name", ["my-var", "1st", "a.b", "ünïcode"])
async def test_invalid_variable_names_are_an_error(name: str) -> None:
    read = Sources({("ConfigMap", "vars"): {name: "v"}})
    with pytest.raises(SubstitutionError) as info:
        await substitute(
            manifests(DEPLOYMENT),
            {"substituteFrom": [{"kind": "ConfigMap", "name": "vars"}]},
            read,
        )
    assert f"variable name '{name}' from ConfigMap/vars is invalid" in str(info.value)


async def test_secret_values_never_reach_error_messages() -> None:
    secret = "s3cr3t: [{not yaml"
    text = "apiVersion: v1\nkind: Secret\nmetadata:\n  name: creds\nstringData:\n  p: ${PASSWORD}\n"
    with pytest.raises(SubstitutionError) as info:
        await substitute(
            manifests(text),
            {"substituteFrom": [{"kind": "Secret", "name": "creds"}]},
            Sources({("Secret", "creds"): {"PASSWORD": secret}}),
        )
    message = str(info.value)
    assert message.startswith("substitution in Secret/creds gave invalid YAML: line ")
    assert "s3cr3t" not in message and "not yaml" not in message


def test_a_result_that_is_not_an_object_is_refused() -> None:
    manifest = Manifest("${DOC}", {"kind": "ConfigMap", "metadata": {"name": "c"}})
    with pytest.raises(SubstitutionError) as info:
        substitute_manifest(manifest, Variables(values={"DOC": "- a list"}))
    assert "did not give a Kubernetes object" in str(info.value)


def test_an_unchanged_text_keeps_the_manifest() -> None:
    manifest = manifests("apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: c\n")[0]
    assert substitute_manifest(manifest, Variables(values={"X": "1"})) is manifest
