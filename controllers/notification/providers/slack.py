"""Slack: incoming webhooks, or the Web API's chat.postMessage with a bot token.

The message is Flux's: one attachment titled `kind/name.namespace`, colored
`good` (info) or `danger` (error), the event message as mrkdwn text and one
field per metadata key (revision, summary, ...). Multi-line messages, such
as a drift report listing each object and field, keep their lines; `&`, `<`
and `>` are escaped as Slack requires, so object names and values are never
read as links or mentions.

With a token and an address that is the Web API (or no address), slack-sdk's
AsyncWebClient calls `chat.postMessage` with the bot token; otherwise
AsyncWebhookClient posts to the incoming webhook (with the token as a bearer
header when one is set, as Flux does).
"""

from __future__ import annotations

import logging
import math
import warnings
from typing import Any
from urllib.parse import urlsplit

from slack_sdk.errors import SlackApiError, SlackRequestError
from slack_sdk.web.async_client import AsyncWebClient
from slack_sdk.webhook.async_client import AsyncWebhookClient

from controllers.notification.event import ERROR, FluxEvent
from controllers.notification.providers.base import (
    MAX_ERROR_BODY,
    DeliveryError,
    ProviderConfig,
    ProviderConfigError,
    object_name,
    retry_after_of,
    shown_address,
    sorted_fields,
)
from controllers.notification.providers.http import open_session, ssl_option

WEB_API_METHOD = "chat.postMessage"
DEFAULT_WEB_API = "https://slack.com/api/chat.postMessage"
# Web API errors that a later attempt may not hit.
RETRYABLE_API_ERRORS = frozenset(
    {"ratelimited", "internal_error", "fatal_error", "service_unavailable", "request_timeout"}
)

# slack-sdk logs whole requests, Authorization header included, when its
# logger's own level is DEBUG or unset; pin a logger that never does.
_sdk_log = logging.getLogger("headwater.notification.slack_sdk")
_sdk_log.setLevel(logging.WARNING)


def escape_mrkdwn(text: str) -> str:
    """Slack's three control characters, escaped as its formatting rules ask."""
    return text.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")


def attachment(event: FluxEvent, *, fallback: bool = True) -> dict[str, Any]:
    author = object_name(event)
    first_line = event.message.split("\n", 1)[0]
    body: dict[str, Any] = {}
    if fallback:
        body["fallback"] = escape_mrkdwn(f"{author}: {first_line}")
    body.update(
        {
            "color": "danger" if event.severity == ERROR else "good",
            "author_name": author,
            "text": escape_mrkdwn(event.message),
            "mrkdwn_in": ["text"],
            "fields": [
                {"title": key, "value": escape_mrkdwn(value), "short": False}
                for key, value in sorted_fields(event.metadata)
            ],
        }
    )
    return body


def slack_payload(event: FluxEvent, *, channel: str, username: str) -> dict[str, Any]:
    """Flux's Slack message for `event`."""
    return {
        "channel": channel,
        "username": username or event.reporting_controller,
        "icon_url": "",
        "icon_emoji": "",
        "attachments": [attachment(event)],
    }


def uses_web_api(config: ProviderConfig) -> bool:
    if not config.token:
        return False
    if not config.address:
        return True
    return urlsplit(config.address).path.rstrip("/").endswith("/" + WEB_API_METHOD)


def web_api_base(address: str) -> str:
    """`https://slack.com/api/` from `https://slack.com/api/chat.postMessage`."""
    text = (address or DEFAULT_WEB_API).rstrip("/")
    return text[: -len(WEB_API_METHOD)]


class SlackSender:
    def __init__(self, config: ProviderConfig) -> None:
        if not config.address and not config.token:
            raise ProviderConfigError(
                "slack provider needs spec.address (or 'address' in spec.secretRef), "
                "or a bot 'token' in spec.secretRef"
            )
        self.config = config

    async def send(self, event: FluxEvent) -> None:
        payload = slack_payload(event, channel=self.config.channel, username=self.config.username)
        if uses_web_api(self.config):
            await self._post_message(payload)
        else:
            await self._post_webhook(payload)

    async def _post_message(self, payload: dict[str, Any]) -> None:
        config = self.config
        if not payload["channel"]:
            raise ProviderConfigError("slack provider with a bot token needs spec.channel")
        base = web_api_base(config.address)
        where = shown_address(base)
        async with open_session(config) as session:
            client = AsyncWebClient(
                token=config.token,
                base_url=base,
                timeout=math.ceil(config.timeout),
                ssl=_ssl(config),
                session=session,
                logger=_sdk_log,
                retry_handlers=[],
            )
            try:
                with warnings.catch_warnings():
                    # Flux's message has no top-level text (the attachment
                    # carries it); the SDK warns about that on every call.
                    warnings.simplefilter("ignore", UserWarning)
                    await client.chat_postMessage(**payload)
            except SlackApiError as exc:
                error = str(exc.response.get("error") or "") if exc.response else ""
                status = exc.response.status_code if exc.response else 0
                raise DeliveryError(
                    f"Slack {WEB_API_METHOD} at {where} failed: " + (error or f"HTTP {status}"),
                    retryable=error in RETRYABLE_API_ERRORS or status >= 500 or status == 429,
                    retry_after=retry_after_of(
                        status, exc.response.headers if exc.response else None
                    ),
                ) from None
            except (SlackRequestError, OSError) as exc:
                raise DeliveryError(f"Slack {WEB_API_METHOD} at {where} failed: {exc}") from None
            except TimeoutError:
                raise DeliveryError(
                    f"Slack {WEB_API_METHOD} at {where} timed out after {config.timeout:g}s"
                ) from None

    async def _post_webhook(self, payload: dict[str, Any]) -> None:
        config = self.config
        where = shown_address(config.address)
        headers = {"Authorization": f"Bearer {config.token}"} if config.token else None
        async with open_session(config) as session:
            client = AsyncWebhookClient(
                config.address,
                timeout=math.ceil(config.timeout),
                ssl=_ssl(config),
                session=session,
                default_headers=headers,
                logger=_sdk_log,
                retry_handlers=[],
            )
            try:
                response = await client.send_dict(payload)
            except TimeoutError:
                raise DeliveryError(
                    f"Slack webhook at {where} timed out after {config.timeout:g}s"
                ) from None
            except Exception as exc:  # aiohttp's errors, whatever the SDK lets through
                raise DeliveryError(
                    f"Slack webhook at {where} failed: {type(exc).__name__}: {exc}"
                ) from None
        if response.status_code != 200:
            text = (response.body or "")[:MAX_ERROR_BODY].strip()
            raise DeliveryError(
                f"Slack webhook at {where} failed: HTTP {response.status_code}"
                + (f": {text}" if text else ""),
                retryable=response.status_code >= 500 or response.status_code == 429,
                retry_after=retry_after_of(response.status_code, response.headers),
            )


def _ssl(config: ProviderConfig) -> Any:
    option = ssl_option(config)
    # The SDK takes an SSLContext or None (its default verification).
    return None if option is True else option
