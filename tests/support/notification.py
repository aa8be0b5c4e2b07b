"""Builders and clients shared by the notification tests: manifests, webhooks, Slack fields."""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import time
import urllib.error
import urllib.request
from typing import Any

import pytest
import yaml

from tests.helpers import TestCluster, kubectl_json, wait_for
from tests.support.chatservers import (
    Received,
)
from tests.support.controllers import RunningControllers

pytestmark = pytest.mark.integration

FILES = {"deploy/app.yaml": "apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: app\n"}
RECEIVER_TOKEN = "receiver-token-7f3a9c"


# -- -------------------------------------------------------------------------------


def apply(cluster: TestCluster, *manifests: dict[str, Any]) -> None:
    cluster.kubectl("apply", "-f", "-", input=yaml.safe_dump_all(manifests))


def secret(namespace: str, name: str, data: dict[str, str]) -> dict[str, Any]:
    return {
        "apiVersion": "v1",
        "kind": "Secret",
        "metadata": {"name": name, "namespace": namespace},
        "data": {k: base64.b64encode(v.encode()).decode() for k, v in data.items()},
    }


def provider(namespace: str, name: str, **spec: Any) -> dict[str, Any]:
    return {
        "apiVersion": "notification.toolkit.fluxcd.io/v1beta3",
        "kind": "Provider",
        "metadata": {"name": name, "namespace": namespace},
        "spec": spec,
    }


def alert(
    namespace: str, name: str, provider_name: str, *sources: dict[str, Any], **spec: Any
) -> dict[str, Any]:
    return {
        "apiVersion": "notification.toolkit.fluxcd.io/v1beta3",
        "kind": "Alert",
        "metadata": {"name": name, "namespace": namespace},
        "spec": {
            "providerRef": {"name": provider_name},
            "eventSources": list(sources) or [{"kind": "GitRepository", "name": "*"}],
            **spec,
        },
    }


def receiver(
    namespace: str,
    name: str,
    type: str,
    secret_name: str,
    *resources: dict[str, Any],
    **spec: Any,
) -> dict[str, Any]:
    """A Receiver of `type` whose token is in Secret `secret_name` (default: GitRepository app)."""
    return {
        "apiVersion": "notification.toolkit.fluxcd.io/v1",
        "kind": "Receiver",
        "metadata": {"name": name, "namespace": namespace},
        "spec": {
            "type": type,
            "secretRef": {"name": secret_name},
            "resources": list(resources) or [{"kind": "GitRepository", "name": "app"}],
            **spec,
        },
    }


def git_repository(namespace: str, name: str, url: str, **meta: Any) -> dict[str, Any]:
    return {
        "apiVersion": "source.toolkit.fluxcd.io/v1",
        "kind": "GitRepository",
        "metadata": {"name": name, "namespace": namespace, **meta},
        # A long interval: only our requests make it fetch again.
        "spec": {"interval": "1h", "url": url, "ref": {"branch": "master"}},
    }


def wire_event(namespace: str, message: str, **overrides: Any) -> dict[str, Any]:
    body: dict[str, Any] = {
        "involvedObject": {
            "apiVersion": "kustomize.toolkit.fluxcd.io/v1",
            "kind": "Kustomization",
            "name": "apps",
            "namespace": namespace,
            "uid": "0d6a1f6e-1111-2222-3333-444455556666",
        },
        "severity": "info",
        "timestamp": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        "message": message,
        "reason": "ReconciliationSucceeded",
        "metadata": {"kustomize.toolkit.fluxcd.io/revision": "main@sha1:" + "a" * 40},
        "reportingController": "kustomize-controller",
        "reportingInstance": "test",
    }
    body.update(overrides)
    return body


def post(url: str, body: bytes, headers: dict[str, str] | None = None) -> tuple[int, str]:
    request = urllib.request.Request(url, data=body, method="POST", headers=headers or {})
    try:
        with urllib.request.urlopen(request, timeout=15) as response:
            return response.status, response.read().decode()
    except urllib.error.HTTPError as exc:
        return exc.code, exc.read().decode()


def post_event(controllers: RunningControllers, event: dict[str, Any]) -> tuple[int, str]:
    return post(
        controllers.events_url + "/",
        json.dumps(event).encode(),
        {"Content-Type": "application/json"},
    )


def post_until(
    controllers: RunningControllers,
    event: dict[str, Any],
    arrived: Any,
    what: str,
) -> Any:
    """POST `event` until `arrived()` holds: the Alert reaches the controller through a watch.

    Each try carries a new `token` (dropped before delivery, like Flux's), so
    the intake's de-duplication does not swallow the retries.
    """
    group = event["involvedObject"]["apiVersion"].rpartition("/")[0]
    tries = iter(range(1_000_000))

    def attempt() -> Any:
        body = json.loads(json.dumps(event))
        body.setdefault("metadata", {})[f"{group}/token"] = f"try-{next(tries)}"
        assert post_event(controllers, body)[0] == 202
        return arrived()

    return wait_for(attempt, timeout=30, interval=1, what=what)


def probe_event(namespace: str) -> dict[str, Any]:
    """An event about another Kustomization, to learn that an Alert is in place."""
    event = wire_event(namespace, "probe")
    event["involvedObject"] = {**event["involvedObject"], "name": "probe"}
    return event


def alert_events(
    cluster: TestCluster, namespace: str, name: str, reason: str
) -> list[dict[str, Any]]:
    items = kubectl_json(cluster, "get", "events", "-n", namespace)["items"]
    return [
        e
        for e in items
        if e["involvedObject"].get("kind") == "Alert"
        and e["involvedObject"]["name"] == name
        and e["reason"] == reason
    ]


def field_value(request: Received, title: str) -> str | None:
    for item in request.json()["attachments"][0]["fields"]:
        if item["title"] == title:
            return str(item["value"])
    return None


def get(cluster: TestCluster, kind: str, namespace: str, name: str) -> dict[str, Any]:
    return kubectl_json(cluster, "get", kind, name, "-n", namespace)


def artifact_revision(cluster: TestCluster, namespace: str, name: str) -> str | None:
    artifact = (get(cluster, "gitrepository", namespace, name).get("status") or {}).get("artifact")
    return str(artifact["revision"]) if artifact else None


def ready_receiver(cluster: TestCluster, namespace: str, name: str) -> dict[str, Any]:
    def check() -> dict[str, Any] | None:
        obj = get(cluster, "receiver", namespace, name)
        status = obj.get("status") or {}
        ready = [c for c in status.get("conditions") or [] if c["type"] == "Ready"]
        return obj if ready and ready[0]["status"] == "True" and status.get("webhookPath") else None

    return wait_for(check, timeout=60, what=f"Receiver {name} Ready")


def github_headers(body: bytes, key: str, event: str = "push") -> dict[str, str]:
    digest = hmac.new(key.encode(), body, hashlib.sha256).hexdigest()
    return {
        "Content-Type": "application/json",
        "X-GitHub-Event": event,
        "X-Hub-Signature-256": f"sha256={digest}",
    }
