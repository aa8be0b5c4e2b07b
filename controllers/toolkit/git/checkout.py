"""Fetching a GitRepository's ref into a work tree, or seeing that nothing changed.

Per ref type (Flux semantics):
- branch, tag, name: one listing of the remote's references (in-process over smart HTTP,
  `refs_http`, else ``git ls-remote``); if the remote ref still points at the last
  observed revision nothing is fetched (nor is git run); else a depth-1 fetch: of the
  listed commit by its id for a branch or name (protocol v2 allows that, and git then
  asks the server for no second listing), of exactly that ref for a tag (its tag object
  is needed for verification) or when the server refuses unadvertised ids;
- semver: list tags, pick the highest matching one, then as for tag;
- commit: fetched by id at depth 1 when the server allows it (protocol v2), otherwise the
  branch (or every branch and tag) in full; with a branch the commit must be on it.

With `sparse_dirs` (spec.sparseCheckout) git's own sparse checkout leaves only those
directories in the work tree; each must exist at the fetched commit, as Flux checks.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

from controllers.toolkit.git import refs_http
from controllers.toolkit.git.credentials import GitAuth, ProxyConfig, git_environment
from controllers.toolkit.git.errors import EmptyRepositoryError, GitOperationError
from controllers.toolkit.git.gitexec import Deadline, GitRunner
from controllers.toolkit.git.gitref import (
    HEADS,
    TAGS,
    GitRef,
    RefKind,
    ResolvedRef,
    format_revision,
    is_full_object_id,
    resolve,
)
from controllers.toolkit.git.giturl import GitURL

DEFAULT_TIMEOUT = 60.0  # spec.timeout default
_FETCHED = "refs/headwater/fetched"
# Remotes that refused a fetch by object id (no protocol v2): they get the ref fetch
# straight away. Bounded: forgotten all at once when full (one more try each).
_NO_FETCH_BY_ID: set[str] = set()
_NO_FETCH_BY_ID_MAX = 1024
_REFUSED_ID_MARKS = ("unadvertised object", "not our ref")


@dataclass(frozen=True)
class Checkout:
    """A work tree at `commit`; `revision` is Flux's revision string for it."""

    path: Path
    commit: str
    ref: str | None
    tag: str | None

    @property
    def revision(self) -> str:
        return format_revision(self.ref, self.commit)


@dataclass(frozen=True)
class Unchanged:
    """The remote still points at the last observed revision: nothing was fetched."""

    resolved: ResolvedRef

    @property
    def revision(self) -> str:
        return self.resolved.revision


def parse_ls_remote(output: str) -> dict[str, str]:
    """``git ls-remote`` output as {ref: object id} (peeled tags keep their ``^{}``)."""
    refs: dict[str, str] = {}
    for line in output.splitlines():
        sha, _, name = line.partition("\t")
        if sha and name:
            refs[name.strip()] = sha.strip()
    return refs


def _list(runner: GitRunner, url: GitURL, *flags: str) -> dict[str, str]:
    out = runner.run(["ls-remote", *flags, url.url], what="listing remote references")
    return parse_ls_remote(out)


_FLAGS = {RefKind.BRANCH: ("--heads",), RefKind.TAG: ("--tags",), RefKind.SEMVER: ("--tags",)}
_PREFIXES = {RefKind.BRANCH: HEADS, RefKind.TAG: TAGS, RefKind.SEMVER: TAGS}


def _resolve_in(
    ref: GitRef, remote: Mapping[str, str], everything: Callable[[], Mapping[str, str]], where: str
) -> ResolvedRef:
    try:
        return resolve(ref, remote, where)
    except GitOperationError:
        # Only on the way out: tell an empty repository from a missing ref.
        if not remote and (ref.kind is RefKind.NAME or not everything()):
            raise EmptyRepositoryError(
                f"repository '{where}' is empty: it has no references"
            ) from None
        raise


def _resolve(runner: GitRunner, url: GitURL, ref: GitRef) -> ResolvedRef:
    """Where `ref` points, with ``git ls-remote``."""
    remote = _list(runner, url, *_FLAGS.get(ref.kind, ()))
    return _resolve_in(ref, remote, lambda: _list(runner, url), str(url))


def _resolve_listed(
    url: GitURL, ref: GitRef, auth: GitAuth, proxy: ProxyConfig | None, deadline: Deadline
) -> ResolvedRef | None:
    """Where `ref` points, listed in-process (refs_http); None: ask git."""
    if ref.kind is RefKind.COMMIT:
        return None
    advertised = refs_http.list_refs(
        url, auth, proxy, timeout=deadline.remaining("listing remote references")
    )
    if advertised is None:
        return None
    prefix = _PREFIXES.get(ref.kind)
    remote = {k: v for k, v in advertised.items() if prefix is None or k.startswith(prefix)}
    return _resolve_in(ref, remote, lambda: advertised, str(url))


def resolve_remote(
    url: GitURL, ref: GitRef, auth: GitAuth, *, timeout: float, proxy: ProxyConfig | None = None
) -> ResolvedRef:
    """Where a branch/tag/semver/name ref points now, with one listing of the remote."""
    deadline = Deadline(timeout)
    listed = _resolve_listed(url, ref, auth, proxy, deadline)
    if listed is not None:
        return listed
    with git_environment(auth, url, timeout, proxy) as genv:
        runner = GitRunner(genv.env, deadline, where=str(url), secrets=genv.secrets)
        return _resolve(runner, url, ref)


def _init(runner: GitRunner, url: GitURL, dest: Path, *, remote: bool = True) -> None:
    """An empty repository in `dest`; with `remote`, `origin` pointing at `url`.

    Fetches that name the URL itself need no remote; submodules' relative URLs
    and fetches by refspec into remote-tracking refs do.
    """
    dest.mkdir(parents=True, exist_ok=True)
    if any(dest.iterdir()):
        raise GitOperationError(f"checkout directory {dest} is not empty")
    # No template: its sample hooks never run here (core.hooksPath) and only cost writes.
    runner.run(["init", "-q", "--template=", str(dest)], what="initialising the checkout")
    if remote:
        runner.run(["remote", "add", "origin", url.url], what="configuring the remote", cwd=dest)


def _sparse_checkout(runner: GitRunner, dest: Path, dirs: Sequence[str]) -> None:
    # Non-cone patterns: cone mode would also keep every file at the repository root.
    runner.run(
        ["sparse-checkout", "set", "--no-cone", *(f"/{d}/" for d in dirs)],
        what="configuring the sparse checkout",
        cwd=dest,
    )


def _check_sparse_dirs(dest: Path, dirs: Sequence[str], commit: str) -> None:
    missing = [d for d in dirs if not (dest / d).is_dir()]
    if missing:
        names = ", ".join(f"'{d}'" for d in missing)
        raise GitOperationError(
            f"failed to sparse checkout directories: sparse checkout dir {names} "
            f"(spec.sparseCheckout) does not exist in repository at commit '{commit}'"
        )


def _rev_parse(runner: GitRunner, dest: Path, rev: str, what: str) -> str:
    out = runner.run(["rev-parse", "--verify", "--quiet", f"{rev}^{{commit}}"], what=what, cwd=dest)
    return out.strip()


def _fetch_ref(runner: GitRunner, url: GitURL, dest: Path, resolved: ResolvedRef) -> str:
    """Fetch what `resolved` names at depth 1; the commit checked out next.

    A branch or name ref is fetched by the commit id the listing gave, which
    saves the server a second ref listing and us a rev-parse; the revision is
    the one listed even if the ref moved since (the next reconcile sees that).
    """
    assert resolved.ref is not None
    by_id = (
        resolved.tag is None
        and is_full_object_id(resolved.commit)
        and url.url not in _NO_FETCH_BY_ID
    )
    if by_id:
        try:
            runner.run(
                ["fetch", "-q", "--no-tags", "--depth=1", url.url, resolved.commit],
                what=f"fetching '{resolved.ref}' at {resolved.commit}",
                cwd=dest,
            )
            return resolved.commit
        except GitOperationError as exc:
            # Servers without protocol v2 refuse unadvertised ids: fetch the ref instead
            # (and, for any other failure, once more the way that names the ref).
            if any(mark in exc.message.lower() for mark in _REFUSED_ID_MARKS):
                if len(_NO_FETCH_BY_ID) >= _NO_FETCH_BY_ID_MAX:
                    _NO_FETCH_BY_ID.clear()
                _NO_FETCH_BY_ID.add(url.url)
    local = resolved.ref if resolved.ref.startswith(TAGS) else _FETCHED
    runner.run(
        ["fetch", "-q", "--no-tags", "--depth=1", url.url, f"+{resolved.ref}:{local}"],
        what=f"fetching '{resolved.ref}'",
        cwd=dest,
    )
    return _rev_parse(runner, dest, local, f"reading '{resolved.ref}'")


def _fetch_commit(runner: GitRunner, dest: Path, ref: GitRef) -> str:
    assert ref.commit is not None
    commit = ref.commit.lower()
    if ref.branch:
        branch = HEADS + ref.branch
        runner.run(
            ["fetch", "-q", "--no-tags", "origin", f"+{branch}:refs/remotes/origin/{ref.branch}"],
            what=f"fetching branch '{ref.branch}'",
            cwd=dest,
        )
    else:
        fetched = False
        if is_full_object_id(commit):
            try:
                runner.run(
                    ["fetch", "-q", "--no-tags", "--depth=1", "origin", commit],
                    what=f"fetching commit '{commit}'",
                    cwd=dest,
                )
                fetched = True
            except GitOperationError:
                # Servers without protocol v2 refuse unadvertised ids: fetch everything.
                pass
        if not fetched:
            runner.run(
                [
                    "fetch",
                    "-q",
                    "origin",
                    "+refs/heads/*:refs/remotes/origin/*",
                    "+refs/tags/*:refs/tags/*",
                ],
                what="fetching all branches and tags",
                cwd=dest,
            )
    try:
        return _rev_parse(runner, dest, commit, f"finding commit '{commit}'")
    except GitOperationError:
        where = f"branch '{ref.branch}' of " if ref.branch else ""
        raise GitOperationError(f"commit '{commit}' not found in {where}'{runner.where}'") from None


def fetch(
    url: GitURL,
    ref: GitRef,
    auth: GitAuth,
    dest: Path,
    *,
    timeout: float = DEFAULT_TIMEOUT,
    recurse_submodules: bool = False,
    last_revision: str | None = None,
    proxy: ProxyConfig | None = None,
    sparse_dirs: Sequence[str] = (),
) -> Checkout | Unchanged:
    """Check `ref` out into the empty directory `dest`, or return Unchanged.

    Unchanged is returned, without cloning, when `last_revision` (the revision of an
    artifact the caller still trusts) equals where the ref points now. `timeout` bounds the
    whole operation; every git command is killed when it runs out.
    """
    kind = ref.kind
    if kind is RefKind.COMMIT and last_revision is not None and ref.commit is not None:
        expected = format_revision(HEADS + ref.branch if ref.branch else None, ref.commit.lower())
        if expected == last_revision:
            # A commit never moves: no need to ask the server.
            return Unchanged(ResolvedRef(ref=None, commit=ref.commit.lower()))
    deadline = Deadline(timeout)
    listed = _resolve_listed(url, ref, auth, proxy, deadline)
    if listed is not None and last_revision is not None and listed.revision == last_revision:
        return Unchanged(listed)
    with git_environment(auth, url, timeout, proxy) as genv:
        runner = GitRunner(genv.env, deadline, where=str(url), secrets=genv.secrets)
        if kind is RefKind.COMMIT:
            _init(runner, url, dest)
            commit = _fetch_commit(runner, dest, ref)
            full_ref = HEADS + ref.branch if ref.branch else None
            tag = None
        else:
            resolved = listed or _resolve(runner, url, ref)
            if last_revision is not None and resolved.revision == last_revision:
                return Unchanged(resolved)
            _init(runner, url, dest, remote=recurse_submodules)
            commit = _fetch_ref(runner, url, dest, resolved)
            full_ref, tag = resolved.ref, resolved.tag
        if sparse_dirs:
            _sparse_checkout(runner, dest, sparse_dirs)
        runner.run(
            ["checkout", "-q", "--force", "--detach", commit],
            what=f"checking out {commit}",
            cwd=dest,
        )
        if sparse_dirs:
            _check_sparse_dirs(dest, sparse_dirs, commit)
        if recurse_submodules:
            runner.run(
                ["submodule", "update", "-q", "--init", "--recursive", "--force"],
                what="updating submodules",
                cwd=dest,
            )
        return Checkout(path=dest, commit=commit, ref=full_ref, tag=tag)
