"""Which paths of a checkout stay out of the artifact: Flux's default excludes, then every
``.sourceignore`` (read recursively, each scoped to its directory), then ``spec.ignore``.

Patterns use gitignore syntax. As in Flux, each path is judged on its own and the last
matching pattern wins, so ``!dir/keep.yaml`` can bring back a file under an excluded
``dir/`` (plain git would not). Paths are relative, ``/``-separated, directories with a
trailing ``/``.
"""

from __future__ import annotations

import os
import stat
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from pathspec import PathSpec

SOURCEIGNORE = ".sourceignore"

# Flux's defaults: VCS metadata, binary/archive files, CI configuration, tool configs.
DEFAULT_EXCLUDES: tuple[str, ...] = (
    ".git/",
    ".gitignore",
    ".gitmodules",
    ".gitattributes",
    "*.jpg",
    "*.jpeg",
    "*.gif",
    "*.png",
    "*.wmv",
    "*.flv",
    "*.tar.gz",
    "*.zip",
    ".github/",
    ".circleci/",
    ".travis.yml",
    ".gitlab-ci.yml",
    "appveyor.yml",
    ".drone.yml",
    "cloudbuild.yaml",
    "codeship-services.yml",
    "codeship-steps.yml",
    "**/.goreleaser.yml",
    "**/.sops.yaml",
    "**/.flux.yaml",
)
# Largest .sourceignore read; anything bigger is not a hand-written ignore file.
_MAX_IGNORE_FILE = 1 << 20


@dataclass(frozen=True)
class _Layer:
    domain: str  # "" for the root, else "a/b/" (with the trailing slash)
    spec: PathSpec[Any]

    def decide(self, path: str) -> bool | None:
        """True ignore, False keep (negated pattern), None no pattern matched."""
        if self.domain:
            if not path.startswith(self.domain):
                return None
            path = path[len(self.domain) :]
            if not path:
                return None
        include: bool | None = self.spec.check_file(path).include
        return include


class IgnoreRules:
    """An ordered stack of pattern sets; later sets override earlier ones."""

    def __init__(self, layers: Sequence[_Layer] = ()) -> None:
        self._layers = tuple(layers)

    def with_patterns(self, lines: Iterable[str], domain: str = "") -> IgnoreRules:
        """A copy with `lines` added on top, scoped to `domain` (a relative directory)."""
        domain = domain.strip("/")
        spec = PathSpec.from_lines("gitignore", [ln.rstrip("\r") for ln in lines])
        if not spec.patterns:
            return self
        return IgnoreRules([*self._layers, _Layer(f"{domain}/" if domain else "", spec)])

    def ignored(self, path: str, is_dir: bool = False) -> bool:
        path = path.strip("/")
        if is_dir:
            path += "/"
        for layer in reversed(self._layers):
            decision = layer.decide(path)
            if decision is not None:
                return decision
        return False


def default_rules() -> IgnoreRules:
    return IgnoreRules().with_patterns(DEFAULT_EXCLUDES)


def _read_sourceignore(path: Path) -> list[str] | None:
    """Lines of a .sourceignore that is a regular file (never through a symlink)."""
    try:
        fd = os.open(path, os.O_RDONLY | os.O_NOFOLLOW)
    except OSError:
        return None
    with os.fdopen(fd, "rb") as fh:
        st = os.fstat(fh.fileno())
        if not stat.S_ISREG(st.st_mode):
            return None
        data = fh.read(_MAX_IGNORE_FILE)
    return data.decode("utf-8", "replace").splitlines()


def load_ignore_rules(root: Path, spec_ignore: str | None = None) -> IgnoreRules:
    """Rules for the tree at `root`: defaults, ``.sourceignore`` files, then ``spec.ignore``.

    ``.sourceignore`` files are read parents first (siblings in name order), so deeper files
    override shallower ones; ``.git`` directories and symlinks are never entered.
    """
    rules = default_rules()
    pending = [""]
    while pending:
        rel = pending.pop()
        here = root / rel if rel else root
        lines = _read_sourceignore(here / SOURCEIGNORE)
        if lines:
            rules = rules.with_patterns(lines, rel)
        try:
            entries = sorted(os.scandir(here), key=lambda e: e.name)
        except OSError:
            continue
        subdirs = [
            f"{rel}/{e.name}" if rel else e.name
            for e in entries
            if e.name != ".git" and e.is_dir(follow_symlinks=False)
        ]
        # Reversed onto the stack so directories are visited in name order.
        pending.extend(reversed(subdirs))
    if spec_ignore:
        rules = rules.with_patterns(spec_ignore.splitlines())
    return rules
