"""headwater against the real Flux controllers, side by side, in alternating runs.

Each run starts one fresh control plane for one system (Flux's CRDs and headwater's
share names), the system's controllers out of the cluster (`bench.systems`: headwater
as ``config/`` lays it out, one process each for source, kustomize and notification;
Flux's kustomize-, source- and notification-controller built from their Go modules),
both with ``--concurrent 4`` and every feature on (health waits, events to the
notification controller, headwater's drift watches), a real git server on loopback, and
measures, the runs alternating headwater, flux, headwater, flux, ...:

- idle: RSS of the source and kustomize processes (children included) once quiet;
- a first apply of 1,000 ConfigMaps + 20 Deployments (``wait: false``): CPU of source
  and kustomize (own plus waited-for children), their summed peak RSS plus the peak
  of their children; then a commit changing 1 % and removing 10 % (prune on): CPU;
- a first apply of 5,000 mixed objects (`bench.kustomize_apply.generate`): the same;
- 100 and 500 small apps (`bench.many_apps`: each its own repository, GitRepository
  and Kustomization, four objects) to all Ready: wall, CPU, CPU per app, peak RSS;
- idle with 100 apps at a 1m interval, for a few minutes: CPU and the API writes the
  controllers made (kube-apiserver's ``apiserver_request_total``, writes on the kinds
  the controllers touch: their own objects and status, what they apply, Events).

Each metric is reported as headwater / Flux: the median of the pairwise ratios (run i of
one system against run i of the other) with their min-max, beside each side's median
(min-max). In the first headwater run, an extra 1,000-object first apply is profiled
with py-spy (the kustomize process), and the top frames go into the report.

Writes ``vs-flux.json`` and ``vs-flux.md`` to ``--out`` (default ``bench/reports``).
The Flux binaries are built first if the cache lacks them (``python -m
bench.flux_peer build``; about 10 minutes of CPU cold).

    .venv/bin/python -m bench.vs_flux            # 3 runs each, about an hour here
    .venv/bin/python -m bench.vs_flux --quick    # 1 run each, tiny sizes
"""

from __future__ import annotations

import collections
import contextlib
import json
import math
import os
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from bench import common, flux_peer, kustomize_apply, many_apps, systems
from bench.harness import (
    ControlPlane,
    ProcessesProbe,
    headwater_revision,
    keep_logs,
    log_errors,
    tool_versions,
    write_git_repo,
)
from devcluster.gitserver import GitHttpServer

REPORT_NAME = "vs-flux"
CONCURRENT = 4
MIX = {"ConfigMap": 1000, "Deployment": 20}
QUICK_MIX = {"ConfigMap": 50, "Deployment": 2}
DEFAULT_BIG = 5000
QUICK_BIG = 0
DEFAULT_APPS = (100, 500)
QUICK_APPS = (5,)
IDLE_APPS = 100
QUICK_IDLE_APPS = 5
DEFAULT_IDLE_S = 180
QUICK_IDLE_S = 20
APPS_INTERVAL = "1m"
WRITE_VERBS = ("POST", "PUT", "PATCH", "DELETE", "DELETECOLLECTION", "APPLY")
# The kinds either system writes on its own: its objects (and their status), what the
# apps apply, Events. Leases, Nodes and Pods are the cluster's (kwok, the scheduler).
CONTROLLER_RESOURCES = (
    "gitrepositories",
    "kustomizations",
    "configmaps",
    "secrets",
    "services",
    "deployments",
    "namespaces",
    "events",
)
PROFILE_RATE = 50  # py-spy samples per second
PROFILE_TOP = 15


# -- pure parts: figures, ratios, the profile summary ---------------------------------------


def writes(by_resource: Mapping[str, int], resources: Sequence[str] = CONTROLLER_RESOURCES) -> int:
    """API writes in a `summarize_requests` ``by_resource`` map (``"PATCH kustomizations/status"``),
    on `resources` (subresources included), dry-runs left out."""
    total = 0
    for label, count in by_resource.items():
        verb, _, what = label.partition(" ")
        if verb not in WRITE_VERBS or what.startswith("(dry-run)"):
            continue
        if what.split("/", 1)[0] in resources:
            total += count
    return total


def ratio_stats(ours: Sequence[float], theirs: Sequence[float]) -> dict[str, Any] | None:
    """headwater / Flux for paired runs: the median of the pairwise ratios and their range.

    Pairs whose Flux figure is 0 have no ratio; None when no pair has one.
    """
    ratios = [a / b for a, b in zip(ours, theirs, strict=False) if b]
    if not ratios:
        return None
    return {
        "median": round(statistics.median(ratios), 3),
        "min": round(min(ratios), 3),
        "max": round(max(ratios), 3),
        "pairs": len(ratios),
    }


def side_stats(values: Sequence[float]) -> dict[str, float] | None:
    return common.summarize(values) if values else None


def summarize_profile(raw: str, top: int = PROFILE_TOP) -> dict[str, Any]:
    """py-spy's raw (collapsed) output: ``frame;frame;... count`` per line, root first.

    Returns the samples, the leaf frames with most samples (own time) and the frames
    on most samples' stacks (inclusive), each with its share of all samples.
    """
    own: collections.Counter[str] = collections.Counter()
    inclusive: collections.Counter[str] = collections.Counter()
    total = 0
    for line in raw.splitlines():
        stack, _, count_text = line.rpartition(" ")
        if not stack or not count_text.isdigit():
            continue
        count = int(count_text)
        frames = [f for f in stack.split(";") if f]
        if not frames:
            continue
        total += count
        own[_frame(frames[-1])] += count
        for frame in {_frame(f) for f in frames}:
            if not _plumbing(frame):
                inclusive[frame] += count

    def ranked(counter: collections.Counter[str]) -> list[dict[str, Any]]:
        return [
            {"frame": frame, "samples": n, "share": round(n / total, 3)}
            for frame, n in sorted(counter.items(), key=lambda kv: (-kv[1], kv[0]))[:top]
        ]

    return {"samples": total, "own": ranked(own), "inclusive": ranked(inclusive)}


# Frames on nearly every stack (thread and event-loop entry points): no news inclusively.
PLUMBING = (
    "(threading.py)",
    "(asyncio/base_events.py)",
    "(asyncio/events.py)",
    "(futures/thread.py)",
    "(runpy.py)",
    "(<frozen runpy>)",
    "(asyncio/runners.py)",
)
# headwater's own entry points (the process's main, its runner's loop).
ENTRY_POINTS = frozenset(
    {"main (controllers/cli.py)", "run (runtime/runner.py)", "_run_command (runtime/runner.py)"}
)


def _plumbing(frame: str) -> bool:
    return frame.startswith("<module>") or frame.endswith(PLUMBING) or frame in ENTRY_POINTS


def _frame(text: str) -> str:
    """``function (path/to/module.py:123)`` as ``function (module.py)``: lines merged."""
    name, _, where = text.partition(" (")
    path = where.rstrip(")").rsplit(":", 1)[0]
    parts = Path(path).parts
    short = "/".join(parts[-2:]) if len(parts) > 1 else path
    return f"{name} ({short})" if where else name


# -- the metrics -----------------------------------------------------------------------------


@dataclass(frozen=True)
class Metric:
    key: str
    label: str
    unit: str
    digits: int
    get: Callable[[Mapping[str, Any]], float | None]


def _path(*keys: str) -> Callable[[Mapping[str, Any]], float | None]:
    def get(run: Mapping[str, Any]) -> float | None:
        value: Any = run
        for key in keys:
            if not isinstance(value, Mapping) or key not in value:
                return None
            value = value[key]
        return None if value is None else float(value)

    return get


def _peak(step: str) -> Callable[[Mapping[str, Any]], float | None]:
    def get(run: Mapping[str, Any]) -> float | None:
        sample = run.get(step)
        if not sample:
            return None
        return float(sample["peak_rss_mib"]) + float(sample["peak_children_rss_mib"])

    return get


def _per_app(count: int) -> Callable[[Mapping[str, Any]], float | None]:
    def get(run: Mapping[str, Any]) -> float | None:
        sync = (run.get("apps") or {}).get(str(count))
        return None if not sync else 1000 * float(sync["cpu_s"]) / count

    return get


def metrics(apps: Sequence[int], mix_label: str, big: int) -> list[Metric]:
    found = [
        Metric(
            "idle_rss",
            "idle RSS, source + kustomize (children included)",
            "MiB",
            0,
            _path("idle", "rss_total_mib"),
        ),
        Metric(
            "mix_cpu",
            f"CPU, first apply of {mix_label}",
            "s",
            2,
            _path("mix", "first_apply", "cpu_s"),
        ),
        Metric(
            "mix_wall",
            f"wall, first apply of {mix_label}",
            "s",
            1,
            _path("mix", "first_apply", "wall_s"),
        ),
        Metric(
            "mix_peak",
            "peak RSS during that apply (children included)",
            "MiB",
            0,
            _peak("mix_first"),
        ),
        Metric(
            "change_cpu",
            "CPU, a commit changing 1 % and pruning 10 %",
            "s",
            2,
            _path("mix", "change", "cpu_s"),
        ),
    ]
    if big:
        found += [
            Metric(
                "big_cpu",
                f"CPU, first apply of {big:,} objects",
                "s",
                1,
                _path("big", "first_apply", "cpu_s"),
            ),
            Metric(
                "big_wall",
                f"wall, first apply of {big:,} objects",
                "s",
                0,
                _path("big", "first_apply", "wall_s"),
            ),
            Metric(
                "big_peak",
                "peak RSS during that apply (children included)",
                "MiB",
                0,
                _peak("big_first"),
            ),
        ]
    for count in apps:
        key = str(count)
        found += [
            Metric(
                f"apps{count}_wall",
                f"{count} apps to all Ready: wall",
                "s",
                1,
                _path("apps", key, "wall_s"),
            ),
            Metric(
                f"apps{count}_cpu",
                f"{count} apps to all Ready: CPU",
                "s",
                1,
                _path("apps", key, "cpu_s"),
            ),
            Metric(f"apps{count}_per_app", f"{count} apps: CPU per app", "ms", 0, _per_app(count)),
            Metric(
                f"apps{count}_peak",
                f"{count} apps: peak RSS (children included)",
                "MiB",
                0,
                _peak(f"apps{count}_sync"),
            ),
        ]
    found += [
        Metric(
            "idle_apps_cpu",
            "idle with apps at a 1m interval: CPU",
            "s",
            2,
            _path("idle_apps", "cpu_s"),
        ),
        Metric(
            "idle_apps_writes",
            "idle with apps at a 1m interval: API writes",
            "",
            0,
            _path("idle_apps", "writes"),
        ),
    ]
    return found  # fmt: skip


def compare(
    runs: Mapping[str, Sequence[Mapping[str, Any]]], table: Sequence[Metric]
) -> list[dict[str, Any]]:
    """Each metric's values per system (in run order), their summaries and the ratio."""
    rows = []
    for metric in table:
        values = {
            system: [v for v in (metric.get(run) for run in runs.get(system, [])) if v is not None]
            for system in systems.SYSTEMS
        }
        rows.append(
            {
                "key": metric.key,
                "label": metric.label,
                "unit": metric.unit,
                "digits": metric.digits,
                "headwater": side_stats(values["headwater"]),
                "flux": side_stats(values["flux"]),
                "ratio": ratio_stats(values["headwater"], values["flux"]),
                "values": values,
            }
        )
    return rows


# -- one run ----------------------------------------------------------------------------------


@dataclass(frozen=True)
class Plan:
    runs: int
    mix: Mapping[str, int]
    big: int
    apps: tuple[int, ...]
    idle_apps: int
    idle_s: int
    seed: int
    log: Callable[[str], None]
    profile: bool = True
    which: tuple[str, ...] = systems.SYSTEMS  # the systems to run
    keep_logs: Path | None = None
    log_level: str = "info"
    # The first `heavy_runs` runs also do the big apply and the app counts above
    # `idle_apps` (minutes each on a loaded 2-core machine); None: every run.
    heavy_runs: int | None = None
    # Each system's runs go under `<prefix>-hw` / `<prefix>-flux` (default: a temp dir).
    work_prefix: Path | None = None

    @property
    def mix_label(self) -> str:
        return " + ".join(f"{n:,} {kind}s" for kind, n in self.mix.items())

    @property
    def nodes(self) -> int:
        pods = max([*self.apps, self.idle_apps]) + self.mix.get("Deployment", 0) + self.big // 30
        return max(3, math.ceil(pods / many_apps.PODS_PER_NODE) + 1)


def _arena(plan: Plan, name: str) -> kustomize_apply.Arena:
    before = kustomize_apply.generate_mix(plan.mix, name, plan.seed)
    return kustomize_apply.Arena(name, before, kustomize_apply.change(before, plan.seed))


def _big_arena(plan: Plan, name: str) -> kustomize_apply.Arena:
    before = kustomize_apply.generate(plan.big, name, plan.seed)
    return kustomize_apply.Arena(name, before, kustomize_apply.change(before, plan.seed))


@contextlib.contextmanager
def py_spy(pid: int, output: Path, rate: int = PROFILE_RATE) -> Iterator[None]:
    """Record `pid` with py-spy (not pausing it) until the block ends."""
    binary = shutil.which("py-spy") or str(Path(sys.executable).parent / "py-spy")
    process = subprocess.Popen(
        [binary, "record", "--pid", str(pid), "--rate", str(rate), "--nonblocking", "--gil",
         "--format", "raw", "--output", str(output)],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
    )  # fmt: skip
    time.sleep(1.0)  # attached before the step starts
    try:
        yield
    finally:
        process.send_signal(signal.SIGINT)
        try:
            _, err = process.communicate(timeout=60)
        except subprocess.TimeoutExpired:
            process.kill()
            _, err = process.communicate()
        if not output.exists():
            raise RuntimeError(f"py-spy wrote no profile: {err.decode(errors='replace')[-1000:]}")


def _apps_documents(
    plan: Plan, count: int, namespace: str, git: GitHttpServer, tag: str
) -> tuple[list[dict[str, Any]], dict[str, str]]:
    root = git.project_root
    documents, revisions = [], {}
    for index in range(count):
        name = f"{tag}-app-{index:04d}"
        [commit] = write_git_repo(root, name, [("app", many_apps.app_tree(index, plan.seed))])
        documents += many_apps.flux_objects(index, namespace, git.url(name), APPS_INTERVAL)
        revisions[f"app-{index:04d}"] = f"main@sha1:{commit}"
    return documents, revisions


def _sync_apps(
    cp: ControlPlane, probe: ProcessesProbe, git: GitHttpServer, plan: Plan, count: int, tag: str
) -> dict[str, Any]:
    namespace = f"apps-{tag}"
    cp.create_namespace(namespace)
    documents, revisions = _apps_documents(plan, count, namespace, git, tag)
    probe.settle(cp.activity(many_apps.APPLIED_RESOURCES))
    return many_apps.measure_sync(cp, probe, git, namespace, documents, revisions)


def run_once(system: str, index: int, plan: Plan, workdir: Path) -> dict[str, Any]:
    """One system on its own fresh control plane: every step of the plan, in order."""
    log = plan.log
    project_root = workdir / "git"
    project_root.mkdir(parents=True)
    controllers_dir = workdir / "controllers"
    result: dict[str, Any] = {"system": system, "run": index, "started": common.utc_now()}
    result["load_average_at_start"] = common.load_average()
    try:
        with (
            ControlPlane(
                workdir / "cluster",
                nodes=plan.nodes,
                crd_dirs=systems.crd_dirs(system),
                namespace=systems.namespace(system),
            ) as cp,
            GitHttpServer(project_root) as git,
        ):
            result["versions"] = tool_versions(cp)
            cp.create_namespace(kustomize_apply.FLUX_NAMESPACE)
            with systems.start_system(
                system, cp.kubeconfig, controllers_dir, concurrent=CONCURRENT,
                log_level=plan.log_level,
            ) as running:  # fmt: skip
                probe = running.probe()
                probe.settle(window=3.0)
                result["idle"] = {
                    "rss_mib": probe.rss_mib(),
                    "children_rss_mib": probe.children_rss_mib(),
                    "rss_total_mib": round(probe.rss_mib() + probe.children_rss_mib(), 1),
                    "by_role": {role: running.probe([role]).rss_mib() for role in systems.ROLES},
                }
                idle_mib = result["idle"]["rss_total_mib"]
                log(f"{system} run {index + 1}: idle {idle_mib} MiB; {plan.mix_label}")
                mix = kustomize_apply.run_controller_cycle(
                    cp, probe, git, project_root, _arena(plan, f"mix{index}")
                )
                result["mix"] = mix
                result["mix_first"] = mix["first_apply"]
                if plan.profile and system == "headwater" and index == 0:
                    log("headwater: a profiled first apply (py-spy on the kustomize process)")
                    raw = workdir / "kustomize.pyspy.txt"
                    with py_spy(running.pids["kustomize"], raw):
                        profiled = kustomize_apply.run_controller_cycle(
                            cp, probe, git, project_root, _arena(plan, "profiled"), first_only=True
                        )
                    result["profile"] = {
                        "step": "first apply (profiled, not measured)",
                        "wall_s": profiled["first_apply"]["wall_s"],
                        "rate_hz": PROFILE_RATE,
                        **summarize_profile(raw.read_text(errors="replace")),
                    }
                heavy = plan.heavy_runs is None or index < plan.heavy_runs
                if plan.big and heavy:
                    log(f"{system} run {index + 1}: {plan.big:,} objects")
                    big = kustomize_apply.run_controller_cycle(
                        cp, probe, git, project_root, _big_arena(plan, f"big{index}"),
                        first_only=True,
                    )  # fmt: skip
                    result["big"] = big
                    result["big_first"] = big["first_apply"]
                result["apps"] = {}
                idle_done = False
                counts = {c for c in plan.apps if heavy or c <= plan.idle_apps}
                for count in sorted({*counts, plan.idle_apps} - {0}):
                    log(f"{system} run {index + 1}: {count} apps")
                    tag = f"n{count}"
                    sync = _sync_apps(cp, probe, git, plan, count, tag)
                    if count in plan.apps:
                        result["apps"][str(count)] = sync
                        result[f"apps{count}_sync"] = sync
                    if count == plan.idle_apps and not idle_done:
                        log(f"{system} run {index + 1}: idle with {count} apps for {plan.idle_s}s")
                        steady = many_apps.measure_steady(
                            cp, probe, git, running.kustomize_metrics_url, plan.idle_s
                        )
                        steady["writes"] = writes(steady["api_requests"]["by_resource"])
                        steady["apps"] = count
                        result["idle_apps"] = steady
                        idle_done = True
                    cp.delete_namespaces([f"apps-{tag}"], timeout=600)
                result["log_errors"] = log_errors(running.logs())
    finally:
        keep_logs(plan.keep_logs, controllers_dir, f"{system}-{index}")
    result["load_average_at_end"] = common.load_average()
    return result


def run_benchmark(
    plan: Plan,
    *,
    quick: bool,
    reuse: Mapping[str, Sequence[Mapping[str, Any]]] | None = None,
    runs_file: Path | None = None,
) -> dict[str, Any]:
    """Alternate the systems in `plan.which`; a system not run takes its runs from
    `reuse` (an earlier report's ``runs``). Each finished run is saved to `runs_file`."""
    started = time.perf_counter()
    built = flux_peer.build_all() if "flux" in plan.which else {}
    machine = {**common.machine_info(), "load_average_at_start": common.load_average()}
    runs: dict[str, list[dict[str, Any]]] = {
        system: [] if system in plan.which else [dict(r) for r in (reuse or {}).get(system, [])]
        for system in systems.SYSTEMS
    }
    for index in range(plan.runs):
        for system in plan.which:
            plan.log(f"run {index + 1}/{plan.runs}: {system}")
            root = None
            if plan.work_prefix is not None:
                root = Path(f"{plan.work_prefix}-{'hw' if system == 'headwater' else 'flux'}")
                root.mkdir(parents=True, exist_ok=True)
            with tempfile.TemporaryDirectory(prefix=f"run{index}-", dir=root) as tmp:
                run = run_once(system, index, plan, Path(tmp))
            if system == "headwater":
                run["headwater_version"] = headwater_revision()
            runs[system].append(run)
            if runs_file is not None:
                runs_file.write_text(json.dumps({"runs": runs}, indent=1) + "\n")
    versions: dict[str, Any] = {}
    for system_runs in runs.values():
        for run in system_runs:
            versions = run.get("versions") or versions
    table = metrics(plan.apps, plan.mix_label, plan.big)
    return {
        **common.report_head(REPORT_NAME, quick=quick, seed=plan.seed),
        "headwater_version": headwater_revision(),
        "flux_version": {
            name: {"module": c.module, "version": c.version, "replaces": dict(c.replaces)}
            for name, c in flux_peer.CONTROLLERS.items()
        },
        "flux_built_in_this_run": {name: r.built for name, r in built.items()},
        "systems_run": list(plan.which),
        "plan": {
            "runs": plan.runs,
            "mix": dict(plan.mix),
            "big": plan.big,
            "apps": list(plan.apps),
            "idle_apps": plan.idle_apps,
            "idle_s": plan.idle_s,
            "concurrent": CONCURRENT,
            "nodes": plan.nodes,
            "heavy_runs": plan.heavy_runs,
        },
        "machine": {**machine, **versions, "load_average_at_end": common.load_average()},
        "comparison": compare(runs, table),
        "runs": runs,
        "duration_s": round(time.perf_counter() - started, 1),
    }


# -- the report -----------------------------------------------------------------------------


def _stat_text(stat: Mapping[str, float] | None, digits: int) -> str:
    if stat is None:
        return "-"
    return common.stat_range(stat, digits=digits)


def ratio_text(ratio: Mapping[str, Any] | None) -> str:
    if ratio is None:
        return "-"
    pairs = ratio["pairs"]
    return (
        f"**{ratio['median']:.2f}** ({ratio['min']:.2f}-{ratio['max']:.2f}, "
        f"{pairs} pair{'s' if pairs != 1 else ''})"
    )


def measured_at(runs: Mapping[str, Sequence[Mapping[str, Any]]], default: Mapping[str, Any]) -> str:
    """The commit(s) headwater's runs were measured at (the report's own if they say none)."""
    seen: list[str] = []
    for run in runs.get("headwater", []):
        version = run.get("headwater_version") or default
        text = str(version["commit"])[:12] + (
            " with local changes" if version["controllers_modified"] else ""
        )
        if text not in seen:
            seen.append(text)
    return ", ".join(seen) or "-"


def render_table(report: Mapping[str, Any]) -> str:
    machine, plan = report["machine"], report["plan"]
    version = report["headwater_version"]
    flux = ", ".join(f"{name} {v['version']}" for name, v in report["flux_version"].items())
    load_points = [
        run["load_average_at_start"][0]
        for system_runs in report["runs"].values()
        for run in system_runs
    ]
    lines = [
        f"# headwater vs Flux, side by side ({report['created']})",
        "",
        f"headwater measured at commit {measured_at(report['runs'], version)}; Flux: {flux} "
        f"(built from their Go modules). {machine['cores']} cores ({machine['platform']}), "
        f"Python {machine['python']}, kube-apiserver {machine.get('kube_apiserver', '?')}. "
        f"{plan['runs']} run(s) per system, alternating, each on a fresh control plane; "
        f"`--concurrent {plan['concurrent']}` on both. Load average (1 min) at the start of "
        f"the runs: {min(load_points):g}-{max(load_points):g} (the machine is shared: wall "
        "times are inflated, CPU seconds less so).",
        "",
        "Ratio = headwater / Flux, the median of the pairwise ratios (run i against run i) "
        "with their min-max; below 1 headwater is ahead. Each side: median (min-max).",
        "",
        "| metric | headwater | Flux | ratio |",
        "| --- | ---: | ---: | ---: |",
    ]
    for row in report["comparison"]:
        unit = f", {row['unit']}" if row["unit"] else ""
        lines.append(
            f"| {row['label']}{unit} | {_stat_text(row['headwater'], row['digits'])} "
            f"| {_stat_text(row['flux'], row['digits'])} | {ratio_text(row['ratio'])} |"
        )
    profile = next(
        (run["profile"] for run in report["runs"].get("headwater", []) if "profile" in run), None
    )
    if profile:
        wall = f" over {profile['wall_s']:.1f} s" if profile.get("wall_s") else ""
        lines += [
            "",
            f"## Profile: headwater's kustomize process, a first apply of {plan_mix(plan)}",
            "",
            f"py-spy {PROFILE_RATE} Hz (`--gil`: the thread running Python; time in C "
            "without the GIL, such as kustomize's subprocess wait or SSL reads, is not "
            "sampled), not pausing the process; "
            f"{profile['samples']:,} samples{wall} (a separate, unmeasured apply). "
            "Own = the frame was running; inclusive = on the stack (thread and "
            "event-loop entry points left out).",
            "",
            "| own share | frame | | inclusive share | frame |",
            "| ---: | --- | --- | ---: | --- |",
        ]
        for own, inc in zip(profile["own"], profile["inclusive"], strict=False):
            lines.append(
                f"| {own['share']:.1%} | `{own['frame']}` | "
                f"| {inc['share']:.1%} | `{inc['frame']}` |"
            )
    lines.append("")
    return "\n".join(lines)


def plan_mix(plan: Mapping[str, Any]) -> str:
    return " + ".join(f"{n:,} {kind}s" for kind, n in plan["mix"].items())


def main(argv: Sequence[str] | None = None) -> int:
    parser = common.argument_parser(
        "bench.vs_flux", __doc__, "1 run each: 52 objects, 5 apps, a 20s idle window"
    )
    parser.add_argument("--runs", type=int, default=None, help="runs per system (default 3)")
    parser.add_argument(
        "--apps", type=common.whole_numbers("app counts", "100,500", 1, 2000), default=None
    )
    parser.add_argument(
        "--big", type=int, default=None, help="objects of the big first apply (0: none)"
    )
    parser.add_argument("--idle", type=int, default=None, help="idle window with apps, seconds")
    parser.add_argument(
        "--heavy-runs",
        type=int,
        default=None,
        help="only the first N runs do the big apply and the larger app counts",
    )
    parser.add_argument(
        "--idle-apps", type=int, default=None, help="apps in the idle window (0: no idle window)"
    )
    parser.add_argument("--no-profile", action="store_true", help="skip the py-spy profile")
    parser.add_argument(
        "--systems",
        default=",".join(systems.SYSTEMS),
        help="which systems to run (comma-separated, or none: only render --reuse); the "
        "others' runs come from --reuse",
    )
    parser.add_argument(
        "--reuse", type=Path, default=None, help="an earlier vs-flux.json (or runs file)"
    )
    parser.add_argument("--runs-file", type=Path, default=None, help="save each run here")
    parser.add_argument(
        "--profile-raw", type=Path, default=None, help="py-spy raw output of an earlier run"
    )
    parser.add_argument("--keep-logs", type=Path, default=None, help="copy all logs here")
    parser.add_argument(
        "--work-prefix", type=Path, default=None, help="runs go under PREFIX-hw and PREFIX-flux"
    )
    args = parser.parse_args(argv)  # fmt: skip
    quick = args.quick
    apps = args.apps or (QUICK_APPS if quick else DEFAULT_APPS)
    plan = Plan(
        runs=args.runs or (1 if quick else 3),
        mix=QUICK_MIX if quick else MIX,
        big=args.big if args.big is not None else (QUICK_BIG if quick else DEFAULT_BIG),
        apps=tuple(apps),
        idle_apps=args.idle_apps
        if args.idle_apps is not None
        else (QUICK_IDLE_APPS if quick else IDLE_APPS),
        idle_s=args.idle or (QUICK_IDLE_S if quick else DEFAULT_IDLE_S),
        seed=args.seed,
        log=common.progress,
        profile=not args.no_profile,
        keep_logs=args.keep_logs,
        work_prefix=args.work_prefix,
        heavy_runs=args.heavy_runs,
        which=tuple(part for part in args.systems.split(",") if part and part != "none"),
    )
    if plan.runs < 1:
        parser.error("--runs must be at least 1")
    unknown = set(plan.which) - set(systems.SYSTEMS)
    if unknown or not (plan.which or args.reuse):
        parser.error(f"--systems takes {', '.join(systems.SYSTEMS)}, got {args.systems!r}")
    reuse = json.loads(args.reuse.read_text())["runs"] if args.reuse else None
    report = run_benchmark(plan, quick=quick, reuse=reuse, runs_file=args.runs_file)
    if args.profile_raw is not None:
        # A profile recorded in an earlier (interrupted) run, as py-spy wrote it.
        first = report["runs"]["headwater"][0] if report["runs"]["headwater"] else None
        if first is not None and "profile" not in first:
            first["profile"] = {
                "step": "first apply (profiled, not measured), from an earlier run",
                "wall_s": None,
                "rate_hz": PROFILE_RATE,
                **summarize_profile(args.profile_raw.read_text(errors="replace")),
            }
    common.publish_report(args.out, REPORT_NAME, report, render_table(report))
    return 0


if __name__ == "__main__":
    os.environ.setdefault("PYTHONUNBUFFERED", "1")
    sys.exit(main())
