"""What every provider shares: its resolved configuration, errors, and masking."""

from __future__ import annotations

import email.utils
import ssl
import time
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Protocol
from urllib.parse import urlsplit

from controllers.notification.event import FluxEvent

# Flux's Provider default timeout.
DEFAULT_TIMEOUT = 15.0
# How much of a provider's error answer goes into a message.
MAX_ERROR_BODY = 256

# Flux's commit status providers that headwater supports: they only take
# events about a commit, and read ca.crt from the secretRef too.
COMMIT_STATUS_TYPES = frozenset({"github"})


class DeliveryError(Exception):
    """Sending failed. `retryable` is False when trying again cannot help (4xx, bad config).

    `retry_after` is the wait in seconds the server asked for (a 429's or 503's
    `Retry-After`), None when it asked for none.
    """

    def __init__(
        self, message: str, *, retryable: bool = True, retry_after: float | None = None
    ) -> None:
        super().__init__(message)
        self.message = message
        self.retryable = retryable
        self.retry_after = retry_after


def parse_retry_after(value: str | None, *, now: float | None = None) -> float | None:
    """Seconds from a `Retry-After` header (delay-seconds or an HTTP date); None if unusable."""
    if not value:
        return None
    value = value.strip()
    if value.isdigit():
        return float(value)
    try:
        moment = email.utils.parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return None
    if moment.tzinfo is None:
        return None
    return max(0.0, moment.timestamp() - (time.time() if now is None else now))


def retry_after_of(status: int, headers: Mapping[str, str] | None) -> float | None:
    """The server's `Retry-After`, taken (as go-retryablehttp, Flux's client, does) on 429/503."""
    if status not in (429, 503) or not headers:
        return None
    # Header names as the client library kept them: any case.
    for name, value in headers.items():
        if name.lower() == "retry-after":
            return parse_retry_after(str(value))
    return None


class ProviderConfigError(DeliveryError):
    """The Provider or its Secrets cannot work as written."""

    def __init__(self, message: str) -> None:
        super().__init__(message, retryable=False)


@dataclass(frozen=True)
class ProviderConfig:
    """A Provider with its Secrets read: everything a sender needs. `repr` hides values."""

    name: str
    namespace: str
    uid: str
    type: str
    address: str = field(default="", repr=False)
    channel: str = ""
    username: str = ""
    timeout: float = DEFAULT_TIMEOUT
    token: str = field(default="", repr=False)
    basic_username: str = field(default="", repr=False)
    password: str = field(default="", repr=False)
    headers: Mapping[str, str] = field(default_factory=dict, repr=False)
    proxy: str = field(default="", repr=False)  # without credentials
    proxy_username: str = field(default="", repr=False)
    proxy_password: str = field(default="", repr=False)
    ssl_context: ssl.SSLContext | None = field(default=None, repr=False)
    # True when the address came from the Secret: then none of it is shown.
    address_is_secret: bool = False

    @property
    def key(self) -> str:
        return f"{self.namespace}/{self.name}"

    def secret_values(self) -> tuple[str, ...]:
        """Every value that must never appear in a message, longest first."""
        values = [self.token, self.password, self.proxy_password, *self.headers.values()]
        if self.address:
            parts = urlsplit(self.address)
            # A webhook URL's path and query are its credentials (Slack,
            # Discord, Teams); only scheme://host is ever shown.
            values.append(self.address)
            tail = self.address[len(f"{parts.scheme}://{parts.netloc}") :]
            if tail.strip("/"):
                values.append(tail)
            values.extend(v for v in (parts.username, parts.password) if v)
        return tuple(sorted({v for v in values if len(v) >= 4}, key=len, reverse=True))


def shown_address(url: str) -> str:
    """What of an address may appear in messages: scheme and host only."""
    parts = urlsplit(url)
    host = parts.hostname or ""
    if parts.port:
        host = f"{host}:{parts.port}"
    return f"{parts.scheme}://{host}" if parts.scheme and host else "<address>"


def mask(text: str, secrets: Iterable[str]) -> str:
    """`text` with every secret value replaced by `*****`."""
    for value in secrets:
        if value:
            text = text.replace(value, "*****")
    return text


class Sender(Protocol):
    """Delivers one notification to one provider; raises DeliveryError on failure."""

    async def send(self, event: FluxEvent) -> None: ...


def sorted_fields(metadata: Mapping[str, str]) -> list[tuple[str, str]]:
    """Metadata in a stable order, `summary` first (messages read better that way)."""
    items = sorted(metadata.items())
    return [i for i in items if i[0] == "summary"] + [i for i in items if i[0] != "summary"]


def object_name(event: FluxEvent) -> str:
    """`kind/name.namespace`, as Flux titles chat messages."""
    return f"{event.kind.lower()}/{event.name}.{event.namespace}"
