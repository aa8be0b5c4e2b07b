"""The controllers work as the ServiceAccounts config/ installs, not as the cluster admin.

Source, kustomize and notification each run with a token of their own
ServiceAccount (tests/integration/install/conftest.py). The daily walk —
git to cluster, a sealed secret decrypted, a Slack alert, a webhook push —
works with exactly those identities, and nothing they do is refused.
"""

from __future__ import annotations

import base64
import json
from pathlib import Path
from typing import Any

import pytest
import yaml

from controllers.toolkit.runtime.leader import lease_name
from tests.integration.install.conftest import SELECTORS, Identities, shard_labels
from tests.support.builders import (
    alert,
    configmap,
    git_repository,
    kustomization,
    provider,
    receiver,
    secret,
)
from tests.support.chatservers import Received, SlackServer
from tests.support.cli import run_headwater
from tests.support.cluster import TestCluster, apply, get_json, wait_for
from tests.support.gitrepos import RepoFactory
from tests.support.gitservers import GitHttpServer
from tests.support.install import SYSTEM_NAMESPACE
from tests.support.notification import RECEIVER_TOKEN, field_value, github_headers, post
from tests.support.scaleout import lease_holder
from tests.support.status import applied, wait_for_kustomization, wait_ready

pytestmark = pytest.mark.integration

PASSWORD = "s3cr3t-installed-identity-2718"


def sealed(cluster: TestCluster, tmp_path: Path, namespace: str) -> str:
    """A Secret sealed with the kustomize controller's key, as a user seals one."""

    def fetch() -> bytes | None:
        result = run_headwater(
            "seal",
            "--fetch-cert",
            "--controller-namespace",
            SYSTEM_NAMESPACE,
            kubeconfig=cluster.kubeconfig,
        )
        return result.stdout if b"BEGIN CERTIFICATE" in result.stdout else None

    cert = tmp_path / "cert.pem"
    cert.write_bytes(wait_for(fetch, timeout=90, what="the kustomize controller's sealing key"))
    plain = secret(namespace, "db", {"password": PASSWORD})
    result = run_headwater("seal", "--cert", str(cert), input=yaml.safe_dump(plain).encode())
    assert result.returncode == 0, result.stderr.decode()
    return result.stdout.decode()


def secret_value(cluster: TestCluster, namespace: str, name: str) -> str | None:
    found = get_json(cluster, "secret", name, "-n", namespace)
    data = (found or {}).get("data") or {}
    return base64.b64decode(data["password"]).decode() if "password" in data else None


def about_revision(namespace: str, revision: str) -> Any:
    def check(request: Received) -> bool:
        if request.method != "POST" or not request.body.startswith(b"{"):
            return False
        attachments = request.json().get("attachments") or [{}]
        return bool(
            attachments[0].get("author_name") == f"kustomization/app.{namespace}"
            and field_value(request, "revision") == revision
        )

    return check


def test_git_to_cluster_sealed_secrets_and_alerts_work_as_the_installed_identities(
    cluster: TestCluster,
    namespace: str,
    identities: Identities,
    slack_server: SlackServer,
    git_repos: RepoFactory,
    git_http_server: GitHttpServer,
    tmp_path: Path,
) -> None:
    ns = namespace
    shard = shard_labels()
    repo = git_repos.create()
    first = repo.commit(
        {
            "deploy/settings.yaml": yaml.safe_dump(configmap(None, "settings", {"value": "1"})),
            "deploy/db.yaml": sealed(cluster, tmp_path, ns),
        },
        "settings and a sealed secret",
    )
    assert PASSWORD not in repo.git("show", "HEAD")
    apply(
        cluster,
        secret(ns, "slack-url", {"address": slack_server.webhook_url}),
        provider(ns, "slack", type="slack", channel="#ops", secretRef={"name": "slack-url"}),
        alert(ns, "apps", "slack", {"kind": "Kustomization", "name": "*"}),
        secret(ns, "webhook-token", {"token": RECEIVER_TOKEN}),
        receiver(ns, "github", "github", "webhook-token", events=["push"], metadata=shard),
        git_repository(ns, "app", git_http_server.url(repo.name), interval="1h", metadata=shard),
        kustomization(
            ns,
            "app",
            "app",
            "./deploy",
            interval="1h",
            targetNamespace=ns,
            decryption={"provider": "sealedsecrets"},
            metadata=shard,
        ),
    )

    # git -> cluster, as the source and kustomize controllers' own accounts.
    wait_for_kustomization(cluster, ns, "app", applied(first), timeout=120, what="first commit")
    assert (get_json(cluster, "configmap", "settings", "-n", ns) or {}).get("data") == {
        "value": "1"
    }
    # The sealed secret was opened with the key the kustomize account keeps.
    assert secret_value(cluster, ns, "db") == PASSWORD
    # Slack heard of it from the notification controller's account (it read
    # the Provider's Secret to find the webhook).
    slack_server.wait_for(
        about_revision(ns, f"master@sha1:{first}"), what="a Slack message about the first commit"
    )

    # A push through the Receiver webhook: notification annotates the
    # GitRepository as its own account, source fetches, kustomize applies.
    path = wait_ready(cluster, ns, "receiver", "github")["status"]["webhookPath"]
    second = repo.commit(
        {"deploy/settings.yaml": yaml.safe_dump(configmap(None, "settings", {"value": "2"}))},
        "bump",
    )
    push = json.dumps({"ref": "refs/heads/master", "after": second}).encode()
    status, _ = post(
        identities.notification.receiver_url + path, push, github_headers(push, RECEIVER_TOKEN)
    )
    assert status == 200
    wait_for_kustomization(cluster, ns, "app", applied(second), timeout=90, what="pushed commit")
    slack_server.wait_for(
        about_revision(ns, f"master@sha1:{second}"), what="a Slack message about the push"
    )

    # Each controller led through its own Lease, written with its own account.
    for controller, selector in SELECTORS.items():
        holder = lease_holder(cluster, SYSTEM_NAMESPACE, lease_name(controller, selector))
        assert holder, f"{controller} holds no Lease"
    # Nothing any of them did was refused.
    for running in (identities.source, identities.kustomize, identities.notification):
        logs = running.logs()
        # Neither an API refusal nor kopf's "not enough permissions" warning.
        assert "forbidden" not in logs.lower(), logs[-3000:]
        assert "not enough permissions" not in logs.lower(), logs[-3000:]
        assert PASSWORD not in logs
        assert base64.b64encode(PASSWORD.encode()).decode() not in logs
