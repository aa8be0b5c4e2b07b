"""Artifact helpers without a server: digests, URLs, paths and safe extraction."""

from __future__ import annotations

import os
import stat
import tarfile
from pathlib import Path

import pytest

from controllers.toolkit.artifacts import (
    Artifact,
    ArtifactError,
    PathError,
    UnsafeArchiveError,
    clean_relative,
    ensure_dirs,
    parse_digest,
    redact_url,
    remove_tree,
    safe_extract,
)
from tests.support.tarballs import entry, make_tar

HEX = "ab" * 32


def listing(root: Path) -> list[str]:
    return sorted(str(p.relative_to(root)) for p in root.rglob("*"))


# --- digests, URLs and the status ---------------------------------------------------------


@pytest.mark.parametrize(
    ("digest", "parsed"),
    [
        (f"sha256:{HEX}", ("sha256", HEX)),
        (HEX, ("sha256", HEX)),  # Flux reads a bare hex string as sha256
        (f"SHA256:{HEX}", ("sha256", HEX)),
        ("sha512:" + "0" * 128, ("sha512", "0" * 128)),
    ],
)
def test_parse_digest(digest: str, parsed: tuple[str, str]) -> None:
    assert parse_digest(digest) == parsed


@pytest.mark.parametrize(
    ("digest", "message"),
    [
        ("", "no digest"),
        ("md5:" + "0" * 32, "unsupported digest algorithm 'md5'"),
        ("sha256:abc", "malformed sha256 digest"),
        ("sha256:" + "G" * 64, "malformed sha256 digest"),
        ("sha256:" + HEX.upper(), "malformed sha256 digest"),
    ],
)
def test_parse_digest_refuses(digest: str, message: str) -> None:
    with pytest.raises(ArtifactError) as info:
        parse_digest(digest)
    assert message in str(info.value)
    assert info.value.reason == "ArtifactFailed"


@pytest.mark.parametrize(
    ("url", "shown"),
    [
        ("http://user:pw@host:9090/a/b.tar.gz", "http://host:9090/a/b.tar.gz"),
        ("https://token@host/a.tar.gz?sig=secret#frag", "https://host/a.tar.gz"),
        ("http://[::1]:8080/x", "http://[::1]:8080/x"),
        ("http://host:99999/x", "<invalid URL>"),
    ],
)
def test_redact_url(url: str, shown: str) -> None:
    assert redact_url(url) == shown


def test_artifact_from_status() -> None:
    artifact = Artifact.from_status(
        {
            "url": "http://src:9090/gitrepository/ns/app/abc.tar.gz",
            "digest": HEX,
            "revision": "main@sha1:0123",
            "size": 42,
            "path": "gitrepository/ns/app/abc.tar.gz",
        }
    )
    assert artifact.digest == f"sha256:{HEX}"
    assert artifact.revision == "main@sha1:0123"
    assert artifact.size == 42


@pytest.mark.parametrize(
    ("status", "message"),
    [
        ({"digest": f"sha256:{HEX}"}, "has no URL"),
        ({"url": "file:///etc/passwd", "digest": f"sha256:{HEX}"}, "is not http(s)"),
        ({"url": "http://u:secret@h/a.tar.gz"}, "artifact http://h/a.tar.gz has no digest"),
    ],
)
def test_artifact_from_status_refuses(status: dict[str, str], message: str) -> None:
    with pytest.raises(ArtifactError) as info:
        Artifact.from_status(status)
    assert message in str(info.value)
    assert "secret" not in str(info.value)


# --- paths --------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("path", "clean"),
    [("", ""), (".", ""), ("./a/b/", "a/b"), ("a/../b", "b"), ("a//b", "a/b"), (" x ", "x")],
)
def test_clean_relative(path: str, clean: str) -> None:
    assert clean_relative(path, "x") == clean


@pytest.mark.parametrize("path", ["/abs", "..", "../x", "a/../../x", "a\\b", "a\x00b"])
def test_clean_relative_refuses_escapes(path: str) -> None:
    with pytest.raises(PathError) as info:
        clean_relative(path, "spec.path")
    assert "spec.path" in str(info.value)


def test_ensure_dirs_refuses_a_symlink_on_the_way(tmp_path: Path) -> None:
    outside = tmp_path / "outside"
    outside.mkdir()
    root = tmp_path / "root"
    root.mkdir()
    (root / "a").symlink_to(outside, target_is_directory=True)
    with pytest.raises(PathError) as info:
        ensure_dirs(root, root / "a" / "b")
    assert "'a' is in the way" in str(info.value)
    assert list(outside.iterdir()) == []


# --- extraction ---------------------------------------------------------------------------


def test_safe_extract_unpacks_files_and_dirs_with_modes(tmp_path: Path) -> None:
    exe = entry("bin/run.sh")
    exe.mode = 0o700
    tarball = make_tar(
        tmp_path / "t.tar.gz",
        [entry("bin", tarfile.DIRTYPE), exe, entry("deep/er/x.yaml")],
        {"bin/run.sh": b"#!/bin/sh\n", "deep/er/x.yaml": b"a: 1\n"},
    )
    dest = tmp_path / "out"
    dest.mkdir()
    safe_extract(tarball, dest)
    assert listing(dest) == ["bin", "bin/run.sh", "deep", "deep/er", "deep/er/x.yaml"]
    assert stat.S_IMODE((dest / "bin/run.sh").stat().st_mode) == 0o755
    assert stat.S_IMODE((dest / "deep/er/x.yaml").stat().st_mode) == 0o644
    assert (dest / "deep/er/x.yaml").read_bytes() == b"a: 1\n"


def test_safe_extract_never_creates_links_or_specials(tmp_path: Path) -> None:
    secret = tmp_path / "secret.txt"
    secret.write_text("top secret")
    tarball = make_tar(
        tmp_path / "t.tar.gz",
        [
            entry("ok.txt"),
            entry("sym", tarfile.SYMTYPE, str(secret)),
            entry("rel-sym", tarfile.SYMTYPE, "../secret.txt"),
            entry("hard", tarfile.LNKTYPE, str(secret)),
            entry("hard-in", tarfile.LNKTYPE, "ok.txt"),
            entry("fifo", tarfile.FIFOTYPE),
            entry("dev", tarfile.CHRTYPE),
        ],
        {"ok.txt": b"ok"},
    )
    dest = tmp_path / "out"
    dest.mkdir()
    safe_extract(tarball, dest)
    assert listing(dest) == ["ok.txt"]
    assert secret.stat().st_nlink == 1


@pytest.mark.parametrize(
    "name", ["../evil.txt", "/abs/evil.txt", "a/../../evil.txt", "a/b/../../../evil.txt"]
)
def test_safe_extract_refuses_escaping_names(tmp_path: Path, name: str) -> None:
    tarball = make_tar(tmp_path / "t.tar.gz", [entry(name)], {name: b"evil"})
    dest = tmp_path / "deep" / "out"
    dest.mkdir(parents=True)
    with pytest.raises(UnsafeArchiveError) as info:
        safe_extract(tarball, dest)
    assert "t.tar.gz" in str(info.value)
    assert "must stay inside" in str(info.value)
    assert not list(tmp_path.rglob("evil.txt"))


def test_safe_extract_refuses_an_escaping_directory(tmp_path: Path) -> None:
    tarball = make_tar(tmp_path / "t.tar.gz", [entry("../up", tarfile.DIRTYPE)], {})
    dest = tmp_path / "out"
    dest.mkdir()
    with pytest.raises(UnsafeArchiveError):
        safe_extract(tarball, dest)
    assert not (tmp_path / "up").exists()


def test_safe_extract_never_writes_through_an_existing_symlink(tmp_path: Path) -> None:
    outside = tmp_path / "outside"
    outside.mkdir()
    dest = tmp_path / "out"
    dest.mkdir()
    (dest / "dir").symlink_to(outside, target_is_directory=True)
    (dest / "file.txt").symlink_to(outside / "target.txt")
    tarball = make_tar(tmp_path / "t.tar.gz", [entry("dir/evil.txt")], {"dir/evil.txt": b"x"})
    with pytest.raises(UnsafeArchiveError) as info:
        safe_extract(tarball, dest)
    assert "'dir' is in the way of a directory" in str(info.value)
    tarball = make_tar(tmp_path / "u.tar.gz", [entry("file.txt")], {"file.txt": b"x"})
    with pytest.raises(UnsafeArchiveError):
        safe_extract(tarball, dest)
    assert list(outside.iterdir()) == []


def test_safe_extract_ignores_an_archive_symlink_then_a_file_beneath_it(tmp_path: Path) -> None:
    # A later file "through" the link must land inside, never where the link pointed.
    outside = tmp_path / "outside"
    outside.mkdir()
    tarball = make_tar(
        tmp_path / "t.tar.gz",
        [entry("link", tarfile.SYMTYPE, str(outside)), entry("link/evil.txt")],
        {"link/evil.txt": b"evil"},
    )
    dest = tmp_path / "out"
    dest.mkdir()
    safe_extract(tarball, dest)
    assert not (outside / "evil.txt").exists()
    assert (dest / "link").is_dir() and not (dest / "link").is_symlink()
    assert (dest / "link" / "evil.txt").read_bytes() == b"evil"


def test_safe_extract_refuses_a_file_where_a_directory_must_go(tmp_path: Path) -> None:
    tarball = make_tar(tmp_path / "t.tar.gz", [entry("a"), entry("a/b")], {"a": b"x"})
    dest = tmp_path / "out"
    dest.mkdir()
    with pytest.raises(UnsafeArchiveError) as info:
        safe_extract(tarball, dest)
    assert "'a' is in the way" in str(info.value)


def test_safe_extract_bounds_the_unpacked_size(tmp_path: Path) -> None:
    tarball = make_tar(
        tmp_path / "t.tar.gz",
        [entry("a"), entry("b")],
        {"a": b"x" * 600, "b": b"y" * 600},
    )
    dest = tmp_path / "out"
    dest.mkdir()
    safe_extract(tarball, dest, max_size=1200)
    other = tmp_path / "other"
    other.mkdir()
    with pytest.raises(UnsafeArchiveError) as info:
        safe_extract(tarball, other, max_size=1000)
    assert "unpacks to more than 1000 bytes" in str(info.value)
    # The file that would cross the limit is never written.
    assert not (other / "b").exists()


def test_safe_extract_bounds_the_number_of_entries(tmp_path: Path) -> None:
    names = [f"f{i}" for i in range(20)]
    # Links count too: skipping an entry still costs reading it.
    entries = [entry(n) for n in names] + [entry("l", tarfile.SYMTYPE, "f0")]
    tarball = make_tar(tmp_path / "t.tar.gz", entries, {})
    dest = tmp_path / "out"
    dest.mkdir()
    safe_extract(tarball, dest, max_entries=21)
    other = tmp_path / "other"
    other.mkdir()
    with pytest.raises(UnsafeArchiveError) as info:
        safe_extract(tarball, other, max_entries=20)
    assert "more than 20 entries" in str(info.value)


@pytest.mark.parametrize(
    "payload", [b"not a tarball at all", b"\x1f\x8b\x08\x00\x00\x00\x00\x00\x00\x03truncated"]
)
def test_safe_extract_reports_a_broken_archive(tmp_path: Path, payload: bytes) -> None:
    tarball = tmp_path / "broken.tar.gz"
    tarball.write_bytes(payload)
    dest = tmp_path / "out"
    dest.mkdir()
    with pytest.raises(UnsafeArchiveError) as info:
        safe_extract(tarball, dest)
    assert "unpacking 'broken.tar.gz' failed" in str(info.value)


def test_safe_extract_reports_a_truncated_member(tmp_path: Path) -> None:
    whole = make_tar(tmp_path / "t.tar.gz", [entry("big")], {"big": os.urandom(200_000)})
    cut = tmp_path / "cut.tar.gz"
    cut.write_bytes(whole.read_bytes()[:50_000])
    dest = tmp_path / "out"
    dest.mkdir()
    with pytest.raises(UnsafeArchiveError):
        safe_extract(cut, dest)


def test_remove_tree_removes_read_only_trees(tmp_path: Path) -> None:
    root = tmp_path / "tree"
    (root / "a" / "b").mkdir(parents=True)
    (root / "a" / "b" / "f").write_text("x")
    for path in (root / "a" / "b" / "f", root / "a" / "b", root / "a", root):
        path.chmod(0o555 if path.is_dir() else 0o444)
    remove_tree(root)
    assert not root.exists()
    remove_tree(root)  # already gone: nothing to do
