"""No secret in any output: the sealed-secrets, git-auth (basic auth and ssh key), Slack-token
and HMAC receiver flows run with unique canary values, then every output is searched for
them: the controllers' log (at debug level), Events, every status field of every headwater
object, and the metric names, labels and values scraped from /metrics. Each canary is also
searched for base64-encoded, as secrets travel that way."""

from __future__ import annotations

import base64
import json
import secrets
import urllib.request
from pathlib import Path

import pytest
import yaml

from tests.support.builders import alert, git_repository, kustomization, provider, receiver, secret
from tests.support.chatservers import SlackServer
from tests.support.cli import run_headwater
from tests.support.cluster import TestCluster, apply, kubectl_json, wait_for
from tests.support.controllers import RunningControllers
from tests.support.gitrepos import RepoFactory
from tests.support.gitservers import GitHttpServer, GitSshServer, SSHKey
from tests.support.notification import github_headers, post, post_until, wire_event
from tests.support.status import get_object, wait_ready

pytestmark = pytest.mark.integration

KINDS = "gitrepositories,kustomizations,providers,alerts,receivers"
CONFIGMAP = "apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: plain\ndata:\n  a: b\n"


def canary(what: str) -> str:
    return f"canary-{what}-{secrets.token_hex(8)}"


def forms(value: str) -> list[str]:
    """The value and its base64 (padding dropped, so it is found inside longer runs)."""
    return [value, base64.b64encode(value.encode()).decode().rstrip("=")]


def certificate(cluster: TestCluster, tmp_path: Path) -> Path:
    def fetch() -> bytes | None:
        result = run_headwater(
            "seal",
            "--fetch-cert",
            "--controller-namespace",
            "headwater-system",
            kubeconfig=cluster.kubeconfig,
        )
        ok = result.returncode == 0 and b"BEGIN CERTIFICATE" in result.stdout
        return result.stdout if ok else None

    cert = tmp_path / "cert.pem"
    cert.write_bytes(wait_for(fetch, timeout=90, what="the controller's sealing key"))
    return cert


def test_no_canary_reaches_logs_events_status_or_metrics(
    cluster: TestCluster,
    namespace: str,
    controllers: RunningControllers,
    git_repos: RepoFactory,
    git_project_root: Path,
    git_ssh_server: GitSshServer,
    ssh_key: SSHKey,
    tmp_path: Path,
) -> None:
    sealed_value = canary("sealed")
    basic_user, basic_password = "canary-user", canary("basic-password")
    slack_token = canary("slack-token")
    hmac_token = canary("hmac-token")
    # The ssh key's base64 body: any line of it in an output would be a leak.
    key_lines = [
        line for line in ssh_key.private.decode().splitlines() if line and "-----" not in line
    ]
    needles = {
        "sealed": forms(sealed_value),
        "basic": forms(basic_password),
        "slack": forms(slack_token),
        "hmac": forms(hmac_token),
        "ssh": [line for line in key_lines if len(line) >= 20],
    }

    # Sealed secrets: git holds the ciphertext; the Kustomization applies the Secret.
    cert = certificate(cluster, tmp_path)
    plain_secret = yaml.safe_dump(
        {
            "apiVersion": "v1",
            "kind": "Secret",
            "metadata": {"name": "db", "namespace": namespace},
            "stringData": {"password": sealed_value},
        }
    ).encode()
    sealed = run_headwater("seal", "--cert", str(cert), input=plain_secret)
    assert sealed.returncode == 0, sealed.stderr.decode()

    with (
        GitHttpServer(git_project_root, basic=(basic_user, basic_password)) as basic_server,
        SlackServer(bot_token=slack_token) as slack,
    ):
        repo = git_repos.create()
        repo.commit(
            {"deploy/sealed.yaml": sealed.stdout.decode(), "deploy/plain.yaml": CONFIGMAP},
            "sealed secret",
        )
        apply(
            cluster,
            # Git over HTTP basic auth and over ssh with a key.
            secret(namespace, "basic", {"username": basic_user, "password": basic_password}),
            git_repository(
                namespace, "basic", basic_server.url(repo.name), secretRef={"name": "basic"}
            ),
            secret(
                namespace,
                "ssh",
                {"identity": ssh_key.private, "known_hosts": git_ssh_server.known_hosts},
            ),
            git_repository(
                namespace, "ssh", git_ssh_server.url(repo.name), secretRef={"name": "ssh"}
            ),
            kustomization(
                namespace,
                "apps",
                "basic",
                "./deploy",
                targetNamespace=namespace,
                decryption={"provider": "sealedsecrets"},
            ),
            # Slack's Web API with a bot token.
            secret(namespace, "slack", {"token": slack_token}),
            provider(
                namespace,
                "slack",
                type="slack",
                address=slack.api_url,
                channel="C0CANARY",
                secretRef={"name": "slack"},
            ),
            alert(namespace, "all", "slack", {"kind": "Kustomization", "name": "*"}),
            # A generic-hmac Receiver.
            secret(namespace, "hmac", {"token": hmac_token}),
            receiver(
                namespace,
                "hook",
                "generic-hmac",
                "hmac",
                {"kind": "GitRepository", "name": "basic"},
            ),
        )
        for name in ("basic", "ssh"):
            wait_ready(cluster, namespace, "gitrepository", name)
        wait_ready(cluster, namespace, "kustomization", "apps")
        opened = kubectl_json(cluster, "get", "secret", "db", "-n", namespace)
        assert base64.b64decode(opened["data"]["password"]).decode() == sealed_value

        post_until(
            controllers,
            wire_event(namespace, "canary probe"),
            lambda: slack.requests("/api/chat.postMessage"),
            "a Slack message",
        )
        assert all(
            r.headers["Authorization"] == f"Bearer {slack_token}"
            for r in slack.requests("/api/chat.postMessage")
        )

        hook = wait_ready(cluster, namespace, "receiver", "hook")
        url = controllers.receiver_url + hook["status"]["webhookPath"]
        body = json.dumps({"ref": "refs/heads/master"}).encode()
        signed = github_headers(body, hmac_token)
        assert post(url, body, {"X-Signature": signed["X-Hub-Signature-256"]})[0] == 200
        # Failures are where secrets leak most: a wrong signature, a wrong password.
        assert post(url, body, {"X-Signature": "sha256=" + "0" * 64})[0] == 400
        apply(
            cluster,
            secret(namespace, "wrong", {"username": basic_user, "password": basic_password + "x"}),
            git_repository(
                namespace, "wrong", basic_server.url(repo.name), secretRef={"name": "wrong"}
            ),
        )
        wait_ready(cluster, namespace, "gitrepository", "wrong", status="False")

    outputs = {
        "controller log": controllers.logs(),
        "events": json.dumps(kubectl_json(cluster, "get", "events", "-n", namespace)),
        "status": json.dumps(
            [
                {
                    "kind": o["kind"],
                    "name": o["metadata"]["name"],
                    "status": o.get("status"),
                    "annotations": o["metadata"].get("annotations"),
                }
                for o in kubectl_json(cluster, "get", KINDS, "-n", namespace)["items"]
            ]
        ),
    }
    with urllib.request.urlopen(controllers.metrics_url + "/metrics", timeout=15) as response:
        outputs["metrics"] = response.read().decode()
    # The run really happened: every output mentions the objects it would leak about.
    assert "hook" in outputs["status"] and "apps" in outputs["events"]
    assert namespace in outputs["controller log"]
    assert get_object(cluster, namespace, "kustomization", "apps")["status"]["inventory"]
    leaks = [
        f"{flow} canary in {where}"
        for where, text in outputs.items()
        for flow, values in needles.items()
        if any(value in text for value in values)
    ]
    assert not leaks, leaks
