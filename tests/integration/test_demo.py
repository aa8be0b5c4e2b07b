"""The README's main command, as a user runs it: `headwater demo --once`."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

pytestmark = pytest.mark.integration


def test_demo_syncs_the_example_app_from_git_to_available_replicas(
    tmp_path: Path, cluster: object
) -> None:
    # `cluster` only makes sure the binaries are built; the demo starts its own.
    env = {**os.environ, "HEADWATER_DEVCLUSTER_HOME": str(tmp_path / "home")}
    command = [sys.executable, "-m", "controllers.cli"]
    try:
        demo = subprocess.run(
            [*command, "demo", "--once"], env=env, capture_output=True, text=True, timeout=400
        )
    finally:
        down = subprocess.run(
            [*command, "cluster", "down"], env=env, capture_output=True, text=True, timeout=120
        )
    assert demo.returncode == 0, demo.stdout + demo.stderr
    out = demo.stdout
    assert "==> GitRepository Ready: artifact main@sha1:" in out
    assert "==> Kustomization Ready: applied main@sha1:" in out
    assert "webapp_webapp_apps_Deployment" in out
    assert "==> Deployment webapp/webapp: 3/3 replicas available" in out
    assert "GREETING='hello from headwater'" in out
    # ...and one chart from a local chart repository, through the helm controller.
    assert "==> serving a chart repository at http://127.0.0.1:" in out
    assert "==> HelmRelease Ready: hello 0.1.0 deployed (helm revision 1)" in out
    assert "==> Deployment webapp/hello: 1/1 replicas available" in out
    assert down.returncode == 0
