"""The notification controller end to end: real control plane, real controllers, real servers.

Events come from the source controller (through the toolkit's HTTP sink) or
are POSTed to the intake as the other controllers would; the stand-ins of
tests/support/chatservers.py play Slack, GitHub and generic webhooks.
"""

from __future__ import annotations

import hashlib
import json
from typing import Any

import pytest

from tests.support.builders import alert, git_repository, provider, receiver, secret
from tests.support.chatservers import (
    GITHUB_TOKEN,
    SLACK_BOT_TOKEN,
    GitHubServer,
    SlackServer,
    WebhookServer,
)
from tests.support.cluster import TestCluster, apply, wait_for
from tests.support.controllers import RunningControllers
from tests.support.gitrepos import RepoFactory
from tests.support.gitservers import GitHttpServer
from tests.support.notification import (
    FILES,
    RECEIVER_TOKEN,
    artifact_revision,
    field_value,
    github_headers,
    post,
    post_event,
    post_until,
    probe_event,
    wire_event,
)
from tests.support.status import condition, events_for, get_object, wait_ready

pytestmark = pytest.mark.integration

# A long interval: only our requests make a GitRepository fetch again.
QUIET: dict[str, Any] = {"interval": "1h", "ref": {"branch": "master"}}

# -- alerts --------------------------------------------------------------------------------


def test_a_new_artifact_reaches_slack_with_its_revision(
    cluster: TestCluster,
    namespace: str,
    controllers: RunningControllers,
    slack_server: SlackServer,
    git_repos: RepoFactory,
    git_http_server: GitHttpServer,
) -> None:
    apply(
        cluster,
        secret(namespace, "slack-url", {"address": slack_server.webhook_url}),
        provider(
            namespace, "slack", type="slack", channel="#deploys", secretRef={"name": "slack-url"}
        ),
        alert(namespace, "sources", "slack"),
    )
    repo = git_repos.create()
    head = repo.commit(FILES, "first")
    apply(cluster, git_repository(namespace, "app", git_http_server.url(repo.name), **QUIET))

    [message] = slack_server.wait_for(
        lambda r: field_value(r, "revision") == f"master@sha1:{head}", what="Slack message"
    )
    payload = message.json()
    assert payload["channel"] == "#deploys"
    assert payload["username"] == "source-controller"
    attachment = payload["attachments"][0]
    assert attachment["author_name"] == f"gitrepository/app.{namespace}"
    assert head in attachment["text"]
    assert attachment["color"] == "good"
    # Only the revision: the digest is dropped as Flux does.
    assert [f["title"] for f in attachment["fields"]] == ["revision"]


def test_slack_web_api_gets_a_multi_line_drift_report_with_the_bot_token(
    cluster: TestCluster,
    namespace: str,
    controllers: RunningControllers,
    slack_server: SlackServer,
) -> None:
    apply(
        cluster,
        secret(namespace, "slack-bot", {"token": SLACK_BOT_TOKEN}),
        provider(
            namespace,
            "slack-bot",
            type="slack",
            address=slack_server.api_url,
            channel="C0DEPLOYS",
            secretRef={"name": "slack-bot"},
        ),
        alert(namespace, "drift", "slack-bot", {"kind": "Kustomization", "name": "apps"}),
    )
    drift = (
        "drift detected and corrected:\n"
        f"Deployment/{namespace}/web: spec.replicas 2 → 5\n"
        f"Secret/{namespace}/creds: data.password (value not shown)"
    )
    event = wire_event(namespace, drift, reason="DriftDetected")
    [request, *_] = post_until(
        controllers,
        event,
        lambda: slack_server.requests("/api/chat.postMessage"),
        "chat.postMessage",
    )
    assert request.headers["Authorization"] == f"Bearer {SLACK_BOT_TOKEN}"
    payload = request.json()
    assert payload["channel"] == "C0DEPLOYS"
    attachment = payload["attachments"][0]
    assert attachment["author_name"] == f"kustomization/apps.{namespace}"
    assert attachment["text"].split("\n") == drift.split("\n")
    assert attachment["fields"] == [
        {"title": "revision", "value": "main@sha1:" + "a" * 40, "short": False}
    ]


def test_generic_hmac_is_signed_and_repeats_are_suppressed(
    cluster: TestCluster, namespace: str, controllers: RunningControllers
) -> None:
    with WebhookServer(hmac_key=b"hmac-shared-key") as server:
        apply(
            cluster,
            secret(
                namespace, "hmac", {"token": "hmac-shared-key", "address": f"{server.url}/flux"}
            ),
            provider(namespace, "signed", type="generic-hmac", secretRef={"name": "hmac"}),
            alert(namespace, "signed", "signed", {"kind": "Kustomization", "name": "*"}),
        )
        post_until(controllers, probe_event(namespace), server.requests, "a signed probe")
        first = wire_event(namespace, "applied revision one")
        assert post_event(controllers, first)[0] == 202
        assert post_event(controllers, first)[0] == 429
        second = wire_event(namespace, "applied revision two")
        assert post_event(controllers, second)[0] == 202
        server.wait_for(lambda r: r.json()["message"] == "applied revision two")
        delivered = [r for r in server.requests() if r.json()["message"] == "applied revision one"]
        assert len(delivered) == 1
        assert all(r.notes["verified"] for r in server.requests())
        assert delivered[0].headers["gotk-component"] == "kustomize-controller"
        body = delivered[0].json()
        assert body["involvedObject"]["name"] == "apps"
        # Metadata arrives merged and stripped of its group prefix.
        assert body["metadata"] == {"revision": "main@sha1:" + "a" * 40}


def test_a_provider_that_is_down_gets_retries_then_a_warning_on_the_alert(
    cluster: TestCluster, namespace: str, controllers: RunningControllers
) -> None:
    with WebhookServer() as server:
        server.fail(500)
        secret_path = "/hooks/p4ssw0rd-in-path"
        apply(
            cluster,
            secret(namespace, "down-url", {"address": server.url + secret_path}),
            provider(namespace, "down", type="generic", secretRef={"name": "down-url"}),
            alert(namespace, "down", "down", {"kind": "Kustomization", "name": "*"}),
        )
        event = wire_event(
            namespace, "health check failed", severity="error", reason="HealthCheckFailed"
        )
        post_until(controllers, probe_event(namespace), server.requests, "a first attempt")
        assert post_event(controllers, event)[0] == 202
        # Flux's schedule: 4 retries 2s, 4s, 8s, 16s apart, then the Warning.
        [warning] = wait_for(
            lambda: [
                e
                for e in events_for(
                    cluster, namespace, "Alert", "down", "NotificationDispatchFailed"
                )
                if f"Kustomization/{namespace}/apps" in e["message"]
            ],
            timeout=120,
            what="NotificationDispatchFailed on the Alert",
        )
        attempts = [r for r in server.requests() if r.json()["involvedObject"]["name"] == "apps"]
    assert len(attempts) == 5
    assert warning["type"] == "Warning"
    message = warning["message"]
    assert f"Kustomization/{namespace}/apps" in message
    assert f"'{namespace}/down'" in message
    assert "HTTP 500" in message
    assert "p4ssw0rd" not in message


def test_github_commit_status_for_a_commit_status_update(
    cluster: TestCluster,
    namespace: str,
    controllers: RunningControllers,
    github_server: GitHubServer,
) -> None:
    apply(
        cluster,
        secret(namespace, "github", {"token": GITHUB_TOKEN}),
        provider(
            namespace,
            "github",
            type="github",
            address=github_server.repo_url("org", "app"),
            secretRef={"name": "github"},
        ),
        alert(namespace, "status", "github", {"kind": "Kustomization", "name": "apps"}),
    )
    sha = "b" * 40
    metadata = {
        "kustomize.toolkit.fluxcd.io/revision": f"main@sha1:{sha}",
        "kustomize.toolkit.fluxcd.io/commit_status": "update",
    }
    post_until(
        controllers,
        wire_event(namespace, "applied", metadata=metadata),
        lambda: github_server.statuses.get(("org", "app", sha)),
        "a commit status",
    )
    uid = get_object(cluster, namespace, "provider", "github")["metadata"]["uid"]
    [status] = github_server.statuses[("org", "app", sha)]
    assert status == {
        "state": "success",
        "context": f"kustomization/apps/{uid.split('-')[0]}",
        "description": "reconciliation succeeded",
    }


def test_the_intake_refuses_malformed_events(controllers: RunningControllers) -> None:
    body = wire_event("default", "x")
    del body["involvedObject"]["kind"]
    status, text = post_event(controllers, body)
    assert status == 400
    assert "involvedObject.kind" in text
    status, _ = post(controllers.events_url + "/", b"x" * (3 * 1024 * 1024 + 10))
    assert status == 413


# -- receivers -----------------------------------------------------------------------------


def test_a_signed_github_push_is_fetched_in_seconds_and_alerted(
    cluster: TestCluster,
    namespace: str,
    controllers: RunningControllers,
    slack_server: SlackServer,
    git_repos: RepoFactory,
    git_http_server: GitHttpServer,
) -> None:
    repo = git_repos.create()
    first = repo.commit(FILES, "first")
    apply(
        cluster,
        provider(namespace, "slack", type="slack", address=slack_server.webhook_url),
        alert(namespace, "sources", "slack"),
        secret(namespace, "webhook-token", {"token": RECEIVER_TOKEN}),
        receiver(namespace, "github", "github", "webhook-token", events=["push"]),
        git_repository(namespace, "app", git_http_server.url(repo.name), **QUIET),
    )
    ready = wait_ready(cluster, namespace, "receiver", "github")
    digest = hashlib.sha256(f"{RECEIVER_TOKEN}github{namespace}".encode()).hexdigest()
    assert ready["status"]["webhookPath"] == f"/hook/{digest}"
    url = controllers.receiver_url + ready["status"]["webhookPath"]
    wait_for(
        lambda: artifact_revision(cluster, namespace, "app") == f"master@sha1:{first}",
        what="the first artifact",
    )
    slack_server.wait_for(lambda r: field_value(r, "revision") == f"master@sha1:{first}")

    second = repo.commit({"deploy/app.yaml": FILES["deploy/app.yaml"] + "data: {}\n"}, "second")
    push = json.dumps({"ref": "refs/heads/master", "after": second}).encode()

    # Forged, unsigned and wrong-event requests are refused and change nothing.
    assert post(url, push, github_headers(push, "not-the-token"))[0] == 400
    assert post(url, push, {"Content-Type": "application/json", "X-GitHub-Event": "push"})[0] == 400
    assert post(url, push, github_headers(push, RECEIVER_TOKEN, event="release"))[0] == 400
    assert post(url + "0", push, github_headers(push, RECEIVER_TOKEN))[0] == 404
    annotations = (
        get_object(cluster, namespace, "gitrepository", "app")["metadata"].get("annotations") or {}
    )
    assert "reconcile.fluxcd.io/requestedAt" not in annotations
    assert artifact_revision(cluster, namespace, "app") == f"master@sha1:{first}"

    assert post(url, push, github_headers(push, RECEIVER_TOKEN, event="ping"))[0] == 200
    status, text = post(url, push, github_headers(push, RECEIVER_TOKEN))
    assert (status, text.strip()) == (200, "reconcile requested for 1 object(s)")
    annotations = get_object(cluster, namespace, "gitrepository", "app")["metadata"]["annotations"]
    assert annotations["reconcile.fluxcd.io/requestedAt"].endswith("Z")
    wait_for(
        lambda: artifact_revision(cluster, namespace, "app") == f"master@sha1:{second}",
        timeout=30,
        what="the pushed commit fetched",
    )
    [message] = slack_server.wait_for(
        lambda r: field_value(r, "revision") == f"master@sha1:{second}", what="Slack message"
    )
    assert second in message.json()["attachments"][0]["text"]


def test_gitlab_receiver_checks_the_token_and_selects_by_labels(
    cluster: TestCluster, namespace: str, controllers: RunningControllers
) -> None:
    apply(
        cluster,
        git_repository(
            namespace,
            "labelled",
            "https://git.invalid/a.git",
            metadata={"labels": {"app": "web"}},
            **QUIET,
        ),
        git_repository(namespace, "other", "https://git.invalid/b.git", **QUIET),
        secret(namespace, "gitlab-token", {"token": RECEIVER_TOKEN}),
        receiver(
            namespace,
            "gitlab",
            "gitlab",
            "gitlab-token",
            {"kind": "GitRepository", "name": "*", "matchLabels": {"app": "web"}},
            events=["Push Hook"],
        ),
    )
    ready = wait_ready(cluster, namespace, "receiver", "gitlab")
    url = controllers.receiver_url + ready["status"]["webhookPath"]
    body = b'{"object_kind":"push"}'

    def requested(name: str) -> str | None:
        metadata = get_object(cluster, namespace, "gitrepository", name)["metadata"]
        return (metadata.get("annotations") or {}).get("reconcile.fluxcd.io/requestedAt")

    wrong = {"X-Gitlab-Token": "guessed", "X-Gitlab-Event": "Push Hook"}
    assert post(url, body, wrong)[0] == 400
    assert post(url, body, {"X-Gitlab-Event": "Push Hook"})[0] == 400
    assert (
        post(url, body, {"X-Gitlab-Token": RECEIVER_TOKEN, "X-Gitlab-Event": "Tag Push Hook"})[0]
        == 400
    )
    assert requested("labelled") is None
    assert (
        post(url, body, {"X-Gitlab-Token": RECEIVER_TOKEN, "X-Gitlab-Event": "Push Hook"})[0] == 200
    )
    assert requested("labelled")
    assert requested("other") is None


def test_a_receiver_without_its_token_is_not_ready_until_the_secret_exists(
    cluster: TestCluster, namespace: str, controllers: RunningControllers
) -> None:
    apply(
        cluster,
        receiver(namespace, "early", "generic", "later"),
    )

    def not_found() -> dict[str, Any] | None:
        ready = condition(get_object(cluster, namespace, "receiver", "early"), "Ready")
        return ready if ready and ready["reason"] == "TokenNotFound" else None

    refused = wait_for(not_found, what="Ready=False TokenNotFound")
    assert refused["status"] == "False"
    assert f"'{namespace}/later'" in refused["message"]
    assert "webhookPath" not in get_object(cluster, namespace, "receiver", "early")["status"]
    apply(cluster, secret(namespace, "later", {"token": "t0ken"}))
    ready = wait_ready(cluster, namespace, "receiver", "early")
    digest = hashlib.sha256(f"t0kenearly{namespace}".encode()).hexdigest()
    assert ready["status"]["webhookPath"] == f"/hook/{digest}"
