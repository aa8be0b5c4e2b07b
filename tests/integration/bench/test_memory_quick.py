"""The memory benchmark runs end to end (`--quick`) and writes a well-formed report.

It starts its own control plane and the six processes config/ installs. Only the
report's shape and what follows from it is checked, never the figures themselves.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from bench import memory
from tests.integration.bench.conftest import run_quick

pytestmark = pytest.mark.integration


def test_memory_quick(tmp_path: Path) -> None:
    run = run_quick("bench.memory", "memory", tmp_path / "reports", 900)
    [variant] = run.report["variants"]
    assert variant["configmaps"] == memory.QUICK_OBJECTS
    assert set(variant["processes"]) == set(memory.PROCESSES)
    for name, row in variant["processes"].items():
        assert row["imports_rss_mib"] > 0, name
        assert row["started_rss_mib"] > 0 and row["idle_rss_mib"] > 0, name
        # A peak (VmHWM since it was reset) is never below the RSS after it.
        assert row["apply_peak_rss_mib"] >= row["after_apply_rss_mib"] > 0, name
        assert row["idle_threads"] >= 1 and row["modules"] > 100, name
        assert row["log_errors"] == [], (name, row["log_errors"])
        # Nobody loads the kubernetes client's hundreds of model classes at start.
        assert row["kubernetes_models"] < 20, name
    assert "| **source + kustomize** |" in run.table and "| kustomize |" in run.table
