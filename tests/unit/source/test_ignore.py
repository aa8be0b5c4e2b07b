"""Ignore rules: Flux's defaults, recursive .sourceignore files, spec.ignore on top."""

from __future__ import annotations

from pathlib import Path

import pytest

from controllers.source.ignore import IgnoreRules, default_rules, load_ignore_rules


@pytest.mark.parametrize(
    ("path", "is_dir", "ignored"),
    [
        (".git", True, True),
        (".gitignore", False, True),
        (".gitmodules", False, True),
        ("sub/.gitattributes", False, True),
        ("img/logo.png", False, True),
        ("a/b/photo.JPG", False, False),  # patterns are case-sensitive, like git
        ("bundle.tar.gz", False, True),
        ("release.zip", False, True),
        (".github", True, True),
        (".github/workflows/ci.yaml", False, True),
        (".circleci/config.yml", False, True),
        (".travis.yml", False, True),
        ("apps/.sops.yaml", False, True),
        ("deep/er/.goreleaser.yml", False, True),
        ("x/.flux.yaml", False, True),
        ("deploy/app.yaml", False, False),
        ("README.md", False, False),
        (".sourceignore", False, False),
    ],
)
def test_default_excludes(path: str, is_dir: bool, ignored: bool) -> None:
    assert default_rules().ignored(path, is_dir=is_dir) is ignored


def test_later_patterns_win_and_can_re_include() -> None:
    rules = IgnoreRules().with_patterns(["*.yaml", "!keep.yaml", "# comment", ""])
    assert rules.ignored("x.yaml")
    assert not rules.ignored("keep.yaml")
    assert not rules.ignored("dir/keep.yaml")
    assert not rules.ignored("x.txt")


def test_directory_only_patterns() -> None:
    rules = IgnoreRules().with_patterns(["build/"])
    assert rules.ignored("build", is_dir=True)
    assert rules.ignored("build/out.yaml")
    assert not rules.ignored("build")  # a file named build is not a directory


def test_anchored_patterns() -> None:
    rules = IgnoreRules().with_patterns(["/*", "!/deploy"])
    assert rules.ignored("README.md")
    assert rules.ignored("docs", is_dir=True)
    assert not rules.ignored("deploy", is_dir=True)
    assert not rules.ignored("deploy/app.yaml")
    assert not rules.ignored("deploy/nested/svc.yaml")


def write(root: Path, files: dict[str, str]) -> None:
    for rel, text in files.items():
        path = root / rel
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text)


def test_sourceignore_files_are_read_recursively_and_scoped(tmp_path: Path) -> None:
    write(
        tmp_path,
        {
            ".sourceignore": "*.tmp\n/docs/\n",
            "apps/.sourceignore": "/local.yaml\n!keep.tmp\n",
            "apps/local.yaml": "",
            "apps/sub/local.yaml": "",
            "local.yaml": "",
            "docs/guide.md": "",
            "apps/docs/guide.md": "",
        },
    )
    rules = load_ignore_rules(tmp_path)
    assert rules.ignored("x.tmp")
    assert rules.ignored("apps/x.tmp")
    assert not rules.ignored("apps/keep.tmp")  # the deeper file overrides the root one
    assert rules.ignored("keep.tmp")  # ...only below its own directory
    assert rules.ignored("apps/local.yaml")  # anchored to apps/
    assert not rules.ignored("apps/sub/local.yaml")
    assert not rules.ignored("local.yaml")
    assert rules.ignored("docs", is_dir=True)
    assert not rules.ignored("apps/docs/guide.md")
    assert rules.ignored(".git", is_dir=True)  # defaults stay underneath


def test_spec_ignore_comes_last(tmp_path: Path) -> None:
    write(tmp_path, {".sourceignore": "*.yaml\n", "a.yaml": "", "b.json": ""})
    rules = load_ignore_rules(tmp_path, "!a.yaml\n*.json\n!.github/\n")
    assert not rules.ignored("a.yaml")
    assert rules.ignored("c.yaml")
    assert rules.ignored("b.json")
    # spec.ignore can override the defaults too
    assert not rules.ignored(".github", is_dir=True)


def test_symlinked_or_git_internal_sourceignore_is_not_read(tmp_path: Path) -> None:
    outside = tmp_path / "outside"
    outside.write_text("*.yaml\n")
    repo = tmp_path / "repo"
    write(repo, {"a.yaml": "", ".git/.sourceignore": "*.yaml\n", "sub/b.yaml": ""})
    (repo / ".sourceignore").symlink_to(outside)
    (repo / "linked").symlink_to(tmp_path / "elsewhere", target_is_directory=True)
    (tmp_path / "elsewhere").mkdir()
    (tmp_path / "elsewhere" / ".sourceignore").write_text("*.yaml\n")
    rules = load_ignore_rules(repo)
    assert not rules.ignored("a.yaml")
    assert not rules.ignored("sub/b.yaml")
