"""spec.ref: precedence, validation, resolution against a remote's refs, revision strings."""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass
from enum import StrEnum
from typing import Any

from controllers.toolkit.git.errors import EmptyRepositoryError, GitOperationError
from controllers.toolkit.semverrange import ConstraintError, highest_matching

DEFAULT_BRANCH = "master"
HEADS = "refs/heads/"
TAGS = "refs/tags/"
PEELED = "^{}"
_HEX = re.compile(r"^[0-9a-f]{4,64}$")
_FULL_SHA = re.compile(r"^(?:[0-9a-f]{40}|[0-9a-f]{64})$")


class RefKind(StrEnum):
    COMMIT = "commit"
    NAME = "name"
    SEMVER = "semver"
    TAG = "tag"
    BRANCH = "branch"


def check_ref_name(name: str, what: str) -> None:
    """Reject names git would refuse (git-check-ref-format rules) or read as an option."""
    bad = (
        not name
        or name.startswith(("-", "/"))
        or name.endswith(("/", ".", ".lock"))
        or ".." in name
        or "//" in name
        or "@{" in name
        or name == "@"
        or re.search(r"[\x00-\x20\x7f~^:?*\[\\]", name) is not None
        or any(part.startswith(".") for part in name.split("/"))
    )
    if bad:
        raise GitOperationError(f"invalid {what} '{name}'")


@dataclass(frozen=True)
class GitRef:
    """spec.ref as given; `kind` applies Flux's precedence commit > name > semver > tag > branch."""

    branch: str | None = None
    tag: str | None = None
    semver: str | None = None
    name: str | None = None
    commit: str | None = None

    @classmethod
    def from_spec(cls, ref: Mapping[str, Any] | None) -> GitRef:
        """Build from a GitRepository's ``spec.ref`` (None or {} means branch master)."""
        ref = ref or {}

        def get(key: str) -> str | None:
            value = ref.get(key)
            return str(value) if value not in (None, "") else None

        out = cls(
            branch=get("branch"),
            tag=get("tag"),
            semver=get("semver"),
            name=get("name"),
            commit=get("commit"),
        )
        out.validate()
        return out

    @property
    def kind(self) -> RefKind:
        if self.commit:
            return RefKind.COMMIT
        if self.name:
            return RefKind.NAME
        if self.semver:
            return RefKind.SEMVER
        if self.tag:
            return RefKind.TAG
        return RefKind.BRANCH

    @property
    def branch_or_default(self) -> str:
        return self.branch or DEFAULT_BRANCH

    def validate(self) -> None:
        kind = self.kind
        if kind is RefKind.COMMIT:
            assert self.commit is not None
            if not _HEX.match(self.commit.lower()):
                raise GitOperationError(f"invalid commit '{self.commit}': not a hex object id")
            if self.branch:
                check_ref_name(self.branch, "branch")
        elif kind is RefKind.NAME:
            assert self.name is not None
            if not self.name.startswith("refs/") and self.name != "HEAD":
                raise GitOperationError(
                    f"invalid ref name '{self.name}': must be a full reference such as "
                    "refs/heads/main or refs/pull/1/head"
                )
            if self.name != "HEAD":
                check_ref_name(self.name, "ref name")
        elif kind is RefKind.TAG:
            assert self.tag is not None
            check_ref_name(self.tag, "tag")
        elif kind is RefKind.BRANCH:
            check_ref_name(self.branch_or_default, "branch")

    def describe(self) -> str:
        """Human wording for messages: "branch 'main'", "semver '>=1.0'", ..."""
        kind = self.kind
        value = {
            RefKind.COMMIT: self.commit,
            RefKind.NAME: self.name,
            RefKind.SEMVER: self.semver,
            RefKind.TAG: self.tag,
            RefKind.BRANCH: self.branch_or_default,
        }[kind]
        return f"{kind.value} '{value}'"


def is_full_object_id(text: str) -> bool:
    """A complete sha1 (40) or sha256 (64) hex object id, lower case."""
    return _FULL_SHA.match(text) is not None


def short_ref_name(ref: str) -> str:
    """refs/heads/main -> main, refs/tags/v1 -> v1; other refs stay in full."""
    for prefix in (HEADS, TAGS):
        if ref.startswith(prefix):
            return ref[len(prefix) :]
    return ref


def hash_algo(commit: str) -> str:
    return "sha256" if len(commit) == 64 else "sha1"


def format_revision(ref: str | None, commit: str) -> str:
    """Flux's revision string: ``main@sha1:<hex>``, ``v1.2.0@sha1:<hex>``, ``sha1:<hex>``."""
    digest = f"{hash_algo(commit)}:{commit}"
    return f"{short_ref_name(ref)}@{digest}" if ref else digest


def parse_revision(revision: str) -> tuple[str | None, str]:
    """Split a revision into (ref name or None, commit hex); also accepts Flux's legacy
    ``main/<hex>`` form. Raises ValueError when no commit can be found."""
    ref, sep, digest = revision.rpartition("@")
    if not sep:
        ref, digest = "", revision
    algo, colon, hexsha = digest.partition(":")
    if colon and algo in ("sha1", "sha256") and _FULL_SHA.match(hexsha):
        return (ref or None), hexsha
    legacy_ref, slash, legacy_sha = revision.rpartition("/")
    if _FULL_SHA.match(legacy_sha):
        return (legacy_ref if slash else None), legacy_sha
    raise ValueError(f"not a revision: {revision!r}")


@dataclass(frozen=True)
class ResolvedRef:
    """Where a GitRef points on the remote.

    `ref` is the full reference fetched (None for a bare commit), `commit` the commit it
    peels to, `tag` the tag name when the ref is a tag (needed for tag verification).
    """

    ref: str | None
    commit: str
    tag: str | None = None

    @property
    def revision(self) -> str:
        return format_revision(self.ref, self.commit)


def _peeled(remote: Mapping[str, str], ref: str) -> str:
    return remote.get(ref + PEELED) or remote[ref]


def tags_of(remote: Mapping[str, str]) -> list[str]:
    return [r[len(TAGS) :] for r in remote if r.startswith(TAGS) and not r.endswith(PEELED)]


def resolve(ref: GitRef, remote: Mapping[str, str], where: str) -> ResolvedRef:
    """Resolve `ref` against a remote listing (``git ls-remote``: ref -> object id, with
    ``^{}`` entries for peeled annotated tags). Commit refs cannot be resolved this way."""
    kind = ref.kind
    if kind is RefKind.COMMIT:
        raise ValueError("commit refs are resolved by fetching, not by listing")
    if kind is RefKind.BRANCH:
        full = HEADS + ref.branch_or_default
    elif kind is RefKind.TAG:
        assert ref.tag is not None
        full = TAGS + ref.tag
    elif kind is RefKind.NAME:
        assert ref.name is not None
        full = ref.name
    else:
        assert ref.semver is not None
        try:
            best = highest_matching(tags_of(remote), ref.semver)
        except ConstraintError as exc:
            raise GitOperationError(f"invalid semver constraint '{ref.semver}': {exc}") from None
        if best is None:
            raise GitOperationError(f"no tag in '{where}' matches semver constraint '{ref.semver}'")
        full = TAGS + best[0]
    if full not in remote:
        raise GitOperationError(f"{ref.describe()} not found in '{where}'")
    tag = full[len(TAGS) :] if full.startswith(TAGS) else None
    return ResolvedRef(ref=full, commit=_peeled(remote, full), tag=tag)


def require_not_empty(remote: Mapping[str, str], where: str) -> None:
    if not remote:
        raise EmptyRepositoryError(f"repository '{where}' is empty: it has no references")
