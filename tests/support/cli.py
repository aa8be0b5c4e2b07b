"""Running the `headwater` CLI as a user does: a separate process, piped, in the
repository's root (so its output is the plain one scripts read). The one runner every
test uses, in text (`headwater`) or bytes (`run_headwater`) form."""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Mapping
from pathlib import Path

from tests.support.cluster import TestCluster

REPO_ROOT = Path(__file__).resolve().parents[2]
COMMAND = [sys.executable, "-m", "controllers.cli"]


def headwater(
    cluster: TestCluster | None, *args: str, input: str | None = None, timeout: float = 180
) -> subprocess.CompletedProcess[str]:
    """`headwater <args>` against the test cluster (`--kubeconfig`), or with no cluster."""
    kubeconfig = ["--kubeconfig", str(cluster.kubeconfig)] if cluster is not None else []
    return subprocess.run(
        [*COMMAND, *args, *kubeconfig],
        cwd=REPO_ROOT,
        input=input,
        capture_output=True,
        text=True,
        timeout=timeout,
        check=False,
    )


def start_headwater(cluster: TestCluster, *args: str) -> subprocess.Popen[str]:
    """`headwater <args>` started, not awaited, its stdout a text pipe read line by line
    (for the verbs that follow the cluster: `--watch`, `logs --follow`)."""
    return subprocess.Popen(
        [*COMMAND, *args, "--kubeconfig", str(cluster.kubeconfig)],
        cwd=REPO_ROOT,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )


def run_headwater(
    *args: str,
    input: bytes = b"",
    kubeconfig: Path | None = None,
    env: Mapping[str, str] | None = None,
    timeout: float = 120,
) -> subprocess.CompletedProcess[bytes]:
    """`headwater <args>` as bytes, with `KUBECONFIG` in the environment (as kubeseal's
    users run it) and any extra environment."""
    environment = {**os.environ, **(env or {})}
    if kubeconfig is not None:
        environment["KUBECONFIG"] = str(kubeconfig)
    return subprocess.run(
        [*COMMAND, *args],
        input=input,
        capture_output=True,
        cwd=REPO_ROOT,
        env=environment,
        timeout=timeout,
        check=False,
    )
