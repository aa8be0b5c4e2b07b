"""Kustomize apply benchmark: one Kustomization of many objects, and kubectl doing the same.

For sets of 1,000 and 5,000 objects (ten Namespaces, then per hundred objects 85
ConfigMaps, 6 Secrets, 6 Services and 3 one-replica Deployments that the fake kwok
nodes run; generated from a seed), against a real control plane started for the
benchmark and the real controllers (``headwater run all`` as a subprocess) syncing from
a real git server on loopback, this measures:

- first apply: from creating the Kustomization (its GitRepository already Ready) to
  Ready=True with that revision;
- no-op reconcile: from setting ``reconcile.fluxcd.io/requestedAt`` to
  ``status.lastHandledReconcileAt`` showing it;
- change: a commit changing 1% of the objects and removing 10% (prune on), from
  requesting the GitRepository's reconcile to the Kustomization Ready on the new revision
  (the source's share of that time is reported too).

Each step reports wall time; CPU seconds of the controller process, its own plus the
children it waited for (kustomize, git), when the step was seen done and once the
process went quiet again (trailing work such as starting watches belongs to the step);
its peak RSS (VmHWM, reset before each step) and the peak summed RSS of its children;
and the API requests made meanwhile, by verb, as kube-apiserver itself counts them
(``apiserver_request_total``, every client: the cluster's own controllers reacting to
new Deployments are in there, for kubectl alike).

The same objects (in their own namespaces, as one file) go through plain ``kubectl
apply --server-side``: first apply, re-apply of the unchanged set, and the change: the
changed set applied, then ``kubectl delete --wait=false`` of the removed objects
(kubectl's ``--prune`` refuses objects created by server-side apply). kubectl's CPU
and peak RSS come from its own rusage; it runs before the controllers start.

Writes ``kustomize-apply.json`` and ``kustomize-apply.md`` to ``--out`` (default
``bench/reports``) and prints the table.

    .venv/bin/python -m bench.kustomize_apply            # full run, about 15 minutes
    .venv/bin/python -m bench.kustomize_apply --quick    # 60 objects, one repetition
"""

from __future__ import annotations

import base64
import contextlib
import dataclasses
import random
import sys
import tempfile
import time
from collections import Counter
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import kubernetes.client
import yaml

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
    push_commit,
    request_diff,
    request_verbs_text,
    run_measured,
    summarize_requests,
    tool_versions,
    write_git_repo,
)
from devcluster.controllers import run_controllers
from devcluster.gitserver import GitHttpServer

REPORT_NAME = "kustomize-apply"
DEFAULT_SIZES = (1000, 5000)
QUICK_SIZES = (60,)
# Repetitions when not given: a few for the smaller sets, one for the big ones (a
# first apply of 5,000 objects takes minutes; the run must stay well under 30).
SMALL_SET = 1000
SMALL_SET_REPEAT = 3
CHANGED_FRACTION = 0.01
REMOVED_FRACTION = 0.10
FLUX_NAMESPACE = "flux-bench"
SET_LABEL = "bench.headwater.io/set"
REQUESTED_AT = "reconcile.fluxcd.io/requestedAt"
GROUP_SOURCE = ("source.toolkit.fluxcd.io", "v1", "gitrepositories")
GROUP_KUSTOMIZE = ("kustomize.toolkit.fluxcd.io", "v1", "kustomizations")
APPLIED_RESOURCES = ("configmaps", "secrets", "services", "deployments", "namespaces")
# Generous bounds so a slow machine measures rather than fails; still bounded.
STEP_TIMEOUT = 900.0
SOURCE_TIMEOUT = 300.0

_TEAMS = (
    "payments",
    "search",
    "identity",
    "platform",
    "data",
    "edge",
    "mobile",
    "billing",
    "ledger",
    "growth",
)
REGISTRY = "registry.example.com"
_LEVELS = ("debug", "info", "warn", "error")
_FLAGS = ("canary", "dark-launch", "fast-path", "new-ui", "batching", "prefetch", "retries")

# -- deterministic objects ------------------------------------------------------------------


@dataclass(frozen=True)
class ObjectSet:
    """A generated set: objects in apply order, and the file each lives in."""

    prefix: str
    objects: tuple[dict[str, Any], ...]
    files: tuple[str, ...]  # per object, the repository path of its file
    # No kustomization.yaml: Flux generates one (and headwater reads the files directly).
    plain: bool = False

    def tree(self) -> dict[str, bytes]:
        """The repository content: one file per group of objects and a kustomization
        (none with `plain`)."""
        grouped: dict[str, list[dict[str, Any]]] = {}
        for obj, path in zip(self.objects, self.files, strict=True):
            grouped.setdefault(path, []).append(obj)
        tree = {
            path: yaml.safe_dump_all(docs, sort_keys=False).encode()
            for path, docs in grouped.items()
        }
        if self.plain:
            return tree
        kustomization = {
            "apiVersion": "kustomize.config.k8s.io/v1beta1",
            "kind": "Kustomization",
            "resources": [path.removeprefix("deploy/") for path in grouped],
        }
        tree["deploy/kustomization.yaml"] = yaml.safe_dump(kustomization, sort_keys=False).encode()
        return tree

    def namespaces(self) -> list[str]:
        return [o["metadata"]["name"] for o in self.objects if o["kind"] == "Namespace"]

    def count_by_kind(self) -> dict[str, int]:
        return dict(sorted(Counter(o["kind"] for o in self.objects).items()))


def namespace_count(size: int) -> int:
    return max(1, min(len(_TEAMS), size // 100))


def _slot_kind(index: int) -> str:
    slot = index % 100
    if slot < 3:
        return "Deployment"
    if slot < 9:
        return "Service"
    if slot < 15:
        return "Secret"
    return "ConfigMap"


def _b64(text: str) -> str:
    return base64.b64encode(text.encode()).decode()


def _workload(rng: random.Random, index: int, namespace: str, team: str, prefix: str) -> Any:
    kind = _slot_kind(index)
    labels = {"app.kubernetes.io/part-of": team, SET_LABEL: prefix}
    block = index - index % 100
    if kind == "Deployment":
        name = f"web-{index:05d}"
        app = {"app": name}
        return {
            "apiVersion": "apps/v1",
            "kind": "Deployment",
            "metadata": {"name": name, "namespace": namespace, "labels": {**labels, **app}},
            "spec": {
                "replicas": 1,
                "selector": {"matchLabels": app},
                "template": {
                    "metadata": {"labels": app},
                    "spec": {
                        "containers": [
                            {
                                "name": "app",
                                "image": f"{REGISTRY}/{team}/web:1.{rng.randint(0, 40)}.0",
                                "ports": [{"containerPort": 8080, "protocol": "TCP"}],
                                "envFrom": [{"configMapRef": {"name": f"cfg-{block + 15:05d}"}}],
                                "resources": {"requests": {"cpu": "10m", "memory": "32Mi"}},
                            }
                        ]
                    },
                },
            },
        }
    if kind == "Service":
        target = f"web-{block + (index % 100 - 3) % 3:05d}"
        return {
            "apiVersion": "v1",
            "kind": "Service",
            "metadata": {"name": f"svc-{index:05d}", "namespace": namespace, "labels": labels},
            "spec": {
                "type": "ClusterIP",
                "selector": {"app": target},
                "ports": [{"name": "http", "port": 80, "targetPort": 8080, "protocol": "TCP"}],
            },
        }
    if kind == "Secret":
        return {
            "apiVersion": "v1",
            "kind": "Secret",
            "metadata": {"name": f"sec-{index:05d}", "namespace": namespace, "labels": labels},
            "type": "Opaque",
            "data": {
                "username": _b64(f"{team}-svc-{index}"),
                "password": _b64(f"{rng.getrandbits(128):032x}"),
                "api-key": _b64(f"{rng.getrandbits(192):048x}"),
            },
        }
    settings = "\n".join(
        [
            "server:",
            f"  port: {rng.choice((8080, 8443, 9000))}",
            f"  workers: {rng.randint(1, 16)}",
            "cache:",
            f"  ttl: {rng.randint(10, 600)}s",
            f"  size: {rng.randint(64, 4096)}",
            "upstreams:",
            *(f"  - http://{rng.choice(_TEAMS)}-{rng.randint(0, 99)}:8080" for _ in range(3)),
        ]
    )
    return {
        "apiVersion": "v1",
        "kind": "ConfigMap",
        "metadata": {"name": f"cfg-{index:05d}", "namespace": namespace, "labels": labels},
        "data": {
            "LOG_LEVEL": rng.choice(_LEVELS),
            "FEATURE_FLAGS": ",".join(sorted(rng.sample(_FLAGS, 3))),
            "TIMEOUT_MS": str(rng.randint(100, 30000)),
            "settings.yaml": settings + "\n",
        },
    }


def generate(size: int, prefix: str, seed: int) -> ObjectSet:
    """`size` objects (Namespaces included) for the set `prefix`; the seed fixes the content.

    Only the namespace names depend on `prefix`, so sets of one size are alike.
    """
    rng = random.Random(f"{seed}:{size}")
    spaces = namespace_count(size)
    objects: list[dict[str, Any]] = []
    files: list[str] = []
    for team in _TEAMS[:spaces]:
        objects.append(
            {
                "apiVersion": "v1",
                "kind": "Namespace",
                "metadata": {"name": f"{prefix}-{team}", "labels": {SET_LABEL: prefix}},
            }
        )
        files.append("deploy/namespaces.yaml")
    for index in range(size - spaces):
        # Ten consecutive objects share a namespace and a file, like one app's manifests.
        team = _TEAMS[(index // 10) % spaces]
        objects.append(_workload(rng, index, f"{prefix}-{team}", team, prefix))
        files.append(f"deploy/{team}/app-{index // 10:04d}.yaml")
    return ObjectSet(prefix, tuple(objects), tuple(files))


def generate_mix(counts: Mapping[str, int], prefix: str, seed: int) -> ObjectSet:
    """One Namespace `<prefix>-apps` and `counts` objects by kind (ConfigMap, Secret,
    Service, Deployment), made as `generate` makes them (same seed, same content)."""
    rng = random.Random(f"{seed}:mix:{sorted(counts.items())}")
    namespace = f"{prefix}-apps"
    objects: list[dict[str, Any]] = [
        {
            "apiVersion": "v1",
            "kind": "Namespace",
            "metadata": {"name": namespace, "labels": {SET_LABEL: prefix}},
        }
    ]
    files = ["deploy/namespaces.yaml"]
    wanted = dict(counts)
    unknown = set(wanted) - {"ConfigMap", "Secret", "Service", "Deployment"}
    if unknown:
        raise ValueError(f"generate_mix: no generator for kinds {sorted(unknown)}")
    index = 0
    while any(wanted.values()):
        kind = _slot_kind(index)
        if wanted.get(kind):
            wanted[kind] -= 1
            objects.append(_workload(rng, index, namespace, _TEAMS[0], prefix))
            files.append(f"deploy/app-{index // 10:04d}.yaml")
        index += 1
    return ObjectSet(prefix, tuple(objects), tuple(files))


@dataclass(frozen=True)
class Change:
    after: ObjectSet
    changed: int
    removed: int


def change(objects: ObjectSet, seed: int) -> Change:
    """Change 1% of the objects and remove 10% (never a Namespace), deterministically."""
    rng = random.Random(f"{seed}:change:{len(objects.objects)}")
    workload = [i for i, o in enumerate(objects.objects) if o["kind"] != "Namespace"]
    size = len(objects.objects)
    picked = rng.sample(
        workload, max(1, round(size * CHANGED_FRACTION)) + max(1, round(size * REMOVED_FRACTION))
    )
    changed_count = max(1, round(size * CHANGED_FRACTION))
    changed, removed = set(picked[:changed_count]), set(picked[changed_count:])
    after: list[dict[str, Any]] = []
    files: list[str] = []
    for index, (obj, path) in enumerate(zip(objects.objects, objects.files, strict=True)):
        if index in removed:
            continue
        if index in changed:
            obj = _changed(obj)
        after.append(obj)
        files.append(path)
    return Change(
        ObjectSet(objects.prefix, tuple(after), tuple(files), objects.plain),
        len(changed),
        len(removed),
    )


def _changed(obj: Mapping[str, Any]) -> dict[str, Any]:
    new: dict[str, Any] = yaml.safe_load(yaml.safe_dump(dict(obj)))
    kind = new["kind"]
    if kind == "ConfigMap":
        new["data"]["LOG_LEVEL"] = "trace"
        new["data"]["TIMEOUT_MS"] = str(int(new["data"]["TIMEOUT_MS"]) + 1)
    elif kind == "Secret":
        new["data"]["password"] = _b64(
            "rotated-" + base64.b64decode(new["data"]["password"]).decode()
        )
    elif kind == "Service":
        new["metadata"].setdefault("annotations", {})["bench.headwater.io/revision"] = "2"
    elif kind == "Deployment":
        container = new["spec"]["template"]["spec"]["containers"][0]
        container["image"] = container["image"].rsplit(":", 1)[0] + ":2.0.0"  # a rollout
    return new


# -- measuring ------------------------------------------------------------------------------


def rendered(workdir: Path, objects: ObjectSet, name: str) -> Path:
    """The set as one multi-document file for kubectl (Namespaces first, as generated)."""
    output = workdir / f"{name}.yaml"
    output.write_text(yaml.safe_dump_all(list(objects.objects), sort_keys=False))
    return output


def _kubectl(cp: ControlPlane, workdir: Path, *args: str) -> list[str]:
    return [
        str(cp.kubectl_bin),
        f"--kubeconfig={cp.kubeconfig}",
        f"--cache-dir={workdir / 'kubectl-cache'}",
        *args,
    ]


def measure_kubectl(cp: ControlPlane, workdir: Path, *commands: Sequence[str]) -> dict[str, Any]:
    """Run kubectl commands one after the other; their summed wall and CPU, peak RSS, requests."""
    before = cp.scrape_requests()
    runs = []
    for argv in commands:
        run = run_measured(argv, workdir)
        if run.returncode != 0:
            raise RuntimeError(f"{' '.join(argv[3:5])} failed: {run.stderr[-2000:]}")
        runs.append(run)
    after = cp.scrape_requests()
    return {
        "wall_s": round(sum(r.wall_s for r in runs), 4),
        "cpu_s": round(sum(r.cpu_s for r in runs), 4),
        "peak_rss_mib": max(r.peak_rss_mib for r in runs),
        "api_requests": summarize_requests(request_diff(before, after), APPLIED_RESOURCES),
    }


def measure_controller(
    cp: ControlPlane,
    probe: ControllerProbe,
    action: Callable[[], None],
    done: Callable[[], float],
    own: Counter[RequestKey],
) -> dict[str, Any]:
    """Run `action`, wait with `done` (the monotonic time it was seen done), measure.

    `own` are the requests the action itself made (creating or annotating an object).
    The controllers settle first, so the previous step's trailing work is not this one's.
    """
    probe.settle(cp.activity(APPLIED_RESOURCES))
    step = measure_step(cp, probe, action, done, own=own, applied_resources=APPLIED_RESOURCES)
    return {"wall_s": round(step.wall_s, 4), **step.figures(digits=4)}


def git_repository(name: str, url: str, namespace: str = FLUX_NAMESPACE) -> dict[str, Any]:
    return {
        "apiVersion": "source.toolkit.fluxcd.io/v1",
        "kind": "GitRepository",
        "metadata": {"name": name, "namespace": namespace},
        "spec": {"interval": "1h", "timeout": "5m", "url": url, "ref": {"branch": "main"}},
    }


def kustomization(name: str, namespace: str = FLUX_NAMESPACE) -> dict[str, Any]:
    return {
        "apiVersion": "kustomize.toolkit.fluxcd.io/v1",
        "kind": "Kustomization",
        "metadata": {"name": name, "namespace": namespace},
        "spec": {
            # Long intervals: only the reconciles the benchmark asks for run.
            "interval": "1h",
            "retryInterval": "1m",
            "timeout": "10m",
            "path": "./deploy",
            "prune": True,
            "wait": False,
            "sourceRef": {"kind": "GitRepository", "name": name},
        },
    }


def _patch(
    api: kubernetes.client.ApiClient, plural: tuple[str, str, str], name: str, body: Any
) -> None:
    group, version, resource = plural
    kubernetes.client.CustomObjectsApi(api).patch_namespaced_custom_object(
        group, version, FLUX_NAMESPACE, resource, name, body
    )


def _request(api: kubernetes.client.ApiClient, plural: tuple[str, str, str], name: str) -> str:
    token = str(time.time_ns())
    _patch(api, plural, name, {"metadata": {"annotations": {REQUESTED_AT: token}}})
    return token


def _own(verb: str, resource: str) -> Counter[RequestKey]:
    return Counter({RequestKey(verb, resource, "", False): 1})


@dataclass
class Arena:
    """Where one repetition runs: its git repository, its objects, its names."""

    name: str
    before: ObjectSet
    after: Change


def run_controller_cycle(
    cp: ControlPlane,
    probe: ControllerProbe,
    git: GitHttpServer,
    project_root: Path,
    arena: Arena,
    *,
    first_only: bool = False,
) -> dict[str, Any]:
    """First apply, no-op reconcile, change + prune for one arena; cleans up after.

    With `first_only`, the first apply alone (then the cleanup).
    """
    api = cp.api
    name = arena.name
    [first] = write_git_repo(project_root, name, [("first", arena.before.tree())])
    revision = f"main@sha1:{first}"
    results: dict[str, Any] = {}
    with (
        ResourceWatch(api, *GROUP_SOURCE[:2], GROUP_SOURCE[2], FLUX_NAMESPACE) as sources,
        ResourceWatch(api, *GROUP_KUSTOMIZE[:2], GROUP_KUSTOMIZE[2], FLUX_NAMESPACE) as kss,
    ):
        try:
            cp.apply([git_repository(name, git.url(name))])
            sources.wait(
                lambda objs: has_artifact(objs.get(name), revision),
                SOURCE_TIMEOUT,
                f"GitRepository {name} to be Ready at {revision}",
            )

            def ks_applied(rev: str) -> Callable[[], float]:
                return lambda: kss.wait(
                    lambda objs: applied(objs.get(name), rev),
                    STEP_TIMEOUT,
                    f"Kustomization {name} Ready at {rev} ({failure_summary(kss.objects())})",
                )

            custom = kubernetes.client.CustomObjectsApi(api)
            results["first_apply"] = measure_controller(
                cp,
                probe,
                lambda: custom.create_namespaced_custom_object(
                    *GROUP_KUSTOMIZE[:2], FLUX_NAMESPACE, GROUP_KUSTOMIZE[2], kustomization(name)
                ),
                ks_applied(revision),
                _own("POST", "kustomizations"),
            )
            if first_only:
                results["first_apply"]["dry_run_passes"] = dry_run_passes(
                    results["first_apply"], len(arena.before.objects)
                )
                return results
            token = ""

            def request_ks() -> None:
                nonlocal token
                token = _request(api, GROUP_KUSTOMIZE, name)

            results["no_op"] = measure_controller(
                cp,
                probe,
                request_ks,
                lambda: kss.wait(
                    lambda objs: (
                        (objs.get(name) or {}).get("status", {}).get("lastHandledReconcileAt")
                        == token
                    ),
                    STEP_TIMEOUT,
                    f"Kustomization {name} to handle requestedAt",
                ),
                _own("PATCH", "kustomizations"),
            )

            second = push_commit(
                project_root, name, "change 1%, remove 10%", arena.after.after.tree()
            )
            new_revision = f"main@sha1:{second}"
            requested = 0.0

            def request_source() -> None:
                nonlocal requested
                requested = time.monotonic()
                _request(api, GROUP_SOURCE, name)

            results["change"] = measure_controller(
                cp,
                probe,
                request_source,
                ks_applied(new_revision),
                _own("PATCH", "gitrepositories"),
            )
            source_seen = sources.wait(
                lambda objs: has_artifact(objs.get(name), new_revision), 10, "the new artifact"
            )
            results["change"]["source_s"] = round(source_seen - requested, 4)
            results["change"]["changed"] = arena.after.changed
            results["change"]["removed"] = arena.after.removed
            inventory = ((kss.objects().get(name) or {}).get("status") or {}).get("inventory") or {}
            results["inventory_after_change"] = len(inventory.get("entries") or [])
            for step, count in (
                ("first_apply", len(arena.before.objects)),
                ("no_op", len(arena.before.objects)),
                ("change", len(arena.after.after.objects)),
            ):
                results[step]["dry_run_passes"] = dry_run_passes(results[step], count)
        finally:
            cleanup_controller_arena(cp, arena, kss)
    return results


def dry_run_passes(sample: Mapping[str, Any], objects: int) -> float:
    """How many times the step dry-ran the whole set (the apply engine dry-runs each object)."""
    dry_runs = int(sample["api_requests"]["applied_kinds_by_verb"].get("APPLY (dry-run)", 0))
    return round(dry_runs / objects, 2)


def cleanup_controller_arena(cp: ControlPlane, arena: Arena, kss: ResourceWatch) -> None:
    """Suspend and delete the Kustomization (objects left alone), then their namespaces."""
    api, name = cp.api, arena.name
    custom = kubernetes.client.CustomObjectsApi(api)
    with contextlib.suppress(kubernetes.client.ApiException):
        _patch(api, GROUP_KUSTOMIZE, name, {"spec": {"suspend": True}})
    for group, version, plural in (GROUP_KUSTOMIZE, GROUP_SOURCE):
        with contextlib.suppress(kubernetes.client.ApiException):
            custom.delete_namespaced_custom_object(group, version, FLUX_NAMESPACE, plural, name)
    with contextlib.suppress(TimeoutError):
        kss.wait(lambda objs: name not in objs, 120, f"Kustomization {name} to be deleted")
    cp.delete_namespaces(arena.before.namespaces())


def run_kubectl_cycle(cp: ControlPlane, workdir: Path, arena: Arena) -> dict[str, Any]:
    """The same steps with `kubectl apply --server-side`; cleans up after.

    kubectl's --prune refuses objects created by server-side apply, so the change is
    the changed set applied, then `kubectl delete --wait=false` of the removed objects
    (background propagation and no waiting, like the controller's prune).
    """
    first = rendered(workdir, arena.before, f"{arena.name}-first")
    second = rendered(workdir, arena.after.after, f"{arena.name}-change")
    kept = {_identity(o) for o in arena.after.after.objects}
    removed = workdir / f"{arena.name}-removed.yaml"
    removed.write_text(
        yaml.safe_dump_all([o for o in arena.before.objects if _identity(o) not in kept])
    )
    apply = ("apply", "--server-side", "--field-manager=kubectl-bench", "-f")
    try:
        return {
            "first_apply": measure_kubectl(cp, workdir, _kubectl(cp, workdir, *apply, str(first))),
            "no_op": measure_kubectl(cp, workdir, _kubectl(cp, workdir, *apply, str(first))),
            "change": measure_kubectl(
                cp,
                workdir,
                _kubectl(cp, workdir, *apply, str(second)),
                _kubectl(cp, workdir, "delete", "--wait=false", "-f", str(removed)),
            ),
        }
    finally:
        cp.delete_namespaces(arena.before.namespaces())


def _identity(obj: Mapping[str, Any]) -> tuple[str, str, str]:
    metadata = obj["metadata"]
    return (obj["kind"], metadata.get("namespace", ""), metadata["name"])


# -- running it ---------------------------------------------------------------------------

STEPS = ("first_apply", "no_op", "change")
STEP_LABELS = {
    "first_apply": "first apply",
    "no_op": "no-op reconcile / re-apply",
    "change": "1% changed, 10% pruned",
}


def default_repeat(size: int) -> int:
    return SMALL_SET_REPEAT if size <= SMALL_SET else 1


def arena(size: int, prefix: str, seed: int, *, plain: bool = False) -> Arena:
    before = dataclasses.replace(generate(size, prefix, seed), plain=plain)
    return Arena(prefix, before, change(before, seed))


def _stats(samples: Sequence[Mapping[str, Any]], *fields: str) -> dict[str, Any]:
    summary: dict[str, Any] = {}
    for name in fields:
        values = [float(s[name]) for s in samples if name in s]
        if values:
            summary[name] = common.summarize(values)
    totals = [float(s["api_requests"]["total"]) for s in samples]
    summary["api_requests_total"] = common.summarize(totals)
    summary["samples"] = list(samples)
    return summary


CONTROLLER_FIELDS = (
    "wall_s",
    "cpu_s",
    "cpu_self_s",
    "cpu_children_s",
    "cpu_settled_s",
    "settle_s",
    "peak_rss_mib",
    "rss_after_mib",
    "peak_children_rss_mib",
    "source_s",
    "dry_run_passes",
)
KUBECTL_FIELDS = ("wall_s", "cpu_s", "peak_rss_mib")


@dataclass(frozen=True)
class RunOptions:
    seed: int
    log: Callable[[str], None]
    # The controllers' log level: info as in production; debug to see their phases.
    log_level: str = "info"
    # Copy the controllers' and the control plane's logs here (the workdir is deleted).
    keep_logs: Path | None = None
    # The repository's layout: "kustomization" (a kustomization.yaml listing the files)
    # or "plain" (none: the generated kustomization, headwater's fast path).
    layout: str = "kustomization"


def run_size(
    cp: ControlPlane,
    workdir: Path,
    git: GitHttpServer,
    project_root: Path,
    size: int,
    *,
    repeat: int,
    options: RunOptions,
) -> dict[str, Any]:
    seed, log = options.seed, options.log
    plain = options.layout == "plain"
    example = arena(size, "example", seed, plain=plain)
    kubectl_runs: list[dict[str, Any]] = []
    # kubectl first, before the controllers run; discovery cached beforehand as a
    # user's kubectl would have it.
    cp.kubectl(f"--cache-dir={workdir / 'kubectl-cache'}", "api-resources")
    for rep in range(repeat):
        log(f"{size} objects, kubectl, repetition {rep + 1}/{repeat}")
        kubectl_runs.append(
            run_kubectl_cycle(cp, workdir, arena(size, f"kc{size}-{rep}", seed, plain=plain))
        )
    controller_runs: list[dict[str, Any]] = []
    controller_dir = workdir / f"controllers-{size}"
    env = controller_env(options.log_level)
    try:
        with run_controllers(cp.kubeconfig, controller_dir, extra_env=env) as running:
            probe = ControllerProbe(running.process.pid)
            probe.settle()
            rss_idle = probe.rss_mib()
            for rep in range(repeat):
                log(f"{size} objects, headwater, repetition {rep + 1}/{repeat}")
                cycle = run_controller_cycle(
                    cp, probe, git, project_root, arena(size, f"hw{size}-{rep}", seed, plain=plain)
                )
                controller_runs.append(cycle)
            rss_end = probe.rss_mib()
            errors = log_errors(running.logs())
    finally:
        keep_logs(options.keep_logs, controller_dir, f"controllers-{size}")
    return {
        "objects": size,
        "namespaces": namespace_count(size),
        "objects_by_kind": example.before.count_by_kind(),
        "manifest_bytes": sum(len(v) for v in example.before.tree().values()),
        "changed": example.after.changed,
        "removed": example.after.removed,
        "repetitions": repeat,
        "headwater": {
            step: _stats([r[step] for r in controller_runs], *CONTROLLER_FIELDS) for step in STEPS
        },
        "kubectl": {
            step: _stats([r[step] for r in kubectl_runs], *KUBECTL_FIELDS) for step in STEPS
        },
        "controller_process": {
            "rss_idle_mib": rss_idle,
            "rss_end_mib": rss_end,
            "hwm_reset_per_step": probe.hwm_resettable,
            "log_errors": errors,
        },
        "inventory_after_change": [r["inventory_after_change"] for r in controller_runs],
    }


def run_benchmark(
    sizes: Sequence[int], *, repeat: int | None, quick: bool, options: RunOptions
) -> dict[str, Any]:
    started = time.perf_counter()
    machine = {**common.machine_info(), "load_average_at_start": common.load_average()}
    revision = headwater_revision()
    scenarios: list[dict[str, Any]] = []
    for size in sizes:
        # Each size on its own control plane, so one size's leftovers never weigh on another.
        with tempfile.TemporaryDirectory(prefix=f"hw-bench-kustomize{size}-") as tmp:
            workdir = Path(tmp)
            project_root = workdir / "git"
            project_root.mkdir()
            try:
                with (
                    ControlPlane(workdir / "cluster", nodes=3) as cp,
                    GitHttpServer(project_root) as git,
                ):
                    machine.update(tool_versions(cp))
                    cp.kubectl("create", "namespace", FLUX_NAMESPACE)
                    reps = repeat or default_repeat(size)
                    scenarios.append(
                        run_size(cp, workdir, git, project_root, size, repeat=reps, options=options)
                    )
            finally:
                keep_logs(options.keep_logs, workdir / "cluster" / "logs", f"control-plane-{size}")
    return {
        **common.report_head(REPORT_NAME, quick=quick, seed=options.seed),
        "controllers_version": revision,
        "layout": options.layout,
        "machine": {**machine, "load_average_at_end": common.load_average()},
        "scenarios": scenarios,
        "duration_s": round(time.perf_counter() - started, 1),
    }


# -- the report ---------------------------------------------------------------------------


def _layout(report: Mapping[str, Any]) -> str:
    if report.get("layout") == "plain":
        return "a plain directory of YAML (no kustomization.yaml: the generated one)"
    return "a kustomization.yaml listing the files"


def render_table(report: Mapping[str, Any]) -> str:
    machine = report["machine"]
    lines = [
        f"# Kustomize apply benchmark ({report['created']})",
        "",
        f"Controllers at commit {controllers_commit(report['controllers_version'])}; "
        f"{machine['cores']} cores, Python "
        f"{machine['python']}, kube-apiserver "
        f"{machine['kube_apiserver']}, kubectl {machine['kubectl']}, kustomize "
        f"{machine['kustomize']}. Repository layout: {_layout(report)}. "
        "Median (min-max) of the repetitions shown per row. "
        "headwater CPU is the controller process (`headwater run all`) plus the children it "
        "waited for, up to when the step was seen done (in brackets: of which kustomize "
        'build); "settled" adds the work it did after, until it went quiet. "Passes" is how '
        "many times the step dry-ran the whole set. Peak RSS is the controller's (in "
        "brackets: its children's, i.e. kustomize). Load average (1 min) "
        f"{machine['load_average_at_start'][0]:g} at start, "
        f"{machine['load_average_at_end'][0]:g} at end: other work on the machine stretches "
        "wall times more than CPU times.",
        "",
        "| objects | step | runs | headwater: wall s | CPU s (kustomize) | CPU s settled "
        "| passes | peak RSS MiB | kubectl: wall s | CPU s | peak RSS MiB |",
        "| ---: | --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: |",
    ]
    for scenario in report["scenarios"]:
        for step in STEPS:
            hw, kc = scenario["headwater"][step], scenario["kubectl"][step]
            lines.append(
                f"| {scenario['objects']:,} | {STEP_LABELS[step]} | {scenario['repetitions']} "
                f"| {common.stat_range(hw['wall_s'])} "
                f"| {common.stat_range(hw['cpu_s'])} ({hw['cpu_children_s']['median']:.1f}) "
                f"| {common.stat_range(hw['cpu_settled_s'])} "
                f"| {hw['dry_run_passes']['median']:g} "
                f"| {hw['peak_rss_mib']['median']:.0f} "
                f"({hw['peak_children_rss_mib']['median']:.0f}) "
                f"| {common.stat_range(kc['wall_s'])} | {common.stat_range(kc['cpu_s'])} "
                f"| {common.stat_range(kc['peak_rss_mib'], digits=0)} |"
            )
    lines += [
        "",
        "API requests by verb, as kube-apiserver counted them (all clients, first repetition):",
        "",
        "| objects | step | headwater | kubectl |",
        "| ---: | --- | --- | --- |",
    ]
    for scenario in report["scenarios"]:
        for step in STEPS:
            hw = scenario["headwater"][step]["samples"][0]["api_requests"]
            kc = scenario["kubectl"][step]["samples"][0]["api_requests"]
            lines.append(
                f"| {scenario['objects']:,} | {STEP_LABELS[step]} "
                f"| {request_verbs_text(hw)} | {request_verbs_text(kc)} |"
            )
    lines.append("")
    return "\n".join(lines)


def main(argv: Sequence[str] | None = None) -> int:
    parser = common.argument_parser("bench.kustomize_apply", __doc__, "60 objects, one repetition")
    parser.add_argument(
        "--sizes",
        type=common.whole_numbers("object counts", "1000,5000", 20, 20000),
        default=None,
        help="object counts, e.g. 1000,5000",
    )
    parser.add_argument("--repeat", type=int, default=None, help="repetitions per size")
    parser.add_argument(
        "--layout",
        choices=("kustomization", "plain"),
        default="kustomization",
        help="a kustomization.yaml listing the files, or a plain directory of YAML",
    )
    add_controller_options(parser)
    args = parser.parse_args(argv)
    sizes = args.sizes or (QUICK_SIZES if args.quick else DEFAULT_SIZES)
    repeat = args.repeat or (1 if args.quick else None)
    if repeat is not None and not 1 <= repeat <= 10:
        parser.error("--repeat must be between 1 and 10")
    options = RunOptions(
        seed=args.seed,
        log=common.progress,
        log_level=args.log_level,
        keep_logs=args.keep_logs,
        layout=args.layout,
    )
    report = run_benchmark(sizes, repeat=repeat, quick=args.quick, options=options)
    common.publish_report(args.out, REPORT_NAME, report, render_table(report))
    return 0


if __name__ == "__main__":
    sys.exit(main())
