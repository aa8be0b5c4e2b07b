"""The chart repository every helm test releases from, and a Slack stand-in for alerts.

`charts` is the real chain a user builds: a chart repository on loopback (packaged
and indexed by helm) and a HelmRepository `charts` of it in the test's namespace;
the source controller pulls HelmCharts from it (see `tests.support.charts.Charts`).
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.support.builders import helm_repository
from tests.support.charts import Charts
from tests.support.chatservers import slack_server
from tests.support.cluster import TestCluster, apply
from tests.support.controllers import RunningControllers
from tests.support.helmrepos import ChartRepo, ChartRepoServer
from tests.support.status import wait_ready

__all__ = ["slack_server"]


@pytest.fixture
def charts(
    cluster: TestCluster, controllers: RunningControllers, namespace: str, tmp_path: Path
) -> Iterator[Charts]:
    repo = ChartRepo(tmp_path / "charts")
    repo.index()  # an empty repository until a test publishes a chart
    with ChartRepoServer(repo) as server:
        apply(cluster, helm_repository(namespace, "charts", server.url))
        wait_ready(cluster, namespace, "HelmRepository", "charts")
        yield Charts(cluster, namespace, "charts", repo, server)
