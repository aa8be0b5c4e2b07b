"""A real local Kubernetes control plane for headwater's tests and demo.

`provision()` builds (or finds cached) binaries and returns an unstarted
`DevCluster`; the CLI (`headwater cluster ...`) and the pytest fixtures both
use it, so the demo and the tests run against the same thing.
"""

from __future__ import annotations

from pathlib import Path

from devcluster import build
from devcluster.cluster import ClusterError, DevCluster

__all__ = ["ClusterError", "DevCluster", "build_all", "provision"]


def build_all() -> dict[str, build.BuildResult]:
    """Build everything the cluster needs; cached builds return at once."""
    return {"control-plane": build.build_control_plane(), "kwok": build.build_go_tool("kwok")}


def provision(workdir: Path, nodes: int = 3) -> DevCluster:
    build_all()
    return DevCluster(
        workdir=workdir,
        bin_dir=build.control_plane_dir(),
        kwok_bin=build.go_tool_path("kwok"),
        nodes=nodes,
    )
