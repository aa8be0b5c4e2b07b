"""The chart repository the helm part releases from (`tests.support.charts.charts`)."""

from __future__ import annotations

from tests.support.charts import charts

__all__ = ["charts"]
