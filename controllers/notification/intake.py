"""The event intake: `POST /` with Flux's event JSON, answered at once.

Answers:
- 202 Accepted: the event is queued for matching and delivery;
- 400: the body is not JSON or a field is missing or has the wrong type
  (the answer names the field);
- 405: a method other than POST; 404: a path other than `/`;
- 408: the body did not arrive within 30 seconds;
- 413: the body is larger than 3 MiB (Flux's limit);
- 415: a Content-Type other than JSON (an absent one is taken as JSON, as
  Flux's emitter is not required to send it);
- 429: a repeat of an event already accepted within the dedup window
  (the emitter does not retry it);
- 503: the dispatch queue is full; the emitter's Kubernetes Event still records it.
Nothing here waits on a provider: matching and delivery run in the dispatcher.
"""

from __future__ import annotations

import json
import logging
from typing import Any, Protocol

from aiohttp import web

from controllers.notification.dedup import DuplicateFilter, event_key
from controllers.notification.event import (
    EventError,
    FluxEvent,
    clean_metadata,
    parse_event,
    without_internal_metadata,
)
from controllers.toolkit.runtime.http import REQUEST_TIMEOUT, time_limit

log = logging.getLogger(__name__)

MAX_BODY = 3 * 1024 * 1024
JSON_TYPES = frozenset({"application/json", "text/json"})


class EventSink(Protocol):
    def submit(self, event: FluxEvent) -> bool: ...


DISPATCHER_KEY = web.AppKey("dispatcher", EventSink)
DEDUP_KEY = web.AppKey("dedup", DuplicateFilter)


def _answer(status: int, message: str) -> web.Response:
    return web.json_response({"status": status, "message": message}, status=status)


async def accept_event(request: web.Request) -> web.Response:
    if request.content_length is not None and request.content_length > MAX_BODY:
        return _answer(413, f"event body larger than {MAX_BODY} bytes")
    content_type = request.headers.get("Content-Type")
    if content_type and request.content_type not in JSON_TYPES:
        return _answer(415, f"Content-Type must be application/json, not {request.content_type!r}")
    try:
        raw = await request.read()
    except web.HTTPRequestEntityTooLarge:
        return _answer(413, f"event body larger than {MAX_BODY} bytes")
    try:
        data: Any = json.loads(raw)
    except (ValueError, UnicodeDecodeError) as exc:
        return _answer(400, f"body is not valid JSON: {exc}")
    try:
        event = parse_event(data)
    except EventError as exc:
        return _answer(400, f"invalid event: {exc}")
    event = clean_metadata(event)
    if not request.app[DEDUP_KEY].admit(event_key(event)):
        log.debug("discarding duplicate event about %s", event.describe())
        return _answer(429, "duplicate event within the rate-limit window; discarded")
    if not request.app[DISPATCHER_KEY].submit(without_internal_metadata(event)):
        log.warning("dispatch queue full; dropping event about %s", event.describe())
        return _answer(503, "dispatch queue full; try again later")
    return _answer(202, "accepted")


def make_app(
    dispatcher: EventSink, dedup: DuplicateFilter, *, request_timeout: float = REQUEST_TIMEOUT
) -> web.Application:
    # client_max_size makes aiohttp stop reading past the limit (chunked bodies too).
    app = web.Application(client_max_size=MAX_BODY, middlewares=[time_limit(request_timeout)])
    app[DISPATCHER_KEY] = dispatcher
    app[DEDUP_KEY] = dedup
    app.router.add_post("/", accept_event)
    return app
