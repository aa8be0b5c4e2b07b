"""The dashboard overview benchmark runs end to end (`--quick`) and writes a well-formed
report. Only its shape and its own invariants are checked, never the figures."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.integration.bench.conftest import run_quick

pytestmark = pytest.mark.integration


def test_quick_run_writes_json_and_table(tmp_path: Path) -> None:
    run = run_quick("bench.dashboard_overview", "dashboard", tmp_path / "reports", 600)
    report = run.report
    assert report["kustomizations"] == 50
    assert report["git_repositories"] == 5
    figures = report["figures"]
    # Every Kustomization and GitRepository is a row of the page.
    assert figures["rows_shown"] == 55
    for name in ("full_page", "live_region", "filtered_page", "render_only"):
        stat = figures[name]
        assert 0 < stat["min"] <= stat["median"] <= stat["max"], (name, stat)
    # The live region is the page without its frame; the filtered page has fewer rows.
    assert figures["live_region"]["bytes"] < figures["full_page"]["bytes"]
    assert figures["filtered_page"]["bytes"] < figures["full_page"]["bytes"]
    assert report["machine"]["kube_apiserver"].startswith("v1.")
    assert "template render only" in run.table
