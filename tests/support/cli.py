"""Running the `headwater` CLI as a user does: a separate process, piped, with the test
cluster's kubeconfig (so its output is the plain one scripts read)."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

from tests.support.cluster import TestCluster

REPO_ROOT = Path(__file__).resolve().parents[2]


def headwater(
    cluster: TestCluster, *args: str, input: str | None = None, timeout: float = 180
) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "controllers.cli", *args, "--kubeconfig", str(cluster.kubeconfig)],
        cwd=REPO_ROOT,
        input=input,
        capture_output=True,
        text=True,
        timeout=timeout,
        check=False,
    )
