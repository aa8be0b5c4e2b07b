"""The kustomize benchmarks run end to end (`--quick`) and write well-formed reports.

Each starts its own control plane and controllers. Only the reports' shape and the
benchmarks' own invariants (counts that follow from what was applied) are checked; the
figures themselves are never asserted on (speed belongs in bench/reports, not in tests).
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import pytest

from tests.integration.bench.conftest import run_quick

pytestmark = pytest.mark.integration


def check_stat(stat: dict[str, float]) -> None:
    assert 0 <= stat["min"] <= stat["median"] <= stat["max"], stat


def check_requests(requests: dict[str, Any]) -> None:
    assert requests["total"] == sum(requests["by_verb"].values()) > 0
    assert requests["total"] == sum(requests["by_resource"].values())
    assert requests["applied_kinds_total"] == sum(requests["applied_kinds_by_verb"].values())
    assert all(count > 0 for count in requests["by_verb"].values())


def check_machine(report: dict[str, Any]) -> None:
    assert re.fullmatch(r"[0-9a-f]{40}", report["controllers_version"]["commit"])
    assert isinstance(report["controllers_version"]["controllers_modified"], bool)
    machine = report["machine"]
    assert machine["cores"] >= 1
    assert machine["kube_apiserver"].startswith("v1.")
    assert machine["kustomize"]
    assert len(machine["load_average_at_start"]) == len(machine["load_average_at_end"]) == 3


def test_kustomize_apply_quick(tmp_path: Path) -> None:
    run = run_quick("bench.kustomize_apply", "kustomize-apply", tmp_path / "reports", 600)
    report = run.report
    check_machine(report)
    [scenario] = report["scenarios"]
    size, reps = scenario["objects"], scenario["repetitions"]
    assert reps == 1
    assert sum(scenario["objects_by_kind"].values()) == size
    assert scenario["objects_by_kind"]["Namespace"] == scenario["namespaces"]
    assert scenario["changed"] >= 1 and scenario["removed"] >= 1
    # After the change and prune, the inventory holds exactly what is left in git.
    assert scenario["inventory_after_change"] == [size - scenario["removed"]]
    assert isinstance(scenario["controller_process"]["log_errors"], list)

    for tool, fields in (
        ("headwater", ("wall_s", "cpu_s", "cpu_settled_s", "peak_rss_mib")),
        ("kubectl", ("wall_s", "cpu_s", "peak_rss_mib")),
    ):
        for step in ("first_apply", "no_op", "change"):
            section = scenario[tool][step]
            for field in fields:
                check_stat(section[field])
            assert section["wall_s"]["min"] > 0
            assert len(section["samples"]) == reps
            for sample in section["samples"]:
                check_requests(sample["api_requests"])
        first = scenario[tool]["first_apply"]["samples"][0]["api_requests"]
        # Every object is written once on the first apply (server-side apply: APPLY).
        assert first["applied_kinds_by_verb"]["APPLY"] >= size
        change = scenario[tool]["change"]["samples"][0]["api_requests"]
        assert change["applied_kinds_by_verb"]["DELETE"] >= scenario["removed"]

    for step in ("first_apply", "no_op", "change"):
        for sample in scenario["headwater"][step]["samples"]:
            assert sample["cpu_settled_s"] >= sample["cpu_s"] > 0
            assert sample["cpu_s"] == pytest.approx(
                sample["cpu_self_s"] + sample["cpu_children_s"], abs=0.02
            )
    # A no-op reconcile dry-runs and writes no object.
    no_op = scenario["headwater"]["no_op"]["samples"][0]["api_requests"]["applied_kinds_by_verb"]
    assert "APPLY (dry-run)" in no_op and "APPLY" not in no_op
    change = scenario["headwater"]["change"]["samples"][0]
    assert change["changed"] == scenario["changed"] and change["source_s"] >= 0

    assert f"| {size:,} | first apply | 1 |" in run.table


def test_many_apps_quick(tmp_path: Path) -> None:
    run = run_quick("bench.many_apps", "many-apps", tmp_path / "reports", 600)
    report = run.report
    check_machine(report)
    # One run dry-running every object at every interval (Flux's way), one with the default.
    every, default = report["scenarios"]
    assert (every["full_verify_interval"], default["full_verify_interval"]) == ("0", "1h")
    for scenario in (every, default):
        check_many_apps_scenario(scenario, run.table)
    # Settled, every periodic reconcile of the first dry-runs all four objects; the
    # default's skip it: the inventory watch saw nothing change.
    for scenario in (every, default):
        verified = scenario["steady_interval"]["verifications"]
        assert verified["full"] + verified["skipped"] > 0, verified
    assert every["steady_interval"]["verifications"]["skipped"] == 0
    assert every["steady_interval"]["applied_kinds_dry_runs"] >= 4
    assert default["steady_interval"]["verifications"]["full"] == 0
    assert default["steady_interval"]["applied_kinds_dry_runs"] == 0
    assert default["steady_interval"]["applied_kinds_writes"] == 0


def check_many_apps_scenario(scenario: dict[str, Any], table: str) -> None:
    apps = scenario["apps"]
    assert apps >= 1 and scenario["objects_per_app"] == 4
    assert isinstance(scenario["controller_process"]["log_errors"], list)

    sync = scenario["sync_all"]
    assert 0 < sync["create_s"] <= sync["wall_s"]
    assert sync["sources_ready_s"] is not None and sync["sources_ready_s"] <= sync["wall_s"]
    per_app = sync["per_app_ready_s"]
    assert 0 < per_app["p50"] <= per_app["p90"] <= per_app["max"] <= sync["wall_s"] + 1e-3
    assert sync["cpu_settled_s"] >= sync["cpu_s"] > 0
    assert sync["peak_rss_mib"] > 0
    check_requests(sync["api_requests"])
    # Every app's objects were written, and every repository was fetched.
    assert sync["api_requests"]["applied_kinds_by_verb"]["APPLY"] >= apps * 4
    assert sync["git_requests"]["by_command"]["fetch"] >= apps
    assert sync["git_requests"]["total"] == sum(sync["git_requests"]["by_command"].values())

    steady = scenario["steady_interval"]
    assert steady["window_s"] >= scenario["interval_s"]
    assert steady["core_share"] == pytest.approx(steady["cpu_s"] / steady["window_s"], abs=1e-3)
    assert steady["source_polls"] == steady["git_requests"]["by_command"].get("ls-refs", 0)
    # Nothing changed: a steady interval fetches nothing and writes no object.
    assert "fetch" not in steady["git_requests"]["by_command"]
    assert "APPLY" not in steady["api_requests"]["applied_kinds_by_verb"]

    assert f"| {apps} | {scenario['full_verify_interval']} | {sync['wall_s']:.1f} |" in table
