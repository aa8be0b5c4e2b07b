"""What the notification tests send and read: events, webhook calls, Slack fields."""

from __future__ import annotations

import hashlib
import hmac
import json
import time
import urllib.error
import urllib.request
from collections.abc import Callable
from typing import Any

import pytest

from tests.support.chatservers import Received
from tests.support.cluster import TestCluster, wait_for
from tests.support.controllers import RunningControllers
from tests.support.status import get_object

pytestmark = pytest.mark.integration

FILES = {"deploy/app.yaml": "apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: app\n"}
RECEIVER_TOKEN = "receiver-token-7f3a9c"


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


def field_value(request: Received, title: str) -> str | None:
    for item in request.json()["attachments"][0]["fields"]:
        if item["title"] == title:
            return str(item["value"])
    return None


def artifact_revision(cluster: TestCluster, namespace: str, name: str) -> str | None:
    artifact = (get_object(cluster, namespace, "gitrepository", name).get("status") or {}).get(
        "artifact"
    )
    return str(artifact["revision"]) if artifact else None


def github_headers(body: bytes, key: str, event: str = "push") -> dict[str, str]:
    digest = hmac.new(key.encode(), body, hashlib.sha256).hexdigest()
    return {
        "Content-Type": "application/json",
        "X-GitHub-Event": event,
        "X-Hub-Signature-256": f"sha256={digest}",
    }


def slack_attachment_from(author: str, text: str) -> Callable[[Received], bool]:
    """A Slack stand-in request whose attachment is from `author` (`kind/name.namespace`,
    as Flux writes it) and whose text contains `text`."""

    def check(request: Received) -> bool:
        if request.method != "POST" or not request.body.startswith(b"{"):
            return False
        attachment = (request.json().get("attachments") or [{}])[0]
        return bool(attachment.get("author_name") == author and text in str(attachment.get("text")))

    return check
