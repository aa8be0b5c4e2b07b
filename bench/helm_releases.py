"""Helm releases benchmark: 100 HelmReleases of one chart from one HelmRepository.

One chart (a ConfigMap and a one-replica Deployment, packaged by the pinned helm and
indexed by ``helm repo index``) in a chart repository on loopback, one HelmRepository
of it, and N HelmReleases with ``spec.chart`` (so N HelmCharts, as Flux makes them),
each installing into its own namespace, against a control plane started for the
benchmark and the real controllers (``headwater run all`` as a subprocess). Measured:

- install all: from creating every HelmRelease to every one Ready with its release
  deployed (helm waits for the Deployment; kwok makes its pod ready): wall time, the
  spread of each release's time to Ready, CPU seconds of the controller process (own
  plus waited-for children: helm, and the Python post-renderer none of these use), its
  peak RSS (VmHWM) and the peak summed RSS of its children, helm processes started (the
  controller's own ``headwater_helm_commands_total``), API requests by verb;
- no-op interval: one ``spec.interval`` right after, with nothing changed: CPU seconds,
  helm processes started (the goal: none) and API writes (the goal: none but the
  controllers' leader-election leases), with the reconciles counted from the
  controller's own reconcile metric.

Flux's published figure (fluxcd/flux2 benchmarks) is beside ours in the report: 100
HelmReleases in 27 s with 190 MiB, on 16 cores.

    .venv/bin/python -m bench.helm_releases            # 100 releases, a 60s interval
    .venv/bin/python -m bench.helm_releases --quick    # 3 releases, a 20s interval
"""

from __future__ import annotations

import concurrent.futures
import re
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.request
from collections import Counter
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import kubernetes.client

from bench import common
from bench.harness import (
    ControllerProbe,
    ControlPlane,
    RequestKey,
    ResourceWatch,
    add_controller_options,
    controller_env,
    controllers_commit,
    failure_summary,
    headwater_revision,
    is_ready,
    keep_logs,
    log_errors,
    measure_step,
    request_diff,
    request_verbs_text,
    summarize_requests,
    tool_versions,
)
from devcluster.controllers import run_controllers
from tests.support.helmrepos import HELM, ChartRepo, ChartRepoServer, write_chart

REPORT_NAME = "helm-releases"
DEFAULT_COUNTS = (100,)
QUICK_COUNTS = (3,)
DEFAULT_INTERVAL_S = 60
QUICK_INTERVAL_S = 20
HELM_RELEASES = ("helm.toolkit.fluxcd.io", "v2", "helmreleases")
APPLIED_RESOURCES = ("configmaps", "deployments", "secrets")
WRITE_VERBS = frozenset({"POST", "PUT", "PATCH", "APPLY", "DELETE", "DELETECOLLECTION"})
# Writes the control plane, kwok (node heartbeats) and leader election make on their own.
HOUSEKEEPING = ("leases", "endpoints", "endpointslices", "nodes")
CREATE_THREADS = 8
PODS_PER_NODE = 80
SYNC_TIMEOUT = 1800.0
# Flux's published figure for the same count (fluxcd/flux2 benchmarks, 16 cores).
FLUX_FIGURE = {"releases": 100, "wall_s": 27, "rss_mib": 190, "cores": 16}

DEPLOYMENT = """\
apiVersion: apps/v1
kind: Deployment
metadata:
  name: {{ .Release.Name }}
spec:
  replicas: {{ .Values.replicaCount }}
  selector:
    matchLabels: {app: {{ .Release.Name }}}
  template:
    metadata:
      labels: {app: {{ .Release.Name }}}
    spec:
      containers:
        - name: app
          image: {{ .Values.image | quote }}
          resources: {requests: {cpu: 10m, memory: 32Mi}}
"""


def publish_chart(repo: ChartRepo) -> None:
    """The one chart: `app` 1.0.0, a ConfigMap and a Deployment."""
    source = write_chart(
        repo.workdir("app", "1.0.0"),
        "app",
        "1.0.0",
        values={"replicaCount": 1, "image": "registry.example.com/app:1.0.0"},
        extra_files={"templates/deployment.yaml": DEPLOYMENT},
    )
    repo.publish(source)


def release_objects(index: int, namespace: str, interval: str) -> list[dict[str, Any]]:
    """A namespace for release `index`, and its HelmRelease in `namespace`."""
    name = f"app-{index:04d}"
    target = f"hr-{index:04d}"
    return [
        {"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": target}},
        {
            "apiVersion": "helm.toolkit.fluxcd.io/v2",
            "kind": "HelmRelease",
            "metadata": {"name": name, "namespace": namespace},
            "spec": {
                "interval": interval,
                "targetNamespace": target,
                "releaseName": name,
                "chart": {
                    "spec": {
                        "chart": "app",
                        "version": "1.x",
                        "interval": interval,
                        "sourceRef": {"kind": "HelmRepository", "name": "charts"},
                    }
                },
            },
        },
    ]


def released(obj: Mapping[str, Any]) -> bool:
    history = ((obj.get("status") or {}).get("history")) or [{}]
    return is_ready(obj) and history[0].get("status") == "deployed"


_METRIC = re.compile(r"^(?P<name>[a-z_]+)(?:\{(?P<labels>[^}]*)\})? (?P<value>\S+)$", re.M)


def scrape_metrics(url: str) -> dict[str, Counter[str]]:
    """The controllers' helm commands by command, and reconciles by kind."""
    with urllib.request.urlopen(f"{url}/metrics", timeout=10) as response:
        text = response.read().decode()
    helm: Counter[str] = Counter()
    reconciles: Counter[str] = Counter()
    for match in _METRIC.finditer(text):
        labels = dict(re.findall(r'(\w+)="([^"]*)"', match["labels"] or ""))
        value = int(float(match["value"]))
        if match["name"] == "headwater_helm_commands_total":
            helm[labels.get("command", "")] += value
        elif match["name"] in ("gotk_reconcile_duration_seconds_count",):
            reconciles[labels.get("kind", "")] += value
    return {"helm": helm, "reconciles": reconciles}


def metric_diff(before: Counter[str], after: Counter[str]) -> dict[str, int]:
    return {k: v for k, v in sorted((after - before).items()) if v > 0}


def writes_of(requests: Counter[RequestKey]) -> dict[str, int]:
    """API writes (not dry-run) by resource."""
    found: Counter[str] = Counter()
    for key, value in requests.items():
        if key.verb in WRITE_VERBS and not key.dry_run:
            found[key.resource_label] += value
    return dict(sorted(found.items(), key=lambda kv: (-kv[1], kv[0])))


@dataclass(frozen=True)
class RunOptions:
    seed: int
    interval_s: int
    log: Callable[[str], None]
    log_level: str = "info"
    keep_logs: Path | None = None


def run_count(count: int, workdir: Path, options: RunOptions) -> dict[str, Any]:
    """One release count on its own control plane: install all, then one no-op interval."""
    log = options.log
    namespace = "releases"
    nodes = max(3, -(-count // PODS_PER_NODE))
    controller_dir = workdir / "controllers"
    interval = f"{options.interval_s}s"
    repo = ChartRepo(workdir / "charts")
    publish_chart(repo)
    try:
        with (
            ControlPlane(workdir / "cluster", nodes=nodes) as cp,
            ChartRepoServer(repo) as server,
        ):
            versions = tool_versions(cp)
            versions["helm"] = _helm_version()
            cp.create_namespace(namespace)
            env = controller_env(options.log_level)
            with run_controllers(cp.kubeconfig, controller_dir, extra_env=env) as running:
                probe = ControllerProbe(running.process.pid)
                cp.apply(
                    [
                        {
                            "apiVersion": "source.toolkit.fluxcd.io/v1",
                            "kind": "HelmRepository",
                            "metadata": {"name": "charts", "namespace": namespace},
                            "spec": {"interval": interval, "url": server.url},
                        }
                    ]
                )
                probe.settle()
                rss_idle = probe.rss_mib()
                documents = [
                    doc
                    for index in range(count)
                    for doc in release_objects(index, namespace, interval)
                ]
                log(f"{count} releases: installing")
                sync = measure_install(cp, probe, running.metrics_url, namespace, documents)
                log(f"{count} releases: all Ready in {sync['wall_s']:.0f}s; one no-op interval")
                steady = measure_noop(cp, probe, running.metrics_url, options.interval_s)
                errors = log_errors(running.logs())
    finally:
        keep_logs(options.keep_logs, controller_dir, f"controllers-{count}")
        keep_logs(options.keep_logs, workdir / "cluster" / "logs", f"control-plane-{count}")
    return {
        "releases": count,
        "charts": "one chart (app 1.0.0) from one HelmRepository; a HelmChart per release",
        "interval_s": options.interval_s,
        "nodes": nodes,
        "install_all": sync,
        "noop_interval": steady,
        "controller_process": {"rss_idle_mib": rss_idle, "log_errors": errors},
        "versions": versions,
    }


def _helm_version() -> str:
    done = subprocess.run(
        [HELM, "version", "--short"], capture_output=True, text=True, timeout=30, check=False
    )
    return done.stdout.strip()


def _create_all(api: kubernetes.client.ApiClient, documents: Sequence[Mapping[str, Any]]) -> None:
    custom = kubernetes.client.CustomObjectsApi(api)
    core = kubernetes.client.CoreV1Api(api)

    def create(doc: Mapping[str, Any]) -> None:
        if doc["kind"] == "Namespace":
            core.create_namespace(dict(doc))
            return
        group, version = doc["apiVersion"].split("/")
        custom.create_namespaced_custom_object(
            group, version, doc["metadata"]["namespace"], HELM_RELEASES[2], dict(doc)
        )

    namespaces = [d for d in documents if d["kind"] == "Namespace"]
    releases = [d for d in documents if d["kind"] != "Namespace"]
    with concurrent.futures.ThreadPoolExecutor(CREATE_THREADS) as pool:
        list(pool.map(create, namespaces))
        list(pool.map(create, releases))


def measure_install(
    cp: ControlPlane,
    probe: ControllerProbe,
    metrics_url: str,
    namespace: str,
    documents: Sequence[Mapping[str, Any]],
) -> dict[str, Any]:
    count = sum(1 for d in documents if d["kind"] == "HelmRelease")
    created = 0.0

    def create_all() -> None:
        nonlocal created
        _create_all(cp.api, documents)
        created = time.monotonic()

    before = scrape_metrics(metrics_url)
    with ResourceWatch(
        cp.api, *HELM_RELEASES[:2], HELM_RELEASES[2], namespace, track=released
    ) as releases:
        step = measure_step(
            cp,
            probe,
            create_all,
            lambda: releases.wait(
                lambda _: len(releases.first_true) == count,
                SYNC_TIMEOUT,
                f"{count} HelmReleases Ready ({len(releases.first_true)} so far; "
                f"{failure_summary(releases.objects())})",
            ),
            own=Counter(
                {
                    RequestKey("POST", HELM_RELEASES[2], "", False): count,
                    RequestKey("POST", "namespaces", "", False): count,
                }
            ),
            applied_resources=APPLIED_RESOURCES,
            settle_limit=30,
        )
        per_release = [t - step.started for t in releases.first_true.values()]
    after = scrape_metrics(metrics_url)
    helm = metric_diff(before["helm"], after["helm"])
    return {
        "wall_s": round(step.wall_s, 3),
        "create_s": round(created - step.started, 3),
        "per_release_ready_s": _percentiles(per_release),
        **step.figures(digits=3),
        "helm_commands": helm,
        "helm_commands_total": sum(helm.values()),
    }


def measure_noop(
    cp: ControlPlane, probe: ControllerProbe, metrics_url: str, interval_s: int
) -> dict[str, Any]:
    """One interval of what the controllers do on their own with nothing changed."""
    probe.reset_peak()
    before_metrics = scrape_metrics(metrics_url)
    before_requests = cp.scrape_requests()
    before = probe.usage()
    started = time.monotonic()
    # A little past the interval, so every object's periodic reconcile falls inside.
    time.sleep(interval_s * 1.2)
    after = probe.usage()
    window = time.monotonic() - started
    after_requests = cp.scrape_requests()
    after_metrics = scrape_metrics(metrics_url)
    requests = +request_diff(before_requests, after_requests)
    writes = writes_of(requests)
    helm = metric_diff(before_metrics["helm"], after_metrics["helm"])
    cpu = after.cpu_s - before.cpu_s
    reconciles = metric_diff(before_metrics["reconciles"], after_metrics["reconciles"])
    return {
        "window_s": round(window, 2),
        "cpu_s": round(cpu, 3),
        "cpu_children_s": round(after.cpu_children_s - before.cpu_children_s, 3),
        "core_share": round(cpu / window, 3),
        "peak_rss_mib": probe.peak_rss_mib(),
        "reconciles": reconciles,
        "helm_commands": helm,
        "helm_commands_total": sum(helm.values()),
        "api_requests": summarize_requests(requests, APPLIED_RESOURCES),
        "api_writes": writes,
        "api_writes_except_housekeeping": sum(
            v for k, v in writes.items() if k.split(" ")[-1].split("/")[0] not in HOUSEKEEPING
        ),
    }


def _percentiles(values: Sequence[float]) -> dict[str, float]:
    return {
        "p50": round(statistics.median(values), 3),
        "p90": round(common.percentile(values, 0.9), 3),
        "max": round(max(values), 3),
    }


def run_benchmark(counts: Sequence[int], *, quick: bool, options: RunOptions) -> dict[str, Any]:
    started = time.perf_counter()
    machine = {**common.machine_info(), "load_average_at_start": common.load_average()}
    revision = headwater_revision()
    scenarios = []
    for count in counts:
        with tempfile.TemporaryDirectory(prefix=f"hw-bench-helm{count}-") as tmp:
            scenarios.append(run_count(count, Path(tmp), options))
    machine.update(scenarios[-1].pop("versions"))
    for scenario in scenarios:
        scenario.pop("versions", None)
    return {
        **common.report_head(REPORT_NAME, quick=quick, seed=options.seed),
        "controllers_version": revision,
        "machine": {**machine, "load_average_at_end": common.load_average()},
        "flux_published": FLUX_FIGURE,
        "scenarios": scenarios,
        "duration_s": round(time.perf_counter() - started, 1),
    }


# -- the report ---------------------------------------------------------------------------


def _counts_text(counts: Mapping[str, int]) -> str:
    total = sum(counts.values())
    if not total:
        return "0"
    return f"{total:,}: " + ", ".join(f"{k} {v:,}" for k, v in counts.items())


def render_table(report: Mapping[str, Any]) -> str:
    machine, flux = report["machine"], report["flux_published"]
    lines = [
        f"# Helm releases benchmark ({report['created']})",
        "",
        f"Controllers at commit {controllers_commit(report['controllers_version'])}; "
        f"{machine['cores']} cores, Python {machine['python']}, kube-apiserver "
        f"{machine['kube_apiserver']}, helm {machine['helm']}. One run per row; each "
        "HelmRelease installs the same chart (a ConfigMap and a one-replica Deployment, "
        "helm waiting for it) from one HelmRepository, through a HelmChart of its own, into "
        "a namespace of its own. CPU and RSS are the controller process (`headwater run "
        "all`) plus the children it waited for (helm); in brackets the peak summed RSS of "
        "those children. API writes in the no-op interval leave out the control plane's and "
        "leader election's own (leases, endpoints, node status). Load average (1 min) "
        f"{machine['load_average_at_start'][0]:g} at start, "
        f"{machine['load_average_at_end'][0]:g} at end.",
        "",
        "| releases | install all: wall s | per release p50 / p90 s | CPU s | peak RSS MiB "
        "| helm processes | no-op interval s | CPU s | helm processes | API writes "
        "(except leases, endpoints, nodes) |",
        "| ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: |",
    ]
    for scenario in report["scenarios"]:
        sync, steady = scenario["install_all"], scenario["noop_interval"]
        per = sync["per_release_ready_s"]
        lines.append(
            f"| {scenario['releases']} | {sync['wall_s']:.1f} | {per['p50']:.1f} / "
            f"{per['p90']:.1f} | {sync['cpu_s']:.1f} | {sync['peak_rss_mib']:.0f} "
            f"({sync['peak_children_rss_mib']:.0f}) | {sync['helm_commands_total']} "
            f"| {steady['window_s']:.0f} | {steady['cpu_s']:.1f} "
            f"| {steady['helm_commands_total']} | {steady['api_writes_except_housekeeping']} |"
        )
    lines += [
        f"| Flux (published) | {flux['wall_s']} | | | {flux['rss_mib']} | | | | | |",
        "",
        f"Flux's figure is for {flux['releases']} HelmReleases on {flux['cores']} cores "
        "(fluxcd/flux2 benchmarks); ours is on the machine above.",
        "",
        "Helm processes by command, reconciles in the no-op interval, and API requests "
        "(all clients):",
        "",
        "| releases | phase | helm processes | reconciles | API requests | API writes |",
        "| ---: | --- | --- | --- | --- | --- |",
    ]
    for scenario in report["scenarios"]:
        for label, key in (("install all", "install_all"), ("no-op interval", "noop_interval")):
            phase = scenario[key]
            # Counted in the no-op interval only.
            reconciles = _counts_text(phase["reconciles"]) if "reconciles" in phase else "-"
            writes = _counts_text(phase["api_writes"]) if "api_writes" in phase else "-"
            lines.append(
                f"| {scenario['releases']} | {label} | {_counts_text(phase['helm_commands'])} "
                f"| {reconciles} | {request_verbs_text(phase['api_requests'])} | {writes} |"
            )
    lines.append("")
    return "\n".join(lines)


def main(argv: Sequence[str] | None = None) -> int:
    parser = common.argument_parser("bench.helm_releases", __doc__, "3 releases, a 20s interval")
    parser.add_argument(
        "--counts",
        type=common.whole_numbers("release counts", "100,300", 1, 1000),
        default=None,
        help="release counts, e.g. 100",
    )
    parser.add_argument("--interval", type=int, default=None, help="spec.interval in seconds")
    add_controller_options(parser)
    args = parser.parse_args(argv)
    counts = args.counts or (QUICK_COUNTS if args.quick else DEFAULT_COUNTS)
    interval = args.interval or (QUICK_INTERVAL_S if args.quick else DEFAULT_INTERVAL_S)
    if not 10 <= interval <= 600:
        parser.error("--interval must be between 10 and 600 seconds")
    options = RunOptions(
        seed=args.seed,
        interval_s=interval,
        log=common.progress,
        log_level=args.log_level,
        keep_logs=args.keep_logs,
    )
    report = run_benchmark(counts, quick=args.quick, options=options)
    common.publish_report(args.out, REPORT_NAME, report, render_table(report))
    return 0


if __name__ == "__main__":
    sys.exit(main())
