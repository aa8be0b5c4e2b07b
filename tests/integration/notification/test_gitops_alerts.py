"""Alerts a platform team relies on, from git or cluster change to a Slack message."""

from __future__ import annotations

import json
from typing import Any

import pytest
import yaml

from tests.support import builders
from tests.support.builders import alert, git_repository, kustomization, provider, receiver, secret
from tests.support.chatservers import Received, SlackServer
from tests.support.cluster import TestCluster, apply, kubectl_json, wait_for
from tests.support.controllers import RunningControllers
from tests.support.gitrepos import RepoFactory
from tests.support.gitservers import GitHttpServer
from tests.support.metrics import sample_value, scrape
from tests.support.notification import RECEIVER_TOKEN, field_value, github_headers, post
from tests.support.status import wait_ready

pytestmark = pytest.mark.integration


def deployment(replicas: int, image: str = "example/web:1") -> str:
    return yaml.safe_dump(
        builders.deployment(None, "web", replicas=replicas, image=image, container="web")
    )


def gitops(namespace: str, url: str) -> list[dict[str, Any]]:
    # Long intervals: only the webhook, the watch or our requests act.
    return [
        git_repository(namespace, "app", url, interval="1h"),
        kustomization(
            namespace, "app", "app", "./deploy", interval="1h", targetNamespace=namespace
        ),
    ]


def applied(cluster: TestCluster, namespace: str) -> str | None:
    status = kubectl_json(cluster, "get", "kustomization", "app", "-n", namespace).get("status")
    return (status or {}).get("lastAppliedRevision")


def from_kustomization(namespace: str) -> Any:
    def check(request: Received) -> bool:
        if request.method != "POST" or not request.body.startswith(b"{"):
            return False
        attachments = request.json().get("attachments") or [{}]
        return bool(attachments[0].get("author_name") == f"kustomization/app.{namespace}")

    return check


def slack_alerting(namespace: str, slack: SlackServer, severity: str = "info") -> list[Any]:
    return [
        secret(namespace, "slack-url", {"address": slack.webhook_url}),
        provider(namespace, "slack", type="slack", channel="#ops", secretRef={"name": "slack-url"}),
        alert(
            namespace,
            "apps",
            "slack",
            {"kind": "Kustomization", "name": "*"},
            eventSeverity=severity,
        ),
    ]


def test_a_signed_push_is_applied_and_announced_with_the_new_revision(
    cluster: TestCluster,
    namespace: str,
    controllers: RunningControllers,
    slack_server: SlackServer,
    git_repos: RepoFactory,
    git_http_server: GitHttpServer,
) -> None:
    repo = git_repos.create()
    first = repo.commit({"deploy/web.yaml": deployment(1)}, "first")
    apply(
        cluster,
        *slack_alerting(namespace, slack_server),
        secret(namespace, "webhook-token", {"token": RECEIVER_TOKEN}),
        receiver(namespace, "github", "github", "webhook-token", events=["push"]),
        *gitops(namespace, git_http_server.url(repo.name)),
    )
    wait_for(lambda: applied(cluster, namespace) == f"master@sha1:{first}", what="first revision")
    url = (
        controllers.receiver_url
        + wait_ready(cluster, namespace, "receiver", "github")["status"]["webhookPath"]
    )

    second = repo.commit({"deploy/web.yaml": deployment(2)}, "scale to 2")
    push = json.dumps({"ref": "refs/heads/master", "after": second}).encode()
    assert post(url, push, github_headers(push, RECEIVER_TOKEN))[0] == 200

    # The push reaches the cluster without any interval passing...
    wait_for(
        lambda: applied(cluster, namespace) == f"master@sha1:{second}",
        timeout=60,
        what="the pushed commit applied",
    )
    # ...and Slack hears from the Kustomization, with the new revision.
    [message] = slack_server.wait_for(
        lambda r: (
            from_kustomization(namespace)(r)
            and field_value(r, "revision") == f"master@sha1:{second}"
        ),
        what="a Slack message about the applied revision",
    )
    text = message.json()["attachments"][0]["text"]
    assert f"Deployment/{namespace}/web configured" in text


def test_a_kubectl_edit_of_a_managed_deployment_is_healed_and_alerted_with_the_field(
    cluster: TestCluster,
    namespace: str,
    controllers: RunningControllers,
    slack_server: SlackServer,
    git_repos: RepoFactory,
    git_http_server: GitHttpServer,
) -> None:
    repo = git_repos.create()
    head = repo.commit({"deploy/web.yaml": deployment(3, image="example/web:1.2.3")}, "first")
    apply(
        cluster,
        *slack_alerting(namespace, slack_server),
        *gitops(namespace, git_http_server.url(repo.name)),
    )
    wait_for(lambda: applied(cluster, namespace) == f"master@sha1:{head}", what="first revision")

    # Someone edits the live Deployment (kubectl edit/patch is another field manager).
    cluster.kubectl(
        "patch",
        "deployment",
        "web",
        "-n",
        namespace,
        "--type=strategic",
        "-p",
        json.dumps(
            {
                "spec": {
                    "replicas": 1,
                    "template": {
                        "spec": {"containers": [{"name": "web", "image": "example/web:hotfix"}]}
                    },
                }
            }
        ),
    )

    def healed() -> bool:
        live = kubectl_json(cluster, "get", "deployment", "web", "-n", namespace)["spec"]
        image = live["template"]["spec"]["containers"][0]["image"]
        return bool(live["replicas"] == 3 and image == "example/web:1.2.3")

    wait_for(healed, timeout=30, what="the edit reverted without a requested reconcile")

    [message] = slack_server.wait_for(
        lambda r: from_kustomization(namespace)(r) and "Drift detected" in r.body.decode(),
        what="a drift alert",
    )
    payload = message.json()
    attachment = payload["attachments"][0]
    text = attachment["text"]
    assert attachment["color"] == "danger"  # a Warning: someone changed the cluster
    assert f"Deployment/{namespace}/web configured" in text
    assert "spec.replicas: 1 → 3" in text
    assert '"example/web:hotfix" → "example/web:1.2.3"' in text
    assert field_value(message, "revision") == f"master@sha1:{head}"
    events = kubectl_json(cluster, "get", "events", "-n", namespace)["items"]
    assert any(e["reason"] == "DriftDetected" and e["type"] == "Warning" for e in events)

    # The heal and the alert are counted where config/monitoring's dashboard reads them
    # (the alert just after Slack answered: wait for it).
    heals = {"kind": "Kustomization", "name": "app", "namespace": namespace}
    sent = {"namespace": namespace, "provider": "slack", "type": "slack", "result": "sent"}

    def counted() -> str | None:
        text = scrape(controllers.metrics_url)
        drift = sample_value(text, "headwater_drift_corrections_total", heals) or 0
        alerts = sample_value(text, "headwater_notifications_total", sent) or 0
        return text if drift >= 1 and alerts >= 1 else None

    text = wait_for(counted, timeout=30, what="the drift heal and the alert counted")
    failed = {**sent, "result": "failed"}
    assert sample_value(text, "headwater_notifications_total", failed) is None
