"""spec.ref precedence and validation, revision strings, resolving against a listing."""

from __future__ import annotations

from typing import Any

import pytest

from controllers.toolkit.git.checkout import parse_ls_remote
from controllers.toolkit.git.errors import EmptyRepositoryError, GitOperationError
from controllers.toolkit.git.gitref import (
    GitRef,
    RefKind,
    format_revision,
    parse_revision,
    require_not_empty,
    resolve,
)

SHA_A = "a" * 40
SHA_B = "b" * 40
SHA_C = "c" * 40
SHA_T = "d" * 40
SHA256 = "e" * 64


@pytest.mark.parametrize(
    ("spec", "kind", "described"),
    [
        (None, RefKind.BRANCH, "branch 'master'"),
        ({}, RefKind.BRANCH, "branch 'master'"),
        ({"branch": "main"}, RefKind.BRANCH, "branch 'main'"),
        ({"branch": "main", "tag": "v1"}, RefKind.TAG, "tag 'v1'"),
        ({"tag": "v1", "semver": "^1"}, RefKind.SEMVER, "semver '^1'"),
        ({"semver": "^1", "name": "refs/pull/1/head"}, RefKind.NAME, "name 'refs/pull/1/head'"),
        (
            {"branch": "b", "tag": "t", "semver": "*", "name": "refs/heads/x", "commit": SHA_A},
            RefKind.COMMIT,
            f"commit '{SHA_A}'",
        ),
        ({"branch": "", "tag": None}, RefKind.BRANCH, "branch 'master'"),
    ],
)
def test_precedence(spec: dict[str, Any] | None, kind: RefKind, described: str) -> None:
    ref = GitRef.from_spec(spec)
    assert ref.kind is kind
    assert ref.describe() == described


@pytest.mark.parametrize(
    "spec",
    [
        {"branch": "-upload-pack=evil"},
        {"branch": "a..b"},
        {"branch": "has space"},
        {"branch": "ends.lock"},
        {"branch": "ends/"},
        {"tag": "v1~1"},
        {"tag": "a:b"},
        {"name": "main"},  # must be a full reference
        {"name": "refs/heads/../x"},
        {"commit": "not-hex"},
        {"commit": "abc"},  # too short to be an object id
    ],
)
def test_invalid_refs_are_refused(spec: dict[str, str]) -> None:
    with pytest.raises(GitOperationError):
        GitRef.from_spec(spec)


@pytest.mark.parametrize(
    ("ref", "commit", "revision"),
    [
        ("refs/heads/main", SHA_A, f"main@sha1:{SHA_A}"),
        ("refs/heads/feature/x", SHA_A, f"feature/x@sha1:{SHA_A}"),
        ("refs/tags/v1.2.0", SHA_A, f"v1.2.0@sha1:{SHA_A}"),
        ("refs/pull/1/head", SHA_A, f"refs/pull/1/head@sha1:{SHA_A}"),
        (None, SHA_A, f"sha1:{SHA_A}"),
        ("refs/heads/main", SHA256, f"main@sha256:{SHA256}"),
    ],
)
def test_revision_strings(ref: str | None, commit: str, revision: str) -> None:
    assert format_revision(ref, commit) == revision
    parsed_ref, parsed_commit = parse_revision(revision)
    assert parsed_commit == commit
    assert parsed_ref == (revision.rpartition("@")[0] or None)


def test_parse_revision_legacy_and_invalid() -> None:
    assert parse_revision(f"main/{SHA_A}") == ("main", SHA_A)
    with pytest.raises(ValueError):
        parse_revision("main@sha1:xyz")
    with pytest.raises(ValueError):
        parse_revision("")


LISTING = parse_ls_remote(
    "\n".join(
        [
            f"{SHA_A}\tHEAD",
            f"{SHA_A}\trefs/heads/master",
            f"{SHA_B}\trefs/heads/dev",
            f"{SHA_C}\trefs/pull/1/head",
            f"{SHA_A}\trefs/tags/v1.0.0",  # lightweight
            f"{SHA_T}\trefs/tags/v1.1.0",  # annotated: the tag object...
            f"{SHA_B}\trefs/tags/v1.1.0^{{}}",  # ...peels to this commit
            f"{SHA_C}\trefs/tags/v2.0.0-rc.1",
            f"{SHA_C}\trefs/tags/latest",
        ]
    )
    + "\n"
)


@pytest.mark.parametrize(
    ("spec", "commit", "revision", "tag"),
    [
        (None, SHA_A, f"master@sha1:{SHA_A}", None),
        ({"branch": "dev"}, SHA_B, f"dev@sha1:{SHA_B}", None),
        ({"tag": "v1.0.0"}, SHA_A, f"v1.0.0@sha1:{SHA_A}", "v1.0.0"),
        ({"tag": "v1.1.0"}, SHA_B, f"v1.1.0@sha1:{SHA_B}", "v1.1.0"),
        ({"semver": "1.x"}, SHA_B, f"v1.1.0@sha1:{SHA_B}", "v1.1.0"),
        ({"semver": ">=2.0.0-0"}, SHA_C, f"v2.0.0-rc.1@sha1:{SHA_C}", "v2.0.0-rc.1"),
        ({"name": "refs/pull/1/head"}, SHA_C, f"refs/pull/1/head@sha1:{SHA_C}", None),
        ({"name": "refs/tags/v1.1.0"}, SHA_B, f"v1.1.0@sha1:{SHA_B}", "v1.1.0"),
    ],
)
def test_resolve_against_listing(
    spec: dict[str, str] | None, commit: str, revision: str, tag: str | None
) -> None:
    resolved = resolve(GitRef.from_spec(spec), LISTING, "http://example.invalid/r.git")
    assert resolved.commit == commit
    assert resolved.revision == revision
    assert resolved.tag == tag


@pytest.mark.parametrize(
    ("spec", "message"),
    [
        ({"branch": "nope"}, "branch 'nope' not found in 'http://example.invalid/r.git'"),
        ({"tag": "v9"}, "tag 'v9' not found"),
        ({"name": "refs/pull/2/head"}, "name 'refs/pull/2/head' not found"),
        ({"semver": ">=3.0.0"}, "matches semver constraint '>=3.0.0'"),
        ({"semver": "not a range"}, "invalid semver constraint"),
    ],
)
def test_resolve_failures(spec: dict[str, str], message: str) -> None:
    with pytest.raises(GitOperationError) as info:
        resolve(GitRef.from_spec(spec), LISTING, "http://example.invalid/r.git")
    assert message in str(info.value)
    assert info.value.reason == "GitOperationFailed"


def test_commit_refs_are_not_resolved_by_listing() -> None:
    with pytest.raises(ValueError):
        resolve(GitRef(commit=SHA_A), LISTING, "x")


def test_empty_listing() -> None:
    with pytest.raises(EmptyRepositoryError) as info:
        require_not_empty(parse_ls_remote(""), "http://example.invalid/r.git")
    assert info.value.reason == "EmptyGitRepository"
    require_not_empty(LISTING, "x")
