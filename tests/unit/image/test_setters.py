"""Setter comments: the marked scalar changes, nothing else does."""

from __future__ import annotations

from pathlib import Path

import pytest

from controllers.image.setters import LatestImage, SetterError, rewrite_text, update_tree

POLICIES = {("apps", "app"): LatestImage("registry.local:5000/app", "1.0.1")}

DEPLOYMENT = """\
# a comment that stays
apiVersion: apps/v1
kind: Deployment
metadata:
  name: web   # trailing comment
  namespace: apps
spec:
  template:
    spec:
      containers:
        - name: web
          image: registry.local:5000/app:1.0.0 # {"$imagepolicy": "apps:app"}
        - name: sidecar
          image: "busybox:1.36"
"""


def test_the_marked_image_is_set_and_every_other_byte_is_kept() -> None:
    new, changes = rewrite_text(DEPLOYMENT, POLICIES, "deploy.yaml")
    assert new == DEPLOYMENT.replace("app:1.0.0 #", "app:1.0.1 #")
    [(obj, change)] = changes
    assert (obj.kind, obj.name, obj.namespace, obj.api_version) == (
        "Deployment",
        "web",
        "apps",
        "apps/v1",
    )
    assert (change.old_value, change.new_value, change.setter) == (
        "registry.local:5000/app:1.0.0",
        "registry.local:5000/app:1.0.1",
        "apps:app",
    )


def test_tag_and_name_setters_and_quoting_are_kept() -> None:
    text = (
        "image:\n"
        '  repository: \'old/app\' # {"$imagepolicy": "apps:app:name"}\n'
        '  tag: "1.0.0" # {"$imagepolicy": "apps:app:tag"}\n'
        '  other: 1.0 # {"$imagepolicy": "apps:app:tag"}\n'
    )
    new, changes = rewrite_text(text, POLICIES, "values.yaml")
    assert new == (
        "image:\n"
        '  repository: \'registry.local:5000/app\' # {"$imagepolicy": "apps:app:name"}\n'
        '  tag: "1.0.1" # {"$imagepolicy": "apps:app:tag"}\n'
        '  other: 1.0.1 # {"$imagepolicy": "apps:app:tag"}\n'
    )
    assert [c.new_value for _, c in changes] == ["registry.local:5000/app", "1.0.1", "1.0.1"]


def test_a_plain_value_that_would_read_back_as_a_number_is_quoted() -> None:
    policies = {("apps", "app"): LatestImage("x", "2")}
    new, _ = rewrite_text('tag: 1 # {"$imagepolicy": "apps:app:tag"}\n', policies, "v.yaml")
    assert new == 'tag: "2" # {"$imagepolicy": "apps:app:tag"}\n'


def test_a_marker_inside_a_block_scalar_is_not_a_setter() -> None:
    text = 'data:\n  script: |\n    image: a:1 # {"$imagepolicy": "apps:app"}\n'
    assert rewrite_text(text, POLICIES, "cm.yaml") == (text, [])


def test_an_up_to_date_field_is_no_change() -> None:
    text = DEPLOYMENT.replace("app:1.0.0", "app:1.0.1")
    assert rewrite_text(text, POLICIES, "deploy.yaml") == (text, [])


def test_a_setter_naming_a_missing_policy_fails_naming_file_line_and_policy() -> None:
    text = DEPLOYMENT.replace("apps:app", "apps:gone")
    with pytest.raises(SetterError, match=r"deploy.yaml:12: .*'apps/gone'.*does not exist"):
        rewrite_text(text, POLICIES, "deploy.yaml")


def test_a_policy_without_a_latest_image_fails() -> None:
    with pytest.raises(SetterError, match="no latest image yet"):
        rewrite_text(DEPLOYMENT, {("apps", "app"): None}, "deploy.yaml")


def test_a_malformed_setter_fails() -> None:
    with pytest.raises(SetterError, match="namespace:policy"):
        rewrite_text('image: a # {"$imagepolicy": "justone"}\n', POLICIES, "x.yaml")


def test_update_tree_writes_nothing_when_one_file_fails(tmp_path: Path) -> None:
    (tmp_path / "apps").mkdir()
    good = tmp_path / "apps" / "a.yaml"
    good.write_text(DEPLOYMENT)
    bad = tmp_path / "apps" / "b.yaml"
    bad.write_text(DEPLOYMENT.replace("apps:app", "apps:missing"))
    with pytest.raises(SetterError):
        update_tree(tmp_path, "apps", POLICIES)
    assert good.read_text() == DEPLOYMENT


def test_update_tree_reports_files_and_skips_symlinks_and_other_paths(tmp_path: Path) -> None:
    (tmp_path / "apps").mkdir()
    (tmp_path / "apps" / "deploy.yaml").write_text(DEPLOYMENT)
    (tmp_path / "outside.yaml").write_text(DEPLOYMENT)
    (tmp_path / "apps" / "link.yaml").symlink_to(tmp_path / "outside.yaml")
    result = update_tree(tmp_path, "./apps", POLICIES)
    assert list(result.files) == ["apps/deploy.yaml"]
    assert (tmp_path / "outside.yaml").read_text() == DEPLOYMENT
    with pytest.raises(SetterError, match="leaves the repository"):
        update_tree(tmp_path, "../", POLICIES)
