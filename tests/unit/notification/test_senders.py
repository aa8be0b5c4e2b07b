"""Each sender against a real stand-in server on loopback: what arrives, and how failures read."""

from __future__ import annotations

import hashlib
import hmac

import pytest

from controllers.notification.providers import (
    DeliveryError,
    ProviderConfig,
    ProviderConfigError,
    build_sender,
)
from tests.support.chatservers import (
    GITHUB_TOKEN,
    SLACK_BOT_TOKEN,
    AlertmanagerServer,
    DiscordServer,
    GitHubServer,
    SlackServer,
    TeamsServer,
    WebhookServer,
)
from tests.unit.notification.events import REVISION, notification

SHA = REVISION.rpartition(":")[2]


def config(type_: str, **values: object) -> ProviderConfig:
    return ProviderConfig(
        name="prov",
        namespace="apps",
        uid="4a2b6c9e-0000-0000-0000-000000000000",
        type=type_,
        **values,  # type: ignore[arg-type]
    )


async def test_slack_incoming_webhook(slack_server: SlackServer) -> None:
    sender = build_sender(config("slack", address=slack_server.webhook_url, channel="#ops"))
    await sender.send(notification())
    [request] = slack_server.requests("/services/")
    payload = request.json()
    assert payload["channel"] == "#ops"
    assert payload["attachments"][0]["fields"] == [
        {"title": "revision", "value": REVISION, "short": False}
    ]
    assert "Authorization" not in request.headers


async def test_slack_web_api_with_a_bot_token(slack_server: SlackServer) -> None:
    sender = build_sender(
        config("slack", address=slack_server.api_url, channel="C0DEPLOYS", token=SLACK_BOT_TOKEN)
    )
    await sender.send(notification())
    [request] = slack_server.requests("/api/chat.postMessage")
    assert request.headers["Authorization"] == f"Bearer {SLACK_BOT_TOKEN}"
    payload = request.json()
    assert payload["channel"] == "C0DEPLOYS"
    assert payload["username"] == "source-controller"
    assert request.headers["Content-Type"].startswith("application/json")
    assert payload["attachments"][0]["author_name"] == "gitrepository/podinfo.apps"


async def test_slack_web_api_errors_name_the_slack_error_not_the_token(
    slack_server: SlackServer,
) -> None:
    sender = build_sender(
        config("slack", address=slack_server.api_url, channel="C0", token="xoxb-wrong-token-1234")
    )
    with pytest.raises(DeliveryError) as caught:
        await sender.send(notification())
    assert "invalid_auth" in caught.value.message
    assert not caught.value.retryable
    assert "xoxb-wrong" not in caught.value.message


async def test_slack_web_api_needs_a_channel(slack_server: SlackServer) -> None:
    sender = build_sender(config("slack", address=slack_server.api_url, token=SLACK_BOT_TOKEN))
    with pytest.raises(ProviderConfigError, match=r"spec\.channel"):
        await sender.send(notification())


async def test_slack_webhook_failures_are_retryable_and_hide_the_path(
    slack_server: SlackServer,
) -> None:
    slack_server.fail(500)
    sender = build_sender(config("slack", address=slack_server.webhook_url))
    with pytest.raises(DeliveryError) as caught:
        await sender.send(notification())
    assert caught.value.retryable
    assert "HTTP 500" in caught.value.message
    assert "s3cr3tWebhookPath" not in caught.value.message
    assert slack_server.url in caught.value.message


async def test_discord_receives_the_slack_shape(discord_server: DiscordServer) -> None:
    await build_sender(config("discord", address=discord_server.webhook_url)).send(notification())
    [request] = discord_server.requests()
    assert request.path.endswith("/slack")
    assert request.json()["attachments"][0]["color"] == "good"


async def test_teams_receives_an_adaptive_card(teams_server: TeamsServer) -> None:
    await build_sender(config("msteams", address=teams_server.workflow_url)).send(notification())
    [request] = teams_server.requests()
    assert request.query == "sig=teamsSignature"
    card = request.json()["attachments"][0]["content"]
    assert card["type"] == "AdaptiveCard"


async def test_alertmanager_receives_an_alert_with_basic_auth(
    alertmanager_server: AlertmanagerServer,
) -> None:
    sender = build_sender(
        config(
            "alertmanager",
            address=alertmanager_server.alerts_url,
            basic_username="am",
            password="am-pass",
        )
    )
    await sender.send(notification(severity="error"))
    [request] = alertmanager_server.requests()
    assert request.headers["Authorization"].startswith("Basic ")
    [alert] = request.json()
    assert alert["labels"]["severity"] == "error"
    assert alert["labels"]["revision"] == REVISION


async def test_generic_hmac_is_verified_by_the_receiver() -> None:
    with WebhookServer(hmac_key=b"shared-key") as server:
        sender = build_sender(
            config("generic-hmac", address=f"{server.url}/events", token="shared-key")
        )
        await sender.send(notification())
        [request] = server.requests()
        assert request.notes["verified"] is True
        assert request.headers["gotk-component"] == "source-controller"
        wrong = build_sender(config("generic-hmac", address=f"{server.url}/events", token="other"))
        with pytest.raises(DeliveryError) as caught:
            await wrong.send(notification())
        assert "HTTP 401" in caught.value.message
        assert not caught.value.retryable
        assert server.requests()[-1].notes["verified"] is False
        expected = hmac.new(b"shared-key", request.body, hashlib.sha256).hexdigest()
        assert request.headers["X-Signature"] == f"sha256={expected}"


async def test_generic_sends_the_secret_headers(webhook_server: WebhookServer) -> None:
    sender = build_sender(
        config("generic", address=f"{webhook_server.url}/hook", headers={"X-Api-Key": "k-123"})
    )
    await sender.send(notification())
    [request] = webhook_server.requests()
    assert request.headers["X-Api-Key"] == "k-123"
    assert request.json()["involvedObject"]["kind"] == "GitRepository"


async def test_github_sets_a_commit_status_once(github_server: GitHubServer) -> None:
    sender = build_sender(
        config("github", address=github_server.repo_url("org", "app"), token=GITHUB_TOKEN)
    )
    event = notification(reason="ReconciliationSucceeded")
    await sender.send(event)
    await sender.send(event)  # the same status again is not posted twice
    statuses = github_server.statuses[("org", "app", SHA)]
    assert statuses == [
        {
            "state": "success",
            "context": "gitrepository/podinfo/4a2b6c9e",
            "description": "reconciliation succeeded",
        }
    ]
    posts = github_server.requests(method="POST")
    assert len(posts) == 1
    assert posts[0].path == f"/api/v3/repos/org/app/statuses/{SHA}"
    assert posts[0].headers["Authorization"] == f"Bearer {GITHUB_TOKEN}"
    await sender.send(notification(reason="ReconciliationFailed", severity="error"))
    assert github_server.statuses[("org", "app", SHA)][0]["state"] == "failure"


async def test_github_skips_progressing_and_needs_a_revision(github_server: GitHubServer) -> None:
    sender = build_sender(
        config("github", address=github_server.repo_url("org", "app"), token=GITHUB_TOKEN)
    )
    await sender.send(notification(reason="Progressing"))
    assert github_server.requests() == []
    with pytest.raises(DeliveryError, match="missing revision"):
        await sender.send(notification({}))


async def test_github_needs_a_token(github_server: GitHubServer) -> None:
    with pytest.raises(ProviderConfigError, match="token"):
        build_sender(config("github", address=github_server.repo_url("org", "app")))


async def test_a_hanging_provider_times_out(webhook_server: WebhookServer) -> None:
    webhook_server.hang()
    sender = build_sender(config("generic", address=webhook_server.url, timeout=0.5))
    with pytest.raises(DeliveryError, match=r"timed out after 0\.5s") as caught:
        await sender.send(notification())
    assert caught.value.retryable


async def test_a_dead_provider_is_a_retryable_connection_error() -> None:
    server = WebhookServer().start()
    url = server.url
    server.stop()
    with pytest.raises(DeliveryError) as caught:
        await build_sender(config("generic", address=url)).send(notification())
    assert caught.value.retryable


def test_unsupported_types_are_refused_by_name() -> None:
    with pytest.raises(ProviderConfigError, match="'telegram' is not supported"):
        build_sender(config("telegram", address="https://api.telegram.org"))
