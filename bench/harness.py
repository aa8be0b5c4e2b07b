"""What the cluster benchmarks share: a control plane, the controllers, and the probes.

- `ControlPlane`: the devcluster's real control plane, the benchmark's own (not a test
  session's), with headwater's CRDs installed.
- `scrape_requests`: kube-apiserver's own ``apiserver_request_total`` counters, read with
  the admin client certificate; the difference of two scrapes is the API requests made
  in between, by every client, counted by the server (controller-independent).
- `ControllerProbe`: CPU seconds (``/proc/<pid>/stat`` utime+stime, plus the
  waited-for children such as kustomize and git) and peak RSS (``VmHWM``, reset through
  ``clear_refs`` before each measurement) of the controller process, and a sampler for
  the RSS of its child processes.
- `measure_step`: what one step (an action, until seen done and the controllers are
  quiet again) cost the controllers: CPU, peak RSS, and the API requests meanwhile.
- `ResourceWatch`: a watch on one custom resource kind, on a thread, that says when a
  condition over the watched objects first held (the arrival time of the event).
- `write_git_repo`: a bare repository written with ``git fast-import`` (no work tree),
  so hundreds of repositories take seconds; deterministic commit ids. `write_commit`
  and `push_commit` add commits to one.
- `run_measured`: a child process with its own rusage (``wait4``): CPU and peak RSS.
"""

from __future__ import annotations

import argparse
import contextlib
import dataclasses
import json
import logging
import os
import re
import shutil
import signal
import ssl
import subprocess
import threading
import time
import urllib.request
from collections import Counter
from collections.abc import Callable, Iterable, Mapping, Sequence
from pathlib import Path
from typing import Any

import kubernetes.client
import kubernetes.config
import kubernetes.watch
import yaml
from kubernetes.client.rest import ApiException

import devcluster
from devcluster.cluster import DevCluster

log = logging.getLogger(__name__)

REPO_ROOT = Path(__file__).resolve().parent.parent
CRDS_DIR = REPO_ROOT / "crds"
# kustomize (which the kustomize controller runs) is here, as for `make test`.
TOOLS_BIN = REPO_ROOT / ".tools" / "bin"
CLOCK_TICKS = os.sysconf("SC_CLK_TCK")
PAGE_KIB = os.sysconf("SC_PAGE_SIZE") // 1024
# A watch request ends after this long and is reopened; bounded so stop() is prompt.
WATCH_SECONDS = 30
KUBECTL_TIMEOUT = 900.0
FLUX_RESOURCES = frozenset({"kustomizations", "gitrepositories"})


# -- the control plane --------------------------------------------------------------------


class ControlPlane:
    """A devcluster control plane in `workdir` with headwater's CRDs installed.

    `crd_dirs` and `namespace` may name another system's (the Flux peer's CRDs share
    names with headwater's: one cluster holds one system's).
    """

    def __init__(
        self,
        workdir: Path,
        nodes: int = 3,
        *,
        crd_dirs: Sequence[Path] = (CRDS_DIR,),
        namespace: str = "headwater-system",
    ) -> None:
        self.workdir = workdir
        self.nodes = nodes
        self.crd_dirs = tuple(crd_dirs)
        self.namespace = namespace
        self._dev: DevCluster | None = None
        self._api: kubernetes.client.ApiClient | None = None

    @property
    def dev(self) -> DevCluster:
        if self._dev is None:
            raise RuntimeError("the control plane is not started")
        return self._dev

    @property
    def kubeconfig(self) -> Path:
        return self.dev.kubeconfig

    @property
    def kubectl_bin(self) -> Path:
        return self.dev.bin_dir / "kubectl"

    @property
    def api(self) -> kubernetes.client.ApiClient:
        if self._api is None:
            self._api = kubernetes.config.new_client_from_config(config_file=str(self.kubeconfig))
        return self._api

    def start(self) -> ControlPlane:
        self._dev = devcluster.provision(self.workdir, nodes=self.nodes)
        self._dev.start()
        try:
            install_crds(self._dev, self.crd_dirs)
            self._wait_watchable(time.monotonic() + 120)
            self.kubectl("create", "namespace", self.namespace)
        except BaseException:
            self.stop()
            raise
        return self

    def _wait_watchable(self, deadline: float) -> None:
        """Wait until every CRD's watch cache is ready (429 "initializing" until then).

        Controllers started earlier would log retries of their watches as errors.
        """
        crds = json.loads(self.kubectl("get", "crd", "-o", "json"))["items"]
        custom = kubernetes.client.CustomObjectsApi(self.api)
        for crd in crds:
            spec = crd["spec"]
            version = next(v["name"] for v in spec["versions"] if v.get("served"))
            while True:
                try:
                    # resourceVersion=0 is served from the watch cache, as watches are.
                    custom.list_cluster_custom_object(
                        spec["group"], version, spec["names"]["plural"], resource_version="0"
                    )
                    break
                except ApiException as exc:
                    if exc.status != 429 or time.monotonic() > deadline:
                        raise
                time.sleep(0.5)

    def stop(self) -> None:
        if self._api is not None:
            self._api.close()
            self._api = None
        if self._dev is not None:
            self._dev.stop()

    def __enter__(self) -> ControlPlane:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def kubectl(self, *args: str, input: str | None = None) -> str:
        """Run kubectl on this control plane (not measured); raises on failure."""
        return kubectl(self.dev, *args, input=input)

    def apply(self, documents: Iterable[Mapping[str, Any]]) -> None:
        apply(self.dev, documents)

    def create_namespace(self, name: str) -> None:
        """Create `name` and wait until Pods can be admitted (its default ServiceAccount)."""
        self.kubectl("create", "namespace", name)
        core = kubernetes.client.CoreV1Api(self.api)
        deadline = time.monotonic() + 60
        while True:
            try:
                core.read_namespaced_service_account("default", name)
                return
            except ApiException as exc:
                if exc.status != 404 or time.monotonic() > deadline:
                    raise
            time.sleep(0.2)

    def delete_namespaces(self, names: Sequence[str], timeout: float = 300.0) -> float:
        """Delete namespaces and wait until they are gone; returns the seconds it took."""
        if not names:
            return 0.0
        started = time.monotonic()
        core = kubernetes.client.CoreV1Api(self.api)
        for name in names:
            with contextlib.suppress(ApiException):
                core.delete_namespace(name)
        remaining = set(names)
        while remaining:
            for name in sorted(remaining):
                try:
                    core.read_namespace(name)
                except ApiException as exc:
                    if exc.status != 404:
                        raise
                    remaining.discard(name)
            if remaining:
                if time.monotonic() - started > timeout:
                    raise TimeoutError(
                        f"namespaces still terminating after {timeout}s: {remaining}"
                    )
                time.sleep(0.5)
        return time.monotonic() - started

    def scrape_requests(self) -> Counter[RequestKey]:
        return scrape_requests(self.dev)

    def activity(self, resources: Iterable[str]) -> Callable[[], int]:
        """A count of the requests a controller makes on `resources`, for `settle`.

        Watches are left out (they end on their own schedule), and so are subresources
        of other kinds than Flux's (the cluster's controllers write those).
        """
        wanted = set(resources) | FLUX_RESOURCES

        def count() -> int:
            return sum(
                value
                for key, value in self.scrape_requests().items()
                if key.resource in wanted
                and key.verb != "WATCH"
                and (not key.subresource or key.resource in FLUX_RESOURCES)
            )

        return count


def kubectl(dev: DevCluster, *args: str, input: str | None = None) -> str:
    """Run the devcluster's kubectl (not measured); raises on failure."""
    completed = subprocess.run(
        [str(dev.bin_dir / "kubectl"), f"--kubeconfig={dev.kubeconfig}", *args],
        input=input,
        capture_output=True,
        text=True,
        timeout=KUBECTL_TIMEOUT,
        check=False,
    )
    if completed.returncode != 0:
        raise RuntimeError(f"kubectl {' '.join(args[:3])} failed: {completed.stderr[-2000:]}")
    return completed.stdout


def install_crds(dev: DevCluster, crd_dirs: Sequence[Path] = (CRDS_DIR,)) -> None:
    """The CRDs in `crd_dirs` (headwater's by default), applied and Established."""
    for crd_dir in crd_dirs:
        kubectl(dev, "apply", "--server-side", "--force-conflicts", "-f", str(crd_dir))
    kubectl(dev, "wait", "--for=condition=Established", "--timeout=60s", "crd", "--all")


def apply(dev: DevCluster, documents: Iterable[Mapping[str, Any]]) -> None:
    """Server-side apply of `documents` as the field manager `bench`."""
    text = yaml.safe_dump_all([dict(d) for d in documents], sort_keys=False)
    kubectl(dev, "apply", "--server-side", "--field-manager=bench", "-f", "-", input=text)


# -- API requests, counted by the API server ---------------------------------------------


@dataclasses.dataclass(frozen=True, order=True)
class RequestKey:
    verb: str  # the API server's verb: GET LIST WATCH POST PATCH PUT DELETE DELETECOLLECTION
    resource: str  # "" for non-resource URLs (discovery, /metrics, /readyz)
    subresource: str
    dry_run: bool

    @property
    def verb_label(self) -> str:
        return f"{self.verb} (dry-run)" if self.dry_run else self.verb

    @property
    def resource_label(self) -> str:
        if not self.resource:  # a non-resource URL: its path is in `subresource`
            return f"{self.verb_label} /{self.subresource.lstrip('/')}"
        what = f"{self.resource}/{self.subresource}" if self.subresource else self.resource
        return f"{self.verb_label} {what}"


_SAMPLE = re.compile(r"^apiserver_request_total\{(?P<labels>[^}]*)\}\s+(?P<value>\S+)")
_LABEL = re.compile(r'(\w+)="((?:[^"\\]|\\.)*)"')


def parse_request_totals(text: str) -> Counter[RequestKey]:
    """`apiserver_request_total` from the Prometheus text format, summed over codes."""
    counts: Counter[RequestKey] = Counter()
    for line in text.splitlines():
        match = _SAMPLE.match(line)
        if match is None:
            continue
        labels = dict(_LABEL.findall(match["labels"]))
        key = RequestKey(
            verb=labels.get("verb", ""),
            resource=labels.get("resource", ""),
            subresource=labels.get("subresource", ""),
            dry_run=bool(labels.get("dry_run")),
        )
        counts[key] += int(float(match["value"]))
    return counts


def scrape_requests(dev: DevCluster) -> Counter[RequestKey]:
    context = ssl.create_default_context(cafile=str(dev.pki_dir / "ca.crt"))
    context.load_cert_chain(dev.pki_dir / "admin.crt", dev.pki_dir / "admin.key")
    url = f"https://127.0.0.1:{dev.api_port}/metrics"
    with urllib.request.urlopen(url, context=context, timeout=30) as response:
        text = response.read().decode()
    return parse_request_totals(text)


def request_diff(before: Counter[RequestKey], after: Counter[RequestKey]) -> Counter[RequestKey]:
    """Requests counted between two scrapes, without the scrapes themselves.

    A request is counted when it finishes, so the first scrape shows up in the second;
    it is taken out, as is every other request of this benchmark's own that the caller
    names in `own`.
    """
    diff: Counter[RequestKey] = Counter()
    for key, value in after.items():
        delta = value - before.get(key, 0)
        if delta > 0:
            diff[key] = delta
    scrape = RequestKey("GET", "", "/metrics", False)
    diff[scrape] -= 1
    return +diff  # drops counts at or below zero


def summarize_requests(
    counts: Counter[RequestKey], applied_resources: Iterable[str] = ()
) -> dict[str, Any]:
    """Requests by verb (all clients), by verb and resource, and on the applied kinds."""
    by_verb: Counter[str] = Counter()
    by_resource: Counter[str] = Counter()
    applied: Counter[str] = Counter()
    wanted = set(applied_resources)
    for key, value in counts.items():
        by_verb[key.verb_label] += value
        by_resource[key.resource_label] += value
        if key.resource in wanted and not key.subresource:
            applied[key.verb_label] += value
    return {
        "total": sum(counts.values()),
        "by_verb": dict(sorted(by_verb.items())),
        "applied_kinds_total": sum(applied.values()),
        "applied_kinds_by_verb": dict(sorted(applied.items())),
        "by_resource": dict(sorted(by_resource.items(), key=lambda kv: (-kv[1], kv[0]))),
    }


# -- the controller process --------------------------------------------------------------


def _stat_fields(pid: int) -> list[str]:
    text = Path(f"/proc/{pid}/stat").read_text()
    # Fields after the parenthesised command name, which may hold spaces.
    return text.rsplit(")", 1)[1].split()


def proc_cpu(pid: int) -> tuple[float, float]:
    """(own, waited-for children) CPU seconds of `pid`: utime+stime, cutime+cstime."""
    fields = _stat_fields(pid)
    # stat(5) fields 14-17, counted from 1 with pid and comm as 1 and 2.
    utime, stime, cutime, cstime = (int(x) for x in fields[11:15])
    return (utime + stime) / CLOCK_TICKS, (cutime + cstime) / CLOCK_TICKS


def _status_kib(pid: int, field: str) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith(f"{field}:"):
            return int(line.split()[1])
    return 0


def children(pid: int) -> list[int]:
    """Every descendant of `pid` alive now."""
    found: list[int] = []
    todo = [pid]
    while todo:
        parent = todo.pop()
        for task in Path(f"/proc/{parent}/task").glob("*"):
            with contextlib.suppress(OSError):
                kids = [int(x) for x in (task / "children").read_text().split()]
                found += kids
                todo += kids
    return found


def _exe(pid: int) -> str:
    try:
        return os.readlink(f"/proc/{pid}/exe")
    except OSError:
        return ""


def _rss_kib(pid: int) -> int:
    try:
        return int(Path(f"/proc/{pid}/statm").read_text().split()[1]) * PAGE_KIB
    except (OSError, IndexError, ValueError):
        return 0


@dataclasses.dataclass(frozen=True)
class ProcessUsage:
    cpu_self_s: float
    cpu_children_s: float

    @property
    def cpu_s(self) -> float:
        return self.cpu_self_s + self.cpu_children_s


class ControllerProbe:
    """CPU and memory of one process (the controllers) and its children."""

    def __init__(self, pid: int) -> None:
        self.pid = pid
        self._sampler: threading.Thread | None = None
        self._sampling = threading.Event()
        self._peak_children_kib = 0
        self.hwm_resettable = True

    def usage(self) -> ProcessUsage:
        own, kids = proc_cpu(self.pid)
        return ProcessUsage(own, kids)

    def rss_mib(self) -> float:
        return round(_status_kib(self.pid, "VmRSS") / 1024, 1)

    def peak_rss_mib(self) -> float:
        """VmHWM: the high-water mark since start or since `reset_peak`."""
        return round(_status_kib(self.pid, "VmHWM") / 1024, 1)

    def reset_peak(self) -> None:
        # "5" resets the peak RSS (proc(5), clear_refs); if refused the mark is since start.
        try:
            Path(f"/proc/{self.pid}/clear_refs").write_text("5")
        except OSError:
            self.hwm_resettable = False

    def start_sampling(self, interval: float = 0.1) -> None:
        """Sample the summed RSS of the children (kustomize, git) until `stop_sampling`."""
        self._peak_children_kib = 0
        self._sampling.clear()

        parent = _exe(self.pid)

        def sample() -> None:
            while not self._sampling.wait(interval):
                with contextlib.suppress(OSError):
                    # A child between fork and exec still shows the controller's pages
                    # as its own; only children running another program count.
                    total = sum(_rss_kib(pid) for pid in children(self.pid) if _exe(pid) != parent)
                    self._peak_children_kib = max(self._peak_children_kib, total)

        self._sampler = threading.Thread(target=sample, name="bench-rss-sampler", daemon=True)
        self._sampler.start()

    def stop_sampling(self) -> float:
        """The peak summed RSS of the children seen while sampling, in MiB."""
        self._sampling.set()
        if self._sampler is not None:
            self._sampler.join(timeout=5)
            self._sampler = None
        return round(self._peak_children_kib / 1024, 1)

    def settle(
        self,
        activity: Callable[[], int] | None = None,
        *,
        quiet_share: float = 0.05,
        window: float = 2.0,
        limit: float = 300.0,
    ) -> float:
        """Wait until the process is quiet: under `quiet_share` of a core over `window`
        seconds and, with `activity` (a count of its requests), no new requests either.

        CPU alone is not enough: a controller waiting on a busy API server uses little.
        Work a reconcile leaves behind (a second pass, events, starting watches on what
        it applied) belongs to its cost; returns the seconds waited (at most `limit`).
        """
        started = time.monotonic()
        last_cpu = self.usage().cpu_s
        last_activity = activity() if activity else 0
        while time.monotonic() - started < limit:
            time.sleep(window)
            cpu = self.usage().cpu_s
            current = activity() if activity else 0
            if cpu - last_cpu < quiet_share * window and current == last_activity:
                break
            last_cpu, last_activity = cpu, current
        return time.monotonic() - started


class ProcessesProbe(ControllerProbe):
    """`ControllerProbe` over several processes (one per controller), summed.

    CPU is the sum of each process's own and waited-for children's; RSS the sum of
    each one's; the peak is the sum of each process's own peak (VmHWM), which may
    not all have happened at once (an upper bound of the simultaneous peak); the
    children's peak is of their summed RSS, sampled across all the processes.
    """

    def __init__(self, pids: Sequence[int]) -> None:
        super().__init__(pids[0])
        self.probes = [ControllerProbe(pid) for pid in pids]

    def usage(self) -> ProcessUsage:
        usages = [probe.usage() for probe in self.probes]
        return ProcessUsage(
            sum(u.cpu_self_s for u in usages), sum(u.cpu_children_s for u in usages)
        )

    def rss_mib(self) -> float:
        return round(sum(probe.rss_mib() for probe in self.probes), 1)

    def peak_rss_mib(self) -> float:
        return round(sum(probe.peak_rss_mib() for probe in self.probes), 1)

    def reset_peak(self) -> None:
        for probe in self.probes:
            probe.reset_peak()
        self.hwm_resettable = all(probe.hwm_resettable for probe in self.probes)

    def start_sampling(self, interval: float = 0.1) -> None:
        self._peak_children_kib = 0
        self._sampling.clear()
        parents = {probe.pid: _exe(probe.pid) for probe in self.probes}

        def sample() -> None:
            while not self._sampling.wait(interval):
                with contextlib.suppress(OSError):
                    total = sum(
                        _rss_kib(kid)
                        for pid, exe in parents.items()
                        for kid in children(pid)
                        if _exe(kid) != exe
                    )
                    self._peak_children_kib = max(self._peak_children_kib, total)

        self._sampler = threading.Thread(target=sample, name="bench-rss-sampler", daemon=True)
        self._sampler.start()

    def children_rss_mib(self) -> float:
        """The summed RSS of the processes' children running another program, now."""
        kib = 0
        for probe in self.probes:
            exe = _exe(probe.pid)
            with contextlib.suppress(OSError):
                kib += sum(_rss_kib(kid) for kid in children(probe.pid) if _exe(kid) != exe)
        return round(kib / 1024, 1)


# -- one step of the controllers, measured -------------------------------------------------


@dataclasses.dataclass(frozen=True)
class StepMeasurement:
    """The controllers' cost of one step: from its action to seen done, and until quiet."""

    started: float  # time.monotonic() just before the action
    finished: float  # when the step was seen done
    before: ProcessUsage
    at_done: ProcessUsage
    settled: ProcessUsage
    settle_s: float
    peak_rss_mib: float
    rss_after_mib: float
    peak_children_rss_mib: float
    api_requests: dict[str, Any]  # `summarize_requests` of every client's, less the step's own

    @property
    def wall_s(self) -> float:
        return self.finished - self.started

    def figures(self, digits: int) -> dict[str, Any]:
        """CPU, memory and API requests for a report, seconds rounded to `digits`."""
        before, at_done = self.before, self.at_done
        return {
            "cpu_s": round(at_done.cpu_s - before.cpu_s, digits),
            "cpu_self_s": round(at_done.cpu_self_s - before.cpu_self_s, digits),
            "cpu_children_s": round(at_done.cpu_children_s - before.cpu_children_s, digits),
            "cpu_settled_s": round(self.settled.cpu_s - before.cpu_s, digits),
            "settle_s": round(self.settle_s, 2),
            "peak_rss_mib": self.peak_rss_mib,
            "rss_after_mib": self.rss_after_mib,
            "peak_children_rss_mib": self.peak_children_rss_mib,
            "api_requests": self.api_requests,
        }


def measure_step(
    cp: ControlPlane,
    probe: ControllerProbe,
    action: Callable[[], None],
    done: Callable[[], float],
    *,
    own: Counter[RequestKey],
    applied_resources: Sequence[str],
    settle_limit: float = 300.0,
) -> StepMeasurement:
    """Run `action`, wait with `done` (the monotonic time it was seen done), then until the
    controllers are quiet again (at most `settle_limit` seconds): the work a step leaves
    behind belongs to its cost.

    `own` are the requests the benchmark itself made in the step (creating or annotating
    objects), taken out of the API server's count.
    """
    probe.reset_peak()
    probe.start_sampling()
    before_requests = cp.scrape_requests()
    before = probe.usage()
    started = time.monotonic()
    try:
        action()
        finished = done()
        at_done = probe.usage()
        settle_s = probe.settle(cp.activity(applied_resources), limit=settle_limit)
        settled = probe.usage()
        after_requests = cp.scrape_requests()
    finally:
        children_peak = probe.stop_sampling()
    requests = request_diff(before_requests, after_requests)
    requests.subtract(own)
    return StepMeasurement(
        started=started,
        finished=finished,
        before=before,
        at_done=at_done,
        settled=settled,
        settle_s=settle_s,
        peak_rss_mib=probe.peak_rss_mib(),
        rss_after_mib=probe.rss_mib(),
        peak_children_rss_mib=children_peak,
        api_requests=summarize_requests(+requests, applied_resources),
    )


# -- watching custom resources -----------------------------------------------------------

Objects = Mapping[str, Mapping[str, Any]]


class ResourceWatch:
    """The latest version of every object of one kind in one namespace, kept by a watch.

    With `track`, it also records when each object first satisfied `track(obj)`
    (`first_true`), so many objects can be timed without scanning them all on each event.
    """

    def __init__(
        self,
        api: kubernetes.client.ApiClient,
        group: str,
        version: str,
        plural: str,
        namespace: str,
        track: Callable[[Mapping[str, Any]], bool] | None = None,
    ) -> None:
        self._custom = kubernetes.client.CustomObjectsApi(api)
        self._args = (group, version, namespace, plural)
        self._objects: dict[str, Mapping[str, Any]] = {}
        self._changed_at = time.monotonic()
        self._cond = threading.Condition()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._version = ""
        self._track = track
        self.first_true: dict[str, float] = {}

    def __enter__(self) -> ResourceWatch:
        self._relist()
        self._thread = threading.Thread(target=self._run, name="bench-watch", daemon=True)
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        # The thread ends at the latest when its watch request does (WATCH_SECONDS).

    def _relist(self) -> None:
        listing = self._custom.list_namespaced_custom_object(*self._args)
        with self._cond:
            self._objects = {item["metadata"]["name"]: item for item in listing["items"]}
            self._version = listing["metadata"]["resourceVersion"]
            self._changed_at = time.monotonic()
            for name, obj in self._objects.items():
                self._check(name, obj)
            self._cond.notify_all()

    def _run(self) -> None:
        while not self._stop.is_set():
            watch = kubernetes.watch.Watch()
            try:
                for event in watch.stream(
                    self._custom.list_namespaced_custom_object,
                    *self._args,
                    resource_version=self._version,
                    timeout_seconds=WATCH_SECONDS,
                    allow_watch_bookmarks=True,
                ):
                    if self._stop.is_set():
                        watch.stop()
                        break
                    self._observe(event["type"], event["object"])
            except ApiException as exc:
                if exc.status == 410:  # too old a version: start again from a listing
                    self._relist()
                else:
                    log.debug("watch failed: %s", exc)
                    time.sleep(0.5)
            except Exception as exc:  # the connection dropped: reopen
                log.debug("watch failed: %s", exc)
                time.sleep(0.5)
                with contextlib.suppress(Exception):
                    self._relist()

    def _observe(self, event_type: str, obj: Mapping[str, Any]) -> None:
        metadata = obj.get("metadata") or {}
        with self._cond:
            self._version = str(metadata.get("resourceVersion") or self._version)
            if event_type == "BOOKMARK":
                return
            name = str(metadata.get("name"))
            if event_type == "DELETED":
                self._objects.pop(name, None)
            else:
                self._objects[name] = obj
            self._changed_at = time.monotonic()
            self._check(name, obj)
            self._cond.notify_all()

    def _check(self, name: str, obj: Mapping[str, Any]) -> None:
        if self._track is not None and name not in self.first_true and self._track(obj):
            self.first_true[name] = self._changed_at

    def objects(self) -> dict[str, Mapping[str, Any]]:
        with self._cond:
            return dict(self._objects)

    def wait(self, predicate: Callable[[Objects], bool], timeout: float, what: str) -> float:
        """Block until `predicate(objects)` holds; returns the monotonic time it first did."""
        deadline = time.monotonic() + timeout
        with self._cond:
            while True:
                if predicate(self._objects):
                    return self._changed_at
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    raise TimeoutError(f"timed out after {timeout:g}s waiting for {what}")
                self._cond.wait(min(remaining, 1.0))


def condition(obj: Mapping[str, Any] | None, type_: str) -> Mapping[str, Any] | None:
    for entry in ((obj or {}).get("status") or {}).get("conditions") or []:
        if entry.get("type") == type_:
            found: Mapping[str, Any] = entry
            return found
    return None


def is_ready(obj: Mapping[str, Any] | None) -> bool:
    ready = condition(obj, "Ready")
    return ready is not None and ready.get("status") == "True"


def applied(obj: Mapping[str, Any] | None, revision: str) -> bool:
    """A Kustomization is Ready with `revision` applied."""
    return (
        is_ready(obj) and ((obj or {}).get("status") or {}).get("lastAppliedRevision") == revision
    )


def has_artifact(obj: Mapping[str, Any] | None, revision: str) -> bool:
    """A source is Ready with an artifact of `revision`."""
    artifact = ((obj or {}).get("status") or {}).get("artifact") or {}
    return is_ready(obj) and artifact.get("revision") == revision


def failure_summary(objects: Objects, limit: int = 5) -> str:
    """The Ready messages of objects that are not Ready, for an error message."""
    lines = []
    for name, obj in sorted(objects.items()):
        ready = condition(obj, "Ready")
        if ready is None or ready.get("status") != "True":
            message = (ready or {}).get("message", "no Ready condition")
            lines.append(f"{name}: {str(message)[:300]}")
    return "; ".join(lines[:limit]) + (
        f" (and {len(lines) - limit} more)" if len(lines) > limit else ""
    )


# -- git repositories without a work tree -------------------------------------------------

GIT_ENV = {
    "GIT_CONFIG_NOSYSTEM": "1",
    "GIT_CONFIG_GLOBAL": "/dev/null",
    "HOME": "/nonexistent",
    "PATH": os.environ.get("PATH", "/usr/bin:/bin"),
}
# Fixed dates make the commit ids depend only on the content.
COMMIT_EPOCH = 1_700_000_000


def write_git_repo(
    project_root: Path,
    name: str,
    commits: Sequence[tuple[str, Mapping[str, bytes]]],
    branch: str = "main",
) -> list[str]:
    """Create bare `<name>.git` under `project_root` with one commit per (message, tree).

    Each tree is the whole content at that commit (files not listed are deleted), so a
    commit may change and remove files. Returns the commit ids, oldest first.
    """
    bare = project_root / f"{name}.git"
    subprocess.run(
        ["git", "init", "--bare", "-q", "-b", branch, str(bare)],
        env=GIT_ENV,
        check=True,
        capture_output=True,
        timeout=60,
    )
    stream: list[bytes] = []
    for index, (message, tree) in enumerate(commits):
        parent = f":{index}" if index else None  # the previous commit's mark
        when = COMMIT_EPOCH + index * 60
        stream += _commit_command(branch, index + 1, when, message, tree, parent)
    for index in range(len(commits)):
        stream.append(f"get-mark :{index + 1}\n".encode())
    return _fast_import(bare, stream).split()


def push_commit(
    project_root: Path, name: str, message: str, tree: Mapping[str, bytes], branch: str = "main"
) -> str:
    """Add a commit with the whole content `tree` on top of `branch`; returns its id."""
    bare = project_root / f"{name}.git"
    parent = subprocess.run(
        ["git", "--git-dir", str(bare), "rev-parse", f"refs/heads/{branch}"],
        env=GIT_ENV,
        check=True,
        capture_output=True,
        text=True,
        timeout=60,
    ).stdout.strip()
    return write_commit(
        project_root, name, message, tree, parent=parent, when=COMMIT_EPOCH + 86_400, branch=branch
    )


def write_commit(
    project_root: Path,
    name: str,
    message: str,
    tree: Mapping[str, bytes],
    *,
    parent: str,
    when: int,
    branch: str = "main",
) -> str:
    """Commit the whole content `tree` on top of commit `parent` of `<name>.git`, dated
    `when` (seconds since the epoch), as the new `branch`; returns the commit id."""
    stream = _commit_command(branch, 1, when, message, tree, parent)
    stream.append(b"get-mark :1\n")
    return _fast_import(project_root / f"{name}.git", stream).strip()


def _commit_command(
    branch: str,
    mark: int,
    when: int,
    message: str,
    tree: Mapping[str, bytes],
    parent: str | None,
) -> list[bytes]:
    """One fast-import `commit` whose content is `tree` alone (`deleteall` first)."""
    body = message.encode()
    command = [
        f"commit refs/heads/{branch}\nmark :{mark}\n".encode(),
        f"author Bench <bench@headwater.invalid> {when} +0000\n".encode(),
        f"committer Bench <bench@headwater.invalid> {when} +0000\n".encode(),
        f"data {len(body)}\n".encode() + body + b"\n",
    ]
    if parent:
        command.append(f"from {parent}\n".encode())
    command.append(b"deleteall\n")
    for path in sorted(tree):
        data = tree[path]
        command.append(f"M 100644 inline {path}\ndata {len(data)}\n".encode() + data + b"\n")
    command.append(b"\n")
    return command


def _fast_import(bare: Path, stream: Sequence[bytes]) -> str:
    """Run `stream` through `git fast-import`; returns what it printed (the get-marks)."""
    done = subprocess.run(
        ["git", "--git-dir", str(bare), "fast-import", "--quiet", "--done"],
        input=b"".join(stream) + b"done\n",
        env=GIT_ENV,
        check=True,
        capture_output=True,
        timeout=300,
    )
    return done.stdout.decode()


# -- a measured child process ------------------------------------------------------------


@dataclasses.dataclass(frozen=True)
class ChildRun:
    returncode: int
    wall_s: float
    cpu_s: float
    peak_rss_mib: float
    stdout: str
    stderr: str


def run_measured(argv: Sequence[str], workdir: Path, timeout: float = KUBECTL_TIMEOUT) -> ChildRun:
    """Run `argv` and measure it alone: wall time, and CPU and peak RSS from its wait4 rusage."""
    out_path, err_path = workdir / "child.out", workdir / "child.err"
    with out_path.open("wb") as out, err_path.open("wb") as err:
        started = time.perf_counter()
        process = subprocess.Popen(
            list(argv), stdout=out, stderr=err, stdin=subprocess.DEVNULL, start_new_session=True
        )
        timer = threading.Timer(timeout, lambda: os.killpg(process.pid, signal.SIGKILL))
        timer.start()
        try:
            _, status, usage = os.wait4(process.pid, 0)
        finally:
            timer.cancel()
        wall = time.perf_counter() - started
    process.returncode = os.waitstatus_to_exitcode(status)
    return ChildRun(
        returncode=process.returncode,
        wall_s=wall,
        cpu_s=usage.ru_utime + usage.ru_stime,
        peak_rss_mib=round(usage.ru_maxrss / 1024, 1),
        stdout=out_path.read_text(errors="replace"),
        stderr=err_path.read_text(errors="replace"),
    )


# -- the controllers -----------------------------------------------------------------------


def controller_env(log_level: str) -> dict[str, str]:
    """Extra environment for `headwater run all`: kustomize on PATH, the log level."""
    return {
        "PATH": f"{TOOLS_BIN}:{os.environ.get('PATH', '/usr/bin:/bin')}",
        "HEADWATER_LOG_LEVEL": log_level,
    }


def add_controller_options(parser: argparse.ArgumentParser) -> None:
    """`--log-level` and `--keep-logs`, for a benchmark that runs the controllers."""
    parser.add_argument(
        "--log-level", default="info", choices=("debug", "info"), help="the controllers' log level"
    )
    parser.add_argument("--keep-logs", type=Path, default=None, help="copy all logs here")


def log_errors(text: str, limit: int = 10) -> list[str]:
    """The first error lines of the controllers' log (JSON lines), for the report."""
    found = []
    for line in text.splitlines():
        if '"level":"error"' in line or '"level": "error"' in line or "Traceback" in line:
            found.append(line[:500])
    return found[:limit]


def keep_logs(target: Path | None, source: Path, name: str) -> None:
    """Copy the *.log files under `source` to `target/name` (for looking into a run)."""
    if target is None or not source.exists():
        return
    for log_file in source.rglob("*.log"):
        destination = target / name / log_file.relative_to(source)
        destination.parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(log_file, destination)


def headwater_revision() -> dict[str, Any]:
    """The commit the controllers ran from, and whether their code had local changes.

    The controllers change under the benchmark; a report is about one version of them.
    """

    def git(*args: str) -> str:
        return subprocess.run(
            ["git", "-C", str(REPO_ROOT), *args],
            capture_output=True,
            text=True,
            timeout=30,
            check=False,
        ).stdout.strip()

    return {
        "commit": git("rev-parse", "HEAD"),
        "controllers_modified": bool(git("status", "--porcelain", "--", "controllers")),
    }


def tool_versions(cp: ControlPlane) -> dict[str, str]:
    kubectl = cp.kubectl("version", "--client", "-o", "json")
    server = cp.kubectl("version", "-o", "json")
    kustomize = subprocess.run(
        [str(TOOLS_BIN / "kustomize"), "version"],
        capture_output=True,
        text=True,
        timeout=30,
        check=False,
    )
    return {
        "kubectl": json.loads(kubectl)["clientVersion"]["gitVersion"],
        "kube_apiserver": json.loads(server)["serverVersion"]["gitVersion"],
        "kustomize": kustomize.stdout.strip(),
    }


# -- the report -----------------------------------------------------------------------------


def controllers_commit(version: Mapping[str, Any]) -> str:
    """A report's `controllers_version` as its table says it: the short commit, and
    whether the controllers had local changes."""
    commit = str(version["commit"])[:12]
    return commit + (" with local changes" if version["controllers_modified"] else "")


def request_verbs_text(requests: Mapping[str, Any]) -> str:
    """`total: VERB count, ...` of a `summarize_requests` result, the commonest verb first."""
    by_verb = sorted(requests["by_verb"].items(), key=lambda kv: (-kv[1], kv[0]))
    return f"{requests['total']:,}: " + ", ".join(f"{verb} {count:,}" for verb, count in by_verb)
