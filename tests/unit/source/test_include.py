"""Includes: safe unpacking and copying other artifacts into the checkout."""

from __future__ import annotations

import tarfile
from pathlib import Path

import pytest

from controllers.source.archive import write_archive
from controllers.source.include import Include, apply_includes, clean_relative
from controllers.source.storage import file_digest
from controllers.toolkit.artifacts import UnsafeArchiveError, safe_extract
from controllers.toolkit.git.errors import ArchiveError
from tests.support.tarballs import entry, make_tar


def artifact_of(tmp_path: Path, files: dict[str, str], name: str = "lib") -> Path:
    src = tmp_path / f"{name}-src"
    for rel, text in files.items():
        (src / rel).parent.mkdir(parents=True, exist_ok=True)
        (src / rel).write_text(text)
    out = tmp_path / f"{name}.tar.gz"
    with open(out, "wb") as fh:
        write_archive(src, fh)
    return out


@pytest.mark.parametrize(
    ("path", "clean"),
    [("", ""), (".", ""), ("./a/b/", "a/b"), ("a/../b", "b"), ("a//b", "a/b")],
)
def test_clean_relative(path: str, clean: str) -> None:
    assert clean_relative(path, "x") == clean


@pytest.mark.parametrize("path", ["/abs", "..", "../x", "a/../../x", "a\\b"])
def test_clean_relative_refuses_escapes(path: str) -> None:
    with pytest.raises(ArchiveError):
        clean_relative(path, "x")


def test_safe_extract_skips_links_and_specials(tmp_path: Path) -> None:
    tarball = make_tar(
        tmp_path / "t.tar.gz",
        [
            entry("dir", tarfile.DIRTYPE),
            entry("dir/ok.txt"),
            entry("dir/sym", tarfile.SYMTYPE, "/etc/passwd"),
            entry("dir/hard", tarfile.LNKTYPE, "dir/ok.txt"),
            entry("dir/fifo", tarfile.FIFOTYPE),
        ],
        {"dir/ok.txt": b"ok"},
    )
    dest = tmp_path / "out"
    dest.mkdir()
    safe_extract(tarball, dest)
    assert sorted(str(p.relative_to(dest)) for p in dest.rglob("*")) == ["dir", "dir/ok.txt"]


@pytest.mark.parametrize("name", ["../evil.txt", "/abs/evil.txt", "a/../../evil.txt"])
def test_safe_extract_refuses_escaping_names(tmp_path: Path, name: str) -> None:
    tarball = make_tar(tmp_path / "t.tar.gz", [entry(name)], {name: b"evil"})
    dest = tmp_path / "deep" / "out"
    dest.mkdir(parents=True)
    with pytest.raises(UnsafeArchiveError):
        safe_extract(tarball, dest)
    assert not list(tmp_path.rglob("evil.txt"))


def test_include_from_path_to_path(tmp_path: Path) -> None:
    artifact = artifact_of(
        tmp_path, {"manifests/a.yaml": "a", "manifests/sub/b.yaml": "b", "x": "x"}
    )
    work = tmp_path / "work"
    (work / "vendor" / "lib").mkdir(parents=True)
    (work / "vendor" / "lib" / "stale.yaml").write_text("old")
    apply_includes(
        work,
        [
            Include(
                "lib",
                artifact,
                digest=file_digest(artifact),
                from_path="manifests",
                to_path="vendor/lib",
            )
        ],
    )
    files = sorted(str(p.relative_to(work)) for p in work.rglob("*") if p.is_file())
    assert files == ["vendor/lib/a.yaml", "vendor/lib/sub/b.yaml"]


def test_include_defaults_to_the_repository_name(tmp_path: Path) -> None:
    artifact = artifact_of(tmp_path, {"a.yaml": "a"})
    work = tmp_path / "work"
    work.mkdir()
    apply_includes(work, [Include("shared-config", artifact)])
    assert (work / "shared-config" / "a.yaml").read_text() == "a"


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"to_path": "../out"}, "must stay inside"),
        ({"to_path": "."}, "cannot be the repository root"),
        ({"from_path": "/etc"}, "must stay inside"),
        ({"from_path": "nope"}, "not found"),
        ({"digest": "sha256:" + "0" * 64}, "does not match digest"),
    ],
)
def test_include_errors(tmp_path: Path, kwargs: dict[str, str], message: str) -> None:
    artifact = artifact_of(tmp_path, {"a.yaml": "a"})
    work = tmp_path / "work"
    work.mkdir()
    with pytest.raises(ArchiveError) as info:
        apply_includes(work, [Include("lib", artifact, **kwargs)])
    assert message in str(info.value)
    assert info.value.reason == "ArchiveOperationFailed"


def test_include_refuses_a_symlinked_parent_in_the_checkout(tmp_path: Path) -> None:
    artifact = artifact_of(tmp_path, {"a.yaml": "a"})
    outside = tmp_path / "outside"
    outside.mkdir()
    work = tmp_path / "work"
    work.mkdir()
    (work / "vendor").symlink_to(outside, target_is_directory=True)
    with pytest.raises(ArchiveError):
        apply_includes(work, [Include("lib", artifact, to_path="vendor/lib")])
    assert list(outside.iterdir()) == []


def test_include_replaces_a_symlink_at_the_target(tmp_path: Path) -> None:
    artifact = artifact_of(tmp_path, {"a.yaml": "a"})
    outside = tmp_path / "outside"
    outside.mkdir()
    (outside / "keep.txt").write_text("keep")
    work = tmp_path / "work"
    work.mkdir()
    (work / "lib").symlink_to(outside, target_is_directory=True)
    apply_includes(work, [Include("lib", artifact)])
    assert (work / "lib").is_dir() and not (work / "lib").is_symlink()
    assert (outside / "keep.txt").read_text() == "keep"
    assert (work / "lib" / "a.yaml").read_text() == "a"
