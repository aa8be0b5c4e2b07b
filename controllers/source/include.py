"""``spec.include``: other GitRepositories' artifacts copied into the checkout at ``toPath``.

Each included artifact (a tarball in our own storage) is checked against its digest,
unpacked safely by the toolkit's shared `safe_extract` (regular files and directories only,
nothing outside the target), and its ``fromPath`` subtree replaces whatever was at
``toPath`` (default: the included repository's name) in the checkout.
"""

from __future__ import annotations

import shutil
import stat
import tempfile
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from controllers.source.storage import file_digest
from controllers.toolkit import artifacts
from controllers.toolkit.git.errors import ArchiveError


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
    try:
        return artifacts.clean_relative(path, what)
    except artifacts.PathError as exc:
        raise ArchiveError(str(exc)) from None


def _ensure_dirs(root: Path, path: Path) -> None:
    try:
        artifacts.ensure_dirs(root, path)
    except artifacts.PathError as exc:
        raise ArchiveError(str(exc)) from None


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
            try:
                artifacts.safe_extract(inc.artifact, unpacked)
            except artifacts.ArtifactError as exc:
                raise ArchiveError(f"include of '{inc.name}': {exc}") from None
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
