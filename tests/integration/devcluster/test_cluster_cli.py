"""`headwater cluster up | status | kubeconfig | down` as a user runs them."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from devcluster import build
from devcluster.cluster import ClusterState, pid_alive

pytestmark = pytest.mark.integration


def _headwater(home: Path, *args: str) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "HEADWATER_DEVCLUSTER_HOME": str(home)}
    return subprocess.run(
        [sys.executable, "-m", "controllers.cli", *args],
        env=env,
        capture_output=True,
        text=True,
        timeout=600,
    )


def test_up_get_nodes_down_leaves_no_process(tmp_path: Path, cluster: object) -> None:
    # `cluster` is requested only so the binaries are built before this test starts.
    home = tmp_path / "state"
    up = _headwater(home, "cluster", "up", "--nodes", "2")
    assert up.returncode == 0, up.stderr
    state = ClusterState.load(home / "state.json")
    pids = [component.pid for component in state.components]
    try:
        assert {c.name for c in state.components} == {
            "etcd",
            "kube-apiserver",
            "kube-controller-manager",
            "kube-scheduler",
            "kwok",
        }

        kubeconfig = _headwater(home, "cluster", "kubeconfig")
        assert kubeconfig.returncode == 0
        assert kubeconfig.stdout.strip() == state.kubeconfig

        nodes = subprocess.run(
            [
                str(build.control_plane_dir() / "kubectl"),
                "--kubeconfig",
                kubeconfig.stdout.strip(),
                "get",
                "nodes",
                "-o",
                "json",
            ],
            capture_output=True,
            text=True,
            timeout=60,
            check=True,
        )
        items = json.loads(nodes.stdout)["items"]
        assert len(items) == 2
        for node in items:
            ready = [c for c in node["status"]["conditions"] if c["type"] == "Ready"]
            assert ready and ready[0]["status"] == "True"

        status = _headwater(home, "cluster", "status", "-o", "json")
        assert status.returncode == 0
        assert set(json.loads(status.stdout)["components"].values()) == {"running"}

        again = _headwater(home, "cluster", "up")
        assert again.returncode == 0
        assert "already running" in again.stdout
    finally:
        down = _headwater(home, "cluster", "down")
    assert down.returncode == 0, down.stderr
    assert [pid for pid in pids if pid_alive(pid)] == []
    assert not Path(state.workdir).exists()
    assert _headwater(home, "cluster", "status").returncode == 1
    assert _headwater(home, "cluster", "kubeconfig").returncode == 1
