"""The webhook receiver: `POST /hook/<sha256>` from git hosts and other senders.

Checks, in order, each refusing the request before anything changes:
- 429: the client sent more than the rate limit allows (``--receiver-rate-limit``
  requests per second per client address, bursts of five seconds' worth), with
  Retry-After; checked before anything else, so unknown paths cannot be probed fast;
- 404: no Receiver publishes this path (the same answer whatever receivers exist);
- 503: the Receiver is suspended or not Ready;
- 408: the body did not arrive within 30 seconds;
- 413: the body is larger than 3 MiB;
- 400: the request does not prove it knows the token: generic-hmac needs
  `X-Signature: sha1|sha256|sha512=<hex HMAC(body, token)>`; github needs
  `X-Hub-Signature-256` (or the older `X-Hub-Signature`, sha1) and an
  `X-GitHub-Event` listed in `spec.events` (when set); gitlab needs
  `X-Gitlab-Token` equal to the token and an `X-Gitlab-Event` listed in
  `spec.events`. Comparisons are constant-time; answers never echo secrets.
Then every resource is annotated with `reconcile.fluxcd.io/requestedAt`:
200, or 500 naming the resources that could not be (the rest are done).
A GitHub `ping` (sent when a webhook is created) is verified and answered
200 without asking anything to reconcile. A replayed request only asks for a reconcile
again (a new requestedAt): reconciles are idempotent, so it changes nothing in the cluster.
"""

from __future__ import annotations

import hashlib
import hmac
import logging
import math
import time
from collections.abc import Awaitable, Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from aiohttp import web

from controllers.notification.receiver import (
    WEBHOOK_PREFIX,
    ReceiverSpec,
    ReceiverSpecError,
    ResourceRef,
    token_from_secret,
)
from controllers.notification.targets import TargetError, rfc3339_nano
from controllers.toolkit.runtime import conditions as cond
from controllers.toolkit.runtime.http import REQUEST_TIMEOUT, time_limit
from controllers.toolkit.runtime.kube import SecretReader

log = logging.getLogger(__name__)

MAX_BODY = 3 * 1024 * 1024
_DIGESTS = {"sha1": hashlib.sha1, "sha256": hashlib.sha256, "sha512": hashlib.sha512}
PING = "ping"


class Rejected(Exception):
    """The request is refused with `status`; `message` is safe to send back."""

    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status = status
        self.message = message


def verify_signature(header_name: str, header: str | None, body: bytes, token: str) -> None:
    """Check `<algo>=<hex HMAC(body, token)>`; Rejected(400) when it does not hold."""
    if not header:
        raise Rejected(400, f"missing {header_name} header")
    algorithm, sep, given = header.strip().partition("=")
    digest = _DIGESTS.get(algorithm.lower())
    if not sep or digest is None:
        raise Rejected(400, f"{header_name} must be sha1=, sha256= or sha512= followed by hex")
    expected = hmac.new(token.encode(), body, digest).hexdigest()
    if not hmac.compare_digest(expected.encode(), given.strip().lower().encode()):
        raise Rejected(400, f"{header_name} does not match the payload")


def check_event(header_name: str, event: str, allowed: Sequence[str]) -> None:
    if allowed and not any(event.lower() == e.lower() for e in allowed):
        raise Rejected(400, f"event {event!r} ({header_name}) is not in spec.events")


def validate(spec: ReceiverSpec, headers: Mapping[str, str], body: bytes, token: str) -> str | None:
    """Authenticate one request; returns `ping` for a GitHub ping, else None."""
    if spec.type == "generic":
        return None
    if spec.type == "generic-hmac":
        verify_signature("X-Signature", headers.get("X-Signature"), body, token)
        return None
    if spec.type == "github":
        if headers.get("X-Hub-Signature-256"):
            verify_signature("X-Hub-Signature-256", headers["X-Hub-Signature-256"], body, token)
        else:
            verify_signature("X-Hub-Signature", headers.get("X-Hub-Signature"), body, token)
        event = headers.get("X-GitHub-Event", "")
        if event.lower() == PING:
            return PING
        check_event("X-GitHub-Event", event, spec.events)
        return None
    if spec.type == "gitlab":
        given = headers.get("X-Gitlab-Token")
        if not given or not hmac.compare_digest(given.encode(), token.encode()):
            raise Rejected(400, "X-Gitlab-Token does not match the receiver token")
        check_event("X-Gitlab-Event", headers.get("X-Gitlab-Event", ""), spec.events)
        return None
    raise Rejected(400, f"receiver type {spec.type!r} is not supported")


def find_receiver(receivers: Sequence[Mapping[str, Any]], path: str) -> Mapping[str, Any] | None:
    """The Receiver publishing `path`, compared in constant time against each."""
    found = None
    for receiver in receivers:
        published = str((receiver.get("status") or {}).get("webhookPath") or "")
        if published and hmac.compare_digest(published.encode(), path.encode()):
            found = receiver
    return found


class RateLimiter:
    """A token bucket per client address: `rate` requests per second, bursts of `burst`.

    At most `max_clients` addresses are remembered; past that the longest idle are
    forgotten (a forgotten client starts with a full bucket, which only errs towards
    accepting). A rate of 0 turns the limit off.
    """

    def __init__(self, rate: float, burst: float | None = None, max_clients: int = 10_000) -> None:
        self.rate = rate
        self.burst = burst if burst is not None else max(1.0, 5 * rate)
        self.max_clients = max_clients
        self._buckets: dict[str, tuple[float, float]] = {}  # client -> (tokens, last time)

    def admit(self, client: str, now: float | None = None) -> float:
        """0 if the request may go on, else the seconds until it could."""
        if self.rate <= 0:
            return 0.0
        now = time.monotonic() if now is None else now
        tokens, last = self._buckets.pop(client, (self.burst, now))
        tokens = min(self.burst, tokens + (now - last) * self.rate)
        wait = 0.0
        if tokens >= 1:
            tokens -= 1
        else:
            wait = (1 - tokens) / self.rate
        self._buckets[client] = (tokens, now)  # re-inserted: the dict is in idle order
        while len(self._buckets) > self.max_clients:
            del self._buckets[next(iter(self._buckets))]
        return wait


ReceiverList = Callable[[], list[dict[str, Any]]]
# (resource, receiver namespace, requestedAt value) -> annotated objects; raises TargetError.
RequestReconcile = Callable[[ResourceRef, str, str], Awaitable[list[str]]]


@dataclass(frozen=True)
class Backend:
    """What the server needs from the controller."""

    receivers: ReceiverList
    read_secret: SecretReader
    request_reconcile: RequestReconcile


BACKEND_KEY = web.AppKey("backend", Backend)
LIMITER_KEY = web.AppKey("limiter", RateLimiter)


def _answer(status: int, message: str) -> web.Response:
    return web.Response(status=status, text=message + "\n")


async def handle_hook(request: web.Request) -> web.Response:
    wait = request.app[LIMITER_KEY].admit(request.remote or "")
    if wait:
        response = _answer(429, "too many requests")
        response.headers["Retry-After"] = str(max(1, math.ceil(wait)))
        return response
    path = WEBHOOK_PREFIX + request.match_info["digest"]
    receiver = find_receiver(request.app[BACKEND_KEY].receivers(), path)
    if receiver is None:
        return _answer(404, "no receiver for this path")
    metadata = receiver.get("metadata") or {}
    namespace, name = str(metadata.get("namespace") or ""), str(metadata.get("name") or "")
    spec_body = receiver.get("spec") or {}
    if spec_body.get("suspend") or not cond.is_true(receiver.get("status"), cond.READY):
        return _answer(503, "receiver is suspended or not ready")
    try:
        body = await request.read()
    except web.HTTPRequestEntityTooLarge:
        return _answer(413, f"payload larger than {MAX_BODY} bytes")
    try:
        spec = ReceiverSpec.parse(spec_body)
        data = await request.app[BACKEND_KEY].read_secret(namespace, spec.secret_name)
        token = token_from_secret(data, namespace, spec.secret_name)
        outcome = validate(spec, request.headers, body, token)
    except ReceiverSpecError:
        return _answer(503, "receiver is not ready")
    except LookupError:
        return _answer(400, "receiver token unavailable")
    except Rejected as exc:
        log.warning(
            "webhook rejected: %s",
            exc.message,
            extra={"k8s_ref": {"kind": "Receiver", "namespace": namespace, "name": name}},
        )
        return _answer(exc.status, exc.message)
    if outcome == PING:
        return _answer(200, "pong")
    value = rfc3339_nano()
    failures = []
    annotated: list[str] = []
    for ref in spec.resources:
        try:
            annotated.extend(
                await request.app[BACKEND_KEY].request_reconcile(ref, namespace, value)
            )
        except TargetError as exc:
            failures.append(str(exc))
    log.info(
        "webhook handled",
        extra={
            "k8s_ref": {"kind": "Receiver", "namespace": namespace, "name": name},
            "annotated": annotated,
            "failures": failures,
        },
    )
    if failures:
        return _answer(500, "; ".join(failures))
    return _answer(200, f"reconcile requested for {len(annotated)} object(s)")


def make_app(
    receivers: ReceiverList,
    read_secret: SecretReader,
    request_reconcile: RequestReconcile,
    *,
    rate_limit: float = 0.0,
    request_timeout: float = REQUEST_TIMEOUT,
) -> web.Application:
    """The receiver's app; `rate_limit` is requests per second per client (0: no limit)."""
    app = web.Application(client_max_size=MAX_BODY, middlewares=[time_limit(request_timeout)])
    app[BACKEND_KEY] = Backend(receivers, read_secret, request_reconcile)
    app[LIMITER_KEY] = RateLimiter(rate_limit)
    app.router.add_post("/hook/{digest}", handle_hook)
    return app
