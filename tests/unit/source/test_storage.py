"""Artifact storage: layout, atomic writes, GC, verification, deletion, size limit, locks."""

from __future__ import annotations

import hashlib
import os
import stat
import threading
import time
from pathlib import Path
from typing import BinaryIO

import pytest

from controllers.source.storage import ObjectKey, Storage, artifact_filename
from controllers.toolkit.git.errors import (
    STORAGE_OPERATION_FAILED,
    ArtifactTooLargeError,
    StorageError,
)

KEY = ObjectKey("gitrepository", "default", "podinfo")
SHA = "0123456789abcdef0123456789abcdef01234567"


def source_tree(tmp_path: Path, size: int = 100) -> Path:
    root = tmp_path / "src"
    root.mkdir(exist_ok=True)
    (root / "app.yaml").write_bytes(b"x" * size)
    return root


def leftovers(directory: Path) -> list[str]:
    return [p.name for p in directory.iterdir() if p.name.startswith(".")]


def test_archive_layout_mode_digest_and_url(tmp_path: Path) -> None:
    storage = Storage(tmp_path / "data", "source.headwater:9090")
    stored = storage.archive(KEY, artifact_filename(SHA), source_tree(tmp_path), f"main@sha1:{SHA}")
    assert stored.path == f"gitrepository/default/podinfo/{SHA}.tar.gz"
    assert stored.url == f"http://source.headwater:9090/{stored.path}"
    local = storage.local_path(stored.path)
    assert stat.S_IMODE(local.stat().st_mode) == 0o600
    data = local.read_bytes()
    assert stored.digest == "sha256:" + hashlib.sha256(data).hexdigest()
    assert stored.size == len(data)
    status = stored.to_status()
    assert status["revision"] == f"main@sha1:{SHA}"
    assert set(status) == {"path", "url", "revision", "digest", "lastUpdateTime", "size"}
    assert leftovers(local.parent) == []


def test_failed_write_keeps_the_previous_file_and_no_temp(tmp_path: Path) -> None:
    storage = Storage(tmp_path / "data", "h")

    def good(fh: BinaryIO) -> None:
        fh.write(b"previous")

    def bad(fh: BinaryIO) -> None:
        fh.write(b"partial")
        raise RuntimeError("producer broke halfway")

    rel, _ = storage.write(KEY, "f.tar.gz", good)
    with pytest.raises(RuntimeError):
        storage.write(KEY, "f.tar.gz", bad)
    local = storage.local_path(rel)
    assert local.read_bytes() == b"previous"
    assert leftovers(local.parent) == []


def test_size_limit_refuses_and_leaves_nothing(tmp_path: Path) -> None:
    storage = Storage(tmp_path / "data", "h", max_artifact_size=1024)
    tree = source_tree(tmp_path, size=1)
    (tree / "random.bin").write_bytes(os.urandom(8192))  # random: gzip cannot shrink it
    with pytest.raises(ArtifactTooLargeError) as info:
        storage.archive(KEY, artifact_filename(SHA), tree, "r")
    assert info.value.reason == STORAGE_OPERATION_FAILED
    assert "limit 1024 bytes" in str(info.value)
    directory = storage.root / KEY.dir
    assert list(directory.iterdir()) == []


def test_verify_detects_tampering_and_missing_files(tmp_path: Path) -> None:
    storage = Storage(tmp_path / "data", "h")
    stored = storage.archive(KEY, artifact_filename(SHA), source_tree(tmp_path), "r")
    assert storage.verify(stored.path, stored.digest)
    assert not storage.verify(stored.path, "sha256:" + "0" * 64)
    assert not storage.verify(stored.path, stored.digest.replace("sha256:", "md5:"))
    local = storage.local_path(stored.path)
    local.write_bytes(local.read_bytes() + b"tampered")
    assert not storage.verify(stored.path, stored.digest)
    storage.remove(stored.path)
    assert not storage.exists(stored.path)
    assert not storage.verify(stored.path, stored.digest)


def put(storage: Storage, name: str, age: float) -> None:
    storage.write(KEY, name, lambda fh: fh.write(name.encode()))
    when = time.time() - age
    os.utime(storage.root / KEY.dir / name, (when, when))


def test_gc_keeps_current_and_newest_up_to_the_record_count(tmp_path: Path) -> None:
    storage = Storage(tmp_path / "data", "h", retention_records=3, retention_ttl=3600)
    for i, age in enumerate([50, 40, 30, 20, 10]):
        put(storage, f"{i}.tar.gz", age)
    # The current artifact may be older than others (e.g. a rollback to an old commit).
    removed = storage.gc(KEY, current="0.tar.gz")
    assert sorted(removed) == ["1.tar.gz", "2.tar.gz"]
    assert sorted(storage.artifacts(KEY)) == ["0.tar.gz", "3.tar.gz", "4.tar.gz"]


def test_gc_removes_expired_files_but_never_the_current_one(tmp_path: Path) -> None:
    storage = Storage(tmp_path / "data", "h", retention_records=5, retention_ttl=60)
    put(storage, "old-current.tar.gz", 7200)
    put(storage, "old.tar.gz", 3600)
    put(storage, "recent.tar.gz", 5)
    (storage.root / KEY.dir / ".tmp-leftover.part").write_bytes(b"crash")
    removed = storage.gc(KEY, current="old-current.tar.gz")
    assert removed == ["old.tar.gz"]
    assert sorted(storage.artifacts(KEY)) == ["old-current.tar.gz", "recent.tar.gz"]
    assert leftovers(storage.root / KEY.dir) == []


def test_gc_of_an_unknown_object_is_a_no_op(tmp_path: Path) -> None:
    storage = Storage(tmp_path / "data", "h")
    assert storage.gc(ObjectKey("gitrepository", "x", "y"), current=None) == []


def test_delete_removes_the_object_directory_only(tmp_path: Path) -> None:
    storage = Storage(tmp_path / "data", "h")
    other = ObjectKey("gitrepository", "default", "other")
    storage.archive(KEY, artifact_filename(SHA), source_tree(tmp_path), "r")
    kept = storage.archive(other, artifact_filename(SHA), source_tree(tmp_path), "r")
    storage.delete(KEY)
    assert not (storage.root / KEY.dir).exists()
    assert storage.exists(kept.path)
    storage.delete(KEY)  # deleting twice is fine


@pytest.mark.parametrize(
    ("kind", "namespace", "name"),
    [
        ("gitrepository", "..", "x"),
        ("gitrepository", "default", "a/b"),
        ("gitrepository", "", "x"),
        ("GitRepository", "default", "x"),
        ("gitrepository", "default", ".hidden"),
    ],
)
def test_invalid_object_keys(kind: str, namespace: str, name: str) -> None:
    with pytest.raises(StorageError):
        ObjectKey(kind, namespace, name)


@pytest.mark.parametrize(
    "rel", ["../etc/passwd", "a/../../b", "/abs", "a//b", ".locks/x.lock", "a/.tmp-x", "a\\b"]
)
def test_local_path_refuses_escapes(tmp_path: Path, rel: str) -> None:
    storage = Storage(tmp_path / "data", "h")
    with pytest.raises(StorageError):
        storage.local_path(rel)


@pytest.mark.parametrize("filename", ["../x.tar.gz", "a/b.tar.gz", ".hidden", "x.lock", ""])
def test_invalid_file_names(tmp_path: Path, filename: str) -> None:
    storage = Storage(tmp_path / "data", "h")
    with pytest.raises(StorageError):
        storage.artifact_path(KEY, filename)


def test_lock_is_exclusive_per_object(tmp_path: Path) -> None:
    holder = Storage(tmp_path / "data", "h")
    waiter = Storage(tmp_path / "data", "h", lock_timeout=0.3)
    errors: list[BaseException] = []
    other_key_locked = threading.Event()

    def contend() -> None:
        try:
            with waiter.lock(KEY):
                pass
        except StorageError as exc:
            errors.append(exc)
        with waiter.lock(ObjectKey("gitrepository", "default", "different")):
            other_key_locked.set()

    with holder.lock(KEY):
        thread = threading.Thread(target=contend)
        thread.start()
        thread.join(timeout=30)
    assert len(errors) == 1
    assert "waiting for the lock" in str(errors[0])
    assert other_key_locked.is_set()
    with waiter.lock(KEY):  # released now
        pass
