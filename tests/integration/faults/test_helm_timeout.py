"""HelmReleases whose install outlasts `spec.timeout`: a Deployment that never becomes
ready, and a pre-install hook that never finishes.

Each install attempt ends at the timeout with Flux's `InstallFailed` ("Helm install
failed for release <ns>/<name> with chart <chart>@<version>: <helm's timeout error>"),
remediation follows the spec (`install.remediation.retries`: uninstalled and retried,
or left failed with no retries), then the release is Stalled (`RetriesExceeded`) and
no further helm install runs: the work stays bounded by the retries the spec allows.

The controllers run as a process of their own serving only this test's shard, so
the helm processes they start are counted from their own /metrics.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.support import builders
from tests.support.charts import NOWHERE, add_wordpress
from tests.support.cluster import TestCluster, apply, get_json
from tests.support.controllers import RunningControllers, run_controllers
from tests.support.faults import figure, shard
from tests.support.helmrepos import ChartRepo, ChartRepoServer, helm_history
from tests.support.metrics import sample_value, scrape
from tests.support.status import condition, events_for, has_condition, wait_for_helmrelease

pytestmark = pytest.mark.integration

TIMEOUT = 10  # seconds: spec.timeout of both releases
INTERVAL = 5  # seconds: spec.interval, so a busy loop would show within the window

# A pre-install hook Job whose pod no node can take: helm waits for it until the timeout.
STUCK_HOOK = f"""\
apiVersion: batch/v1
kind: Job
metadata:
  name: {{{{ .Release.Name }}}}-migrate
  annotations:
    helm.sh/hook: pre-install
    helm.sh/hook-delete-policy: before-hook-creation
spec:
  backoffLimit: 0
  template:
    spec:
      restartPolicy: Never
      nodeSelector: {NOWHERE}
      containers:
        - name: migrate
          image: busybox
          command: [sh, -c, "sleep 3600"]
"""


@pytest.fixture
def own(cluster: TestCluster, namespace: str, tmp_path: Path) -> Iterator[RunningControllers]:
    _, env = shard(namespace)
    with run_controllers(cluster.kubeconfig, tmp_path / "ctl", extra_env=env) as running:
        yield running


def helm_installs(metrics_url: str) -> float:
    """How many `helm install`/`upgrade --install` processes this instance started."""
    text = scrape(metrics_url)
    return sum(
        sample_value(text, "headwater_helm_commands_total", {"command": command}) or 0.0
        for command in ("install", "upgrade")
    )


def test_installs_past_the_timeout_fail_at_it_are_remediated_per_spec_and_stop(
    cluster: TestCluster,
    namespace: str,
    own: RunningControllers,
    tmp_path: Path,
) -> None:
    labels, _ = shard(namespace)
    repo = ChartRepo(tmp_path / "charts")
    with ChartRepoServer(repo) as server:
        add_wordpress(repo, "1.0.0")
        repo.add("migrating", "1.0.0", extra_files={"templates/migrate.yaml": STUCK_HOOK})
        source = {"kind": "HelmRepository", "name": "charts"}

        def release(name: str, chart: str, **spec: Any) -> list[dict[str, Any]]:
            return [
                builders.helm_chart(
                    namespace, name, chart, version="1.0.0", sourceRef=source, metadata=labels
                ),
                builders.helm_release(
                    namespace,
                    name,
                    chartRef={"kind": "HelmChart", "name": name},
                    interval=f"{INTERVAL}s",
                    timeout=f"{TIMEOUT}s",
                    metadata=labels,
                    **spec,
                ),
            ]

        apply(
            cluster,
            builders.helm_repository(namespace, "charts", server.url, metadata=labels),
            # Never ready: its web Deployment's pods are never scheduled. One retry.
            *release(
                "web",
                "wordpress",
                values={"web": {"nodeSelector": NOWHERE}},
                install={"remediation": {"retries": 1}},
            ),
            # Never installed: its pre-install hook never finishes. No retries (Flux's
            # default), so the failed release is left for a person to look at.
            *release("hook", "migrating"),
        )
        started = time.monotonic()

        def failed_once(obj: dict[str, Any]) -> bool:
            released = condition(obj, "Released")
            return bool(released and released["reason"] == "InstallFailed")

        first = wait_for_helmrelease(
            cluster, namespace, "hook", failed_once, timeout=120, what="the hook's timeout"
        )
        figure("helm_hook_install_failed_seconds", time.monotonic() - started)
        hook_message = condition(first, "Released")["message"]  # type: ignore[index]
        assert hook_message.startswith(
            f"Helm install failed for release {namespace}/hook with chart migrating@1.0.0: "
        ), hook_message
        assert "pre-install" in hook_message, hook_message

        web = wait_for_helmrelease(
            cluster,
            namespace,
            "web",
            has_condition("Stalled", "True", "RetriesExceeded"),
            timeout=180,
            what="web's install retries spent",
        )
        figure("helm_web_stalled_seconds", time.monotonic() - started)
        hook = wait_for_helmrelease(
            cluster,
            namespace,
            "hook",
            has_condition("Stalled", "True", "RetriesExceeded"),
            timeout=60,
            what="the hook's install retries spent",
        )

        # web: two attempts (1 + 1 retry), each uninstalled, nothing left behind.
        assert web["status"]["installFailures"] == 2
        assert condition(web, "Stalled")["message"] == "Failed to install after 2 attempt(s)"  # type: ignore[index]
        ready = condition(web, "Ready")
        assert ready is not None and ready["status"] == "False"
        released = condition(web, "Released")
        assert released is not None and released["reason"] == "InstallFailed"
        web_message = released["message"]
        assert web_message.startswith(
            f"Helm install failed for release {namespace}/web with chart wordpress@1.0.0: "
        ), web_message
        figure("helm_web_failure_message", web_message.split(": ", 1)[1][:120])
        remediated = condition(web, "Remediated")
        assert remediated is not None and remediated["reason"] == "UninstallSucceeded"
        assert helm_history(cluster, namespace, "web") == []
        assert get_json(cluster, "deployment", "web-web", "-n", namespace) is None

        # hook: one attempt, not remediated (retries 0), the failed release kept.
        assert hook["status"]["installFailures"] == 1
        assert condition(hook, "Stalled")["message"] == "Failed to install after 1 attempt(s)"  # type: ignore[index]
        assert condition(hook, "Ready")["status"] == "False"  # type: ignore[index]
        assert [entry["status"] for entry in helm_history(cluster, namespace, "hook")] == ["failed"]
        figure("helm_hook_failure_message", hook_message.split(": ", 1)[1][:120])

        failed_events = [
            e
            for name in ("web", "hook")
            for e in events_for(cluster, namespace, "HelmRelease", name, "InstallFailed")
        ]
        assert failed_events and all(e["type"] == "Warning" for e in failed_events)

        # Bounded work: stalled releases keep their interval but start no helm install.
        installs = helm_installs(own.metrics_url)
        figure("helm_installs_until_stalled", installs)
        assert installs == 3  # web twice, hook once
        window = 6 * INTERVAL
        time.sleep(window)
        after = helm_installs(own.metrics_url)
        figure(f"helm_installs_in_{window}s_after_stalled", after - installs)
        assert after == installs
        for name, failures in (("web", 2), ("hook", 1)):
            obj = get_json(cluster, "helmrelease", name, "-n", namespace)
            assert obj is not None and obj["status"]["installFailures"] == failures
            assert condition(obj, "Stalled")["reason"] == "RetriesExceeded"  # type: ignore[index]
        # Not upgraded behind its back: an upgrade of the failed release would skip the
        # pre-install hook that failed and call it a success.
        assert [entry["status"] for entry in helm_history(cluster, namespace, "hook")] == ["failed"]
    assert own.process.poll() is None
