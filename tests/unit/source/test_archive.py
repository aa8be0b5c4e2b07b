"""Deterministic tarballs: same tree, same bytes; only regular files and directories."""

from __future__ import annotations

import gzip
import hashlib
import io
import os
import socket
import stat
import tarfile
from pathlib import Path

import pytest

from controllers.source.archive import write_archive
from controllers.source.ignore import IgnoreRules, default_rules
from controllers.toolkit.git.errors import ArchiveError, ArtifactTooLargeError

FILES = {
    "b.yaml": b"b: 1\n",
    "a/z.txt": b"z\n",
    "a/b/c.yaml": b"c: 3\n",
    "a/b/empty": b"",
    "scripts/run.sh": b"#!/bin/sh\necho hi\n",
    "unicode-\u00e9.txt": "\u00e9t\u00e9\n".encode(),
    "deep/" + "x" * 120 + "/long-name.yaml": b"long\n",
}


def make_tree(root: Path, umask: int, mtime: int) -> Path:
    old = os.umask(umask)
    try:
        for rel, data in FILES.items():
            path = root / rel
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_bytes(data)
            if rel.endswith(".sh"):
                path.chmod(0o777 & ~umask)
    finally:
        os.umask(old)
    for path in [root, *root.rglob("*")]:
        os.utime(path, (mtime, mtime))
    return root


def archive(root: Path, rules: IgnoreRules | None = None) -> tuple[bytes, str, int]:
    buf = io.BytesIO()
    result = write_archive(root, buf, rules)
    return buf.getvalue(), result.digest, result.size


def members(data: bytes) -> list[tarfile.TarInfo]:
    with tarfile.open(fileobj=io.BytesIO(data), mode="r:gz") as tar:
        return tar.getmembers()


def test_same_tree_gives_same_bytes_across_mtimes_and_umask(tmp_path: Path) -> None:
    one = make_tree(tmp_path / "one", umask=0o022, mtime=1_000_000_000)
    two = make_tree(tmp_path / "two", umask=0o077, mtime=1_700_000_000)
    data_one, digest_one, _ = archive(one)
    data_two, digest_two, _ = archive(two)
    assert data_one == data_two
    assert digest_one == digest_two


def test_different_content_gives_different_digest(tmp_path: Path) -> None:
    root = make_tree(tmp_path / "t", umask=0o022, mtime=0)
    _, before, _ = archive(root)
    (root / "b.yaml").write_bytes(b"b: 2\n")
    _, after, _ = archive(root)
    assert before != after


def test_digest_and_size_describe_the_written_bytes(tmp_path: Path) -> None:
    data, digest, size = archive(make_tree(tmp_path / "t", umask=0o022, mtime=5))
    assert digest == "sha256:" + hashlib.sha256(data).hexdigest()
    assert size == len(data)


def test_gzip_header_has_no_name_and_no_time(tmp_path: Path) -> None:
    data, _, _ = archive(make_tree(tmp_path / "t", umask=0o022, mtime=5))
    assert data[:3] == b"\x1f\x8b\x08"
    flags = data[3]
    assert flags & 0x08 == 0  # FNAME
    assert data[4:8] == b"\x00\x00\x00\x00"  # MTIME


def test_entries_are_sorted_with_fixed_metadata(tmp_path: Path) -> None:
    data, _, _ = archive(make_tree(tmp_path / "t", umask=0o022, mtime=5))
    infos = members(data)
    names = [m.name for m in infos]
    assert names == [
        "a",
        "a/b",
        "a/b/c.yaml",
        "a/b/empty",
        "a/z.txt",
        "b.yaml",
        "deep",
        "deep/" + "x" * 120,
        "deep/" + "x" * 120 + "/long-name.yaml",
        "scripts",
        "scripts/run.sh",
        "unicode-\u00e9.txt",
    ]
    for m in infos:
        assert m.mtime == 0
        assert (m.uid, m.gid, m.uname, m.gname) == (0, 0, "", "")
        if m.isdir() or m.name == "scripts/run.sh":
            assert m.mode == 0o755
        else:
            assert m.mode == 0o644


def test_only_regular_files_and_directories(tmp_path: Path) -> None:
    root = tmp_path / "t"
    (root / "dir").mkdir(parents=True)
    (root / "dir" / "real.txt").write_text("real")
    outside = tmp_path / "outside.txt"
    outside.write_text("secret outside the tree")
    (root / "link-out").symlink_to(outside)
    (root / "link-in").symlink_to(root / "dir" / "real.txt")
    (root / "link-dir").symlink_to(root / "dir", target_is_directory=True)
    (root / "link-up").symlink_to(tmp_path, target_is_directory=True)
    os.mkfifo(root / "fifo")
    with socket.socket(socket.AF_UNIX) as sock:
        sock.bind(str(root / "sock"))
        data, _, _ = archive(root)
    infos = members(data)
    assert [m.name for m in infos] == ["dir", "dir/real.txt"]
    assert all(m.isreg() or m.isdir() for m in infos)
    assert b"secret outside the tree" not in gzip.decompress(data)


def test_git_metadata_never_goes_in(tmp_path: Path) -> None:
    root = tmp_path / "t"
    (root / ".git" / "objects").mkdir(parents=True)
    (root / ".git" / "config").write_text("[core]\n")
    (root / "sub").mkdir()
    (root / "sub" / ".git").write_text("gitdir: ../.git/modules/sub\n")
    (root / "sub" / "file.yaml").write_text("x")
    data, _, _ = archive(root)  # no ignore rules at all
    assert [m.name for m in members(data)] == ["sub", "sub/file.yaml"]


def test_ignore_rules_apply(tmp_path: Path) -> None:
    root = make_tree(tmp_path / "t", umask=0o022, mtime=5)
    (root / "logo.png").write_bytes(b"\x89PNG")
    rules = default_rules().with_patterns(["a/", "!a/b/c.yaml", "*.sh"])
    names = [m.name for m in members(archive(root, rules)[0])]
    assert "logo.png" not in names
    assert "a/z.txt" not in names and "a" not in names
    assert "a/b/c.yaml" in names  # a negated pattern keeps a file under an ignored dir
    assert "scripts/run.sh" not in names
    assert "scripts" in names


def test_size_limit_stops_writing(tmp_path: Path) -> None:
    root = tmp_path / "t"
    root.mkdir()
    (root / "big.bin").write_bytes(os.urandom(64 * 1024))
    buf = io.BytesIO()
    with pytest.raises(ArtifactTooLargeError) as info:
        write_archive(root, buf, max_size=10_000)
    assert info.value.limit == 10_000
    assert "10000" in str(info.value)
    assert len(buf.getvalue()) <= 10_000 + 64 * 1024


def test_missing_root_is_an_archive_error(tmp_path: Path) -> None:
    with pytest.raises(ArchiveError):
        write_archive(tmp_path / "nope", io.BytesIO())


def test_file_modes_come_from_owner_exec_bit_only(tmp_path: Path) -> None:
    root = tmp_path / "t"
    root.mkdir()
    for name, mode in (("a", 0o600), ("b", 0o700), ("c", 0o604), ("d", 0o744)):
        (root / name).write_text(name)
        (root / name).chmod(mode)
    modes = {m.name: stat.S_IMODE(m.mode) for m in members(archive(root)[0])}
    assert modes == {"a": 0o644, "b": 0o755, "c": 0o644, "d": 0o755}
