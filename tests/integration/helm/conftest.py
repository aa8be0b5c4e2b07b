"""The chart repository every helm test releases from, and a Slack stand-in for alerts.

`charts` is the real chain a user builds: a chart repository on loopback (packaged
and indexed by helm) and a HelmRepository `charts` of it in the test's namespace;
the source controller pulls HelmCharts from it (see `tests.support.charts.Charts`).
"""

from __future__ import annotations

from tests.support.charts import charts
from tests.support.chatservers import slack_server

__all__ = ["charts", "slack_server"]
