"""Push -> applied -> alert benchmark: a signed GitHub push through a Receiver to Slack.

Everything is real and on loopback: a control plane started for the benchmark, the
controllers (``headwater run all`` as a subprocess), git's own ``git http-backend``
serving one repository, and a Slack stand-in (an incoming-webhook endpoint that notes
when each message arrives). The repository holds ``apps/app-00`` ... ``apps/app-NN``
(one ConfigMap each, a second, unchanging one in every other app); one GitRepository
(interval 1h, so only the webhook makes it fetch), one Kustomization per path (interval
1h), a Receiver of type ``github`` on the GitRepository, and a Slack Provider with an
Alert on every Kustomization.

Each commit changes every app's ConfigMap, and is announced by a GitHub ``push`` webhook
signed with the Receiver's token (``X-Hub-Signature-256``). The next commit is pushed
once this one is done everywhere (every Kustomization applied it, every ConfigMap carries
it, Slack heard from every Kustomization about it) or its time is up. Per commit and
Kustomization the benchmark notes, on its own monotonic clock:

- t0: the webhook POST is sent;
- t1: the GitRepository's ``status.artifact.revision`` is the new revision (a watch);
- t2: the app's ConfigMap first carries the new data (a watch on ConfigMaps with the
  Kustomization's owner labels);
- t3: Slack first receives a message from that Kustomization with that revision;

and reports p50/p95/max of t1-t0, t2-t0, t3-t0, t2-t1 and t3-t2, the controller
process's CPU seconds and peak RSS, and every Slack message counted: expected,
missing, duplicated, unexpected. Problems (timeouts, missing alerts, error lines in
the controllers' log) are reported as they are, never retried away.

Writes ``push-to-alert.json`` and ``push-to-alert.md`` to ``--out`` (default
``bench/reports``) and prints the table.

    .venv/bin/python -m bench.push_to_alert            # 50 apps x 30 commits, ~10 minutes
    .venv/bin/python -m bench.push_to_alert --quick    # 3 apps x 2 commits
"""

from __future__ import annotations

import base64
import contextlib
import hashlib
import hmac
import http.server
import json
import random
import statistics
import sys
import tempfile
import threading
import time
import urllib.error
import urllib.request
from collections import Counter
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import kubernetes.client
import kubernetes.config
import kubernetes.watch
import yaml
from kubernetes.client.rest import ApiException

import devcluster
from bench import common
from bench.harness import (
    COMMIT_EPOCH,
    ControllerProbe,
    ProcessUsage,
    add_controller_options,
    apply,
    controller_env,
    failure_summary,
    install_crds,
    is_ready,
    keep_logs,
    kubectl,
    request_diff,
    scrape_requests,
    summarize_requests,
    write_commit,
    write_git_repo,
)
from devcluster.cluster import DevCluster
from devcluster.controllers import RunningControllers, run_controllers
from devcluster.gitserver import GitHttpServer

REPORT_NAME = "push-to-alert"

DEFAULT_APPS, DEFAULT_COMMITS = 50, 30
QUICK_APPS, QUICK_COMMITS = 3, 2

FLUX_NAMESPACE = "bench-flux"
APPS_NAMESPACE = "bench-apps"
REPO_NAME = "fleet"
BRANCH = "main"
SOURCE_NAME = "fleet"
RECEIVER_NAME = "github"
GENERATION_KEY = "generation"
OWNER_NAMESPACE_LABEL = "kustomize.toolkit.fluxcd.io/namespace"
# A benchmark-only shared secret: the Receiver's token, also the HMAC key of the pushes.
RECEIVER_TOKEN = "bench-push-to-alert-receiver-token"
SLACK_PATH = "/services/T0BENCH/B0BENCH/bench"

# Every wait is bounded. A commit of 50 apps takes tens of seconds on 2 busy cores.
COMMIT_TIMEOUT = 180.0
# After the last commit: late duplicates arrive within this.
TRAILING_WAIT = 10.0
SETUP_TIMEOUT = 300.0
# The measured commits stop being pushed after this long (the whole run stays < 20 min).
MEASURE_BUDGET = 13 * 60.0
# Two commits in a row that never complete: the pipeline is broken; stop there.
MAX_TIMEOUTS_IN_A_ROW = 2
WATCH_SECONDS = 60

GROUP_SOURCE = ("source.toolkit.fluxcd.io", "v1", "gitrepositories")
GROUP_KUSTOMIZE = ("kustomize.toolkit.fluxcd.io", "v1", "kustomizations")
GROUP_RECEIVER = ("notification.toolkit.fluxcd.io", "v1", "receivers")

# (report key, label, unit of its samples) in table order.
STAGES = (
    ("artifact", "t1-t0 artifact published", "commit"),
    ("object_updated", "t2-t0 object updated", "commit x Kustomization"),
    ("alert", "t3-t0 alert received", "commit x Kustomization"),
    ("update_after_artifact", "t2-t1 artifact -> object", "commit x Kustomization"),
    ("alert_after_update", "t3-t2 object -> alert", "commit x Kustomization"),
    ("status_applied", "Kustomization status shows it - t0", "commit x Kustomization"),
    # The quickest Kustomization of a commit: the path's latency without the queue.
    ("first_object_updated", "first object updated - t0", "commit"),
    ("first_alert", "first alert received - t0", "commit"),
    ("commit_complete", "last of everything - t0", "commit"),
)

# -- deterministic repository content ------------------------------------------------------

_LEVELS = ("debug", "info", "warn", "error")
_REGIONS = ("eu-west", "eu-central", "us-east", "us-west", "ap-south")


def app_name(index: int) -> str:
    return f"app-{index:02d}"


def _config_map(name: str, data: Mapping[str, str]) -> dict[str, Any]:
    return {"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": name}, "data": dict(data)}


def repository_tree(apps: int, generation: int, seed: int) -> dict[str, bytes]:
    """Every file at `generation`; the same arguments give the same bytes.

    Each app's `<app>-config` changes with every generation; every other app also has
    an `<app>-static` that never changes (so a changeset mixes configured and unchanged).
    """
    tree: dict[str, bytes] = {}
    for index in range(apps):
        name = app_name(index)
        rng = random.Random(f"{seed}:{name}:{generation}")
        data = {
            GENERATION_KEY: str(generation),
            "LOG_LEVEL": rng.choice(_LEVELS),
            "REGION": rng.choice(_REGIONS),
            "TIMEOUT_MS": str(rng.randint(100, 30000)),
            "checksum": hashlib.sha256(f"{seed}:{name}:{generation}".encode()).hexdigest(),
        }
        documents = [_config_map(f"{name}-config", data)]
        resources = ["config.yaml"]
        if index % 2 == 0:
            static = random.Random(f"{seed}:{name}:static")
            documents.append(
                _config_map(f"{name}-static", {"owner": f"team-{static.randint(1, 9)}"})
            )
            resources.append("static.yaml")
        for document, file_name in zip(documents, resources, strict=True):
            tree[f"apps/{name}/{file_name}"] = yaml.safe_dump(document, sort_keys=False).encode()
        kustomization = {
            "apiVersion": "kustomize.config.k8s.io/v1beta1",
            "kind": "Kustomization",
            "resources": resources,
        }
        tree[f"apps/{name}/kustomization.yaml"] = yaml.safe_dump(
            kustomization, sort_keys=False
        ).encode()
    return tree


# -- the Slack stand-in ------------------------------------------------------------------


@dataclass(frozen=True)
class SlackMessage:
    """One incoming-webhook message, when it arrived and what it says."""

    at: float  # time.monotonic() when the whole request was read
    author: str  # `kind/name.namespace`
    revision: str
    text: str

    @property
    def kind(self) -> str:
        """`change` (the changeset Flux alerts on), `finished` or `other`.

        Flux routes the `Reconciliation finished` event (a commit status update) to git
        providers only, so Slack should see one changeset message per applied revision.
        """
        if self.text.startswith("Reconciliation finished"):
            return "finished"
        if " configured" in self.text or " created" in self.text or " unchanged" in self.text:
            return "change"
        return "other"


def parse_slack(body: bytes, at: float) -> SlackMessage:
    """The fields of Flux's Slack message that say who sent it about which revision."""
    try:
        payload = json.loads(body)
        attachment = (payload.get("attachments") or [{}])[0]
        fields = {
            str(item.get("title")): str(item.get("value"))
            for item in attachment.get("fields") or []
        }
        return SlackMessage(
            at=at,
            author=str(attachment.get("author_name") or ""),
            revision=fields.get("revision", ""),
            text=str(attachment.get("text") or ""),
        )
    except (ValueError, AttributeError, TypeError, IndexError):
        return SlackMessage(at=at, author="", revision="", text=body[:200].decode(errors="replace"))


class _SlackHandler(http.server.BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    server: _SlackHTTPServer

    def log_message(self, format: str, *args: Any) -> None:  # quiet: the report counts
        return

    def do_POST(self) -> None:
        length = min(int(self.headers.get("Content-Length") or 0), 1 << 20)
        body = self.rfile.read(length)
        at = time.monotonic()
        if self.path == SLACK_PATH:
            self.server.recorder.add(parse_slack(body, at))
            status, answer = 200, b"ok"
        else:
            self.server.recorder.add_stray(self.path)
            status, answer = 404, b"no_service"
        self.send_response(status)
        self.send_header("Content-Type", "text/plain")
        self.send_header("Content-Length", str(len(answer)))
        self.end_headers()
        self.wfile.write(answer)


class _SlackHTTPServer(http.server.ThreadingHTTPServer):
    daemon_threads = True

    def __init__(self, recorder: SlackRecorder) -> None:
        self.recorder = recorder
        super().__init__(("127.0.0.1", 0), _SlackHandler)


class SlackRecorder:
    """An incoming-webhook endpoint on loopback that keeps every message and its arrival."""

    def __init__(self) -> None:
        self.messages: list[SlackMessage] = []
        self.strays: list[str] = []
        self._cond = threading.Condition()
        self._server = _SlackHTTPServer(self)
        self._thread = threading.Thread(
            target=self._server.serve_forever, kwargs={"poll_interval": 0.2}, daemon=True
        )

    @property
    def webhook_url(self) -> str:
        return f"http://127.0.0.1:{self._server.server_address[1]}{SLACK_PATH}"

    def __enter__(self) -> SlackRecorder:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._server.shutdown()
        self._server.server_close()
        self._thread.join(timeout=10)

    def add(self, message: SlackMessage) -> None:
        with self._cond:
            self.messages.append(message)
            self._cond.notify_all()

    def add_stray(self, path: str) -> None:
        with self._cond:
            self.strays.append(path[:200])

    def snapshot(self) -> list[SlackMessage]:
        with self._cond:
            return list(self.messages)

    def wait(self, predicate: Callable[[list[SlackMessage]], bool], timeout: float) -> bool:
        deadline = time.monotonic() + timeout
        with self._cond:
            while not predicate(self.messages):
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    return False
                self._cond.wait(min(remaining, 1.0))
            return True


# -- watches that note when things first happen -------------------------------------------

# (what, object name, value): ("applied", "app-07", "main@sha1:...").
Key = tuple[str, str, str]
KeysOf = Callable[[Mapping[str, Any]], Iterable[Key]]


class FirstSeen:
    """A watch on one kind in one namespace, on a thread, noting when each key first showed.

    `keys_of(object)` names what an object shows (say `("fleet", revision)`); the time a
    key is first seen is when the watch event carrying it arrived here. Objects from a
    listing (at start, or after the watch expired) are noted as of the listing, which
    may be late: such relistings during the run are counted and reported.
    """

    def __init__(
        self,
        kubeconfig: Path,
        what: str,
        lister: Callable[[kubernetes.client.ApiClient], Callable[..., Any]],
        keys_of: KeysOf,
        **list_kwargs: Any,
    ) -> None:
        self.what = what
        self._api = kubernetes.config.new_client_from_config(config_file=str(kubeconfig))
        self._list = lister(self._api)
        self._kwargs = list_kwargs
        self._keys_of = keys_of
        self._first: dict[Key, float] = {}
        self._latest: dict[str, Mapping[str, Any]] = {}
        self._cond = threading.Condition()
        self._stop = threading.Event()
        self._watch: kubernetes.watch.Watch | None = None
        self._thread = threading.Thread(target=self._run, name=f"watch-{what}", daemon=True)
        self._version = ""
        self.events = 0
        self.relists = 0  # after the first listing
        self.reconnects = 0

    def __enter__(self) -> FirstSeen:
        self._relist()
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        watch = self._watch
        if watch is not None:
            watch.stop()
        self._thread.join(timeout=5)
        self._api.close()

    def _relist(self) -> None:
        listing = self._list(**self._kwargs)
        listing = (
            listing
            if isinstance(listing, Mapping)
            else self._api.sanitize_for_serialization(listing)
        )
        now = time.monotonic()
        with self._cond:
            for item in listing.get("items") or []:
                self._note(item, now)
            self._version = str((listing.get("metadata") or {}).get("resourceVersion") or "")
            self._cond.notify_all()

    def _note(self, obj: Mapping[str, Any], at: float) -> None:
        name = str((obj.get("metadata") or {}).get("name") or "")
        self._latest[name] = obj
        for key in self._keys_of(obj):
            self._first.setdefault(key, at)

    def _run(self) -> None:
        while not self._stop.is_set():
            self._watch = kubernetes.watch.Watch()
            try:
                for event in self._watch.stream(
                    self._list,
                    resource_version=self._version,
                    timeout_seconds=WATCH_SECONDS,
                    allow_watch_bookmarks=True,
                    **self._kwargs,
                ):
                    at = time.monotonic()
                    obj = event["raw_object"]
                    with self._cond:
                        version = (obj.get("metadata") or {}).get("resourceVersion")
                        self._version = str(version or self._version)
                        if event["type"] in ("ADDED", "MODIFIED"):
                            self.events += 1
                            self._note(obj, at)
                            self._cond.notify_all()
                    if self._stop.is_set():
                        break
            except ApiException as exc:
                if self._stop.is_set():
                    break
                if exc.status == 410:  # expired: start again from a listing
                    self.relists += 1
                    with contextlib.suppress(Exception):
                        self._relist()
                else:
                    self.reconnects += 1
                    time.sleep(0.5)
            except Exception:
                if self._stop.is_set():
                    break
                self.reconnects += 1
                time.sleep(0.5)  # the connection dropped: reopen from the last version

    def first(self, key: Key) -> float | None:
        with self._cond:
            return self._first.get(key)

    def latest(self) -> dict[str, Mapping[str, Any]]:
        with self._cond:
            return dict(self._latest)

    def wait(self, keys: Iterable[Key], timeout: float) -> list[Key]:
        """Wait until every key was seen; returns the keys still missing at the deadline."""
        wanted = list(keys)
        deadline = time.monotonic() + timeout
        with self._cond:
            while True:
                missing = [key for key in wanted if key not in self._first]
                remaining = deadline - time.monotonic()
                if not missing or remaining <= 0:
                    return missing
                self._cond.wait(min(remaining, 1.0))

    def watch_health(self) -> dict[str, int]:
        return {"events": self.events, "relists": self.relists, "reconnects": self.reconnects}


def artifact_keys(obj: Mapping[str, Any]) -> Iterable[Key]:
    revision = (((obj.get("status") or {}).get("artifact")) or {}).get("revision")
    return [("artifact", obj["metadata"]["name"], str(revision))] if revision else []


def applied_keys(obj: Mapping[str, Any]) -> Iterable[Key]:
    revision = (obj.get("status") or {}).get("lastAppliedRevision")
    return [("applied", obj["metadata"]["name"], str(revision))] if revision else []


def config_keys(obj: Mapping[str, Any]) -> Iterable[Key]:
    generation = (obj.get("data") or {}).get(GENERATION_KEY)
    return [("config", obj["metadata"]["name"], str(generation))] if generation else []


def _custom_lister(
    group: str, version: str, plural: str, namespace: str = FLUX_NAMESPACE
) -> Callable[[kubernetes.client.ApiClient], Callable[..., Any]]:
    def lister(api: kubernetes.client.ApiClient) -> Callable[..., Any]:
        custom = kubernetes.client.CustomObjectsApi(api)

        def list_objects(**kwargs: Any) -> Any:
            return custom.list_namespaced_custom_object(group, version, namespace, plural, **kwargs)

        # The watch finds the return type from the docstring: keep the original's.
        list_objects.__doc__ = custom.list_namespaced_custom_object.__doc__
        return list_objects

    return lister


def _config_map_lister(namespace: str) -> Callable[[kubernetes.client.ApiClient], Any]:
    def lister(api: kubernetes.client.ApiClient) -> Callable[..., Any]:
        core = kubernetes.client.CoreV1Api(api)

        def list_config_maps(**kwargs: Any) -> Any:
            return core.list_namespaced_config_map(namespace, **kwargs)

        list_config_maps.__doc__ = core.list_namespaced_config_map.__doc__
        return list_config_maps

    return lister


# -- the controllers' log ------------------------------------------------------------------


def log_summary(text: str, limit: int = 15) -> dict[str, Any]:
    """Lines per level of the controllers' JSON log, and the first warnings and errors."""
    levels: Counter[str] = Counter()
    notable: list[str] = []
    for line in text.splitlines():
        try:
            parsed = json.loads(line)
        except ValueError:
            parsed = None
        entry: dict[str, Any] = parsed if isinstance(parsed, dict) else {}
        level = str(entry.get("level", "unparsed"))
        levels[level] += 1
        notable_level = level in ("warning", "error", "critical") or (
            level == "unparsed" and bool(line.strip())
        )
        if notable_level and len(notable) < limit:
            where = "/".join(str(entry.get(k)) for k in ("kind", "name") if entry.get(k))
            message = str(entry.get("msg", line))[:300]
            notable.append(f"{level} {where} {message}".replace("  ", " ").strip())
    return {"lines_by_level": dict(sorted(levels.items())), "first_warnings_and_errors": notable}


# -- the cluster ----------------------------------------------------------------------------


def _secret(name: str, data: Mapping[str, str]) -> dict[str, Any]:
    return {
        "apiVersion": "v1",
        "kind": "Secret",
        "metadata": {"name": name, "namespace": FLUX_NAMESPACE},
        "data": {k: base64.b64encode(v.encode()).decode() for k, v in data.items()},
    }


def pipeline_objects(git_url: str, slack_url: str) -> list[dict[str, Any]]:
    """Slack Provider and Alert, the Receiver and its token, the GitRepository."""
    notification = "notification.toolkit.fluxcd.io"
    return [
        _secret("slack-webhook", {"address": slack_url}),
        _secret("webhook-token", {"token": RECEIVER_TOKEN}),
        {
            "apiVersion": f"{notification}/v1beta3",
            "kind": "Provider",
            "metadata": {"name": "slack", "namespace": FLUX_NAMESPACE},
            "spec": {
                "type": "slack",
                "channel": "#deploys",
                "secretRef": {"name": "slack-webhook"},
            },
        },
        {
            "apiVersion": f"{notification}/v1beta3",
            "kind": "Alert",
            "metadata": {"name": "kustomizations", "namespace": FLUX_NAMESPACE},
            "spec": {
                "providerRef": {"name": "slack"},
                "eventSeverity": "info",
                "eventSources": [{"kind": "Kustomization", "name": "*"}],
            },
        },
        {
            "apiVersion": f"{notification}/v1",
            "kind": "Receiver",
            "metadata": {"name": RECEIVER_NAME, "namespace": FLUX_NAMESPACE},
            "spec": {
                "type": "github",
                "events": ["push"],
                "secretRef": {"name": "webhook-token"},
                "resources": [{"kind": "GitRepository", "name": SOURCE_NAME}],
            },
        },
        {
            "apiVersion": "source.toolkit.fluxcd.io/v1",
            "kind": "GitRepository",
            "metadata": {"name": SOURCE_NAME, "namespace": FLUX_NAMESPACE},
            # A long interval: only the webhook makes it fetch.
            "spec": {"interval": "1h", "timeout": "2m", "url": git_url, "ref": {"branch": BRANCH}},
        },
    ]


def kustomization(index: int) -> dict[str, Any]:
    name = app_name(index)
    return {
        "apiVersion": "kustomize.toolkit.fluxcd.io/v1",
        "kind": "Kustomization",
        "metadata": {"name": name, "namespace": FLUX_NAMESPACE},
        "spec": {
            "interval": "1h",  # only the new artifact makes it apply
            "retryInterval": "1m",
            "timeout": "2m",
            "path": f"./apps/{name}",
            "prune": True,
            "targetNamespace": APPS_NAMESPACE,
            "sourceRef": {"kind": "GitRepository", "name": SOURCE_NAME},
        },
    }


def github_push(revision_sha: str, before: str, repo_url: str) -> tuple[bytes, dict[str, str]]:
    """A GitHub `push` delivery: the body and its headers, signed with the Receiver's token."""
    body = json.dumps(
        {
            "ref": f"refs/heads/{BRANCH}",
            "before": before,
            "after": revision_sha,
            "repository": {"name": REPO_NAME, "full_name": f"bench/{REPO_NAME}", "url": repo_url},
            "pusher": {"name": "bench"},
        },
        sort_keys=True,
    ).encode()
    return body, github_headers(body, "push")


def github_headers(body: bytes, event: str) -> dict[str, str]:
    digest = hmac.new(RECEIVER_TOKEN.encode(), body, hashlib.sha256).hexdigest()
    return {
        "Content-Type": "application/json",
        "User-Agent": "GitHub-Hookshot/bench",
        "X-GitHub-Event": event,
        "X-GitHub-Delivery": hashlib.sha256(body).hexdigest()[:32],
        "X-Hub-Signature-256": f"sha256={digest}",
    }


def post(url: str, body: bytes, headers: Mapping[str, str]) -> tuple[int, str]:
    request = urllib.request.Request(url, data=body, method="POST", headers=dict(headers))
    try:
        with urllib.request.urlopen(request, timeout=30) as response:
            return int(response.status), response.read(2000).decode(errors="replace")
    except urllib.error.HTTPError as exc:
        return int(exc.code), exc.read(2000).decode(errors="replace")


def wait_until(check: Callable[[], Any], timeout: float, what: str, interval: float = 0.2) -> Any:
    """Poll `check` (setup only, never measured) until it returns something truthy."""
    deadline = time.monotonic() + timeout
    while True:
        value = check()
        if value:
            return value
        if time.monotonic() > deadline:
            raise TimeoutError(f"timed out after {timeout:g}s waiting for {what}")
        time.sleep(interval)


def webhook_url(api: kubernetes.client.ApiClient, running: RunningControllers) -> str:
    """The Receiver's URL once it is Ready and the receiver server answers a signed ping."""
    custom = kubernetes.client.CustomObjectsApi(api)

    def path() -> str | None:
        obj = custom.get_namespaced_custom_object(
            GROUP_RECEIVER[0], GROUP_RECEIVER[1], FLUX_NAMESPACE, GROUP_RECEIVER[2], RECEIVER_NAME
        )
        status = obj.get("status") or {}
        return str(status["webhookPath"]) if is_ready(obj) and status.get("webhookPath") else None

    url = running.receiver_url + str(wait_until(path, SETUP_TIMEOUT, "the Receiver to be Ready"))
    ping = json.dumps({"zen": "Keep it logically awesome.", "hook_id": 1}).encode()
    # The server learns of the Receiver by a watch: a ping (verified, changes nothing)
    # says when it does.
    wait_until(
        lambda: post(url, ping, github_headers(ping, "ping"))[0] == 200,
        60,
        "the receiver server to answer a signed ping",
        interval=0.5,
    )
    return url


# -- one commit ------------------------------------------------------------------------------


@dataclass
class Watches:
    sources: FirstSeen
    kustomizations: FirstSeen
    config_maps: FirstSeen


@dataclass
class Pipeline:
    """Everything running for the benchmark, once set up."""

    dev: DevCluster
    api: kubernetes.client.ApiClient
    git_root: Path  # where the bare repository REPO_NAME is
    git: GitHttpServer
    slack: SlackRecorder
    running: RunningControllers
    probe: ControllerProbe  # of the controllers' process
    watches: Watches
    names: list[str]
    first: str  # the commit every Kustomization applied before the measured ones
    url: str = ""  # the Receiver's webhook URL


@dataclass
class CommitResult:
    index: int
    revision: str
    webhook_status: int
    webhook_answer_s: float
    artifact_s: float | None
    complete_s: float | None
    timed_out: bool
    # Per Kustomization (None: not seen before the deadline).
    object_updated_s: dict[str, float | None] = field(default_factory=dict)
    alert_s: dict[str, float | None] = field(default_factory=dict)
    status_applied_s: dict[str, float | None] = field(default_factory=dict)
    missing: dict[str, list[str]] = field(default_factory=dict)

    def to_json(self) -> dict[str, Any]:
        def rounded(values: Mapping[str, float | None]) -> dict[str, float | None]:
            return {k: None if v is None else round(v, 4) for k, v in values.items()}

        return {
            "index": self.index,
            "revision": self.revision,
            "webhook_status": self.webhook_status,
            "webhook_answer_s": round(self.webhook_answer_s, 4),
            "artifact_s": None if self.artifact_s is None else round(self.artifact_s, 4),
            "complete_s": None if self.complete_s is None else round(self.complete_s, 4),
            "timed_out": self.timed_out,
            "missing": self.missing,
            "object_updated_s": rounded(self.object_updated_s),
            "alert_s": rounded(self.alert_s),
            "status_applied_s": rounded(self.status_applied_s),
        }


def first_alerts(messages: Iterable[SlackMessage], revision: str) -> dict[str, float]:
    """Author -> arrival of its first message about `revision`."""
    found: dict[str, float] = {}
    for message in messages:
        if message.revision == revision:
            found.setdefault(message.author, message.at)
    return found


def author(name: str) -> str:
    return f"kustomization/{name}.{FLUX_NAMESPACE}"


def run_commit(pipeline: Pipeline, index: int, previous: str, seed: int) -> CommitResult:
    """Commit generation `index`, deliver its push, wait until it is done everywhere."""
    names, watches, slack = pipeline.names, pipeline.watches, pipeline.slack
    sha = write_commit(
        pipeline.git_root,
        REPO_NAME,
        f"generation {index}",
        repository_tree(len(names), index, seed),
        parent=previous,
        # A minute apart from generation 0, as `write_git_repo` dates a history.
        when=COMMIT_EPOCH + index * 60,
        branch=BRANCH,
    )
    revision = f"{BRANCH}@sha1:{sha}"
    authors = [author(name) for name in names]
    body, headers = github_push(sha, previous, pipeline.git.url(REPO_NAME))

    t0 = time.monotonic()
    status, answer = post(pipeline.url, body, headers)
    answered = time.monotonic() - t0
    if status != 200:
        raise RuntimeError(f"the Receiver refused push {index}: HTTP {status} {answer.strip()}")

    deadline = t0 + COMMIT_TIMEOUT

    def left() -> float:
        return max(0.0, deadline - time.monotonic())

    missing_artifact = watches.sources.wait([("artifact", SOURCE_NAME, revision)], left())
    missing_applied = watches.kustomizations.wait(
        [("applied", name, revision) for name in names], left()
    )
    missing_config = watches.config_maps.wait(
        [("config", f"{name}-config", str(index)) for name in names], left()
    )
    slack.wait(lambda messages: set(authors) <= set(first_alerts(messages, revision)), left())
    alerts = first_alerts(slack.snapshot(), revision)

    def since(at: float | None) -> float | None:
        return None if at is None else at - t0

    t1 = watches.sources.first(("artifact", SOURCE_NAME, revision))
    result = CommitResult(
        index=index,
        revision=revision,
        webhook_status=status,
        webhook_answer_s=answered,
        artifact_s=since(t1),
        complete_s=None,
        timed_out=False,
    )
    for name, who in zip(names, authors, strict=True):
        result.object_updated_s[name] = since(
            watches.config_maps.first(("config", f"{name}-config", str(index)))
        )
        result.alert_s[name] = since(alerts.get(who))
        result.status_applied_s[name] = since(
            watches.kustomizations.first(("applied", name, revision))
        )
    missing = {
        "artifact": [SOURCE_NAME] if missing_artifact else [],
        "applied": [str(key[1]) for key in missing_applied],
        "object_updated": [str(key[1]) for key in missing_config],
        "alert": [n for n, w in zip(names, authors, strict=True) if w not in alerts],
    }
    result.missing = {what: found for what, found in missing.items() if found}
    result.timed_out = bool(result.missing)
    seen = [
        t
        for t in (
            t1,
            *(alerts.get(w) for w in authors),
            *(watches.config_maps.first(("config", f"{n}-config", str(index))) for n in names),
            *(watches.kustomizations.first(("applied", n, revision)) for n in names),
        )
        if t is not None
    ]
    if not result.timed_out and seen:
        result.complete_s = max(seen) - t0
    return result


# -- statistics ------------------------------------------------------------------------------


def distribution(values: Sequence[float], unit: str) -> dict[str, Any]:
    if not values:
        return {"n": 0, "unit": unit}
    return {
        "n": len(values),
        "unit": unit,
        "p50": round(statistics.median(values), 4),
        "p95": round(common.percentile(values, 0.95), 4),
        "max": round(max(values), 4),
        "min": round(min(values), 4),
        "mean": round(statistics.fmean(values), 4),
    }


def stage_samples(results: Sequence[CommitResult]) -> dict[str, list[float]]:
    samples: dict[str, list[float]] = {key: [] for key, _, _ in STAGES}
    for result in results:
        if result.artifact_s is not None:
            samples["artifact"].append(result.artifact_s)
        if result.complete_s is not None:
            samples["commit_complete"].append(result.complete_s)
        for key, values in (
            ("first_object_updated", result.object_updated_s),
            ("first_alert", result.alert_s),
        ):
            seen = [v for v in values.values() if v is not None]
            if seen:
                samples[key].append(min(seen))
        for name, updated in result.object_updated_s.items():
            alert = result.alert_s.get(name)
            if updated is not None:
                samples["object_updated"].append(updated)
                if result.artifact_s is not None:
                    samples["update_after_artifact"].append(updated - result.artifact_s)
            if alert is not None:
                samples["alert"].append(alert)
                if updated is not None:
                    samples["alert_after_update"].append(alert - updated)
            applied = result.status_applied_s.get(name)
            if applied is not None:
                samples["status_applied"].append(applied)
    return samples


def slack_accounting(
    messages: Sequence[SlackMessage], revisions: Sequence[str], names: Sequence[str]
) -> dict[str, Any]:
    """Every message sorted into expected, duplicate, missing and unexpected.

    Expected: per measured revision and Kustomization one message, the changeset (as
    Flux sends it to Slack). A second message about the same revision from the same
    Kustomization is a duplicate; a message about a measured revision from anything
    else, or one that is not a changeset, is unexpected.
    """
    wanted = set(revisions)
    authors = {author(name) for name in names}
    counts: Counter[tuple[str, str]] = Counter()
    kinds: Counter[str] = Counter()
    unexpected: list[str] = []
    for message in messages:
        if message.revision not in wanted:
            continue
        kinds[message.kind] += 1
        if message.author in authors:
            counts[(message.revision, message.author)] += 1
        if message.author not in authors or message.kind != "change":
            unexpected.append(f"{message.author or '?'} {message.revision}: {message.text[:120]}")
    duplicates = {key: n - 1 for key, n in counts.items() if n > 1}
    missing = [
        (revision, who)
        for revision in revisions
        for who in sorted(authors)
        if counts[(revision, who)] == 0
    ]
    return {
        "expected": len(revisions) * len(authors),
        "received_for_measured_commits": sum(kinds.values()),
        "by_kind": dict(sorted(kinds.items())),
        "duplicates": sum(duplicates.values()),
        "duplicate_examples": [
            f"{who} {revision} x{n + 1}" for (revision, who), n in list(duplicates.items())[:10]
        ],
        "missing": len(missing),
        "missing_examples": [f"{who} {revision}" for revision, who in missing[:10]],
        "unexpected": len(unexpected),
        "unexpected_examples": unexpected[:10],
    }


# -- running it ------------------------------------------------------------------------------


@dataclass(frozen=True)
class RunOptions:
    apps: int
    commits: int
    seed: int
    quick: bool
    log: Callable[[str], None]
    log_level: str = "info"
    keep_logs: Path | None = None


def run_benchmark(options: RunOptions) -> dict[str, Any]:
    started = time.monotonic()
    machine = {**common.machine_info(), "load_average_at_start": common.load_average()}
    phases: dict[str, float] = {}
    with tempfile.TemporaryDirectory(prefix="hw-bench-push-") as tmp:
        workdir = Path(tmp)
        dev = devcluster.provision(workdir / "cluster")
        try:
            dev.start()
            install_crds(dev)
            for namespace in ("headwater-system", FLUX_NAMESPACE, APPS_NAMESPACE):
                kubectl(dev, "create", "namespace", namespace)
            phases["control_plane_s"] = round(time.monotonic() - started, 1)
            options.log(f"control plane up in {phases['control_plane_s']:.0f}s")
            machine["kube_apiserver"] = yaml.safe_load(kubectl(dev, "version", "-o", "json"))[
                "serverVersion"
            ]["gitVersion"]
            return run_with_cluster(dev, workdir, options, machine, phases, started)
        finally:
            dev.stop()
            keep_logs(options.keep_logs, workdir / "cluster", "control-plane")


@dataclass
class Measurement:
    """What the measured commits gave, read before anything is stopped."""

    results: list[CommitResult]
    stopped_early: str
    seconds: float
    cpu_before: ProcessUsage
    cpu_at_end: ProcessUsage
    cpu_after_trailing: ProcessUsage
    rss_idle_mib: float
    peak_setup_mib: float
    peak_mib: float
    peak_is_since: str
    rss_end_mib: float
    git_requests: dict[str, int]
    # kube-apiserver's apiserver_request_total over the commits (every client's).
    api_requests: dict[str, Any]
    watch_restarts: dict[str, int]
    messages: list[SlackMessage]
    strays: int
    log_setup: str
    log_commits: str


def set_up(pipeline: Pipeline, phases: dict[str, float], log: Callable[[str], None]) -> bool:
    """The pipeline's objects, then the first revision applied everywhere (not measured).

    Returns whether Slack heard from every Kustomization about the first revision.
    """
    started = time.monotonic()
    watches, names = pipeline.watches, pipeline.names
    apply(pipeline.dev, pipeline_objects(pipeline.git.url(REPO_NAME), pipeline.slack.webhook_url))
    pipeline.url = webhook_url(pipeline.api, pipeline.running)
    revision = f"{BRANCH}@sha1:{pipeline.first}"
    if watches.sources.wait([("artifact", SOURCE_NAME, revision)], SETUP_TIMEOUT):
        raise TimeoutError(f"the GitRepository never got {revision}")
    apply(pipeline.dev, [kustomization(i) for i in range(len(names))])
    not_applied = watches.kustomizations.wait(
        [("applied", n, revision) for n in names], SETUP_TIMEOUT
    )
    if not_applied:
        raise TimeoutError(
            f"{len(not_applied)} Kustomization(s) never applied {revision}: "
            + failure_summary(watches.kustomizations.latest())
        )
    heard = pipeline.slack.wait(
        lambda messages: len(first_alerts(messages, revision)) >= len(names), 60
    )
    phases["initial_sync_s"] = round(time.monotonic() - started, 1)
    log(f"{len(names)} Kustomizations applied the first revision")
    return heard


def measure_commits(pipeline: Pipeline, options: RunOptions) -> Measurement:
    """Push the commits one after the other; read the controller and the counters."""
    probe = pipeline.probe
    watches = [pipeline.watches.sources, pipeline.watches.kustomizations]
    watches.append(pipeline.watches.config_maps)
    rss_idle = probe.rss_mib()
    peak_setup = probe.peak_rss_mib()
    probe.reset_peak()
    log_offset = len(pipeline.running.logs())
    pipeline.git.clear_requests()
    restarts_before = {w.what: w.relists + w.reconnects for w in watches}
    requests_before = scrape_requests(pipeline.dev)
    cpu_before = probe.usage()
    started = time.monotonic()
    results: list[CommitResult] = []
    previous = pipeline.first
    timeouts_in_a_row = 0
    stopped_early = ""
    for index in range(1, options.commits + 1):
        if time.monotonic() - started > MEASURE_BUDGET:
            stopped_early = f"the {MEASURE_BUDGET:.0f}s budget for the commits ran out"
            break
        result = run_commit(pipeline, index, previous, options.seed)
        results.append(result)
        previous = result.revision.rsplit(":", 1)[1]
        options.log(
            f"commit {index}/{options.commits}: "
            + (
                f"done in {result.complete_s:.1f}s"
                if result.complete_s is not None
                else f"incomplete, missing {json.dumps(result.missing)[:300]}"
            )
        )
        timeouts_in_a_row = timeouts_in_a_row + 1 if result.timed_out else 0
        if timeouts_in_a_row >= MAX_TIMEOUTS_IN_A_ROW:
            stopped_early = f"{MAX_TIMEOUTS_IN_A_ROW} commits in a row never completed"
            break
    seconds = time.monotonic() - started
    cpu_at_end = probe.usage()
    api_requests = summarize_requests(
        request_diff(requests_before, scrape_requests(pipeline.dev)), ["configmaps"]
    )
    time.sleep(TRAILING_WAIT)  # late duplicates are counted too
    log_text = pipeline.running.logs()
    return Measurement(
        results=results,
        stopped_early=stopped_early,
        seconds=seconds,
        cpu_before=cpu_before,
        cpu_at_end=cpu_at_end,
        cpu_after_trailing=probe.usage(),
        rss_idle_mib=rss_idle,
        peak_setup_mib=peak_setup,
        peak_mib=probe.peak_rss_mib(),
        peak_is_since="first measured commit" if probe.hwm_resettable else "process start",
        rss_end_mib=probe.rss_mib(),
        git_requests=dict(
            sorted(
                Counter(
                    r.command or r.path.rsplit("/", 1)[-1] for r in pipeline.git.requests
                ).items()
            )
        ),
        api_requests=api_requests,
        watch_restarts={
            w.what: w.relists + w.reconnects - restarts_before[w.what] for w in watches
        },
        messages=pipeline.slack.snapshot(),
        strays=len(pipeline.slack.strays),
        log_setup=log_text[:log_offset],
        log_commits=log_text[log_offset:],
    )


def run_with_cluster(
    dev: DevCluster,
    workdir: Path,
    options: RunOptions,
    machine: dict[str, Any],
    phases: dict[str, float],
    started: float,
) -> dict[str, Any]:
    project_root = workdir / "git"
    project_root.mkdir()
    [first] = write_git_repo(
        project_root,
        REPO_NAME,
        [("generation 0", repository_tree(options.apps, 0, options.seed))],
        branch=BRANCH,
    )
    env = controller_env(options.log_level)
    controller_dir = workdir / "controllers"
    kubeconfig = dev.kubeconfig
    api = kubernetes.config.new_client_from_config(config_file=str(kubeconfig))
    try:
        with (
            GitHttpServer(project_root) as git,
            SlackRecorder() as slack,
            run_controllers(kubeconfig, controller_dir, extra_env=env) as running,
            FirstSeen(
                kubeconfig, "gitrepositories", _custom_lister(*GROUP_SOURCE), artifact_keys
            ) as sources,
            FirstSeen(
                kubeconfig, "kustomizations", _custom_lister(*GROUP_KUSTOMIZE), applied_keys
            ) as kustomizations,
            FirstSeen(
                kubeconfig,
                "configmaps",
                _config_map_lister(APPS_NAMESPACE),
                config_keys,
                label_selector=f"{OWNER_NAMESPACE_LABEL}={FLUX_NAMESPACE}",
            ) as config_maps,
        ):
            phases["controllers_start_s"] = round(time.monotonic() - started, 1)
            pipeline = Pipeline(
                dev=dev,
                api=api,
                git_root=project_root,
                git=git,
                slack=slack,
                running=running,
                probe=ControllerProbe(running.process.pid),
                watches=Watches(sources, kustomizations, config_maps),
                names=[app_name(i) for i in range(options.apps)],
                first=first,
            )
            initial_alerts = set_up(pipeline, phases, options.log)
            # Quiet for a second at a time (under 5% of a core), for at most a minute.
            phases["settle_before_s"] = round(pipeline.probe.settle(window=1.0, limit=60.0), 2)
            measured = measure_commits(pipeline, options)
    finally:
        api.close()
        keep_logs(options.keep_logs, controller_dir, "controllers")
    return build_report(options, machine, phases, measured, initial_alerts, started)


def build_report(
    options: RunOptions,
    machine: Mapping[str, Any],
    phases: Mapping[str, float],
    measured: Measurement,
    initial_alerts: bool,
    started: float,
) -> dict[str, Any]:
    results = measured.results
    names = [app_name(i) for i in range(options.apps)]
    samples = stage_samples(results)
    before, at_end = measured.cpu_before, measured.cpu_at_end
    cpu = at_end.cpu_s - before.cpu_s
    return {
        **common.report_head(REPORT_NAME, quick=options.quick, seed=options.seed),
        "parameters": {
            "apps": options.apps,
            "commits_requested": options.commits,
            "commit_timeout_s": COMMIT_TIMEOUT,
            "controllers_log_level": options.log_level,
            # `headwater run all` as shipped: HEADWATER_CONCURRENT is left at its default.
            "controllers_concurrent": "default",
        },
        "machine": {**machine, "load_average_at_end": common.load_average()},
        "phases": dict(phases),
        "stages": {key: distribution(samples[key], unit) for key, _, unit in STAGES},
        "measured_commits": len(results),
        "completed_commits": sum(1 for r in results if not r.timed_out),
        "stopped_early": measured.stopped_early,
        "commits": [r.to_json() for r in results],
        "controller_process": {
            "measured_s": round(measured.seconds, 1),
            "cpu_s": round(cpu, 2),
            "cpu_own_s": round(at_end.cpu_self_s - before.cpu_self_s, 2),
            "cpu_children_s": round(at_end.cpu_children_s - before.cpu_children_s, 2),
            "cpu_s_per_commit": round(cpu / max(1, len(results)), 3),
            "cpu_s_per_kustomization_apply": round(cpu / max(1, len(results) * options.apps), 4),
            "cpu_share_of_a_core": round(cpu / max(measured.seconds, 1e-9), 3),
            "cpu_trailing_s": round(measured.cpu_after_trailing.cpu_s - at_end.cpu_s, 2),
            "peak_rss_mib": measured.peak_mib,
            "peak_rss_is_since": measured.peak_is_since,
            "peak_rss_setup_mib": measured.peak_setup_mib,
            "rss_idle_mib": measured.rss_idle_mib,
            "rss_end_mib": measured.rss_end_mib,
            "log_during_setup": log_summary(measured.log_setup),
            "log_during_commits": log_summary(measured.log_commits),
        },
        "slack": {
            **slack_accounting(measured.messages, [r.revision for r in results], names),
            "messages_total": len(measured.messages),
            "initial_sync_alerts_complete": initial_alerts,
            "stray_requests": measured.strays,
        },
        "git_requests_during_commits": measured.git_requests,
        "api_requests_during_commits": {
            **measured.api_requests,
            "per_kustomization_apply": round(
                measured.api_requests["total"] / max(1, len(results) * options.apps), 2
            ),
        },
        "watch_restarts_during_commits": measured.watch_restarts,
        "duration_s": round(time.monotonic() - started, 1),
    }


# -- the report -----------------------------------------------------------------------------


def render_table(report: Mapping[str, Any]) -> str:
    machine, params = report["machine"], report["parameters"]
    proc, slack = report["controller_process"], report["slack"]
    lines = [
        f"# Push to alert benchmark ({report['created']})",
        "",
        f"{machine['cores']} cores, Python {machine['python']}, kube-apiserver "
        f"{machine['kube_apiserver']}. One repository, {params['apps']} Kustomizations "
        f"(one per app path), {report['measured_commits']} commit(s) each changing every "
        "app's ConfigMap, each announced by a signed GitHub push webhook to a Receiver; "
        "the next commit once this one is applied and alerted everywhere. Times from the "
        "webhook POST (t0): artifact published (t1, GitRepository watch), the app's "
        "ConfigMap updated (t2, ConfigMap watch), the Kustomization's first Slack message "
        "with the revision (t3). Load average (1 min) "
        f"{machine['load_average_at_start'][0]:g} at start, "
        f"{machine['load_average_at_end'][0]:g} at end.",
        "",
        "| stage | samples | p50 s | p95 s | max s |",
        "| --- | ---: | ---: | ---: | ---: |",
    ]
    for key, label, _ in STAGES:
        stat = report["stages"][key]
        if stat["n"]:
            lines.append(
                f"| {label} | {stat['n']} | {stat['p50']:.2f} | {stat['p95']:.2f} "
                f"| {stat['max']:.2f} |"
            )
        else:
            lines.append(f"| {label} | 0 | - | - | - |")
    lines += [
        "",
        f"Controller process (`headwater run all`) over the {proc['measured_s']:.0f}s of "
        f"commits: {proc['cpu_s']:.1f} CPU s ({proc['cpu_own_s']:.1f} own, "
        f"{proc['cpu_children_s']:.1f} kustomize/git), {proc['cpu_s_per_commit']:.2f} per "
        f"commit, {proc['cpu_s_per_kustomization_apply']:.3f} per Kustomization applied, "
        f"{proc['cpu_share_of_a_core']:.0%} of a core; peak RSS "
        f"{proc['peak_rss_mib']:.0f} MiB (since the {proc['peak_rss_is_since']}; "
        f"{proc['rss_idle_mib']:.0f} MiB idle before the commits).",
        "",
        *api_request_lines(report),
        f"Slack: {slack['messages_total']} messages in all; for the measured commits "
        f"{slack['received_for_measured_commits']} of {slack['expected']} expected (one "
        "changeset per Kustomization and commit, as Flux routes them), "
        f"{slack['duplicates']} duplicate(s), {slack['missing']} missing, "
        f"{slack['unexpected']} unexpected.",
        "",
    ]
    problems = problem_lines(report)
    if problems:
        lines += ["Problems seen:", "", *(f"- {p}" for p in problems), ""]
    return "\n".join(lines)


def api_request_lines(report: Mapping[str, Any]) -> list[str]:
    """kube-apiserver's count of the requests during the commits (every client's)."""
    requests = report.get("api_requests_during_commits")
    if not requests:
        return []
    top = ", ".join(f"{what} {count}" for what, count in list(requests["by_resource"].items())[:10])
    return [
        f"API requests during the commits (kube-apiserver's count, every client): "
        f"{requests['total']}, {requests['per_kustomization_apply']:.1f} per Kustomization "
        f"applied; by verb and resource: {top}.",
        "",
    ]


def problem_lines(report: Mapping[str, Any]) -> list[str]:
    problems = []
    if report["stopped_early"]:
        problems.append(f"stopped after {report['measured_commits']} commit(s): "
                        f"{report['stopped_early']}")  # fmt: skip
    for commit in report["commits"]:
        if commit["missing"]:
            summary = ", ".join(
                f"{what}: {len(names)} ({', '.join(names[:5])}{', ...' if len(names) > 5 else ''})"
                for what, names in commit["missing"].items()
            )
            problems.append(f"commit {commit['index']} missing after the wait: {summary}")
    slack = report["slack"]
    for example in slack["duplicate_examples"]:
        problems.append(f"duplicate Slack message: {example}")
    for example in slack["unexpected_examples"]:
        problems.append(f"unexpected Slack message: {example}")
    for what, count in report["watch_restarts_during_commits"].items():
        if count:
            problems.append(f"the {what} watch restarted {count} time(s) during the commits")
    for line in report["controller_process"]["log_during_commits"]["first_warnings_and_errors"]:
        problems.append(f"controller log during the commits: {line}")
    return problems


def main(argv: Sequence[str] | None = None) -> int:
    parser = common.argument_parser("bench.push_to_alert", __doc__, "3 apps x 2 commits")
    parser.add_argument("--apps", type=int, default=None, help="Kustomizations (1-100)")
    parser.add_argument("--commits", type=int, default=None, help="measured commits (1-100)")
    add_controller_options(parser)
    args = parser.parse_args(argv)
    apps = args.apps or (QUICK_APPS if args.quick else DEFAULT_APPS)
    commits = args.commits or (QUICK_COMMITS if args.quick else DEFAULT_COMMITS)
    if not 1 <= apps <= 100:
        parser.error("--apps must be between 1 and 100")
    if not 1 <= commits <= 100:
        parser.error("--commits must be between 1 and 100")
    options = RunOptions(
        apps=apps,
        commits=commits,
        seed=args.seed,
        quick=args.quick,
        log=common.progress,
        log_level=args.log_level,
        keep_logs=args.keep_logs,
    )
    report = run_benchmark(options)
    common.publish_report(args.out, REPORT_NAME, report, render_table(report))
    return 0


if __name__ == "__main__":
    sys.exit(main())
