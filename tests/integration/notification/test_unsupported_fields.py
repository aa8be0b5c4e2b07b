"""Notification fields headwater does not implement are refused by name, not ignored.

A Receiver with a CEL filter stalls and publishes no webhook path (it would
otherwise reconcile every resource, filter or not); a Provider with a custom
commit status expression makes its Alert's notifications fail with a Warning
event naming the field (a Provider has no status of its own).
"""

from __future__ import annotations

import pytest

from tests.support.builders import alert, provider, receiver, secret
from tests.support.cluster import TestCluster, apply, wait_for
from tests.support.controllers import RunningControllers
from tests.support.notification import RECEIVER_TOKEN, post_until, wire_event
from tests.support.status import condition, events_for, get_object

pytestmark = pytest.mark.integration


def test_a_receiver_with_a_cel_filter_stalls_naming_the_field(
    cluster: TestCluster, namespace: str, controllers: RunningControllers
) -> None:
    apply(
        cluster,
        secret(namespace, "hook-token", {"token": RECEIVER_TOKEN}),
        receiver(
            namespace,
            "filtered",
            "generic",
            "hook-token",
            resourceFilter="res.metadata.name == 'app'",
        ),
    )

    def stalled() -> dict[str, object] | None:
        obj = get_object(cluster, namespace, "receiver", "filtered")
        found = condition(obj, "Stalled")
        return found if found and found["status"] == "True" else None

    found = wait_for(stalled, timeout=60, what="Receiver Stalled")
    assert found["reason"] == "UnsupportedField"
    assert "spec.resourceFilter is not supported by headwater" in str(found["message"])
    obj = get_object(cluster, namespace, "receiver", "filtered")
    assert "webhookPath" not in (obj.get("status") or {})
    ready = condition(obj, "Ready")
    assert ready is not None and ready["status"] == "False"


def test_a_provider_with_a_commit_status_expression_is_refused_on_its_alert(
    cluster: TestCluster, namespace: str, controllers: RunningControllers
) -> None:
    apply(
        cluster,
        # The CRD takes the expression only on commit status types.
        provider(
            namespace,
            "expr",
            type="github",
            address="https://github.example/team/app",
            commitStatusExpr="event.metadata.revision",
        ),
        alert(namespace, "expr", "expr", {"kind": "Kustomization", "name": "apps"}),
    )
    # Posted until the Alert is watched; an error, which commit status
    # providers take whatever its metadata.
    [warning, *_] = post_until(
        controllers,
        wire_event(namespace, "health check failed", severity="error"),
        lambda: events_for(cluster, namespace, "Alert", "expr", "NotificationDispatchFailed"),
        "the refusal event",
    )
    assert warning["type"] == "Warning"
    assert "spec.commitStatusExpr is not supported by headwater" in str(warning["message"])
