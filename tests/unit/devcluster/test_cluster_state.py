from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from devcluster import build
from devcluster.cluster import ClusterState, ComponentState, Node, pid_alive, stop_process_group


def test_state_survives_a_round_trip_through_its_file(tmp_path: Path) -> None:
    state = ClusterState(
        workdir="/tmp/x",
        kubeconfig="/tmp/x/kubeconfig",
        api_port=6443,
        components=[ComponentState("etcd", 42, "/tmp/x/logs/etcd.log")],
    )
    state.save(tmp_path / "state.json")
    assert ClusterState.load(tmp_path / "state.json") == state


def test_kwok_node_manifest_is_managed_by_kwok_and_schedulable() -> None:
    manifest = Node("kwok-node-0").manifest()
    metadata = manifest["metadata"]
    assert isinstance(metadata, dict)
    assert metadata["annotations"]["kwok.x-k8s.io/node"] == "fake"
    assert "spec" not in manifest  # no taints: every pod may land here


def test_stop_process_group_reaches_grandchildren() -> None:
    # A shell that starts a child and ignores SIGTERM itself: stop must still
    # leave nothing behind, grandchild included.
    script = "trap '' TERM; sleep 300 & echo $!; wait"
    process = subprocess.Popen(
        ["bash", "-c", script], stdout=subprocess.PIPE, text=True, start_new_session=True
    )
    assert process.stdout is not None
    grandchild = int(process.stdout.readline())
    stop_process_group(process.pid, grace=0.5)
    process.wait(timeout=5)
    assert not pid_alive(process.pid)
    assert not pid_alive(grandchild)


def test_cache_is_keyed_by_version_and_module_files(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    monkeypatch.setenv("HEADWATER_CACHE", str(tmp_path))
    path = build.control_plane_dir()
    assert path.is_relative_to(tmp_path)
    assert build.KUBERNETES_VERSION in str(path)
    assert build.go_tool_path("kwok") == tmp_path / "tools" / f"kwok-{build.KWOK_VERSION}" / "kwok"
    assert build.go_tool_path("oras") == tmp_path / "tools" / f"oras-{build.ORAS_VERSION}" / "oras"


def test_pid_alive_is_false_for_a_finished_child() -> None:
    process = subprocess.Popen([sys.executable, "-c", "pass"])
    process.wait()
    assert not pid_alive(process.pid)
    assert pid_alive(os.getpid())
