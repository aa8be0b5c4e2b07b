"""What each provider sends for an event: Flux's payload shapes, built as pure functions."""

from __future__ import annotations

import hashlib
import hmac
import json

import pytest

from controllers.notification.providers.alertmanager import alertmanager_payload, alertname
from controllers.notification.providers.base import (
    DeliveryError,
    ProviderConfig,
    mask,
    shown_address,
)
from controllers.notification.providers.discord import discord_payload, slack_compatible_url
from controllers.notification.providers.generic import generic_request, sign
from controllers.notification.providers.github import (
    commit_of,
    commit_status,
    is_duplicate,
    parse_repository,
    split_camel_case,
)
from controllers.notification.providers.msteams import teams_payload
from controllers.notification.providers.slack import slack_payload, uses_web_api, web_api_base
from tests.unit.notification.events import REVISION, notification

DRIFT_MESSAGE = (
    "drift detected and corrected:\n"
    "Deployment/apps/web: spec.replicas 2 → 5\n"
    "ConfigMap/apps/settings: data.mode 'safe' → 'fast'\n"
    "Secret/apps/creds: data.password (value not shown)"
)


def test_slack_payload_is_fluxs_attachment() -> None:
    event = notification({"revision": REVISION, "summary": "prod cluster"})
    payload = slack_payload(event, channel="#deploys", username="")
    assert payload == {
        "channel": "#deploys",
        "username": "source-controller",
        "icon_url": "",
        "icon_emoji": "",
        "attachments": [
            {
                "fallback": (
                    "gitrepository/podinfo.apps: stored artifact for revision 'main@sha1:0123456'"
                ),
                "color": "good",
                "author_name": "gitrepository/podinfo.apps",
                "text": "stored artifact for revision 'main@sha1:0123456'",
                "mrkdwn_in": ["text"],
                "fields": [
                    {"title": "summary", "value": "prod cluster", "short": False},
                    {"title": "revision", "value": REVISION, "short": False},
                ],
            }
        ],
    }


def test_slack_errors_are_danger_and_the_username_is_the_providers() -> None:
    payload = slack_payload(notification(severity="error"), channel="", username="flux")
    assert payload["username"] == "flux"
    assert payload["attachments"][0]["color"] == "danger"


def test_a_drift_report_keeps_its_lines_and_the_revision_is_a_field() -> None:
    event = notification(
        {"revision": REVISION},
        involvedObject={
            "apiVersion": "kustomize.toolkit.fluxcd.io/v1",
            "kind": "Kustomization",
            "name": "apps",
            "namespace": "flux-system",
        },
        message=DRIFT_MESSAGE,
        reason="DriftDetected",
        reportingController="kustomize-controller",
    )
    attachment = slack_payload(event, channel="", username="")["attachments"][0]
    assert attachment["author_name"] == "kustomization/apps.flux-system"
    assert attachment["text"].split("\n") == DRIFT_MESSAGE.split("\n")
    assert attachment["fallback"] == "kustomization/apps.flux-system: drift detected and corrected:"
    assert attachment["mrkdwn_in"] == ["text"]
    assert attachment["fields"] == [{"title": "revision", "value": REVISION, "short": False}]


def test_slack_control_characters_are_escaped() -> None:
    event = notification({}, message="values <redacted> & <@U123>")
    text = slack_payload(event, channel="", username="")["attachments"][0]["text"]
    assert text == "values &lt;redacted&gt; &amp; &lt;@U123&gt;"


def test_the_web_api_is_used_only_with_a_token() -> None:
    def config(address: str, token: str) -> ProviderConfig:
        return ProviderConfig("p", "ns", "uid", "slack", address=address, token=token)

    assert uses_web_api(config("https://slack.com/api/chat.postMessage", "xoxb"))
    assert uses_web_api(config("", "xoxb"))
    assert not uses_web_api(config("https://slack.com/api/chat.postMessage", ""))
    assert not uses_web_api(config("https://hooks.slack.com/services/T/B/X", "xoxb"))
    assert web_api_base("https://slack.com/api/chat.postMessage") == "https://slack.com/api/"
    assert web_api_base("") == "https://slack.com/api/"


def test_discord_gets_the_slack_shape_at_the_slack_endpoint() -> None:
    assert slack_compatible_url("https://discord.com/api/webhooks/1/tok") == (
        "https://discord.com/api/webhooks/1/tok/slack"
    )
    assert slack_compatible_url("https://discord.com/api/webhooks/1/tok/slack") == (
        "https://discord.com/api/webhooks/1/tok/slack"
    )
    payload = discord_payload(notification(), username="")
    assert payload["username"] == "source-controller"
    assert "fallback" not in payload["attachments"][0]
    assert payload["attachments"][0]["author_name"] == "gitrepository/podinfo.apps"


def test_teams_gets_an_adaptive_card() -> None:
    event = notification({"revision": REVISION, "summary": "prod"}, severity="error")
    payload = teams_payload(event, "https://prod.westeurope.logic.azure.com/workflows/x")
    assert payload["type"] == "message"
    [attachment] = payload["attachments"]
    assert attachment["contentType"] == "application/vnd.microsoft.card.adaptive"
    content = attachment["content"]
    assert (content["type"], content["version"]) == ("AdaptiveCard", "1.4")
    title, message, facts = content["body"][0]["items"]
    assert title["text"] == "gitrepository/podinfo.apps"
    assert message == {
        "type": "TextBlock",
        "text": event.message,
        "wrap": True,
        "color": "attention",
    }
    assert facts["facts"] == [
        {"title": "summary", "value": "prod"},
        {"title": "revision", "value": REVISION},
    ]


def test_teams_legacy_connectors_get_a_message_card() -> None:
    payload = teams_payload(notification(), "https://example.webhook.office.com/webhookb2/x")
    assert payload["@type"] == "MessageCard"
    assert payload["themeColor"] == "0076D7"
    assert payload["sections"][0]["facts"] == [{"name": "revision", "value": REVISION}]


def test_alertmanager_gets_one_firing_alert_with_fluxs_labels() -> None:
    event = notification(
        {"revision": REVISION, "summary": "prod"}, severity="error", reason="ReconciliationFailed"
    )
    [alert] = alertmanager_payload(event)
    assert alert == {
        "status": "firing",
        "labels": {
            "revision": REVISION,
            "alertname": "FluxGitRepositoryReconciliationfailed",
            "severity": "error",
            "reason": "ReconciliationFailed",
            "kind": "GitRepository",
            "name": "podinfo",
            "namespace": "apps",
            "reportingcontroller": "source-controller",
        },
        "annotations": {"message": event.message, "summary": "prod"},
        "startsAt": "2026-01-02T03:04:05Z",
    }
    assert alertname(event) == "FluxGitRepositoryReconciliationfailed"


def test_generic_forwards_the_event_and_generic_hmac_signs_the_exact_body() -> None:
    config = ProviderConfig("p", "ns", "uid", "generic-hmac", headers={"X-Team": "platform"})
    event = notification()
    body, headers = generic_request(event, config, hmac_key=b"s3cret")
    assert json.loads(body) == event.to_json()
    assert headers["gotk-component"] == "source-controller"
    assert headers["X-Team"] == "platform"
    expected = hmac.new(b"s3cret", body, hashlib.sha256).hexdigest()
    assert headers["X-Signature"] == f"sha256={expected}"
    assert sign(b"{}", b"k") == "sha256=" + hmac.new(b"k", b"{}", hashlib.sha256).hexdigest()
    _, unsigned = generic_request(event, config, hmac_key=None)
    assert "X-Signature" not in unsigned


@pytest.mark.parametrize(
    ("address", "base", "owner", "repo"),
    [
        ("https://github.com/org/app", "https://api.github.com/", "org", "app"),
        ("https://github.com/org/app.git", "https://api.github.com/", "org", "app"),
        ("git@github.com:org/app.git", "https://api.github.com/", "org", "app"),
        ("ssh://git@github.com/org/app", "https://api.github.com/", "org", "app"),
        ("https://ghe.example.com/org/app", "https://ghe.example.com/api/v3/", "org", "app"),
        ("http://127.0.0.1:8080/org/app", "http://127.0.0.1:8080/api/v3/", "org", "app"),
    ],
)
def test_github_repository_addresses(address: str, base: str, owner: str, repo: str) -> None:
    parsed = parse_repository(address)
    assert (parsed.api_base, parsed.owner, parsed.repo) == (base, owner, repo)


@pytest.mark.parametrize("address", ["https://github.com/org", "https://github.com/a/b/c", "nope"])
def test_github_bad_addresses_are_refused(address: str) -> None:
    with pytest.raises(DeliveryError, match="repository URL"):
        parse_repository(address)


def test_github_commit_from_revision() -> None:
    sha = "0123456789abcdef0123456789abcdef01234567"
    assert commit_of(f"main@sha1:{sha}") == sha
    assert commit_of(f"sha1:{sha}") == sha
    assert commit_of(f"v1.0.0@sha1:{sha}") == sha
    assert commit_of(f"main/{sha}") == sha
    with pytest.raises(DeliveryError, match="commit hash"):
        commit_of("main@sha1:xyz")


def test_github_commit_status_follows_flux() -> None:
    event = notification(reason="ReconciliationSucceeded")
    status = commit_status(event, "4a2b6c9e-1111-2222-3333-444444444444")
    assert status == {
        "state": "success",
        "context": "gitrepository/podinfo/4a2b6c9e",
        "description": "reconciliation succeeded",
    }
    assert commit_status(notification(severity="error"), "u")["state"] == "failure"
    assert split_camel_case("HealthCheckFailed") == ["Health", "Check", "Failed"]
    assert split_camel_case("OCIPullFailed") == ["OCI", "Pull", "Failed"]
    newest_same = [{**status}, {**status, "state": "failure"}]
    assert is_duplicate(newest_same, status)
    assert not is_duplicate([{**status, "state": "failure"}, status], status)
    assert not is_duplicate([], status)


def test_messages_show_only_scheme_and_host_and_mask_secrets() -> None:
    config = ProviderConfig(
        "p",
        "ns",
        "uid",
        "slack",
        address="https://hooks.slack.com/services/T1/B2/secretpart",
        token="xoxb-very-secret",
        headers={"Authorization": "Basic dXNlcjpwYXNz"},
        proxy_password="proxy-pass",
    )
    assert shown_address(config.address) == "https://hooks.slack.com"
    text = (
        "POST https://hooks.slack.com/services/T1/B2/secretpart failed with xoxb-very-secret, "
        "Basic dXNlcjpwYXNz, proxy-pass and /services/T1/B2/secretpart"
    )
    masked = mask(text, config.secret_values())
    for secret in ("secretpart", "xoxb-very-secret", "dXNlcjpwYXNz", "proxy-pass"):
        assert secret not in masked
    assert "failed with" in masked
