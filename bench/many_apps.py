"""Many small apps benchmark: hundreds of GitRepository+Kustomization pairs at once.

For 100 and 500 apps, each its own git repository (a ConfigMap, a Secret, a Service and
a one-replica Deployment, plain YAML without a kustomization file, so the controller
generates one; the Kustomization sets ``targetNamespace``), served by a real git server
on loopback, against a control plane started for the benchmark and the real controllers
(``headwater run all`` as a subprocess), this measures:

- sync all: from creating every GitRepository and Kustomization to every Kustomization
  Ready with its repository's revision: wall time (and when all sources were Ready, and
  the spread of each app's time to Ready), CPU seconds of the controller process (own
  plus waited-for children, i.e. git and kustomize), its peak RSS (VmHWM) and the peak
  summed RSS of its children, API requests by verb as kube-apiserver counted them
  (``apiserver_request_total``, every client), and the git server's requests;
- steady state: after 1.5 intervals to settle (every object's ``spec.interval``, 1m: each
  Kustomization's first periodic reconcile after its first apply verifies in full), one
  interval of periodic no-op reconciles with nothing changed: CPU seconds, the share of
  one core that is, API requests and git requests. A GitRepository's poll is counted as
  one ``ls-refs`` on the git server; Kustomization reconciles from the controller's own
  metrics (``gotk_reconcile_duration_seconds_count``), split by
  ``headwater_apply_verifications_total`` into full ones (a dry-run of every object) and
  skipped ones (the inventory watch vouched nothing changed).

Each app count runs once per ``--full-verify-intervals`` value (default ``0,1h``: 0
dry-runs every object at every interval as Flux does, 1h is the controller's default),
each on its own control plane (one repetition: the 500-app run takes minutes). Writes
``many-apps.json`` and ``many-apps.md`` to ``--out`` (default ``bench/reports``) and
prints the table.

    .venv/bin/python -m bench.many_apps            # full run, about 10 minutes
    .venv/bin/python -m bench.many_apps --quick    # 5 apps, a 20s interval
"""

from __future__ import annotations

import base64
import concurrent.futures
import random
import statistics
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
import yaml
from prometheus_client.parser import text_string_to_metric_families

from bench import common
from bench.harness import (
    ControllerProbe,
    ControlPlane,
    RequestKey,
    ResourceWatch,
    add_controller_options,
    applied,
    controller_env,
    controllers_commit,
    failure_summary,
    has_artifact,
    headwater_revision,
    keep_logs,
    log_errors,
    measure_step,
    request_diff,
    request_verbs_text,
    summarize_requests,
    tool_versions,
    write_git_repo,
)
from controllers.toolkit.runtime.durations import DurationError, parse_duration
from devcluster.controllers import run_controllers
from devcluster.gitserver import GitHttpServer, RequestRecord

REPORT_NAME = "many-apps"
DEFAULT_COUNTS = (100, 500)
QUICK_COUNTS = (5,)
DEFAULT_INTERVAL_S = 60
QUICK_INTERVAL_S = 20
# HEADWATER_FULL_VERIFY_INTERVAL values: Flux's behaviour, and the default.
DEFAULT_FULL_VERIFY = ("0", "1h")
OBJECTS_PER_APP = 4
APPLIED_RESOURCES = ("configmaps", "secrets", "services", "deployments")
SOURCE = ("source.toolkit.fluxcd.io", "v1", "gitrepositories")
KUSTOMIZE = ("kustomize.toolkit.fluxcd.io", "v1", "kustomizations")
CREATE_THREADS = 8
# Pods per fake node: kwok nodes take 110; leave room.
PODS_PER_NODE = 80
SYNC_TIMEOUT = 1200.0


def app_tree(index: int, seed: int) -> dict[str, bytes]:
    """One app's repository: four plain YAML files under deploy/."""
    name = f"app-{index:04d}"
    app = {"app": name}
    token = f"{random.Random(f'{seed}:{index}').getrandbits(64):016x}"
    documents = {
        "deploy/configmap.yaml": {
            "apiVersion": "v1",
            "kind": "ConfigMap",
            "metadata": {"name": f"{name}-config", "labels": app},
            "data": {"LOG_LEVEL": "info", "PORT": "8080", "UPSTREAM": f"http://{name}-api:80"},
        },
        "deploy/secret.yaml": {
            "apiVersion": "v1",
            "kind": "Secret",
            "metadata": {"name": f"{name}-credentials", "labels": app},
            "type": "Opaque",
            "data": {"token": base64.b64encode(f"{name}-{token}".encode()).decode()},
        },
        "deploy/service.yaml": {
            "apiVersion": "v1",
            "kind": "Service",
            "metadata": {"name": name, "labels": app},
            "spec": {
                "selector": app,
                "ports": [{"name": "http", "port": 80, "targetPort": 8080, "protocol": "TCP"}],
            },
        },
        "deploy/deployment.yaml": {
            "apiVersion": "apps/v1",
            "kind": "Deployment",
            "metadata": {"name": name, "labels": app},
            "spec": {
                "replicas": 1,
                "selector": {"matchLabels": app},
                "template": {
                    "metadata": {"labels": app},
                    "spec": {
                        "containers": [
                            {
                                "name": "app",
                                "image": f"registry.example.com/apps/{name}:1.0.0",
                                "envFrom": [{"configMapRef": {"name": f"{name}-config"}}],
                                "resources": {"requests": {"cpu": "10m", "memory": "32Mi"}},
                            }
                        ]
                    },
                },
            },
        },
    }
    return {path: yaml.safe_dump(doc, sort_keys=False).encode() for path, doc in documents.items()}


def flux_objects(index: int, namespace: str, url: str, interval: str) -> list[dict[str, Any]]:
    name = f"app-{index:04d}"
    return [
        {
            "apiVersion": "source.toolkit.fluxcd.io/v1",
            "kind": "GitRepository",
            "metadata": {"name": name, "namespace": namespace},
            "spec": {"interval": interval, "url": url, "ref": {"branch": "main"}},
        },
        {
            "apiVersion": "kustomize.toolkit.fluxcd.io/v1",
            "kind": "Kustomization",
            "metadata": {"name": name, "namespace": namespace},
            "spec": {
                "interval": interval,
                "path": "./deploy",
                "prune": True,
                "targetNamespace": namespace,
                "sourceRef": {"kind": "GitRepository", "name": name},
            },
        },
    ]


def _git_summary(records: Sequence[RequestRecord]) -> dict[str, Any]:
    kinds: Counter[str] = Counter()
    for record in records:
        if record.command:
            kinds[record.command] += 1
        else:
            kinds["info/refs" if record.path.endswith("/info/refs") else "other"] += 1
    return {"total": len(records), "by_command": dict(sorted(kinds.items()))}


def _percentiles(values: Sequence[float]) -> dict[str, float]:
    return {
        "p50": round(statistics.median(values), 3),
        "p90": round(common.percentile(values, 0.9), 3),
        "max": round(max(values), 3),
    }


@dataclass(frozen=True)
class RunOptions:
    seed: int
    interval_s: int
    log: Callable[[str], None]
    log_level: str = "info"
    keep_logs: Path | None = None


def run_count(count: int, full_verify: str, workdir: Path, options: RunOptions) -> dict[str, Any]:
    """One app count on its own control plane: sync all, settle an interval, then one
    steady interval."""
    log = options.log
    namespace = f"many-{count}"
    project_root = workdir / "git"
    project_root.mkdir(parents=True)
    nodes = max(3, -(-count // PODS_PER_NODE))
    phases: dict[str, float] = {}
    started = time.monotonic()
    revisions = {}
    for index in range(count):
        [commit] = write_git_repo(
            project_root, f"app-{index:04d}", [("app", app_tree(index, options.seed))]
        )
        revisions[f"app-{index:04d}"] = f"main@sha1:{commit}"
    phases["write_repositories_s"] = round(time.monotonic() - started, 2)
    controller_dir = workdir / "controllers"
    env = {**controller_env(options.log_level), "HEADWATER_FULL_VERIFY_INTERVAL": full_verify}
    interval = f"{options.interval_s}s"
    try:
        with (
            ControlPlane(workdir / "cluster", nodes=nodes) as cp,
            GitHttpServer(project_root) as git,
        ):
            versions = tool_versions(cp)
            cp.create_namespace(namespace)
            with run_controllers(cp.kubeconfig, controller_dir, extra_env=env) as running:
                probe = ControllerProbe(running.process.pid)
                probe.settle()
                rss_idle = probe.rss_mib()
                documents = [
                    doc
                    for index in range(count)
                    for doc in flux_objects(index, namespace, git.url(f"app-{index:04d}"), interval)
                ]
                log(f"{count} apps: syncing")
                sync = measure_sync(cp, probe, git, namespace, documents, revisions)
                log(
                    f"{count} apps (full verify {full_verify}): all Ready in "
                    f"{sync['wall_s']:.0f}s; 1.5 intervals to settle, one steady interval"
                )
                # Each one's first periodic reconcile after its first apply comes within
                # 1.1 intervals (jitter) of it being Ready, and verifies in full.
                time.sleep(1.5 * options.interval_s)
                steady = measure_steady(cp, probe, git, running.metrics_url, options.interval_s)
                errors = log_errors(running.logs())
    finally:
        keep_logs(options.keep_logs, controller_dir, f"controllers-{count}")
        keep_logs(options.keep_logs, workdir / "cluster" / "logs", f"control-plane-{count}")
    return {
        "apps": count,
        "full_verify_interval": full_verify,
        "objects_per_app": OBJECTS_PER_APP,
        "repositories": "one per app",
        "interval_s": options.interval_s,
        "nodes": nodes,
        "setup": phases,
        "sync_all": sync,
        "steady_interval": steady,
        "controller_process": {"rss_idle_mib": rss_idle, "log_errors": errors},
        "versions": versions,
    }


def _create_all(api: kubernetes.client.ApiClient, documents: Sequence[Mapping[str, Any]]) -> None:
    custom = kubernetes.client.CustomObjectsApi(api)

    def create(doc: Mapping[str, Any]) -> None:
        group, version = doc["apiVersion"].split("/")
        plural = SOURCE[2] if doc["kind"] == "GitRepository" else KUSTOMIZE[2]
        custom.create_namespaced_custom_object(
            group, version, doc["metadata"]["namespace"], plural, dict(doc)
        )

    with concurrent.futures.ThreadPoolExecutor(CREATE_THREADS) as pool:
        list(pool.map(create, documents))


def measure_sync(
    cp: ControlPlane,
    probe: ControllerProbe,
    git: GitHttpServer,
    namespace: str,
    documents: Sequence[Mapping[str, Any]],
    revisions: Mapping[str, str],
) -> dict[str, Any]:
    count = len(revisions)

    def source_done(obj: Mapping[str, Any]) -> bool:
        return has_artifact(obj, revisions.get(obj["metadata"]["name"], ""))

    def ks_done(obj: Mapping[str, Any]) -> bool:
        return applied(obj, revisions.get(obj["metadata"]["name"], ""))

    created = 0.0

    def create_all() -> None:
        nonlocal created
        _create_all(cp.api, documents)
        created = time.monotonic()

    with (
        ResourceWatch(cp.api, *SOURCE[:2], SOURCE[2], namespace, track=source_done) as sources,
        ResourceWatch(cp.api, *KUSTOMIZE[:2], KUSTOMIZE[2], namespace, track=ks_done) as kss,
    ):
        git.clear_requests()
        step = measure_step(
            cp,
            probe,
            create_all,
            lambda: kss.wait(
                lambda _: len(kss.first_true) == count,
                SYNC_TIMEOUT,
                f"{count} Kustomizations Ready ({len(kss.first_true)} so far; "
                f"{failure_summary(kss.objects())})",
            ),
            # This benchmark's own creates are not the controllers' work.
            own=Counter(
                {
                    RequestKey("POST", SOURCE[2], "", False): count,
                    RequestKey("POST", KUSTOMIZE[2], "", False): count,
                }
            ),
            applied_resources=APPLIED_RESOURCES,
            # Bounded: with a 1m interval the periodic reconciles soon begin.
            settle_limit=30,
        )
        started = step.started
        sources_ready = (
            max(sources.first_true.values()) if len(sources.first_true) == count else None
        )
        per_app = [t - started for t in kss.first_true.values()]
    return {
        "wall_s": round(step.wall_s, 3),
        "create_s": round(created - started, 3),
        "sources_ready_s": round(sources_ready - started, 3) if sources_ready else None,
        "per_app_ready_s": _percentiles(per_app),
        **step.figures(digits=3),
        "git_requests": _git_summary(git.requests),
    }


def kustomize_passes(metrics_url: str) -> Counter[str]:
    """Kustomization reconciles ("all") and their verifications ("full", "skipped") so far."""
    with urllib.request.urlopen(f"{metrics_url}/metrics", timeout=10) as response:
        text = response.read().decode()
    counts: Counter[str] = Counter()
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            if sample.labels.get("kind") != "Kustomization":
                continue
            if sample.name == "gotk_reconcile_duration_seconds_count":
                counts["all"] += int(sample.value)
            elif sample.name == "headwater_apply_verifications_total":
                counts[sample.labels.get("result", "")] += int(sample.value)
    return counts


def measure_steady(
    cp: ControlPlane, probe: ControllerProbe, git: GitHttpServer, metrics_url: str, interval_s: int
) -> dict[str, Any]:
    """One interval of whatever the controllers do on their own with nothing changed."""
    probe.reset_peak()
    git.clear_requests()
    before_requests = cp.scrape_requests()
    before_passes = kustomize_passes(metrics_url)
    before = probe.usage()
    started = time.monotonic()
    time.sleep(interval_s)
    after = probe.usage()
    window = time.monotonic() - started
    passes = kustomize_passes(metrics_url) - before_passes
    after_requests = cp.scrape_requests()
    requests = +request_diff(before_requests, after_requests)
    git_requests = _git_summary(git.requests)
    dry_runs = sum(
        value
        for key, value in requests.items()
        if key.dry_run and key.verb == "APPLY" and key.resource in APPLIED_RESOURCES
    )
    writes = sum(
        value
        for key, value in requests.items()
        if not key.dry_run
        and key.verb in ("APPLY", "PATCH", "PUT", "POST", "DELETE")
        and key.resource in APPLIED_RESOURCES
        and not key.subresource
    )
    cpu = after.cpu_s - before.cpu_s
    reconciles = git_requests["by_command"].get("ls-refs", 0) + passes["all"]
    return {
        "window_s": round(window, 2),
        "cpu_s": round(cpu, 3),
        "cpu_self_s": round(after.cpu_self_s - before.cpu_self_s, 3),
        "cpu_children_s": round(after.cpu_children_s - before.cpu_children_s, 3),
        "core_share": round(cpu / window, 3),
        "peak_rss_mib": probe.peak_rss_mib(),
        "api_requests": summarize_requests(requests, APPLIED_RESOURCES),
        "git_requests": git_requests,
        "source_polls": git_requests["by_command"].get("ls-refs", 0),
        "kustomization_passes": passes["all"],
        "verifications": {"full": passes["full"], "skipped": passes["skipped"]},
        "applied_kinds_dry_runs": dry_runs,
        "applied_kinds_writes": writes,
        "cpu_ms_per_reconcile": round(1000 * cpu / reconciles, 1) if reconciles else None,
    }


def run_benchmark(
    counts: Sequence[int],
    *,
    quick: bool,
    options: RunOptions,
    full_verify_intervals: Sequence[str] = DEFAULT_FULL_VERIFY,
) -> dict[str, Any]:
    started = time.perf_counter()
    machine = {**common.machine_info(), "load_average_at_start": common.load_average()}
    revision = headwater_revision()
    scenarios = []
    for count in counts:
        for full_verify in full_verify_intervals:
            with tempfile.TemporaryDirectory(prefix=f"hw-bench-apps{count}-") as tmp:
                scenarios.append(run_count(count, full_verify, Path(tmp), options))
    machine.update(scenarios[-1].pop("versions"))
    for scenario in scenarios:
        scenario.pop("versions", None)
    return {
        **common.report_head(REPORT_NAME, quick=quick, seed=options.seed),
        "controllers_version": revision,
        "machine": {**machine, "load_average_at_end": common.load_average()},
        "scenarios": scenarios,
        "duration_s": round(time.perf_counter() - started, 1),
    }


# -- the report ---------------------------------------------------------------------------


def render_table(report: Mapping[str, Any]) -> str:
    machine = report["machine"]
    lines = [
        f"# Many small apps benchmark ({report['created']})",
        "",
        f"Controllers at commit {controllers_commit(report['controllers_version'])}; "
        f"{machine['cores']} cores, Python "
        f"{machine['python']}, kube-apiserver "
        f"{machine['kube_apiserver']}, kustomize {machine['kustomize']}. One run per row; "
        "each app is a GitRepository (its own repository) and a Kustomization of "
        f"{OBJECTS_PER_APP} objects. CPU and RSS are the controller process (`headwater run "
        "all`: source and kustomize controllers) plus the children it waited for (git, "
        "kustomize); in brackets the peak summed RSS of those children. With a 1m interval, "
        "apps Ready early reconcile again before the last one is: the sync window holds "
        "some periodic reconciles too. The steady interval follows 1.5 intervals to settle; "
        '"full verify" is `HEADWATER_FULL_VERIFY_INTERVAL` (0: every Kustomization '
        "reconcile dry-runs every object, as Flux does). Load average (1 min) "
        f"{machine['load_average_at_start'][0]:g} at start, "
        f"{machine['load_average_at_end'][0]:g} at end.",
        "",
        "| apps | full verify | sync all: wall s | sources Ready s | per app p50 / p90 s "
        "| CPU s | peak RSS MiB | steady interval s | CPU s | core share | reconciles "
        "(sources, kustomizations: full + skipped) | dry-runs, writes of applied kinds "
        "| CPU ms per reconcile |",
        "| ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: "
        "| ---: | ---: |",
    ]
    for scenario in report["scenarios"]:
        sync, steady = scenario["sync_all"], scenario["steady_interval"]
        per_app = sync["per_app_ready_s"]
        sources = "-" if sync["sources_ready_s"] is None else f"{sync['sources_ready_s']:.1f}"
        verified = steady["verifications"]
        lines.append(
            f"| {scenario['apps']} | {scenario['full_verify_interval']} "
            f"| {sync['wall_s']:.1f} | {sources} "
            f"| {per_app['p50']:.1f} / {per_app['p90']:.1f} | {sync['cpu_s']:.1f} "
            f"| {sync['peak_rss_mib']:.0f} ({sync['peak_children_rss_mib']:.0f}) "
            f"| {steady['window_s']:.0f} | {steady['cpu_s']:.1f} "
            f"| {steady['core_share']:.0%} | {steady['source_polls']}, "
            f"{steady['kustomization_passes']:g}: {verified['full']} + {verified['skipped']} "
            f"| {steady['applied_kinds_dry_runs']:,}, {steady['applied_kinds_writes']:,} "
            f"| {steady['cpu_ms_per_reconcile']} |"
        )
    lines += [
        "",
        "API requests by verb, as kube-apiserver counted them (all clients), and git requests:",
        "",
        "| apps | full verify | phase | API requests | git requests |",
        "| ---: | ---: | --- | --- | --- |",
    ]
    for scenario in report["scenarios"]:
        for label, key in (("sync all", "sync_all"), ("steady interval", "steady_interval")):
            phase = scenario[key]
            git = phase["git_requests"]
            git_text = f"{git['total']:,}: " + ", ".join(
                f"{name} {n:,}" for name, n in git["by_command"].items()
            )
            lines.append(
                f"| {scenario['apps']} | {scenario['full_verify_interval']} | {label} "
                f"| {request_verbs_text(phase['api_requests'])} | {git_text} |"
            )
    lines.append("")
    return "\n".join(lines)


def main(argv: Sequence[str] | None = None) -> int:
    parser = common.argument_parser("bench.many_apps", __doc__, "5 apps, a 20s interval")
    parser.add_argument(
        "--counts",
        type=common.whole_numbers("app counts", "100,500", 1, 2000),
        default=None,
        help="app counts, e.g. 100,500",
    )
    parser.add_argument("--interval", type=int, default=None, help="spec.interval in seconds")
    parser.add_argument(
        "--full-verify-intervals",
        default=",".join(DEFAULT_FULL_VERIFY),
        help="HEADWATER_FULL_VERIFY_INTERVAL values to run each count with, e.g. 0,1h",
    )
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
    full_verify = [value.strip() for value in args.full_verify_intervals.split(",") if value]
    for value in full_verify:
        try:
            parse_duration(value, field="--full-verify-intervals")
        except DurationError as exc:
            parser.error(str(exc))
    report = run_benchmark(
        counts, quick=args.quick, options=options, full_verify_intervals=full_verify
    )
    common.publish_report(args.out, REPORT_NAME, report, render_table(report))
    return 0


if __name__ == "__main__":
    sys.exit(main())
