"""Memory benchmark: the RSS of every headwater process as config/ installs them.

config/ runs one Deployment per controller (`headwater run source`, `kustomize`,
`notification`, `helm`, `image`, each with `--enable-leader-election`) and the
dashboard (`headwater dashboard`). This starts the same six processes, with the same
arguments, out of the cluster against a real control plane (the devcluster), and
measures each one's RSS (``VmRSS``; peaks are ``VmHWM``, reset through
``clear_refs``; children such as kustomize and git sampled every 0.1 s and added):

- imports: a fresh interpreter that has imported what the process imports before
  it connects (the CLI for its command, the controller's handlers), with the module
  count and tracemalloc's biggest allocating packages (no cluster needed);
- started: when the process first answers /readyz (the dashboard: its port);
- idle: once every process has been quiet (under 5 % of a core) for a while, watches up;
- apply: a GitRepository and a Kustomization (``wait: false``, prune on) of N
  ConfigMaps and 20 Deployments, from creating them to Ready and quiet again: the
  peak, the peak of the children, and the RSS after.

Each variant (``--variant LABEL=TREE[,VAR=VALUE...]``: the code tree the processes
run from, as PYTHONPATH, and extra environment such as ``MALLOC_ARENA_MAX=2``) gets
its own processes and its own namespaces on one control plane, one after the other.
Writes ``memory.json`` and ``memory.md`` to ``--out`` (default ``bench/reports``).

    .venv/bin/python -m bench.memory --quick     # 100 ConfigMaps, this checkout only
    .venv/bin/python -m bench.memory --variant before=/tmp/old --variant after=.
"""

from __future__ import annotations

import contextlib
import json
import os
import signal
import socket
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import kubernetes.client
import yaml

from bench import common
from bench.harness import (
    REPO_ROOT,
    TOOLS_BIN,
    ControllerProbe,
    ControlPlane,
    ResourceWatch,
    applied,
    failure_summary,
    has_artifact,
    headwater_revision,
    log_errors,
    tool_versions,
    write_git_repo,
)
from bench.kustomize_apply import git_repository, kustomization
from devcluster.cluster import free_port
from devcluster.gitserver import GitHttpServer

REPORT_NAME = "memory"
CONTROLLERS = ("source", "kustomize", "notification", "helm", "image")
PROCESSES = (*CONTROLLERS, "dashboard")
DEFAULT_OBJECTS = 1000
QUICK_OBJECTS = 100
DEPLOYMENTS = 20
GROUP_SOURCE = ("source.toolkit.fluxcd.io", "v1", "gitrepositories")
GROUP_KUSTOMIZE = ("kustomize.toolkit.fluxcd.io", "v1", "kustomizations")
START_TIMEOUT = 120.0
STEP_TIMEOUT = 900.0
# Idle: every process under this share of a core over the window, a few windows running.
QUIET_SHARE = 0.05
QUIET_WINDOW = 3.0
QUIET_WINDOWS = 3
TOP_PACKAGES = 8

# What a process has imported before it connects: the CLI for its command, then
# (for a controller) its handlers, as `headwater run <controller>` does. With
# `first`, those packages are imported before, one at a time, for their RSS.
_IMPORTS = """
import importlib, json, sys, tracemalloc
def rss():
    for line in open("/proc/self/status"):
        if line.startswith("VmRSS:"):
            return int(line.split()[1])
steps = []
before = rss()
import controllers  # first, as in the CLI: its __init__ may change how others load
steps.append(("controllers", rss() - before))
for name in {first!r}:
    before = rss()
    importlib.import_module(name)
    steps.append((name, rss() - before))
if {trace!r}:
    tracemalloc.start()
before = rss()
from controllers import cli
command = {command!r}
# A tree from before the CLI loaded one area per command builds them all, as it ran.
cli.build_parser(command) if hasattr(cli, "command_word") else cli.build_parser()
if command == "run":
    from controllers.toolkit.runtime import runner
    runner.load_register({controller!r})
else:
    from controllers.dashboard import access, app
steps.append(("the rest", rss() - before))
traced = tracemalloc.get_traced_memory()[0] if {trace!r} else 0
print(json.dumps({{"rss_kib": rss(), "modules": sorted(sys.modules), "steps": steps,
                  "traced": traced}}))
"""
# Packages whose share of the import RSS is reported (each only where the process
# imports it), in this order: a package's share leaves out what came before it.
PACKAGES = (
    "ssl",
    "yaml",
    "urllib3",
    "requests",
    "aiohttp",
    "kubernetes.client",
    "kubernetes.config",
    "kubernetes.dynamic",
    "kopf",
    "prometheus_client",
    "cryptography.x509",
    "git",
    "pathspec",
    "oras.provider",
    "celpy",
    "jinja2",
    "pyhelm3",
)


@dataclass(frozen=True)
class Variant:
    label: str
    tree: Path
    env: Mapping[str, str] = field(default_factory=dict)


def parse_variant(text: str) -> Variant:
    """`LABEL=TREE[,VAR=VALUE...]`."""
    label, sep, rest = text.partition("=")
    if not sep or not label or not rest:
        raise ValueError(f"--variant wants LABEL=TREE[,VAR=VALUE...], got {text!r}")
    tree, *pairs = rest.split(",")
    env: dict[str, str] = {}
    for pair in pairs:
        key, sep, value = pair.partition("=")
        if not sep or not key:
            raise ValueError(f"--variant {label}: {pair!r} is not VAR=VALUE")
        env[key] = value
    path = Path(tree).resolve()
    if not (path / "controllers" / "cli.py").is_file():
        raise ValueError(f"--variant {label}: {path} has no controllers/cli.py")
    return Variant(label, path, env)


def _command(process: str, port: int) -> list[str]:
    """The process's command line, as config/'s Deployment has it (out of the cluster)."""
    if process == "dashboard":
        args = ["dashboard", "--address=127.0.0.1", f"--port={port}"]
        return [sys.executable, "-m", "controllers.cli", *args, "--user-header=X-Forwarded-User"]
    return [sys.executable, "-m", "controllers.cli", "run", process, "--enable-leader-election"]


def _import_run(variant: Variant, process: str, first: Sequence[str], trace: bool) -> Any:
    command = "dashboard" if process == "dashboard" else "run"
    code = _IMPORTS.format(command=command, controller=process, first=list(first), trace=trace)
    done = subprocess.run(
        [sys.executable, "-c", code],
        env={**os.environ, **variant.env, "PYTHONPATH": str(variant.tree)},
        cwd=variant.tree,
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )
    if done.returncode != 0:
        raise RuntimeError(f"imports of {process} failed: {done.stderr[-2000:]}")
    return json.loads(done.stdout.splitlines()[-1])


def measure_imports(variant: Variant) -> dict[str, Any]:
    """Per process: RSS and module count after its imports, and each package's share."""
    found: dict[str, Any] = {}
    for process in PROCESSES:
        plain = _import_run(variant, process, (), trace=False)
        modules = set(plain["modules"])
        present = [p for p in PACKAGES if p in modules]
        shares = _import_run(variant, process, present, trace=False)
        # tracemalloc (slows imports 3x) only when asked: `_import_run(..., trace=True)`.
        found[process] = {
            "rss_mib": round(plain["rss_kib"] / 1024, 1),
            "modules": len(modules),
            "kubernetes_models": sum(m.startswith("kubernetes.client.models.") for m in modules),
            "package_rss_mib": {name: round(kib / 1024, 1) for name, kib in shares["steps"]},
        }
    return found


@dataclass
class Running:
    name: str
    process: subprocess.Popen[bytes]
    ready_url: str | None  # None: ready when `port` accepts connections
    port: int
    log_path: Path

    def probe(self) -> ControllerProbe:
        return ControllerProbe(self.process.pid)


def _ready(running: Running) -> bool:
    if running.ready_url is None:
        with contextlib.suppress(OSError), socket.create_connection(("127.0.0.1", running.port), 1):
            return True
        return False
    with (
        contextlib.suppress(OSError, urllib.error.URLError),
        urllib.request.urlopen(running.ready_url, timeout=2) as response,
    ):
        return bool(response.status == 200)
    return False


@contextlib.contextmanager
def run_processes(
    cp: ControlPlane, variant: Variant, workdir: Path, log_level: str
) -> Iterator[dict[str, Running]]:
    """The six processes of config/, each on its own ports, all stopped (SIGTERM) on exit."""
    workdir.mkdir(parents=True, exist_ok=True)
    shared = {name: free_port() for name in ("storage", "events", "receiver")}
    base = {
        **os.environ,
        **variant.env,
        "PYTHONPATH": str(variant.tree),
        "PATH": f"{TOOLS_BIN}:{os.environ.get('PATH', '/usr/bin:/bin')}",
        "KUBECONFIG": str(cp.kubeconfig),
        "HOME": str(workdir),
        "HEADWATER_NAMESPACE": "headwater-system",
        "HEADWATER_STORAGE_PATH": str(workdir / "artifacts"),
        "HEADWATER_STORAGE_ADDR": f"127.0.0.1:{shared['storage']}",
        "HEADWATER_STORAGE_ADV_ADDR": f"127.0.0.1:{shared['storage']}",
        "HEADWATER_EVENTS_ADDR": f"127.0.0.1:{shared['events']}",
        "HEADWATER_RECEIVER_ADDR": f"127.0.0.1:{shared['receiver']}",
        "HEADWATER_LOG_FORMAT": "json",
        "HEADWATER_LOG_LEVEL": log_level,
    }
    running: dict[str, Running] = {}
    try:
        for name in PROCESSES:
            metrics, health, port = free_port(), free_port(), free_port()
            env = {
                **base,
                "HEADWATER_METRICS_ADDR": f"127.0.0.1:{metrics}",
                "HEADWATER_HEALTH_ADDR": f"127.0.0.1:{health}",
            }
            log_path = workdir / f"{name}.log"
            with log_path.open("wb") as log_file:
                process = subprocess.Popen(
                    _command(name, port),
                    env=env,
                    cwd=workdir,
                    stdout=log_file,
                    stderr=subprocess.STDOUT,
                    start_new_session=True,
                )
            ready = None if name == "dashboard" else f"http://127.0.0.1:{health}/readyz"
            running[name] = Running(name, process, ready, port, log_path)
        deadline = time.monotonic() + START_TIMEOUT
        pending = dict(running)
        while pending:
            for name, item in list(pending.items()):
                if _ready(item):
                    del pending[name]
                elif item.process.poll() is not None or time.monotonic() > deadline:
                    raise RuntimeError(
                        f"{name} did not become ready:\n{item.log_path.read_text()[-3000:]}"
                    )
            time.sleep(0.1)
        yield running
    finally:
        for item in running.values():
            if item.process.poll() is None:
                os.killpg(item.process.pid, signal.SIGTERM)
        for item in running.values():
            try:
                item.process.wait(timeout=30)
            except subprocess.TimeoutExpired:
                os.killpg(item.process.pid, signal.SIGKILL)
                item.process.wait(timeout=10)


def _threads(pid: int) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("Threads:"):
            return int(line.split()[1])
    return 0


def wait_quiet(probes: Mapping[str, ControllerProbe], limit: float = 300.0) -> float:
    """Until every process used under QUIET_SHARE of a core for QUIET_WINDOWS windows."""
    started = time.monotonic()
    last = {name: probe.usage().cpu_s for name, probe in probes.items()}
    quiet = 0
    while quiet < QUIET_WINDOWS and time.monotonic() - started < limit:
        time.sleep(QUIET_WINDOW)
        now = {name: probe.usage().cpu_s for name, probe in probes.items()}
        busy = any(now[name] - last[name] > QUIET_SHARE * QUIET_WINDOW for name in probes)
        quiet = 0 if busy else quiet + 1
        last = now
    return round(time.monotonic() - started, 1)


def objects(namespace: str, configmaps: int) -> dict[str, bytes]:
    """The repository: `configmaps` ConfigMaps and DEPLOYMENTS Deployments, kustomized."""
    docs: list[dict[str, Any]] = [
        {"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": namespace}}
    ]
    for index in range(configmaps):
        docs.append(
            {
                "apiVersion": "v1",
                "kind": "ConfigMap",
                "metadata": {"name": f"config-{index:04d}", "namespace": namespace},
                "data": {"index": str(index), "setting": f"value-{index % 17}" * 4},
            }
        )
    for index in range(DEPLOYMENTS):
        labels = {"app": f"app-{index:02d}"}
        docs.append(
            {
                "apiVersion": "apps/v1",
                "kind": "Deployment",
                "metadata": {"name": f"app-{index:02d}", "namespace": namespace},
                "spec": {
                    "replicas": 1,
                    "selector": {"matchLabels": labels},
                    "template": {
                        "metadata": {"labels": labels},
                        "spec": {"containers": [{"name": "app", "image": "example/app:1"}]},
                    },
                },
            }
        )
    kustomization = {
        "apiVersion": "kustomize.config.k8s.io/v1beta1",
        "kind": "Kustomization",
        "resources": ["objects.yaml"],
    }
    return {
        "deploy/objects.yaml": yaml.safe_dump_all(docs, sort_keys=False).encode(),
        "deploy/kustomization.yaml": yaml.safe_dump(kustomization).encode(),
    }


def _flux_objects(name: str, namespace: str, url: str) -> list[dict[str, Any]]:
    return [git_repository(name, url, namespace), kustomization(name, namespace)]


def _snapshot(probes: Mapping[str, ControllerProbe]) -> dict[str, dict[str, float]]:
    return {
        name: {"rss_mib": probe.rss_mib(), "threads": _threads(probe.pid)}
        for name, probe in probes.items()
    }


def remove_flux_objects(cp: ControlPlane, name: str, namespace: str) -> None:
    """Delete the Kustomization (prune off: its objects go with their namespace) and the
    GitRepository while the controllers run, so their finalizers are done with."""
    custom = kubernetes.client.CustomObjectsApi(cp.api)
    group, version, plural = GROUP_KUSTOMIZE
    custom.patch_namespaced_custom_object(
        group, version, namespace, plural, name, {"spec": {"prune": False}}
    )
    for group, version, plural in (GROUP_KUSTOMIZE, GROUP_SOURCE):
        custom.delete_namespaced_custom_object(group, version, namespace, plural, name)
    deadline = time.monotonic() + STEP_TIMEOUT
    for group, version, plural in (GROUP_KUSTOMIZE, GROUP_SOURCE):
        while True:
            try:
                custom.get_namespaced_custom_object(group, version, namespace, plural, name)
            except kubernetes.client.ApiException as exc:
                if exc.status == 404:
                    break
                raise
            if time.monotonic() > deadline:
                raise TimeoutError(f"{plural} {namespace}/{name} still there")
            time.sleep(0.5)


def run_variant(
    cp: ControlPlane,
    git: GitHttpServer,
    project_root: Path,
    workdir: Path,
    variant: Variant,
    index: int,
    configmaps: int,
    log_level: str,
) -> dict[str, Any]:
    name = f"mem{index}"
    flux_ns, apps_ns = f"flux-mem{index}", f"apps-mem{index}"
    common.progress(f"{variant.label}: imports")
    imports = measure_imports(variant)
    cp.create_namespace(flux_ns)
    [commit] = write_git_repo(project_root, name, [("objects", objects(apps_ns, configmaps))])
    revision = f"main@sha1:{commit}"
    common.progress(f"{variant.label}: starting the processes")
    with run_processes(cp, variant, workdir / f"run-{index}", log_level) as running:
        probes = {item.name: item.probe() for item in running.values()}
        started = _snapshot(probes)
        quiet_s = wait_quiet(probes)
        idle = _snapshot(probes)
        common.progress(f"{variant.label}: idle after {quiet_s}s; applying {configmaps} objects")
        api = cp.api
        with (
            ResourceWatch(api, *GROUP_SOURCE[:2], GROUP_SOURCE[2], flux_ns) as sources,
            ResourceWatch(api, *GROUP_KUSTOMIZE[:2], GROUP_KUSTOMIZE[2], flux_ns) as kss,
        ):
            for probe in probes.values():
                probe.reset_peak()
                probe.start_sampling()
            began = time.monotonic()
            try:
                cp.apply(_flux_objects(name, flux_ns, git.url(name)))
                sources.wait(
                    lambda objs: has_artifact(objs.get(name), revision),
                    STEP_TIMEOUT,
                    f"GitRepository {name} Ready at {revision}",
                )
                kss.wait(
                    lambda objs: applied(objs.get(name), revision),
                    STEP_TIMEOUT,
                    f"Kustomization {name} Ready ({failure_summary(kss.objects())})",
                )
                ready_s = round(time.monotonic() - began, 1)
                settle_s = wait_quiet(probes)
            finally:
                children = {n: probe.stop_sampling() for n, probe in probes.items()}
        after = _snapshot(probes)
        peaks = {n: probe.peak_rss_mib() for n, probe in probes.items()}
        resettable = all(probe.hwm_resettable for probe in probes.values())
        errors = {
            n: log_errors(item.log_path.read_text(errors="replace")) for n, item in running.items()
        }
        common.progress(f"{variant.label}: cleaning up")
        remove_flux_objects(cp, name, flux_ns)

    # The namespaces go without waiting: nothing of this variant is left to finalize.
    for namespace in (apps_ns, flux_ns):
        cp.kubectl("delete", "namespace", namespace, "--wait=false")
    per_process = {
        n: {
            "imports_rss_mib": imports[n]["rss_mib"],
            "modules": imports[n]["modules"],
            "started_rss_mib": started[n]["rss_mib"],
            "idle_rss_mib": idle[n]["rss_mib"],
            "idle_threads": idle[n]["threads"],
            "apply_peak_rss_mib": peaks[n],
            "apply_peak_children_rss_mib": children[n],
            "after_apply_rss_mib": after[n]["rss_mib"],
            "after_apply_threads": after[n]["threads"],
            "kubernetes_models": imports[n]["kubernetes_models"],
            "import_package_rss_mib": imports[n]["package_rss_mib"],
            "log_errors": errors[n],
        }
        for n in PROCESSES
    }
    return {
        "label": variant.label,
        "tree": str(variant.tree),
        "env": dict(variant.env),
        "configmaps": configmaps,
        "deployments": DEPLOYMENTS,
        "idle_wait_s": quiet_s,
        "apply_ready_s": ready_s,
        "apply_settle_s": settle_s,
        "hwm_reset": resettable,
        "processes": per_process,
        "load_average_at_end": common.load_average(),
    }


def run_benchmark(
    variants: Sequence[Variant],
    *,
    configmaps: int,
    quick: bool,
    log_level: str,
    out: Path | None = None,
) -> dict[str, Any]:
    """Every variant in turn; with `out`, the report so far is written after each one."""
    started = time.perf_counter()
    machine = {**common.machine_info(), "load_average_at_start": common.load_average()}
    results: list[dict[str, Any]] = []

    def report() -> dict[str, Any]:
        return {
            **common.report_head(REPORT_NAME, quick=quick, seed=0),
            "controllers_version": headwater_revision(),
            "machine": {**machine, "load_average_at_end": common.load_average()},
            "variants": results,
            "duration_s": round(time.perf_counter() - started, 1),
        }

    with tempfile.TemporaryDirectory(prefix="hw-bench-memory-") as tmp:
        workdir = Path(tmp)
        project_root = workdir / "git"
        project_root.mkdir()
        with ControlPlane(workdir / "cluster", nodes=1) as cp, GitHttpServer(project_root) as git:
            machine.update(tool_versions(cp))
            for index, variant in enumerate(variants):
                results.append(
                    run_variant(
                        cp, git, project_root, workdir, variant, index, configmaps, log_level
                    )
                )
                if out is not None:  # a long run keeps what it measured so far
                    partial = report()
                    common.write_report(out, REPORT_NAME, partial, render_table(partial))
    return report()


# -- the report -----------------------------------------------------------------------------

_COLUMNS = (
    ("imports", "imports_rss_mib"),
    ("started", "started_rss_mib"),
    ("idle", "idle_rss_mib"),
    ("apply peak", "apply_peak_rss_mib"),
    ("+children", "apply_peak_children_rss_mib"),
    ("after apply", "after_apply_rss_mib"),
)


def _sum(processes: Mapping[str, Mapping[str, Any]], names: Sequence[str], key: str) -> float:
    return round(sum(float(processes[n][key]) for n in names), 1)


def render_table(report: Mapping[str, Any]) -> str:
    machine = report["machine"]
    lines = [
        f"# Memory benchmark ({report['created']})",
        "",
        f"{machine['cores']} cores, Python {machine['python']}, kube-apiserver "
        f"{machine.get('kube_apiserver', '?')}, kustomize {machine.get('kustomize', '?')}. "
        f"Load average (1, 5, 15 min) {machine['load_average_at_start']} at start, "
        f"{machine['load_average_at_end']} at end (other work shares the machine; RSS "
        "figures move little with load, times do). Each process as config/ runs it, "
        "out of the cluster: `headwater run <controller> --enable-leader-election`, "
        "`headwater dashboard`. RSS in MiB: *imports* in a fresh interpreter after the "
        "process's imports; *started* at /readyz; *idle* once all are quiet; *apply "
        "peak* is VmHWM while a Kustomization applies the set (children, e.g. kustomize "
        "and git, sampled separately in *+children*); *after apply* once quiet again.",
        "",
    ]
    for variant in report["variants"]:
        processes = variant["processes"]
        env = ", ".join(f"{k}={v}" for k, v in variant["env"].items()) or "no extra environment"
        lines += [
            f"## {variant['label']} ({env})",
            "",
            f"{variant['configmaps']:,} ConfigMaps + {variant['deployments']} Deployments; "
            f"Ready after {variant['apply_ready_s']} s; load at end "
            f"{variant['load_average_at_end']}.",
            "",
            "| process | modules | "
            + " | ".join(c for c, _ in _COLUMNS)
            + " | threads idle/after |",
            "| --- | ---: | " + " | ".join("---:" for _ in _COLUMNS) + " | ---: |",
        ]
        for name in PROCESSES:
            row = processes[name]
            cells = " | ".join(f"{row[key]:.1f}" for _, key in _COLUMNS)
            threads = f"{row['idle_threads']}/{row['after_apply_threads']}"
            lines.append(f"| {name} | {row['modules']} | {cells} | {threads} |")
        for label, names in (("source + kustomize", ("source", "kustomize")), ("all", PROCESSES)):
            cells = " | ".join(f"{_sum(processes, names, key):.1f}" for _, key in _COLUMNS)
            lines.append(f"| **{label}** | | {cells} | |")
        lines += [
            "",
            "Import RSS by package, MiB (imported one at a time in this order before the "
            "process's own modules, so shared dependencies count where first imported; "
            "*models*: the kubernetes client model modules loaded):",
            "",
        ]
        for name in PROCESSES:
            row = processes[name]
            shares = ", ".join(f"{k} {v}" for k, v in row["import_package_rss_mib"].items())
            lines.append(f"- {name}: {shares}; models {row['kubernetes_models']}")
        errors = {n: processes[n]["log_errors"] for n in PROCESSES if processes[n]["log_errors"]}
        if errors:
            lines += ["", f"Log errors: {json.dumps(errors)[:1500]}"]
        lines.append("")
    return "\n".join(lines)


def main(argv: Sequence[str] | None = None) -> int:
    parser = common.argument_parser(
        "bench.memory", __doc__ or "", f"{QUICK_OBJECTS} ConfigMaps instead of {DEFAULT_OBJECTS}"
    )
    parser.add_argument(
        "--variant",
        action="append",
        default=[],
        metavar="LABEL=TREE[,VAR=VALUE...]",
        help="a code tree (and environment) to measure; repeatable (default: this checkout)",
    )
    parser.add_argument("--configmaps", type=int, default=None, help="ConfigMaps in the set")
    parser.add_argument("--log-level", default="info", choices=("debug", "info"))
    args = parser.parse_args(argv)
    try:
        variants = [parse_variant(text) for text in args.variant] or [
            Variant("this checkout", REPO_ROOT)
        ]
    except ValueError as exc:
        parser.error(str(exc))
    configmaps = args.configmaps or (QUICK_OBJECTS if args.quick else DEFAULT_OBJECTS)
    report = run_benchmark(
        variants, configmaps=configmaps, quick=args.quick, log_level=args.log_level, out=args.out
    )
    common.publish_report(args.out, REPORT_NAME, report, render_table(report))
    return 0


if __name__ == "__main__":
    sys.exit(main())
