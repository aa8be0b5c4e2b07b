"""Flux's own CLI, built from its Go module, run against headwater's objects.

- ``flux_cli``: path to the real `flux` binary (``devcluster.build.build_flux_cli``),
  built on first use (``headwater cluster build --tools`` builds it ahead) and cached
  by version.
- ``FluxCLI(binary, cluster)`` runs ``flux <args> --namespace NS`` with the test
  cluster's KUBECONFIG, in a throwaway HOME, and returns the CompletedProcess, unchecked.
"""

from __future__ import annotations

import os
import subprocess
import tempfile
from dataclasses import dataclass
from pathlib import Path

import pytest

from devcluster import build
from tests.support.cluster import TestCluster

COMMAND_TIMEOUT = 240


@pytest.fixture(scope="session")
def flux_cli() -> Path:
    return build.build_flux_cli().bin_dir / "flux"


@dataclass
class FluxCLI:
    binary: Path
    cluster: TestCluster

    def __call__(
        self, *args: str, namespace: str, timeout: str = "3m"
    ) -> subprocess.CompletedProcess[str]:
        """`flux <args> --namespace <namespace> --timeout <timeout>`, as a user runs it."""
        with tempfile.TemporaryDirectory(prefix="hw-test-flux-") as home:
            env = {
                **os.environ,
                "KUBECONFIG": str(self.cluster.kubeconfig),
                "HOME": home,
                "NO_COLOR": "1",
            }
            return subprocess.run(
                [str(self.binary), *args, "--namespace", namespace, "--timeout", timeout],
                env=env,
                capture_output=True,
                text=True,
                timeout=COMMAND_TIMEOUT,
                check=False,
            )


@pytest.fixture
def flux(flux_cli: Path, cluster: TestCluster) -> FluxCLI:
    return FluxCLI(flux_cli, cluster)
