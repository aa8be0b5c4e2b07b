"""HelmRelease end to end: real charts in a real chart repository, the real source and
helm controllers, the real helm binary, the real control plane.

Charts come from a chart repository on loopback through a HelmRepository and a
HelmChart the source controller pulls (see conftest.py); a new chart version is
published by adding it to the repository and reindexing.
"""

from __future__ import annotations

import os
import re
import signal
import subprocess
import time
import urllib.request
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
import yaml

from tests.support.builders import alert, configmap, helm_release, provider, secret
from tests.support.charts import NOWHERE, Charts
from tests.support.chatservers import Received, SlackServer
from tests.support.cluster import TestCluster, apply, get_json, wait_for
from tests.support.controllers import RunningControllers
from tests.support.helmrepos import HELM, helm_history
from tests.support.notification import field_value, slack_attachment_from
from tests.support.status import (
    condition,
    deployment_available,
    events_for,
    has_condition,
    is_ready,
    request_reconcile,
    wait_for_helmrelease,
    wait_for_object,
)

pytestmark = pytest.mark.integration


def helm_commands(controllers: RunningControllers) -> float:
    """helm processes the controllers have started so far (their own metric)."""
    with urllib.request.urlopen(f"{controllers.metrics_url}/metrics", timeout=5) as response:
        text = response.read().decode()
    return sum(
        float(match.group(1))
        for match in re.finditer(r"^headwater_helm_commands_total\{[^}]*\} (\S+)$", text, re.M)
    )


def deployment(cluster: TestCluster, namespace: str, name: str) -> dict[str, Any] | None:
    return get_json(cluster, "deployment", name, "-n", namespace)


def chart_ref_release(namespace: str, **spec: Any) -> dict[str, Any]:
    """HelmRelease `blog` of the user's own HelmChart `wordpress`."""
    return helm_release(
        namespace, "blog", chartRef={"kind": "HelmChart", "name": "wordpress"}, **spec
    )


def install_chartref_release(
    cluster: TestCluster, charts: Charts, namespace: str, **spec: Any
) -> dict[str, Any]:
    """wordpress 1.0.0 in the repository, a HelmChart of it and a HelmRelease, installed."""
    charts.publish("1.0.0")
    apply(cluster, charts.helm_chart("wordpress"), chart_ref_release(namespace, **spec))
    return wait_for_helmrelease(cluster, namespace, "blog", is_ready(), what="first install")


def test_install_upgrade_noop_and_uninstall(
    cluster: TestCluster,
    controllers: RunningControllers,
    namespace: str,
    charts: Charts,
) -> None:
    # spec.chart: the release creates (and owns) HelmChart <namespace>-<name>.
    release = helm_release(
        namespace, "blog", chart=charts.template(version="1.x"), values={"replicaCount": 1}
    )
    apply(cluster, release)
    chart_name = f"{namespace}-blog"
    owned = wait_for(
        lambda: get_json(cluster, "helmchart", chart_name, "-n", namespace),
        what="the HelmChart the release owns",
    )
    assert owned["spec"]["chart"] == "wordpress"
    assert owned["spec"]["version"] == "1.x"
    assert owned["metadata"]["labels"]["helm.toolkit.fluxcd.io/name"] == "blog"
    assert owned["metadata"]["ownerReferences"][0]["kind"] == "HelmRelease"
    # The repository has no wordpress yet: the source controller has nothing to pull.
    waiting = wait_for_helmrelease(
        cluster,
        namespace,
        "blog",
        has_condition("Ready", "False", "ArtifactFailed"),
        what="no artifact",
    )
    message = condition(waiting, "Ready")["message"]  # type: ignore[index]
    assert f"HelmChart '{namespace}/{chart_name}' is not ready" in message

    charts.publish("1.0.0")
    obj = wait_for_helmrelease(
        cluster, namespace, "blog", is_ready("True", "InstallSucceeded"), what="the install"
    )
    status = obj["status"]
    assert condition(obj, "Released")["reason"] == "InstallSucceeded"  # type: ignore[index]
    assert status["lastAttemptedRevision"] == "1.0.0"
    assert status["lastAttemptedConfigDigest"].startswith("sha256:")
    assert status["helmChart"] == f"{namespace}/{chart_name}"
    snapshot = status["history"][0]
    assert snapshot["name"] == "blog"
    assert snapshot["version"] == 1
    assert snapshot["status"] == "deployed"
    assert snapshot["chartName"] == "wordpress"
    assert snapshot["chartVersion"] == "1.0.0"
    assert snapshot["appVersion"] == "6.4"
    assert snapshot["configDigest"] == status["lastAttemptedConfigDigest"]
    wait_for(
        lambda: deployment_available(cluster, namespace, "blog-web"),
        what="web Deployment available",
    )
    wait_for(
        lambda: deployment_available(cluster, namespace, "blog-db"), what="db Deployment available"
    )
    assert get_json(cluster, "service", "blog-db", "-n", namespace) is not None

    # Unchanged chart and values: a reconcile starts no helm process, makes no revision.
    before = helm_commands(controllers)
    assert before > 0  # the install above was counted
    token = request_reconcile(cluster, namespace, "helmrelease", "blog")
    wait_for_helmrelease(
        cluster,
        namespace,
        "blog",
        lambda o: o["status"].get("lastHandledReconcileAt") == token,
        what="the requested reconcile",
    )
    assert helm_commands(controllers) == before
    assert [r["revision"] for r in helm_history(cluster, namespace, "blog")] == [1]

    # forceAt (with an equal requestedAt, as `flux reconcile --force` sets them) upgrades anyway.
    token = str(time.time_ns())
    cluster.kubectl(
        "annotate",
        "--overwrite",
        "helmrelease",
        "blog",
        "-n",
        namespace,
        f"reconcile.fluxcd.io/requestedAt={token}",
        f"reconcile.fluxcd.io/forceAt={token}",
    )
    obj = wait_for_helmrelease(
        cluster,
        namespace,
        "blog",
        lambda o: o["status"].get("lastHandledForceAt") == token and is_ready()(o),
        what="the forced release",
    )
    assert obj["status"]["history"][0]["version"] == 2
    assert condition(obj, "Released")["reason"] == "UpgradeSucceeded"  # type: ignore[index]

    # A values change is an upgrade.
    release["spec"]["values"] = {"replicaCount": 2}
    apply(cluster, release)
    obj = wait_for_helmrelease(
        cluster,
        namespace,
        "blog",
        lambda o: (
            is_ready("True", "UpgradeSucceeded")(o) and o["status"]["history"][0]["version"] == 3
        ),
        what="the upgrade for new values",
    )
    assert obj["status"]["history"][0]["configDigest"] != snapshot["configDigest"]
    assert deployment(cluster, namespace, "blog-web")["spec"]["replicas"] == 2  # type: ignore[index]
    assert [r["status"] for r in helm_history(cluster, namespace, "blog")] == [
        "superseded",
        "superseded",
        "deployed",
    ]

    # A new chart version in the repository, within 1.x, is an upgrade too.
    charts.publish("1.1.0")
    obj = wait_for_helmrelease(
        cluster,
        namespace,
        "blog",
        lambda o: (
            is_ready("True", "UpgradeSucceeded")(o)
            and o["status"]["history"][0]["chartVersion"] == "1.1.0"
        ),
        what="the upgrade to the new chart version",
    )
    assert obj["status"]["lastAttemptedRevision"] == "1.1.0"
    assert obj["status"]["history"][0]["version"] == 4

    # Deleting the HelmRelease uninstalls the release and removes the HelmChart it owns.
    cluster.kubectl("delete", "helmrelease", "blog", "-n", namespace, "--wait=true")
    assert helm_history(cluster, namespace, "blog") == []
    wait_for(
        lambda: (
            deployment(cluster, namespace, "blog-web") is None
            and get_json(cluster, "helmchart", chart_name, "-n", namespace) is None
        ),
        what="the release's objects and HelmChart gone",
    )


def from_release(namespace: str, text: str) -> Callable[[Received], bool]:
    return slack_attachment_from(f"helmrelease/blog.{namespace}", text)


def test_bad_upgrade_is_rolled_back(
    cluster: TestCluster,
    controllers: RunningControllers,
    namespace: str,
    charts: Charts,
    slack_server: SlackServer,
) -> None:
    apply(
        cluster,
        secret(namespace, "slack-url", {"address": slack_server.webhook_url}),
        provider(namespace, "slack", type="slack", channel="#ops", secretRef={"name": "slack-url"}),
        alert(namespace, "releases", "slack", {"kind": "HelmRelease", "name": "*"}),
    )
    install_chartref_release(cluster, charts, namespace)
    # Web pods that no node can take: the upgrade's wait never sees them Ready.
    apply(
        cluster,
        chart_ref_release(
            namespace,
            timeout="8s",
            values={"web": {"nodeSelector": NOWHERE}},
            # force: helm v4's --force-replace, on the upgrade and on its rollback.
            upgrade={"force": True, "remediation": {"remediateLastFailure": True}},
            rollback={"force": True},
        ),
    )
    obj = wait_for_helmrelease(
        cluster,
        namespace,
        "blog",
        has_condition("Remediated", "True", "RollbackSucceeded"),
        what="the rollback",
        timeout=120,
    )
    assert condition(obj, "Released")["reason"] == "UpgradeFailed"  # type: ignore[index]
    ready = condition(obj, "Ready")
    assert ready is not None and ready["status"] == "False"
    assert ready["reason"] == "RollbackSucceeded"
    stalled = condition(obj, "Stalled")
    assert stalled is not None and stalled["reason"] == "RetriesExceeded"
    assert obj["status"]["upgradeFailures"] == 1
    assert [r["status"] for r in helm_history(cluster, namespace, "blog")] == [
        "superseded",
        "failed",
        "deployed",
    ]
    web = deployment(cluster, namespace, "blog-web")
    assert web is not None and "nodeSelector" not in web["spec"]["template"]["spec"]
    assert obj["status"]["history"][0]["version"] == 3
    # The failure reaches Slack, with the chart version as the revision.
    [failure] = slack_server.wait_for(
        from_release(namespace, "Helm upgrade failed"), what="the upgrade failure in Slack"
    )
    assert field_value(failure, "revision") == "1.0.0"
    slack_server.wait_for(
        from_release(namespace, "Helm rollback to previous release"), what="the rollback in Slack"
    )


def test_failures_leave_the_last_good_release_untouched(
    cluster: TestCluster,
    controllers: RunningControllers,
    namespace: str,
    charts: Charts,
) -> None:
    install_chartref_release(cluster, charts, namespace)

    def untouched() -> None:
        history = helm_history(cluster, namespace, "blog")
        assert [(r["revision"], r["status"]) for r in history] == [(1, "deployed")]

    # Bad YAML in a values ConfigMap.
    apply(
        cluster,
        configmap(namespace, "bad-values", {"values.yaml": "replicaCount: [unclosed\n"}),
        chart_ref_release(namespace, valuesFrom=[{"kind": "ConfigMap", "name": "bad-values"}]),
    )
    obj = wait_for_helmrelease(
        cluster, namespace, "blog", has_condition("Ready", "False", "InitFailed"), what="bad values"
    )
    message = condition(obj, "Ready")["message"]  # type: ignore[index]
    assert f"ConfigMap '{namespace}/bad-values'" in message and "invalid YAML" in message
    untouched()
    [init_failed] = events_for(cluster, namespace, "HelmRelease", "blog", reason="InitFailed")
    assert init_failed["type"] == "Warning"
    assert init_failed["metadata"]["annotations"]["helm.toolkit.fluxcd.io/revision"] == "1.0.0"

    # A values key the ConfigMap does not have.
    apply(
        cluster,
        chart_ref_release(
            namespace, valuesFrom=[{"kind": "ConfigMap", "name": "bad-values", "valuesKey": "prod"}]
        ),
    )
    wait_for_helmrelease(
        cluster,
        namespace,
        "blog",
        lambda o: (
            has_condition("Ready", "False", "InitFailed")(o)
            and "missing key 'prod'" in condition(o, "Ready")["message"]  # type: ignore[index]
        ),
        what="a missing values key",
    )
    untouched()

    # A chart that fails to render, published as a new version in the repository.
    apply(cluster, chart_ref_release(namespace))
    wait_for_helmrelease(cluster, namespace, "blog", is_ready(), what="back to good")
    charts.publish("1.1.0", broken=True)
    obj = wait_for_helmrelease(
        cluster,
        namespace,
        "blog",
        has_condition("Ready", "False", "UpgradeFailed"),
        what="the broken chart",
    )
    message = condition(obj, "Ready")["message"]  # type: ignore[index]
    assert "wordpress@1.1.0" in message and "noSuchFunction" in message
    assert obj["status"]["lastAttemptedRevision"] == "1.1.0"
    assert obj["status"]["history"][0]["chartVersion"] == "1.0.0"
    untouched()


def test_release_stuck_pending_by_a_crash_is_unlocked(
    cluster: TestCluster,
    controllers: RunningControllers,
    namespace: str,
    charts: Charts,
    tmp_path: Path,
) -> None:
    install_chartref_release(cluster, charts, namespace)
    chart = charts.repo.root / "wordpress-1.0.0.tgz"
    values = tmp_path / "stuck.yaml"
    values.write_text(yaml.safe_dump({"web": {"nodeSelector": NOWHERE}}))
    # A helm upgrade that dies mid-way, as it would with a crashed controller.
    upgrade = subprocess.Popen(
        [
            *(HELM, "upgrade", "blog", str(chart), "-n", namespace, "-f", str(values)),
            *("--wait", "--timeout", "120s"),
        ],
        env={**os.environ, "KUBECONFIG": str(cluster.kubeconfig)},
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        start_new_session=True,
    )
    try:
        wait_for(
            lambda: any(
                r["status"] == "pending-upgrade" for r in helm_history(cluster, namespace, "blog")
            ),
            what="a pending-upgrade revision",
        )
    finally:
        os.killpg(upgrade.pid, signal.SIGKILL)
        upgrade.wait()
    time.sleep(0.5)
    request_reconcile(cluster, namespace, "helmrelease", "blog")
    obj = wait_for_helmrelease(
        cluster,
        namespace,
        "blog",
        lambda o: (
            is_ready()(o)
            and (o["status"].get("history") or [{}])[0].get("status") == "deployed"
            and o["status"]["history"][0]["version"] >= 3
        ),
        what="the unlocked release deployed again",
    )
    history = helm_history(cluster, namespace, "blog")
    assert history[-1]["status"] == "deployed"
    assert obj["status"]["history"][0]["version"] == history[-1]["revision"]
    # The unlock rolled back to the desired revision: released, with nothing left to do.
    released = condition(obj, "Released")
    assert released is not None and released["status"] == "True"
    assert "is deployed with the desired values" in released["message"]
    web = deployment(cluster, namespace, "blog-web")
    assert web is not None and "nodeSelector" not in web["spec"]["template"]["spec"]


def test_helm_tests_run_and_failures_can_be_ignored(
    cluster: TestCluster,
    controllers: RunningControllers,
    namespace: str,
    charts: Charts,
) -> None:
    obj = install_chartref_release(cluster, charts, namespace, test={"enable": True})
    assert condition(obj, "TestSuccess")["status"] == "True"  # type: ignore[index]
    assert condition(obj, "Ready")["reason"] == "TestSucceeded"  # type: ignore[index]
    hooks = obj["status"]["history"][0]["testHooks"]
    assert hooks["blog-test-db"]["phase"] == "Succeeded"

    # A test Job that never runs fails its test; ignored, the release stays Ready.
    apply(
        cluster,
        chart_ref_release(
            namespace,
            values={"tests": {"nodeSelector": NOWHERE}},
            test={"enable": True, "ignoreFailures": True, "timeout": "5s"},
        ),
    )
    obj = wait_for_helmrelease(
        cluster,
        namespace,
        "blog",
        lambda o: (
            is_ready("True", "UpgradeSucceeded")(o) and has_condition("TestSuccess", "False")(o)
        ),
        what="a failed, ignored test",
    )
    assert condition(obj, "TestSuccess")["reason"] == "TestFailed"  # type: ignore[index]
    assert [r["status"] for r in helm_history(cluster, namespace, "blog")][-1] == "deployed"


def test_suspended_release_is_left_alone(
    cluster: TestCluster,
    controllers: RunningControllers,
    namespace: str,
    charts: Charts,
) -> None:
    install_chartref_release(cluster, charts, namespace)
    apply(cluster, chart_ref_release(namespace, suspend=True, values={"replicaCount": 3}))
    time.sleep(3)
    assert [r["revision"] for r in helm_history(cluster, namespace, "blog")] == [1]
    # Deleting a suspended HelmRelease leaves its release installed, as in Flux.
    cluster.kubectl("delete", "helmrelease", "blog", "-n", namespace, "--wait=true")
    assert [r["status"] for r in helm_history(cluster, namespace, "blog")] == ["deployed"]


def test_a_failed_test_is_remediated_unless_ignored(
    cluster: TestCluster,
    controllers: RunningControllers,
    namespace: str,
    charts: Charts,
) -> None:
    install_chartref_release(cluster, charts, namespace)
    apply(
        cluster,
        chart_ref_release(
            namespace,
            values={"tests": {"nodeSelector": NOWHERE}},
            test={"enable": True, "timeout": "4s"},
            upgrade={"remediation": {"remediateLastFailure": True}},
        ),
    )
    obj = wait_for_helmrelease(
        cluster,
        namespace,
        "blog",
        has_condition("Remediated", "True", "RollbackSucceeded"),
        what="the rollback of a release whose test failed",
    )
    assert condition(obj, "TestSuccess")["reason"] == "TestFailed"  # type: ignore[index]
    assert condition(obj, "Ready")["status"] == "False"  # type: ignore[index]
    assert obj["status"]["upgradeFailures"] == 1
    history = helm_history(cluster, namespace, "blog")
    assert [r["status"] for r in history] == ["superseded", "superseded", "deployed"]
    assert history[-1]["description"] == "Rollback to 1"


def test_source_failures_leave_the_last_good_release_untouched(
    cluster: TestCluster,
    controllers: RunningControllers,
    namespace: str,
    charts: Charts,
) -> None:
    charts.publish("1.0.0")
    apply(cluster, helm_release(namespace, "blog", chart=charts.template(version="1.x")))
    wait_for_helmrelease(cluster, namespace, "blog", is_ready(), what="the first install")
    chart_name = f"{namespace}-blog"

    def untouched() -> None:
        history = helm_history(cluster, namespace, "blog")
        assert [(r["revision"], r["status"]) for r in history] == [(1, "deployed")]
        assert deployment_available(cluster, namespace, "blog-web")

    # A version range nothing in the repository matches.
    apply(cluster, helm_release(namespace, "blog", chart=charts.template(version="9.x")))
    obj = wait_for_helmrelease(
        cluster,
        namespace,
        "blog",
        lambda o: (
            has_condition("Ready", "False", "ArtifactFailed")(o)
            and "matching '9.x'" in condition(o, "Ready")["message"]  # type: ignore[index]
        ),
        what="no matching version",
    )
    message = condition(obj, "Ready")["message"]  # type: ignore[index]
    assert f"HelmChart '{namespace}/{chart_name}' is not ready" in message
    assert "no 'wordpress' chart with version matching '9.x' found" in message
    untouched()

    # A chart the repository does not have.
    missing = charts.template(version="1.x")
    missing["spec"]["chart"] = "wordpres"
    apply(cluster, helm_release(namespace, "blog", chart=missing))
    obj = wait_for_helmrelease(
        cluster,
        namespace,
        "blog",
        lambda o: (
            has_condition("Ready", "False", "ArtifactFailed")(o)
            and "no chart name 'wordpres'" in condition(o, "Ready")["message"]  # type: ignore[index]
        ),
        what="a chart not found",
    )
    untouched()

    # Back to a good spec: Ready again, with no new revision (nothing changed).
    apply(cluster, helm_release(namespace, "blog", chart=charts.template(version="1.x")))
    wait_for_helmrelease(cluster, namespace, "blog", is_ready(), what="back to good")
    untouched()

    # An index larger than the source controller takes (Flux's 50 MiB default):
    # the HelmRepository fails with Flux's reason and keeps its last index.
    good_index = get_json(cluster, "helmrepository", "charts", "-n", namespace)["status"][  # type: ignore[index]
        "artifact"
    ]
    with (charts.repo.root / "index.yaml").open("r+b") as index:
        index.truncate(50 * 1024 * 1024 + 1)
    request_reconcile(cluster, namespace, "helmrepository", "charts")
    repository = wait_for_object(
        cluster,
        namespace,
        "HelmRepository",
        "charts",
        has_condition("Ready", "False", "Failed"),
        what="the index refused for its size",
    )
    message = condition(repository, "Ready")["message"]  # type: ignore[index]
    assert "failed to fetch Helm repository index" in message
    assert "more than the limit of 52428800 bytes" in message
    assert repository["status"]["artifact"] == good_index
    request_reconcile(cluster, namespace, "helmrelease", "blog")
    untouched()
    assert is_ready()(get_json(cluster, "helmrelease", "blog", "-n", namespace))  # type: ignore[arg-type]
