"""The side-by-side benchmark's quick mode, headwater's side alone (no Flux binaries:
building them takes minutes), writes a well-formed report. Figures are never asserted
on; only what follows from what was applied."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.integration.bench.conftest import run_quick

pytestmark = pytest.mark.integration


def test_vs_flux_quick_headwater_side(tmp_path: Path) -> None:
    run = run_quick("bench.vs_flux", "vs-flux", tmp_path / "reports", 900, "--systems", "headwater")
    report = run.report
    assert report["systems_run"] == ["headwater"]
    [hw] = report["runs"]["headwater"]
    assert report["runs"]["flux"] == []
    # The three processes config/ lays out, each measured on its own.
    assert set(hw["idle"]["by_role"]) == {"source", "kustomize", "notification"}
    assert all(rss > 0 for rss in hw["idle"]["by_role"].values())
    mix = hw["mix"]
    assert mix["change"]["changed"] >= 1 and mix["change"]["removed"] >= 1
    objects = sum(report["plan"]["mix"].values()) + 1  # and the Namespace
    assert mix["inventory_after_change"] == objects - mix["change"]["removed"]
    sync = hw["apps"]["5"]
    assert sync["per_app_ready_s"]["max"] <= sync["wall_s"]
    assert hw["idle_apps"]["apps"] == 5 and hw["idle_apps"]["writes"] >= 0
    assert hw["profile"]["samples"] >= 0
    rows = {row["key"]: row for row in report["comparison"]}
    assert rows["mix_cpu"]["headwater"]["median"] > 0
    assert rows["mix_cpu"]["flux"] is None and rows["mix_cpu"]["ratio"] is None
    assert "| CPU, first apply of 50 ConfigMaps + 2 Deployments, s |" in run.table
