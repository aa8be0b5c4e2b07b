"""The source pipeline benchmark runs end to end (`--quick`) and writes a well-formed report.

Only the report's shape and the benchmark's own invariants are checked; the figures
themselves are never asserted on (speed belongs in bench/reports, not in tests).
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import pytest

from tests.integration.bench.conftest import run_quick

pytestmark = pytest.mark.integration

STATS = ("wall_s", "cpu_s", "cpu_self_s", "cpu_children_s", "server_cpu_s", "http_requests")


def check_stats(section: dict[str, Any], repetitions: int) -> None:
    for name in STATS:
        stat = section[name]
        assert stat["min"] <= stat["median"] <= stat["max"], (name, stat)
        assert stat["min"] >= 0, (name, stat)
    assert section["wall_s"]["min"] > 0
    assert section["cpu_s"]["min"] > 0
    assert section["http_requests"]["min"] >= 1
    samples = section["samples"]
    assert len(samples) == repetitions
    for sample in samples:
        assert sample["cpu_s"] == pytest.approx(
            sample["cpu_self_s"] + sample["cpu_children_s"], abs=1e-3
        )
        assert sum(sample["requests_by_command"].values()) == sample["http_requests"]


def test_quick_run_writes_json_and_table(tmp_path: Path) -> None:
    run = run_quick("bench.source_pipeline", "source-pipeline", tmp_path / "reports", 300)
    report = run.report
    assert report["repetitions"] == 1
    machine = report["machine"]
    assert machine["cores"] >= 1
    assert re.fullmatch(r"\d+\.\d+\.\d+\S*", machine["python"])
    assert machine["git"].startswith("git version ")
    assert report["peak_rss_mib"]["process"] >= report["peak_rss_mib"]["baseline"] > 0

    [scenario] = report["scenarios"]
    repo, artifact = scenario["repository"], scenario["artifact"]
    assert repo["files"] == repo["text_files"] + repo["blob_files"]
    assert repo["text_files"] > 0 and repo["blob_files"] > 0
    assert repo["content_bytes"] >= scenario["target_bytes"] > 0
    assert repo["pack_bytes"] > 0
    assert re.fullmatch(r"sha256:[0-9a-f]{64}", artifact["digest"])
    assert artifact["revision"] == f"main@sha1:{repo['commit']}"
    # Every generated file is in the artifact (none matches the default ignore rules),
    # and the content does not compress to nothing.
    assert artifact["files"] == repo["files"]
    assert 0 < artifact["size_bytes"] < repo["content_bytes"]
    assert artifact["compression_ratio"] < 4
    assert artifact["deterministic"] is True

    check_stats(scenario["new_artifact"], 1)
    check_stats(scenario["no_change_poll"], 1)
    # A new artifact fetches objects; a no-change poll only lists refs.
    assert "fetch" in scenario["new_artifact"]["samples"][0]["requests_by_command"]
    assert "fetch" not in scenario["no_change_poll"]["samples"][0]["requests_by_command"]

    assert f"| {scenario['label']} | {repo['files']} |" in run.table
