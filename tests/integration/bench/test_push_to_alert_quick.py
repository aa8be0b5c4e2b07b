"""The push-to-alert benchmark runs end to end (`--quick`) and writes a well-formed report.

Only the report's shape and the benchmark's own invariants are checked (every commit
reached every Kustomization, its ConfigMap and Slack, each stage has a sample per
commit and Kustomization); the figures themselves are never asserted on.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import pytest

from tests.integration.bench.conftest import run_quick

pytestmark = pytest.mark.integration

APPS, COMMITS = 3, 2  # what --quick runs
PER_COMMIT = ("artifact", "first_object_updated", "first_alert", "commit_complete")
PER_KUSTOMIZATION = (
    "object_updated",
    "alert",
    "update_after_artifact",
    "alert_after_update",
    "status_applied",
)
REVISION = re.compile(r"main@sha1:[0-9a-f]{40}")


def check_stage(stage: dict[str, Any], samples: int) -> None:
    assert stage["n"] == samples, stage
    assert stage["min"] <= stage["p50"] <= stage["p95"] <= stage["max"], stage
    assert stage["min"] <= stage["mean"] <= stage["max"], stage


def test_quick_run_writes_json_and_table(tmp_path: Path) -> None:
    run = run_quick("bench.push_to_alert", "push-to-alert", tmp_path / "reports", 900)
    report = run.report
    assert report["parameters"]["apps"] == APPS
    assert report["parameters"]["commits_requested"] == COMMITS
    assert report["machine"]["cores"] >= 1
    assert report["machine"]["kube_apiserver"].startswith("v")
    assert report["stopped_early"] == ""
    assert report["measured_commits"] == report["completed_commits"] == COMMITS

    # Every commit reached everything it should, through the webhook.
    commits = report["commits"]
    assert [c["index"] for c in commits] == list(range(1, COMMITS + 1))
    assert len({c["revision"] for c in commits}) == COMMITS
    apps = [f"app-{i:02d}" for i in range(APPS)]
    for commit in commits:
        assert REVISION.fullmatch(commit["revision"]), commit["revision"]
        assert commit["webhook_status"] == 200
        assert commit["timed_out"] is False
        assert commit["missing"] == {}
        for key in ("object_updated_s", "alert_s", "status_applied_s"):
            assert sorted(commit[key]) == apps, key
            assert all(value is not None for value in commit[key].values()), key
            # Measured from the webhook POST, which everything follows.
            assert all(value > 0 for value in commit[key].values()), key
        assert 0 < commit["artifact_s"] <= commit["complete_s"]

    stages = report["stages"]
    for key in PER_COMMIT:
        check_stage(stages[key], COMMITS)
    for key in PER_KUSTOMIZATION:
        check_stage(stages[key], COMMITS * APPS)

    slack = report["slack"]
    assert slack["expected"] == COMMITS * APPS
    assert slack["missing"] == 0, slack["missing_examples"]
    assert slack["received_for_measured_commits"] >= slack["expected"]
    assert slack["duplicates"] >= 0 and slack["unexpected"] >= 0
    assert slack["messages_total"] >= slack["received_for_measured_commits"]
    assert slack["initial_sync_alerts_complete"] is True
    assert slack["stray_requests"] == 0

    controller = report["controller_process"]
    assert controller["cpu_s"] == pytest.approx(
        controller["cpu_own_s"] + controller["cpu_children_s"], abs=0.02
    )
    assert controller["cpu_s"] > 0
    assert controller["peak_rss_mib"] > 0 and controller["rss_idle_mib"] > 0
    for log in ("log_during_setup", "log_during_commits"):
        assert sum(controller[log]["lines_by_level"].values()) > 0, log
    # A fetch per commit: the webhook, not an interval, made the source fetch.
    assert report["git_requests_during_commits"].get("fetch", 0) >= COMMITS

    assert "| t3-t0 alert received | 6 |" in run.table
