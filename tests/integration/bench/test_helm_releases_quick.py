"""The helm releases benchmark runs end to end (`--quick`) and writes a well-formed report.

It starts its own control plane and controllers. Only the report's shape and the
benchmark's own invariants are checked, never its figures (speed belongs in
bench/reports): except the no-op goal, which is behaviour, not speed: an interval in
which nothing changed starts no helm process and writes no HelmRelease.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.integration.bench.conftest import run_quick
from tests.integration.bench.test_kustomize_quick import check_machine, check_requests

pytestmark = pytest.mark.integration


def test_helm_releases_quick(tmp_path: Path) -> None:
    run = run_quick("bench.helm_releases", "helm-releases", tmp_path / "reports", 600)
    report = run.report
    check_machine(report)
    assert report["flux_published"] == {"releases": 100, "wall_s": 27, "rss_mib": 190, "cores": 16}
    [scenario] = report["scenarios"]
    releases = scenario["releases"]
    assert releases >= 1
    assert isinstance(scenario["controller_process"]["log_errors"], list)

    install = scenario["install_all"]
    assert 0 < install["create_s"] <= install["wall_s"]
    per = install["per_release_ready_s"]
    assert 0 < per["p50"] <= per["p90"] <= per["max"] <= install["wall_s"] + 1e-3
    assert install["cpu_settled_s"] >= install["cpu_s"] > 0
    check_requests(install["api_requests"])
    # Every release was installed by helm (one `upgrade --install` each, at least).
    assert install["helm_commands"]["upgrade"] >= releases
    assert install["helm_commands_total"] == sum(install["helm_commands"].values())

    noop = scenario["noop_interval"]
    assert noop["window_s"] >= scenario["interval_s"]
    # Every release reconciled in the window, at no helm process and no write of its own.
    assert noop["reconciles"].get("HelmRelease", 0) >= releases
    assert noop["helm_commands_total"] == 0, noop["helm_commands"]
    assert not any("helmreleases" in key for key in noop["api_writes"]), noop["api_writes"]
    assert noop["api_writes_except_housekeeping"] == 0, noop["api_writes"]

    assert f"| {releases} | {install['wall_s']:.1f} |" in run.table
    assert "| Flux (published) | 27 |" in run.table
