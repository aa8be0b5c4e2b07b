"""Notifications when their ends fail: Slack down or rate limiting, the notification
controller itself down or hung while the other controllers emit events.

The controllers under test run as processes of their own (serving only the test's
shard), so their memory and logs are theirs alone. The Slack outage lasts
`HEADWATER_FAULT_OUTAGE_SECONDS` (30 s in CI; bench/faults runs the 5-minute one).
"""

from __future__ import annotations

import contextlib
import json
import os
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
import yaml

from tests.support import builders
from tests.support.chatservers import SlackServer, WebhookServer
from tests.support.cluster import TestCluster, apply, wait_for
from tests.support.controllers import RunningControllers, run_controllers
from tests.support.faults import FaultGate, figure, rss_kib, shard
from tests.support.gitrepos import RepoFactory
from tests.support.gitservers import GitHttpServer
from tests.support.notification import post_event, post_until, probe_event, wire_event
from tests.support.status import applied, events_for, request_reconcile, wait_for_kustomization

pytestmark = pytest.mark.integration

OUTAGE = float(os.environ.get("HEADWATER_FAULT_OUTAGE_SECONDS", "30"))
EVENTS_PER_SECOND = 10


@pytest.fixture
def notification(
    cluster: TestCluster, namespace: str, tmp_path: Path
) -> Iterator[RunningControllers]:
    _, env = shard(namespace)
    with run_controllers(
        cluster.kubeconfig, tmp_path / "notification", which="notification", extra_env=env
    ) as running:
        yield running


def slack_alert(cluster: TestCluster, namespace: str, address: str) -> None:
    labels, _ = shard(namespace)
    apply(
        cluster,
        builders.secret(namespace, "slack-url", {"address": address}, metadata=labels),
        builders.provider(
            namespace,
            "slack",
            type="slack",
            channel="#deploys",
            secretRef={"name": "slack-url"},
            timeout="5s",
            metadata=labels,
        ),
        builders.alert(
            namespace, "deploys", "slack", {"kind": "Kustomization", "name": "*"}, metadata=labels
        ),
    )


def retry_lines(running: RunningControllers) -> int:
    return sum(1 for line in running.logs().splitlines() if "notification failed, retrying" in line)


def test_slack_down_for_an_outage_costs_bounded_memory_and_retries_then_recovers(
    cluster: TestCluster,
    namespace: str,
    notification: RunningControllers,
    slack_server: SlackServer,
) -> None:
    with FaultGate(slack_server.port) as gate:
        path = slack_server.webhook_url.removeprefix(slack_server.url)
        slack_alert(cluster, namespace, f"http://127.0.0.1:{gate.port}{path}")
        post_until(notification, probe_event(namespace), slack_server.requests, "the Alert")
        pid = notification.process.pid
        baseline = rss_kib(pid)

        gate.down()
        statuses: dict[int, int] = {}
        samples: list[int] = []
        sent = 0
        started = time.monotonic()
        while time.monotonic() - started < OUTAGE:
            second = time.monotonic()
            for _ in range(EVENTS_PER_SECOND):
                event = wire_event(namespace, f"outage event {sent}", severity="error")
                status, _ = post_event(notification, event)
                statuses[status] = statuses.get(status, 0) + 1
                sent += 1
            samples.append(rss_kib(pid))
            assert notification.process.poll() is None, "the notification controller died"
            time.sleep(max(0.0, 1.0 - (time.monotonic() - second)))
        accepted = statuses.get(202, 0)
        peak = max(samples)
        retries = retry_lines(notification)
        figure("slack_outage_seconds", OUTAGE)
        figure("slack_outage_events_posted", sent)
        figure("slack_outage_events_accepted", accepted)
        figure("slack_outage_events_refused_503", statuses.get(503, 0))
        figure("slack_outage_rss_baseline_mib", baseline / 1024)
        figure("slack_outage_rss_peak_mib", peak / 1024)
        figure("slack_outage_rss_growth_mib", (peak - baseline) / 1024)
        figure("slack_outage_retries", retries)

        failed = wait_for(
            lambda: events_for(
                cluster, namespace, "Alert", "deploys", "NotificationDispatchFailed"
            ),
            timeout=90,
            what="NotificationDispatchFailed on the Alert",
        )
        count = sum(int(e.get("count") or 1) for e in failed)
        figure("slack_outage_dispatch_failed_events", count)

        # Back: the next event arrives without anybody's help.
        gate.pass_through()
        back = time.monotonic()

        # Deliveries kept through the outage are retried as their backoff ends; while a
        # provider still has its cap of deliveries waiting, a new one is dropped (with a
        # Warning), so new events are sent now and then until one gets through.
        def new_event_delivered() -> bool:
            if any("after the outage" in json.dumps(r.json()) for r in slack_server.requests()):
                return True
            post_event(notification, wire_event(namespace, f"after the outage {time.time()}"))
            return False

        wait_for(new_event_delivered, timeout=180, interval=5, what="recovery")
        figure("slack_outage_recovery_seconds", time.monotonic() - back)

    assert notification.process.poll() is None
    # Every accepted event gets the first try and at most 4 retries, never more.
    assert retries <= 4 * accepted
    # Memory stays bounded: per-provider queue caps drop what cannot wait.
    assert peak - baseline < 150 * 1024, f"RSS grew by {(peak - baseline) / 1024:.0f} MiB"
    assert statuses.keys() <= {202, 503}
    assert "s3cr3tWebhookPath" not in json.dumps(failed)


def test_slack_answering_429_is_retried_after_retry_after_then_reported(
    cluster: TestCluster,
    namespace: str,
    notification: RunningControllers,
    slack_server: SlackServer,
) -> None:
    slack_alert(cluster, namespace, slack_server.webhook_url)
    post_until(notification, probe_event(namespace), slack_server.requests, "the Alert")
    slack_server.fail(429, retry_after="3")
    first = len(slack_server.requests())
    started = time.monotonic()
    assert (
        post_event(notification, wire_event(namespace, "rate limited", severity="error"))[0] == 202
    )
    [warning] = wait_for(
        lambda: [
            e
            for e in events_for(
                cluster, namespace, "Alert", "deploys", "NotificationDispatchFailed"
            )
            if "HTTP 429" in e["message"] and f"Kustomization/{namespace}/apps" in e["message"]
        ],
        timeout=90,
        what="NotificationDispatchFailed naming the 429",
    )
    took = time.monotonic() - started
    attempts = [
        r for r in slack_server.requests()[first:] if "rate limited" in json.dumps(r.json())
    ]
    figure("slack_429_attempts", len(attempts))
    figure("slack_429_seconds_to_warning", took)
    assert len(attempts) == 5  # the first try and 4 retries
    assert all(r.status == 429 for r in attempts)
    # Retry-After: 3 is honoured: four waits of 3 s, not Flux's 2+4+8+16 backoff.
    assert 4 * 3 - 1 <= took < 2 + 4 + 8 + 16, took
    assert warning["type"] == "Warning"
    assert "s3cr3tWebhookPath" not in warning["message"]

    slack_server.recover()
    post_event(notification, wire_event(namespace, "no longer limited"))
    slack_server.wait_for(lambda r: "no longer limited" in json.dumps(r.json()), timeout=60)


def config_map(value: str) -> str:
    return yaml.safe_dump(
        {"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "app"}, "data": {"v": value}}
    )


@contextlib.contextmanager
def emitters(
    cluster: TestCluster, namespace: str, workdir: Path, events_url: str
) -> Iterator[None]:
    """The source and kustomize controllers, posting their events to `events_url`."""
    _, env = shard(namespace)
    env = {**env, "HEADWATER_EVENTS_ADDR": events_url}
    with (
        run_controllers(cluster.kubeconfig, workdir / "source", which="source", extra_env=env),
        run_controllers(
            cluster.kubeconfig, workdir / "kustomize", which="kustomize", extra_env=env
        ),
    ):
        yield


def test_emitters_do_not_wait_for_a_notification_controller_that_is_down_or_hung(
    cluster: TestCluster,
    namespace: str,
    git_repos: RepoFactory,
    git_http_server: GitHttpServer,
    tmp_path: Path,
) -> None:
    labels, _ = shard(namespace)
    repo = git_repos.create()
    repo.commit({"deploy/app.yaml": config_map("0")}, "0")
    rounds = 3
    with WebhookServer() as intake, FaultGate(intake.port) as gate:
        with emitters(cluster, namespace, tmp_path, f"http://127.0.0.1:{gate.port}/"):
            apply(
                cluster,
                builders.git_repository(
                    namespace, "app", git_http_server.url(repo.name), interval="1h", metadata=labels
                ),
                builders.kustomization(
                    namespace,
                    "app",
                    "app",
                    "./deploy",
                    targetNamespace=namespace,
                    interval="1h",
                    metadata=labels,
                ),
            )
            wait_for_kustomization(cluster, namespace, "app", applied(repo.head()), timeout=90)
            took: dict[str, float] = {}
            for mode in ("up", "down", "hung"):
                {"up": gate.pass_through, "down": gate.down, "hung": gate.stall}[mode]()
                durations = []
                for n in range(rounds):
                    commit = repo.commit({"deploy/app.yaml": config_map(f"{mode}-{n}")}, mode)
                    started = time.monotonic()
                    request_reconcile(cluster, namespace, "gitrepository", "app")
                    wait_for_kustomization(cluster, namespace, "app", applied(commit), timeout=90)
                    durations.append(time.monotonic() - started)
                took[mode] = sum(durations) / rounds
                figure(f"emitter_commit_to_applied_seconds_intake_{mode}", took[mode])
            gate.pass_through()
        # Each round records several events (new artifact, apply, success); had any of
        # them waited for the hung intake's 5 s timeout, a round would take 5 s more.
        assert took["hung"] < took["up"] + 4, took
        assert took["down"] < took["up"] + 4, took
        assert intake.requests(), "events reached the intake while it was up"
