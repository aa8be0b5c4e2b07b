"""Deterministic gzip tarballs of a source tree, digested while they are written.

Same tree, same bytes: entries in sorted depth-first order, mtime 0, uid/gid 0, empty owner
names, modes 0755 for directories and owner-executable files and 0644 for other files,
gzip header without file name and with mtime 0. Only regular files and directories are
archived; symlinks, devices, sockets and fifos are left out, and ``.git`` (directory or
submodule gitlink file) never goes in.
"""

from __future__ import annotations

import gzip
import hashlib
import os
import stat
import tarfile
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import BinaryIO

from controllers.source.ignore import IgnoreRules
from controllers.toolkit.git.errors import ArchiveError, ArtifactTooLargeError

DIR_MODE = 0o755
FILE_MODE = 0o644
EXEC_MODE = 0o755
COMPRESS_LEVEL = 6
_CHUNK = 1 << 16


@dataclass(frozen=True)
class ArchiveResult:
    digest: str  # "sha256:<hex>" of the .tar.gz bytes
    size: int  # bytes of the .tar.gz


@dataclass(frozen=True)
class TreeEntry:
    name: str  # relative, "/"-separated
    path: Path
    is_dir: bool


class _DigestWriter:
    """A write-only file object that hashes, counts and enforces a size limit."""

    def __init__(self, out: BinaryIO, limit: int | None) -> None:
        self._out = out
        self._limit = limit
        self.sha = hashlib.sha256()
        self.size = 0

    def write(self, data: bytes) -> int:
        self.size += len(data)
        if self._limit is not None and self.size > self._limit:
            raise ArtifactTooLargeError(self.size, self._limit)
        self.sha.update(data)
        self._out.write(data)
        return len(data)

    def flush(self) -> None:
        self._out.flush()


def iter_tree(root: Path, rules: IgnoreRules | None = None) -> Iterator[TreeEntry]:
    """Regular files and directories under `root` in archive order, minus ignored paths.

    An ignored directory is still walked, because a later negated pattern may keep a file
    inside it (Flux's semantics); only the entries themselves are filtered.
    """

    def walk(rel: str) -> Iterator[TreeEntry]:
        here = root / rel if rel else root
        try:
            entries = sorted(os.scandir(here), key=lambda e: e.name)
        except OSError as exc:
            raise ArchiveError(f"cannot read directory '{rel or '.'}': {exc.strerror}") from None
        for entry in entries:
            if entry.name == ".git":
                continue
            name = f"{rel}/{entry.name}" if rel else entry.name
            st = entry.stat(follow_symlinks=False)
            if stat.S_ISDIR(st.st_mode):
                if rules is None or not rules.ignored(name, is_dir=True):
                    yield TreeEntry(name, Path(entry.path), True)
                yield from walk(name)
            elif stat.S_ISREG(st.st_mode) and (rules is None or not rules.ignored(name)):
                yield TreeEntry(name, Path(entry.path), False)

    yield from walk("")


def _add_file(tar: tarfile.TarFile, entry: TreeEntry) -> None:
    try:
        # O_NOFOLLOW: a path swapped for a symlink after the walk is refused, not followed.
        fd = os.open(entry.path, os.O_RDONLY | os.O_NOFOLLOW)
    except OSError as exc:
        raise ArchiveError(f"cannot open '{entry.name}': {exc.strerror}") from None
    with os.fdopen(fd, "rb") as fh:
        st = os.fstat(fh.fileno())
        if not stat.S_ISREG(st.st_mode):
            raise ArchiveError(f"'{entry.name}' is no longer a regular file")
        info = _info(entry.name, tarfile.REGTYPE)
        info.size = st.st_size
        info.mode = EXEC_MODE if st.st_mode & stat.S_IXUSR else FILE_MODE
        tar.addfile(info, fh)


def _info(name: str, kind: bytes) -> tarfile.TarInfo:
    info = tarfile.TarInfo(name)
    info.type = kind
    info.mtime = 0
    info.uid = info.gid = 0
    info.uname = info.gname = ""
    info.mode = DIR_MODE if kind == tarfile.DIRTYPE else FILE_MODE
    return info


def write_archive(
    root: Path,
    out: BinaryIO,
    rules: IgnoreRules | None = None,
    *,
    max_size: int | None = None,
) -> ArchiveResult:
    """Write the tarball of `root` to `out`; raise ArtifactTooLargeError past `max_size`."""
    if not root.is_dir():
        raise ArchiveError(f"cannot archive '{root}': not a directory")
    writer = _DigestWriter(out, max_size)
    try:
        # filename="" and mtime=0 keep the gzip header free of names and times.
        with (
            gzip.GzipFile(
                filename="", mode="wb", fileobj=writer, mtime=0, compresslevel=COMPRESS_LEVEL
            ) as gz,
            tarfile.open(fileobj=gz, mode="w|", format=tarfile.PAX_FORMAT) as tar,
        ):
            for entry in iter_tree(root, rules):
                if entry.is_dir:
                    tar.addfile(_info(entry.name, tarfile.DIRTYPE))
                else:
                    _add_file(tar, entry)
    except (ArchiveError, ArtifactTooLargeError):
        raise
    except OSError as exc:
        raise ArchiveError(f"writing the archive failed: {exc.strerror or exc}") from None
    except tarfile.TarError as exc:
        raise ArchiveError(f"writing the archive failed: {exc}") from None
    return ArchiveResult(digest=f"sha256:{writer.sha.hexdigest()}", size=writer.size)
