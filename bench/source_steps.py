"""Where the source side of push -> artifact spends its time, step by step.

Runs `controllers.source.gitrepository.produce_artifact` (the GitRepository's fetch,
archive and store, as the controller runs it in a worker thread) against the
push-to-alert benchmark's repository shape (`bench.push_to_alert.repository_tree`),
served by git's own ``git http-backend`` on loopback, once per new commit on the
branch, and times each git command and storage step by wrapping them from outside (no
timing code in the product). Also counts the git HTTP requests per fetch, from the
server's request log, and times one no-change poll. Prints a table; writes nothing.

    .venv/bin/python -m bench.source_steps --apps 50 --commits 10

The git server runs in this process, so its CPU and the controller's compete as they
do in the benchmark; say the load average with any figure taken from it.
"""

from __future__ import annotations

import argparse
import collections
import functools
import os
import statistics
import sys
import tempfile
import time
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any

from bench.harness import COMMIT_EPOCH, write_commit, write_git_repo
from bench.push_to_alert import BRANCH, REPO_NAME, repository_tree
from controllers.source import gitrepository
from controllers.source import storage as storage_module
from controllers.source.gitrepository import (
    STORAGE_KIND,
    FetchInputs,
    GitRepositorySpec,
    produce_artifact,
)
from controllers.source.storage import ObjectKey, Storage, StoredArtifact
from controllers.toolkit.git import gitexec
from devcluster.gitserver import GitHttpServer

Timings = dict[str, list[float]]


def _timed(timings: Timings, label: str, func: Callable[..., Any]) -> Callable[..., Any]:
    @functools.wraps(func)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        started = time.perf_counter()
        try:
            return func(*args, **kwargs)
        finally:
            timings[label].append(time.perf_counter() - started)

    return wrapper


def instrument(timings: Timings) -> None:
    """Time every git command (by subcommand) and the storage steps, in this process."""
    execute = gitexec.GitRunner._execute

    def timed_execute(
        self: gitexec.GitRunner, args: Sequence[str], what: str, cwd: Path | None
    ) -> tuple[int, str, str]:
        started = time.perf_counter()
        try:
            return execute(self, args, what, cwd)
        finally:
            timings[f"git {args[0]}"].append(time.perf_counter() - started)

    gitexec.GitRunner._execute = timed_execute  # type: ignore[method-assign]
    for owner, name, label in (
        (Storage, "verify", "storage: verify current artifact"),
        (Storage, "gc", "storage: gc"),
        (Storage, "archive", "storage: archive (lock, write, fsync)"),
        (storage_module, "write_archive", "  of which tar+gzip+digest"),
        (gitrepository, "load_ignore_rules", "ignore rules"),
        (tempfile.TemporaryDirectory, "cleanup", "removing the checkout"),
    ):
        setattr(owner, name, _timed(timings, label, getattr(owner, name)))


def run(apps: int, commits: int, seed: int) -> str:
    timings: Timings = collections.defaultdict(list)
    root = Path(tempfile.mkdtemp(prefix="hw-bench-steps-"))
    git_root = root / "git"
    git_root.mkdir()
    first = write_git_repo(
        git_root, REPO_NAME, [("generation 0", repository_tree(apps, 0, seed))], branch=BRANCH
    )[0]
    storage = Storage(root / "artifacts", "localhost:9090")
    key = ObjectKey(STORAGE_KIND, "bench", REPO_NAME)
    totals: list[float] = []
    requests: list[int] = []
    with GitHttpServer(git_root) as server:
        spec = GitRepositorySpec.parse(
            {"url": server.url(REPO_NAME), "ref": {"branch": BRANCH}, "interval": "1h"}
        )

        def inputs(current: Mapping[str, Any] | None) -> FetchInputs:
            return FetchInputs(key, spec, None, None, (), current, reuse_allowed=True)

        def artifact(current: Mapping[str, Any] | None) -> tuple[Mapping[str, Any], bool]:
            outcome = produce_artifact(storage, inputs(current))
            stored = outcome.artifact
            status = stored.to_status() if isinstance(stored, StoredArtifact) else stored
            return status, outcome.unchanged

        current, _ = artifact(None)
        instrument(timings)
        previous = first
        for index in range(1, commits + 1):
            previous = write_commit(
                git_root,
                REPO_NAME,
                f"generation {index}",
                repository_tree(apps, index, seed),
                parent=previous,
                when=COMMIT_EPOCH + index * 60,
                branch=BRANCH,
            )
            server.clear_requests()
            started = time.perf_counter()
            current, unchanged = artifact(current)
            totals.append(time.perf_counter() - started)
            requests.append(len(server.requests))
            if unchanged:
                raise RuntimeError(f"commit {index} was not fetched")
        per_commit = {label: list(values) for label, values in timings.items()}
        server.clear_requests()
        started = time.perf_counter()
        _, unchanged = artifact(current)
        poll = time.perf_counter() - started
        poll_requests = len(server.requests)
    lines = [
        f"{apps} apps, {commits} commits, load average {os.getloadavg()[0]:.2f}: "
        f"produce_artifact p50 {statistics.median(totals) * 1000:.0f} ms "
        f"(min {min(totals) * 1000:.0f}, max {max(totals) * 1000:.0f}), "
        f"{statistics.median(requests):g} git HTTP requests per fetch; "
        f"no-change poll {poll * 1000:.0f} ms, {poll_requests} requests"
        + ("" if unchanged else " (NOT unchanged)"),
        "",
        "| step | calls per commit | p50 ms per call | ms per commit |",
        "| --- | ---: | ---: | ---: |",
    ]
    for label, values in sorted(per_commit.items(), key=lambda item: -sum(item[1])):
        lines.append(
            f"| {label} | {len(values) / commits:g} | {statistics.median(values) * 1000:.1f} "
            f"| {sum(values) / commits * 1000:.1f} |"
        )
    return "\n".join(lines)


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.source_steps", description=__doc__)
    parser.add_argument("--apps", type=int, default=50, help="apps in the repository (1-100)")
    parser.add_argument("--commits", type=int, default=10, help="commits fetched (1-100)")
    parser.add_argument("--seed", type=int, default=1)
    options = parser.parse_args(argv)
    if not 1 <= options.apps <= 100 or not 1 <= options.commits <= 100:
        parser.error("--apps and --commits must be between 1 and 100")
    print(run(options.apps, options.commits, options.seed))
    return 0


if __name__ == "__main__":
    sys.exit(main())
