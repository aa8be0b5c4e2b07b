"""One bounded HTTP POST for providers, turning every failure into a DeliveryError."""

from __future__ import annotations

import json
import ssl
import warnings
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import aiohttp

from controllers.notification.providers.base import (
    MAX_ERROR_BODY,
    DeliveryError,
    ProviderConfig,
    retry_after_of,
    shown_address,
)

# Statuses worth another attempt: the server is busy or broken, not refusing us.
RETRYABLE_STATUSES = frozenset({408, 425, 429})
USER_AGENT = "headwater-notification-controller"
# Answers are read only this far: statuses lists, errors and small JSON.
MAX_RESPONSE = 1024 * 1024


@dataclass(frozen=True)
class HttpResponse:
    status: int
    body: bytes


def encode_json(payload: Any) -> bytes:
    """Compact JSON, like Go's encoder; the exact bytes that are sent (and signed)."""
    return json.dumps(payload, separators=(",", ":"), ensure_ascii=False).encode()


def open_session(config: ProviderConfig) -> aiohttp.ClientSession:
    """A session bounded by the Provider's timeout, going through its proxy.

    Proxy credentials ride on the session too, for clients (slack-sdk) that
    take a session but no per-request proxy headers.
    """
    proxy_auth = None
    if config.proxy and config.proxy_username:
        with warnings.catch_warnings():
            # aiohttp 4 drops BasicAuth; until then it is the only session-wide way.
            warnings.simplefilter("ignore", DeprecationWarning)
            proxy_auth = aiohttp.BasicAuth(config.proxy_username, config.proxy_password)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)
        return aiohttp.ClientSession(
            timeout=aiohttp.ClientTimeout(total=config.timeout),
            proxy=config.proxy or None,
            proxy_auth=proxy_auth,
        )


def ssl_option(config: ProviderConfig) -> ssl.SSLContext | bool:
    """The Provider's TLS settings, or the default verification."""
    return config.ssl_context if config.ssl_context is not None else True


async def request(
    method: str,
    url: str,
    config: ProviderConfig,
    *,
    body: bytes | None = None,
    headers: Mapping[str, str] | None = None,
    ok_statuses: range = range(200, 300),
) -> HttpResponse:
    """Send one request within the Provider's timeout, through its proxy and TLS settings."""
    sent_headers = {"User-Agent": USER_AGENT}
    if body is not None:
        sent_headers["Content-Type"] = "application/json"
    sent_headers.update(headers or {})
    where = shown_address(url)
    try:
        async with (
            open_session(config) as session,
            session.request(
                method,
                url,
                data=body,
                headers=sent_headers,
                ssl=ssl_option(config),
                allow_redirects=False,
            ) as response,
        ):
            # Bounded read: an answer is only ever used for errors and small JSON.
            data = await response.content.read(MAX_RESPONSE)
            status = response.status
            retry_after = retry_after_of(status, response.headers)
    except TimeoutError:
        raise DeliveryError(f"{method} {where} timed out after {config.timeout:g}s") from None
    except aiohttp.ClientError as exc:
        raise DeliveryError(f"{method} {where} failed: {type(exc).__name__}: {exc}") from None
    if status not in ok_statuses:
        text = data[:MAX_ERROR_BODY].decode("utf-8", "replace").strip()
        raise DeliveryError(
            f"{method} {where} failed: HTTP {status}" + (f": {text}" if text else ""),
            retryable=status >= 500 or status in RETRYABLE_STATUSES,
            retry_after=retry_after,
        )
    return HttpResponse(status=status, body=data)


async def post_json(
    url: str,
    config: ProviderConfig,
    payload: Any,
    *,
    headers: Mapping[str, str] | None = None,
) -> HttpResponse:
    return await request("POST", url, config, body=encode_json(payload), headers=headers)
