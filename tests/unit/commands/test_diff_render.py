"""How `headwater diff` renders a planned change: unified YAML diffs, masked Secrets, exit codes."""

from __future__ import annotations

import argparse
import base64
from typing import Any

import pytest

from controllers.commands import common, diff
from controllers.commands.common import CliError
from controllers.toolkit.apply import ssa
from controllers.toolkit.apply.inventory import ObjectId


def _b64(text: str) -> str:
    return base64.b64encode(text.encode()).decode()


def _deployment(replicas: int) -> dict[str, Any]:
    return {"apiVersion": "apps/v1", "kind": "Deployment", "spec": {"replicas": replicas}}


def _secret(**data: str) -> dict[str, Any]:
    return {
        "apiVersion": "v1",
        "kind": "Secret",
        "metadata": {
            "annotations": {"kubectl.kubernetes.io/last-applied-configuration": '{"data": "x"}'}
        },
        "data": {key: _b64(value) for key, value in data.items()},
    }


def _entry(
    action: ssa.Action, before: Any = None, after: Any = None, kind: str = "Deployment"
) -> ssa.ChangeSetEntry:
    group = "apps" if kind == "Deployment" else ""
    return ssa.ChangeSetEntry(
        ObjectId(group, kind, "apps", "web"), "v1", action, before=before, after=after
    )


def test_a_changed_field_is_one_removed_and_one_added_line() -> None:
    shown = diff.object_diff(
        _entry(ssa.Action.CONFIGURED, _deployment(2), _deployment(3)), None
    ).unified()
    lines = shown.splitlines()
    assert lines[0] == "--- live/Deployment/apps/web"
    assert lines[1] == "+++ build/Deployment/apps/web"
    assert [line for line in lines[2:] if line[:1] in "+-"] == ["-  replicas: 2", "+  replicas: 3"]


def test_a_new_object_is_all_added_and_falls_back_to_the_build() -> None:
    shown = diff.object_diff(_entry(ssa.Action.CREATED), _deployment(1))
    text = shown.unified()
    assert text.startswith("--- /dev/null\n+++ build/Deployment/apps/web\n")
    assert "+  replicas: 1" in text
    assert shown.changed


def test_unchanged_objects_show_no_diff() -> None:
    shown = diff.object_diff(_entry(ssa.Action.UNCHANGED, _deployment(2), _deployment(2)), None)
    assert not shown.changed
    assert shown.unified() == ""
    assert "diff" not in shown.to_json()


def test_a_secret_never_shows_a_value_only_whether_it_changed() -> None:
    before = _secret(password="old-value", user="admin")
    after = _secret(password="new-value", user="admin")
    shown = diff.object_diff(_entry(ssa.Action.CONFIGURED, before, after, kind="Secret"), None)
    text = shown.unified()
    for value in ("old-value", "new-value", "admin", _b64("old-value"), _b64("new-value")):
        assert value not in text
    assert "-  password: (sensitive)" in text
    assert "+  password: (sensitive, changed)" in text
    # An unchanged key is masked on both sides, so it is no diff line.
    assert "   user: (sensitive)" in text
    assert '{"data": "x"}' not in text


def test_a_pruned_secret_is_masked_too() -> None:
    shown = diff.pruned_diff(ObjectId("", "Secret", "apps", "db"), _secret(password="gone-value"))
    text = shown.unified()
    assert "+++ /dev/null" in text
    assert "gone-value" not in text and _b64("gone-value") not in text
    assert shown.action == "deleted"


def test_the_result_is_changed_by_a_prune_alone_and_says_so_in_json() -> None:
    unchanged = diff.object_diff(_entry(ssa.Action.UNCHANGED), None)
    pruned = diff.pruned_diff(ObjectId("", "ConfigMap", "apps", "old"), {"data": {"a": "b"}})
    result = diff.DiffResult("apps/web", "path .", [unchanged], [pruned])
    assert result.changed
    assert result.summary() == "1 to prune, 1 unchanged"
    data = result.to_json()
    assert data["changed"] is True
    assert data["pruned"][0]["object"] == "ConfigMap/apps/old"
    assert not diff.DiffResult("apps/web", "path .", [unchanged], []).changed


def test_a_remote_cluster_kustomization_is_refused_naming_the_field() -> None:
    with pytest.raises(CliError, match=r"spec\.kubeConfig") as caught:
        diff.DiffSpec.parse(
            {"sourceRef": {"name": "app"}, "kubeConfig": {"secretRef": {"name": "remote"}}}, "apps"
        )
    assert caught.value.code == diff.EXIT_ERROR


def test_a_bad_build_field_names_it_and_exits_2() -> None:
    with pytest.raises(CliError, match=r"spec\.postBuild\.substituteFrom") as caught:
        diff.DiffSpec.parse({"sourceRef": {"name": "app"}, "postBuild": {"substituteFrom": 3}}, "a")
    assert caught.value.code == diff.EXIT_ERROR


def test_every_failure_of_the_verb_exits_2() -> None:
    def failing(_: argparse.Namespace) -> int:
        raise CliError("boom")  # the default code (1) would read as "there are changes"

    assert common.guarded("diff", failing, failure_code=diff.EXIT_ERROR)(argparse.Namespace()) == 2
