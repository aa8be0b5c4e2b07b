"""Artifact storage under one root directory, served read-only by server.py.

Layout (Flux's): ``<kind>/<namespace>/<name>/<file>``, e.g.
``gitrepository/default/podinfo/<sha>.tar.gz``. Files are written to a hidden temporary
file in the same directory and renamed into place (readers never see a partial file),
mode 0600. All writes, GC and deletion of one object happen under that object's lock,
a ``flock`` on a file under ``<root>/.locks`` (hidden paths are never served).
"""

from __future__ import annotations

import contextlib
import errno
import fcntl
import hashlib
import os
import re
import shutil
import stat
import tempfile
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, BinaryIO, TypeVar

from controllers.source.archive import ArchiveResult, write_archive
from controllers.source.ignore import IgnoreRules
from controllers.toolkit.git.errors import SourceError, StorageError

T = TypeVar("T")
_SEGMENT = re.compile(r"^[a-z0-9]([-a-z0-9.]*[a-z0-9])?$")
_FILE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._+-]*$")
_TMP_PREFIX = ".tmp-"
_LOCKS = ".locks"
_CHUNK = 1 << 20


@dataclass(frozen=True)
class ObjectKey:
    """Which object an artifact belongs to; `kind` is lower case (``gitrepository``)."""

    kind: str
    namespace: str
    name: str

    def __post_init__(self) -> None:
        for what, value in (
            ("kind", self.kind),
            ("namespace", self.namespace),
            ("name", self.name),
        ):
            # Kubernetes names are DNS subdomains; anything else could climb out of the root.
            if not _SEGMENT.match(value) or value in (".", ".."):
                raise StorageError(f"invalid {what} '{value}' for an artifact path")

    @property
    def dir(self) -> str:
        return f"{self.kind}/{self.namespace}/{self.name}"

    def __str__(self) -> str:
        return f"{self.kind}/{self.namespace}/{self.name}"


@dataclass(frozen=True)
class StoredArtifact:
    """An artifact in storage; `to_status` gives Flux's ``status.artifact``."""

    path: str
    url: str
    revision: str
    digest: str
    size: int
    last_update_time: str

    def to_status(self) -> dict[str, Any]:
        return {
            "path": self.path,
            "url": self.url,
            "revision": self.revision,
            "digest": self.digest,
            "lastUpdateTime": self.last_update_time,
            "size": self.size,
        }


def _now() -> str:
    return datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def artifact_filename(commit: str) -> str:
    """A GitRepository artifact's file name: ``<commit>.tar.gz``."""
    return f"{commit}.tar.gz"


def file_digest(path: Path) -> str:
    """``sha256:<hex>`` of a file, read in chunks."""
    sha = hashlib.sha256()
    with open(path, "rb") as fh:
        while chunk := fh.read(_CHUNK):
            sha.update(chunk)
    return f"sha256:{sha.hexdigest()}"


class Storage:
    """The artifact store.

    `advertised_addr` is ``host:port`` written into artifact URLs. GC keeps the current
    artifact and at most `retention_records` files per object, and removes any other file
    older than `retention_ttl` seconds (Flux: 2 records, 1 minute).
    """

    def __init__(
        self,
        root: Path,
        advertised_addr: str,
        *,
        retention_records: int = 2,
        retention_ttl: float = 60.0,
        max_artifact_size: int | None = None,
        lock_timeout: float = 60.0,
    ) -> None:
        self.root = Path(root)
        self.advertised_addr = advertised_addr
        self.retention_records = max(1, retention_records)
        self.retention_ttl = retention_ttl
        self.max_artifact_size = max_artifact_size
        self.lock_timeout = lock_timeout
        try:
            self.root.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            raise StorageError(f"cannot create storage root '{root}': {exc.strerror}") from None

    # -- paths -------------------------------------------------------------------------

    def artifact_path(self, key: ObjectKey, filename: str) -> str:
        if not _FILE.match(filename) or filename.endswith(".lock"):
            raise StorageError(f"invalid artifact file name '{filename}'")
        return f"{key.dir}/{filename}"

    def local_path(self, rel_path: str) -> Path:
        """The file for a relative artifact path; refuses anything that leaves the root."""
        parts = rel_path.split("/")
        if any(p in ("", ".", "..") or p.startswith(".") or "\\" in p for p in parts):
            raise StorageError(f"invalid artifact path '{rel_path}'")
        return self.root.joinpath(*parts)

    def url_for(self, rel_path: str) -> str:
        return f"http://{self.advertised_addr}/{rel_path}"

    # -- locking -----------------------------------------------------------------------

    @contextlib.contextmanager
    def lock(self, key: ObjectKey) -> Iterator[None]:
        """Hold `key`'s lock (across threads and processes) for the duration."""
        lock_dir = self.root / _LOCKS
        lock_dir.mkdir(mode=0o700, exist_ok=True)
        lock_file = lock_dir / f"{key.kind}_{key.namespace}_{key.name}.lock"
        fd = os.open(lock_file, os.O_RDWR | os.O_CREAT, 0o600)
        try:
            deadline = time.monotonic() + self.lock_timeout
            while True:
                try:
                    fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
                    break
                except OSError as exc:
                    if exc.errno not in (errno.EWOULDBLOCK, errno.EAGAIN):
                        raise StorageError(f"cannot lock {key}: {exc.strerror}") from None
                    if time.monotonic() > deadline:
                        raise StorageError(
                            f"timed out after {self.lock_timeout:g}s waiting for the lock of {key}"
                        ) from None
                    time.sleep(0.05)
            yield
        finally:
            os.close(fd)  # closing drops the flock

    # -- writing -----------------------------------------------------------------------

    def write(
        self,
        key: ObjectKey,
        filename: str,
        producer: Callable[[BinaryIO], T],
    ) -> tuple[str, T]:
        """Atomically create ``<key>/<filename>`` from what `producer` writes.

        The caller holds `key`'s lock. On any failure the temporary file is removed and
        the previous file, if any, stays untouched.
        """
        rel = self.artifact_path(key, filename)
        final = self.local_path(rel)
        try:
            final.parent.mkdir(parents=True, exist_ok=True, mode=0o750)
            fd, tmp_name = tempfile.mkstemp(
                dir=final.parent, prefix=_TMP_PREFIX, suffix=".part"
            )  # mkstemp creates the file 0600
        except OSError as exc:
            raise StorageError(f"cannot create a file in '{key.dir}': {exc.strerror}") from None
        tmp = Path(tmp_name)
        try:
            with os.fdopen(fd, "wb") as fh:
                result = producer(fh)
                fh.flush()
                os.fsync(fh.fileno())
            os.chmod(tmp, 0o600)
            os.replace(tmp, final)
            dir_fd = os.open(final.parent, os.O_RDONLY)
            try:
                os.fsync(dir_fd)  # make the rename itself durable
            finally:
                os.close(dir_fd)
        except SourceError:
            tmp.unlink(missing_ok=True)
            raise
        except OSError as exc:
            tmp.unlink(missing_ok=True)
            raise StorageError(f"writing '{rel}' failed: {exc.strerror or exc}") from None
        except BaseException:
            tmp.unlink(missing_ok=True)
            raise
        return rel, result

    def archive(
        self,
        key: ObjectKey,
        filename: str,
        source_dir: Path,
        revision: str,
        rules: IgnoreRules | None = None,
    ) -> StoredArtifact:
        """Archive `source_dir` into ``<key>/<filename>`` under the lock, size limit applied."""

        def produce(fh: BinaryIO) -> ArchiveResult:
            return write_archive(source_dir, fh, rules, max_size=self.max_artifact_size)

        with self.lock(key):
            rel, result = self.write(key, filename, produce)
        return StoredArtifact(
            path=rel,
            url=self.url_for(rel),
            revision=revision,
            digest=result.digest,
            size=result.size,
            last_update_time=_now(),
        )

    # -- reading and verifying ----------------------------------------------------------

    def exists(self, rel_path: str) -> bool:
        try:
            st = self.local_path(rel_path).lstat()
        except (OSError, StorageError):
            return False
        return stat.S_ISREG(st.st_mode)

    def verify(self, rel_path: str, digest: str) -> bool:
        """Whether the stored file exists and still has `digest` (``sha256:<hex>``)."""
        if not digest.startswith("sha256:") or not self.exists(rel_path):
            return False
        try:
            return file_digest(self.local_path(rel_path)) == digest
        except OSError:
            return False

    def remove(self, rel_path: str) -> None:
        """Remove one artifact file (e.g. after a failed verification)."""
        try:
            self.local_path(rel_path).unlink(missing_ok=True)
        except OSError as exc:
            raise StorageError(f"removing '{rel_path}' failed: {exc.strerror}") from None

    # -- garbage collection and deletion -----------------------------------------------

    def artifacts(self, key: ObjectKey) -> list[str]:
        """File names stored for `key`, newest first."""
        directory = self.root / key.dir
        try:
            entries = [
                e
                for e in os.scandir(directory)
                if not e.name.startswith(".") and e.is_file(follow_symlinks=False)
            ]
        except FileNotFoundError:
            return []
        except OSError as exc:
            raise StorageError(f"listing '{key.dir}' failed: {exc.strerror}") from None
        entries.sort(
            key=lambda e: (e.stat(follow_symlinks=False).st_mtime_ns, e.name), reverse=True
        )
        return [e.name for e in entries]

    def gc(self, key: ObjectKey, current: str | None) -> list[str]:
        """Remove old artifacts of `key`, never `current` (a file name); return the removed.

        Kept: `current` plus the newest others up to `retention_records` in total, unless
        they are older than `retention_ttl`. Leftover temporary files are removed too.
        """
        removed: list[str] = []
        directory = self.root / key.dir
        with self.lock(key):
            now = time.time()
            names = self.artifacts(key)
            others = [n for n in names if n != current]
            slots = self.retention_records - (1 if current in names else 0)
            kept = 0
            for name in others:
                path = directory / name
                try:
                    age = now - path.lstat().st_mtime
                except FileNotFoundError:
                    continue
                if kept < slots and age <= self.retention_ttl:
                    kept += 1
                    continue
                path.unlink(missing_ok=True)
                removed.append(name)
            # Under the lock no write is in flight, so any temporary file is a leftover.
            with contextlib.suppress(FileNotFoundError):
                for entry in os.scandir(directory):
                    if entry.name.startswith(_TMP_PREFIX):
                        Path(entry.path).unlink(missing_ok=True)
        return removed

    def delete(self, key: ObjectKey) -> None:
        """Remove everything stored for `key` (the object is being deleted)."""
        with self.lock(key):
            directory = self.root / key.dir
            try:
                shutil.rmtree(directory)
            except FileNotFoundError:
                return
            except OSError as exc:
                raise StorageError(f"deleting '{key.dir}' failed: {exc.strerror}") from None
