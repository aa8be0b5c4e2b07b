"""Dashboard overview benchmark: the overview page of 500 Kustomizations, rendered.

Against a control plane started for the benchmark, it creates GitRepositories (one per
ten apps) and Kustomizations, writes each a status as the controller leaves it (Ready,
applied revision, an inventory of four objects, a history entry; a few failed, stalled
or suspended, so every count is shown), starts the dashboard app in this process
(aiohttp on loopback, acting as the kubeconfig's identity, API watches on) and
measures, after one warm-up request:

- the full page: `GET /` over HTTP, from request to the last byte (the API LISTs of
  the five kinds, the access reviews, the Jinja2 render), as a browser loading it;
- the live region: the same `GET /` as htmx sends it after a change notice
  (`HX-Request`), i.e. what a live update costs;
- the render alone: the overview template rendered from rows already read, so the
  API's share and the template's are told apart;
- a filtered page (`?state=Failed`), which reads everything but renders a few rows.

Each is repeated (median, min, max in ms) and the page size reported. Writes
``dashboard.json`` and ``dashboard.md`` to ``--out`` (default ``bench/reports``) and
prints the table. No controller runs: the statuses are written as they would be.

    .venv/bin/python -m bench.dashboard_overview            # 500 Kustomizations
    .venv/bin/python -m bench.dashboard_overview --quick    # 50, three repetitions
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import json
import random
import sys
import tempfile
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import aiohttp
import kubernetes.client
import kubernetes.config
from aiohttp import web

from bench import common
from bench.harness import ControlPlane
from controllers.commands.common import Session
from controllers.dashboard import access, app, state

REPORT_NAME = "dashboard"
DEFAULT_APPS = 500
QUICK_APPS = 50
DEFAULT_REPEAT = 20
QUICK_REPEAT = 3
NAMESPACE = "bench-dashboard"
APPS_PER_REPOSITORY = 10


def _time() -> str:
    return common.utc_now()


def kustomization(index: int, rng: random.Random) -> tuple[dict[str, Any], dict[str, Any]]:
    """A Kustomization and the status the controller would have written for it."""
    name = f"app-{index:04d}"
    repo = f"repo-{index // APPS_PER_REPOSITORY:03d}"
    commit = f"{rng.getrandbits(160):040x}"
    revision = f"main@sha1:{commit}"
    roll = rng.random()
    suspended = roll < 0.02
    obj = {
        "apiVersion": "kustomize.toolkit.fluxcd.io/v1",
        "kind": "Kustomization",
        "metadata": {"name": name, "namespace": NAMESPACE},
        "spec": {
            "interval": "10m",
            "path": f"./apps/{name}",
            "prune": True,
            "sourceRef": {"kind": "GitRepository", "name": repo},
            "suspend": suspended,
            **({"dependsOn": [{"name": f"app-{index - 1:04d}"}]} if index % 7 == 1 else {}),
        },
    }
    if roll < 0.05:
        ready = ("False", "HealthCheckFailed", "Deployment web not ready: timeout")
    elif roll < 0.07:
        ready = ("False", "BuildFailed", "kustomize build failed: no such file")
    else:
        ready = ("True", "ReconciliationSucceeded", f"Applied revision: {revision}")
    now = _time()
    conditions = [
        {
            "type": "Ready",
            "status": ready[0],
            "reason": ready[1],
            "message": ready[2],
            "lastTransitionTime": now,
            "observedGeneration": 1,
        }
    ]
    if ready[1] == "BuildFailed":
        conditions.append(
            {
                "type": "Stalled",
                "status": "True",
                "reason": "BuildFailed",
                "message": ready[2],
                "lastTransitionTime": now,
                "observedGeneration": 1,
            }
        )
    entries = [
        {"id": f"{NAMESPACE}_{name}__ConfigMap", "v": "v1"},
        {"id": f"{NAMESPACE}_{name}__Secret", "v": "v1"},
        {"id": f"{NAMESPACE}_{name}__Service", "v": "v1"},
        {"id": f"{NAMESPACE}_{name}_apps_Deployment", "v": "v1"},
    ]
    status = {
        "observedGeneration": 1,
        "conditions": conditions,
        "lastAppliedRevision": revision,
        "lastAttemptedRevision": revision,
        "inventory": {"entries": entries},
        "history": [
            {
                "digest": f"sha256:{rng.getrandbits(256):064x}",
                "firstReconciled": now,
                "lastReconciled": now,
                "lastReconciledDuration": "1.2s",
                "lastReconciledStatus": "ReconciliationSucceeded",
                "totalReconciliations": 1,
                "metadata": {"revision": revision},
            }
        ],
    }
    return obj, status


def git_repository(index: int) -> tuple[dict[str, Any], dict[str, Any]]:
    name = f"repo-{index:03d}"
    obj = {
        "apiVersion": "source.toolkit.fluxcd.io/v1",
        "kind": "GitRepository",
        "metadata": {"name": name, "namespace": NAMESPACE},
        "spec": {"interval": "1m", "url": f"https://git.example/{name}", "ref": {"branch": "main"}},
    }
    status = {
        "observedGeneration": 1,
        "conditions": [
            {
                "type": "Ready",
                "status": "True",
                "reason": "Succeeded",
                "message": "stored artifact for revision 'main@sha1:...'",
                "lastTransitionTime": _time(),
                "observedGeneration": 1,
            }
        ],
        "artifact": {
            "revision": f"main@sha1:{index:040x}",
            "digest": f"sha256:{index:064x}",
            "path": f"gitrepository/{NAMESPACE}/{name}/{index:040x}.tar.gz",
            "url": f"http://source-controller/gitrepository/{NAMESPACE}/{name}/{index:040x}.tar.gz",
            "lastUpdateTime": _time(),
            "size": 1024,
        },
    }
    return obj, status


def populate(api: kubernetes.client.ApiClient, apps: int, seed: int) -> None:
    rng = random.Random(seed)
    custom = kubernetes.client.CustomObjectsApi(api)
    work: list[tuple[str, str, str, dict[str, Any], dict[str, Any]]] = []
    for index in range((apps + APPS_PER_REPOSITORY - 1) // APPS_PER_REPOSITORY):
        obj, status = git_repository(index)
        work.append(("source.toolkit.fluxcd.io", "v1", "gitrepositories", obj, status))
    for index in range(apps):
        obj, status = kustomization(index, rng)
        work.append(("kustomize.toolkit.fluxcd.io", "v1", "kustomizations", obj, status))

    def create(item: tuple[str, str, str, dict[str, Any], dict[str, Any]]) -> None:
        group, version, plural, obj, status = item
        custom.create_namespaced_custom_object(group, version, NAMESPACE, plural, obj)
        custom.patch_namespaced_custom_object_status(
            group, version, NAMESPACE, plural, obj["metadata"]["name"], {"status": status}
        )

    with concurrent.futures.ThreadPoolExecutor(8) as pool:
        list(pool.map(create, work))


async def measure(kubeconfig: Path, apps: int, repeat: int) -> dict[str, Any]:
    configuration = kubernetes.client.Configuration()
    kubernetes.config.load_kube_config(
        config_file=str(kubeconfig), client_configuration=configuration
    )
    sessions = access.Sessions(configuration, namespace=NAMESPACE, all_namespaces=True)
    application = app.make_app(sessions)
    runner = web.AppRunner(application)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    port = site._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]
    base = f"http://127.0.0.1:{port}"
    results: dict[str, Any] = {}
    try:
        async with aiohttp.ClientSession() as client:

            async def fetch(path: str, headers: dict[str, str]) -> tuple[float, int, str]:
                started = time.perf_counter()
                async with client.get(base + path, headers=headers) as response:
                    body = await response.text()
                    assert response.status == 200, (response.status, body[:500])
                return time.perf_counter() - started, len(body.encode()), body

            _, _, warm = await fetch("/", {})
            shown = warm.count("<tr data-key=")
            assert shown >= apps, f"the overview shows {shown} rows, expected {apps} or more"
            for label, path, headers in (
                ("full_page", "/", {}),
                ("live_region", "/", {"HX-Request": "true"}),
                ("filtered_page", "/?state=Failed", {}),
            ):
                times, size = [], 0
                for _ in range(repeat):
                    elapsed, size, _ = await fetch(path, headers)
                    times.append(elapsed)
                results[label] = {**common.summarize(times), "bytes": size}
            results["rows_shown"] = shown
            results["render_only"] = await asyncio.to_thread(
                render_only, sessions.base(), application, repeat
            )
    finally:
        await runner.cleanup()
    return results


def render_only(session: Session, application: web.Application, repeat: int) -> dict[str, Any]:
    view = state.overview(session, state.Filters())
    env = application[app.TEMPLATES]
    template = env.get_template("overview.html")
    times = []
    for _ in range(repeat):
        started = time.perf_counter()
        template.render(
            fragment=False,
            path="/",
            user=None,
            view=view,
            filters=state.Filters(),
            allowed={},
            key_text=state.key_text,
            read_ms=0,
        )
        times.append(time.perf_counter() - started)
    return dict(common.summarize(times))


def run_benchmark(apps: int, *, repeat: int, seed: int, quick: bool) -> dict[str, Any]:
    started = time.perf_counter()
    with (
        tempfile.TemporaryDirectory(prefix="hw-bench-dashboard-") as tmp,
        ControlPlane(Path(tmp), nodes=1) as plane,
    ):
        plane.create_namespace(NAMESPACE)
        common.progress(f"creating {apps} Kustomizations with their statuses")
        populate(plane.api, apps, seed)
        common.progress("measuring the overview")
        figures = asyncio.run(measure(plane.kubeconfig, apps, repeat))
        apiserver = plane.kubectl("version", "-o", "json")
    return {
        **common.report_head(REPORT_NAME, quick=quick, seed=seed),
        "kustomizations": apps,
        "git_repositories": (apps + APPS_PER_REPOSITORY - 1) // APPS_PER_REPOSITORY,
        "repetitions": repeat,
        "machine": {
            **common.machine_info(),
            "kube_apiserver": json.loads(apiserver)["serverVersion"]["gitVersion"],
            "load_average_at_end": common.load_average(),
        },
        "figures": figures,
        "duration_s": round(time.perf_counter() - started, 1),
    }


def render_table(report: dict[str, Any]) -> str:
    figures = report["figures"]
    lines = [
        f"Dashboard overview of {report['kustomizations']} Kustomizations and "
        f"{report['git_repositories']} GitRepositories "
        f"({report['repetitions']} repetitions; ms, median (min-max)):",
        "",
        "| measurement | time (ms) | page size |",
        "|---|---|---|",
    ]
    for label, title in (
        ("full_page", "full page `GET /` (API reads + render)"),
        ("live_region", "live region (htmx refresh after a change)"),
        ("filtered_page", "filtered `?state=Failed`"),
    ):
        stat = figures[label]
        lines.append(f"| {title} | {common.stat_range(stat, 1000, 0)} | {stat['bytes']:,} B |")
    lines.append(
        f"| template render only | {common.stat_range(figures['render_only'], 1000, 1)} | |"
    )
    machine = report["machine"]
    lines += [
        "",
        f"{figures['rows_shown']} rows shown; {machine['cores']} cores, Python "
        f"{machine['python']}, kube-apiserver {machine['kube_apiserver']}, load average at "
        f"end {machine['load_average_at_end']}.",
        "",
    ]
    return "\n".join(lines)


def main(argv: Sequence[str] | None = None) -> int:
    parser = common.argument_parser(
        "bench.dashboard_overview", __doc__, f"{QUICK_APPS} Kustomizations, three repetitions"
    )
    parser.add_argument("--apps", type=int, default=None, help="how many Kustomizations")
    parser.add_argument("--repeat", type=int, default=None, help="repetitions per measurement")
    args = parser.parse_args(argv)
    apps = args.apps or (QUICK_APPS if args.quick else DEFAULT_APPS)
    repeat = args.repeat or (QUICK_REPEAT if args.quick else DEFAULT_REPEAT)
    if not 1 <= apps <= 5000 or not 1 <= repeat <= 100:
        parser.error("--apps must be in [1, 5000] and --repeat in [1, 100]")
    report = run_benchmark(apps, repeat=repeat, seed=args.seed, quick=args.quick)
    common.publish_report(args.out, REPORT_NAME, report, render_table(report))
    return 0


if __name__ == "__main__":
    sys.exit(main())
