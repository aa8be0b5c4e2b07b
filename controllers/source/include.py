"""``spec.include``: other GitRepositories' artifacts copied into the checkout at ``toPath``.

Each included artifact (a tarball in our own storage) is checked against its digest,
unpacked safely (regular files and directories only, nothing outside the target), and its
``fromPath`` subtree replaces whatever was at ``toPath`` (default: the included
repository's name) in the checkout.
"""

from __future__ import annotations

import os
import posixpath
import shutil
import stat
import tarfile
import tempfile
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from controllers.source.errors import ArchiveError
from controllers.source.storage import file_digest

_CHUNK = 1 << 16


@dataclass(frozen=True)
class Include:
    """One include: `artifact` is the local tarball, `digest` its expected ``sha256:``."""

    name: str  # the included GitRepository's name, for messages and the default toPath
    artifact: Path
    digest: str | None = None
    from_path: str = ""
    to_path: str = ""

    @property
    def target(self) -> str:
        return self.to_path or self.name


def clean_relative(path: str, what: str) -> str:
    """`path` normalised to a relative path inside the tree ("" for the root)."""
    if "\x00" in path or "\\" in path:
        raise ArchiveError(f"invalid {what} '{path}'")
    norm = posixpath.normpath(path.strip()) if path.strip() else ""
    if norm in ("", "."):
        return ""
    if norm.startswith("/") or norm == ".." or norm.startswith("../"):
        raise ArchiveError(f"invalid {what} '{path}': it must stay inside the repository")
    return norm


def safe_extract(tarball: Path, dest: Path, *, max_size: int | None = None) -> None:
    """Unpack regular files and directories of `tarball` into `dest`; skip anything else.

    Names are refused when absolute or climbing out; files are created exclusively and never
    through symlinks, so a crafted archive cannot write outside `dest`.
    """
    total = 0
    try:
        with tarfile.open(tarball, mode="r:gz") as tar:
            for member in tar:
                if not (member.isreg() or member.isdir()):
                    continue
                rel = clean_relative(member.name, "archive entry")
                if not rel:
                    continue
                target = dest / rel
                _ensure_dirs(dest, target.parent)
                if member.isdir():
                    _ensure_dirs(dest, target)
                    continue
                total += member.size
                if max_size is not None and total > max_size:
                    raise ArchiveError(f"archive '{tarball.name}' unpacks to more than {max_size}")
                source = tar.extractfile(member)
                if source is None:
                    continue
                mode = 0o755 if member.mode & stat.S_IXUSR else 0o644
                flags = os.O_WRONLY | os.O_CREAT | os.O_TRUNC | os.O_NOFOLLOW
                fd = os.open(target, flags, mode)
                with os.fdopen(fd, "wb") as out, source:
                    shutil.copyfileobj(source, out, _CHUNK)
    except (tarfile.TarError, EOFError, OSError) as exc:
        raise ArchiveError(f"unpacking '{tarball.name}' failed: {exc}") from None


def _ensure_dirs(root: Path, path: Path) -> None:
    """mkdir -p `path` below `root`, refusing any existing component that is not a directory."""
    rel = path.relative_to(root)
    current = root
    for part in rel.parts:
        current = current / part
        try:
            st = current.lstat()
        except FileNotFoundError:
            current.mkdir(mode=0o755)
            continue
        if not stat.S_ISDIR(st.st_mode):
            raise ArchiveError(f"'{current.relative_to(root)}' is in the way of a directory")


def _remove(path: Path) -> None:
    try:
        st = path.lstat()
    except FileNotFoundError:
        return
    if stat.S_ISDIR(st.st_mode):
        shutil.rmtree(path)
    else:
        path.unlink()


def apply_includes(work_dir: Path, includes: Sequence[Include]) -> None:
    """Copy each include into `work_dir`, in order (a later include wins on overlap)."""
    for inc in includes:
        from_path = clean_relative(inc.from_path, "include fromPath")
        to_path = clean_relative(inc.target, "include toPath")
        if not to_path:
            raise ArchiveError(f"include of '{inc.name}': toPath cannot be the repository root")
        if inc.digest is not None and file_digest(inc.artifact) != inc.digest:
            raise ArchiveError(
                f"artifact of included repository '{inc.name}' does not match digest {inc.digest}"
            )
        with tempfile.TemporaryDirectory(prefix="headwater-include-") as tmp:
            unpacked = Path(tmp) / "tree"
            unpacked.mkdir()
            safe_extract(inc.artifact, unpacked)
            source = unpacked / from_path if from_path else unpacked
            try:
                source_st = source.lstat()
            except FileNotFoundError:
                raise ArchiveError(
                    f"include of '{inc.name}': fromPath '{from_path}' not found in its artifact"
                ) from None
            target = work_dir / to_path
            try:
                # Parents inside the checkout must be real directories, never symlinks.
                _ensure_dirs(work_dir, target.parent)
                _remove(target)
                if stat.S_ISDIR(source_st.st_mode):
                    shutil.copytree(source, target, symlinks=True)
                else:
                    shutil.copyfile(source, target, follow_symlinks=False)
            except OSError as exc:
                raise ArchiveError(
                    f"copying include '{inc.name}' to '{to_path}' failed: {exc.strerror or exc}"
                ) from None
