"""The side-by-side benchmark's pure parts: how the Flux peer is built and started, the
write count, the ratios, the profile summary and the report (no Go, no cluster)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from bench import flux_peer, vs_flux
from devcluster import build

SOURCE = flux_peer.CONTROLLERS["source-controller"]
KUSTOMIZE = flux_peer.CONTROLLERS["kustomize-controller"]


def test_the_build_is_upstreams_release_build() -> None:
    args = build.go_build_args(".", Path("/out/source-controller"), ldflags=flux_peer.LDFLAGS)
    assert args == [
        "build",
        "-mod=readonly",
        "-trimpath",
        "-ldflags",
        "-s -w",
        "-o",
        "/out/source-controller",
        ".",
    ]


def test_source_controller_gets_the_served_artifact_module() -> None:
    assert flux_peer.replace_args(SOURCE) == [
        "-replace=github.com/fluxcd/pkg/artifact=github.com/fluxcd/pkg/artifact@v0.18.1"
    ]
    assert flux_peer.replace_args(KUSTOMIZE) == []
    assert flux_peer.go_sum_lines("m", "v1", ("h1:zip=", "h1:mod=")) == [
        "m v1 h1:zip=",
        "m v1/go.mod h1:mod=",
    ]


def test_the_api_module_sits_beside_the_controller_at_one_version() -> None:
    for controller in flux_peer.CONTROLLERS.values():
        assert controller.api_module == f"{controller.module}/api"
    assert {c.name: c.version for c in flux_peer.CONTROLLERS.values()} == {
        "source-controller": "v1.9.5",
        "kustomize-controller": "v1.9.5",
        "notification-controller": "v1.9.3",
    }


def test_a_cached_controller_is_not_built_again(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("HEADWATER_CACHE", str(tmp_path))
    binary = flux_peer.binary_path(KUSTOMIZE)
    assert binary == tmp_path / "flux-peer" / "kustomize-controller-v1.9.5" / "kustomize-controller"
    flux_peer.crds_dir(KUSTOMIZE).mkdir(parents=True)
    binary.write_text("")
    result = flux_peer.build_controller(KUSTOMIZE)
    assert (result.built, result.bin_dir) == (False, binary.parent)


def test_each_controller_listens_on_its_own_ports_and_emits_to_the_notifier() -> None:
    ports = flux_peer.Ports(metrics=1001, health=1002, storage=1003)
    args = flux_peer.controller_args(
        "source-controller", ports, events_port=2000, storage_path=Path("/data")
    )
    assert args == [
        "--metrics-addr=127.0.0.1:1001",
        "--health-addr=127.0.0.1:1002",
        "--enable-leader-election=false",
        "--concurrent=4",
        "--log-encoding=json",
        "--log-level=info",
        "--events-addr=http://127.0.0.1:2000/",
        "--storage-path=/data",
        "--storage-addr=127.0.0.1:1003",
        "--storage-adv-addr=127.0.0.1:1003",
    ]
    notifier = flux_peer.controller_args(
        "notification-controller",
        flux_peer.Ports(metrics=1, health=2, events=2000, receiver=3),
        events_port=2000,
    )
    assert "--events-addr=127.0.0.1:2000" in notifier
    assert "--receiverAddr=127.0.0.1:3" in notifier
    kustomize = flux_peer.controller_args(
        "kustomize-controller", flux_peer.Ports(1, 2), events_port=2000, concurrent=8
    )
    assert "--concurrent=8" in kustomize and "--events-addr=http://127.0.0.1:2000/" in kustomize
    with pytest.raises(ValueError, match="storage path"):
        flux_peer.controller_args("source-controller", ports, events_port=1)


def test_the_environment_names_the_cluster_and_the_namespace(tmp_path: Path) -> None:
    env = flux_peer.controller_environment(tmp_path / "kubeconfig", tmp_path)
    assert env["KUBECONFIG"] == str(tmp_path / "kubeconfig")
    assert env["RUNTIME_NAMESPACE"] == "flux-system"


def test_writes_count_the_controllers_kinds_and_leave_dry_runs_out() -> None:
    by_resource = {
        "PATCH kustomizations/status": 7,
        "APPLY (dry-run) configmaps": 400,
        "APPLY configmaps": 3,
        "POST events": 2,
        "PUT leases": 90,
        "GET kustomizations": 50,
        "LIST configmaps": 4,
    }
    assert vs_flux.writes(by_resource) == 12


def test_ratios_pair_the_runs_and_skip_a_zero_peer() -> None:
    stats = vs_flux.ratio_stats([2.0, 3.0, 4.0], [4.0, 3.0, 2.0])
    assert stats == {"median": 1.0, "min": 0.5, "max": 2.0, "pairs": 3}
    assert vs_flux.ratio_stats([0.0, 1.0], [0.0, 4.0]) == {
        "median": 0.25,
        "min": 0.25,
        "max": 0.25,
        "pairs": 1,
    }
    assert vs_flux.ratio_stats([0.0], [0.0]) is None


def test_the_profile_summary_ranks_own_and_inclusive_frames() -> None:
    raw = "\n".join(
        [
            "<module> (cli.py:1);run (a/runner.py:10);apply (x/apply.py:5) 6",
            "<module> (cli.py:1);run (a/runner.py:12);read (ssl.py:99) 3",
            "<module> (cli.py:1);run (a/runner.py:10);apply (x/apply.py:7) 1",
            "garbage",
        ]
    )
    summary = vs_flux.summarize_profile(raw, top=2)
    assert summary["samples"] == 10
    assert summary["own"] == [
        {"frame": "apply (x/apply.py)", "samples": 7, "share": 0.7},
        {"frame": "read (ssl.py)", "samples": 3, "share": 0.3},
    ]
    # Entry points such as <module> are on every stack: left out of the inclusive list.
    assert [f["frame"] for f in summary["inclusive"]] == [
        "run (a/runner.py)",
        "apply (x/apply.py)",
    ]


def _run(cpu: float, rss: float) -> dict[str, Any]:
    sample = {"cpu_s": cpu, "wall_s": 2 * cpu, "peak_rss_mib": rss, "peak_children_rss_mib": 10.0}
    return {
        "idle": {"rss_total_mib": rss},
        "mix": {"first_apply": sample, "change": sample},
        "mix_first": sample,
        "apps": {"5": {"cpu_s": cpu, "wall_s": cpu}},
        "apps5_sync": sample,
        "idle_apps": {"cpu_s": cpu, "writes": 0},
        "load_average_at_start": [1.5, 1.0, 1.0],
    }


def test_the_report_says_each_ratio_with_its_range() -> None:
    runs = {
        "headwater": [_run(1.0, 100.0), _run(2.0, 110.0)],
        "flux": [_run(2.0, 50.0), _run(2.0, 55.0)],
    }
    table = vs_flux.metrics((5,), "50 ConfigMaps", 0)
    rows = {row["key"]: row for row in vs_flux.compare(runs, table)}
    assert rows["mix_cpu"]["ratio"] == {"median": 0.75, "min": 0.5, "max": 1.0, "pairs": 2}
    assert rows["idle_rss"]["ratio"]["median"] == 2.0
    assert rows["mix_peak"]["headwater"] == {"median": 115.0, "min": 110.0, "max": 120.0}
    assert rows["apps5_per_app"]["flux"]["median"] == 400.0
    assert rows["idle_apps_writes"]["ratio"] is None  # 0 against 0
    report = {
        "created": "2026-12-03T16:00:00Z",
        "headwater_version": {"commit": "abcdef1234567890", "controllers_modified": False},
        "flux_version": {"kustomize-controller": {"version": "v1.9.5"}},
        "machine": {
            "cores": 2,
            "platform": "Linux",
            "python": "3.13",
            "kube_apiserver": "v1.36.3",
        },
        "plan": {"runs": 2, "concurrent": 4, "mix": {"ConfigMap": 50}},
        "comparison": list(rows.values()),
        "runs": runs,
    }
    text = vs_flux.render_table(report)
    assert "headwater measured at commit abcdef123456; Flux: kustomize-controller v1.9.5" in text
    runs["headwater"][1]["headwater_version"] = {
        "commit": "0123456789ab99",
        "controllers_modified": True,
    }
    assert vs_flux.measured_at(runs, report["headwater_version"]) == (
        "abcdef123456, 0123456789ab with local changes"
    )
    assert "| CPU, first apply of 50 ConfigMaps, s | 1.50 (1.00-2.00) " in text
    assert "| **0.75** (0.50-1.00, 2 pairs) |" in text
    assert "Load average (1 min) at the start of the runs: 1.5-1.5" in text
