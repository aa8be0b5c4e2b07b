"""The dashboard's web app: aiohttp, server-rendered Jinja2 pages, htmx for the live parts.

Routes:
- `GET /` overview (counts per kind and state; the table, filtered by
  `namespace`, `kind`, `state`, `q`), `GET /graph` (sources →
  Kustomizations/HelmReleases → what they own, as SVG), `GET
  /object/{kind}/{namespace}/{name}` (one object's page);
- an htmx request (`HX-Request`) for any of them gets only the live region,
  which is how the page refreshes itself after a notice on `GET /sse`;
- `POST /act/{action}/{kind}/{namespace}/{name}` runs an action
  (actions.py), only from the dashboard's own pages: it needs htmx's
  `HX-Request` header (a cross-site form cannot send it) and, when the
  browser sends an `Origin`, the dashboard's own;
- `GET /static/...` (htmx, the page script, the stylesheet), `GET /healthz`.

Reads and writes run in a thread through the requesting identity's Session
(access.py); the event loop only serves and streams.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from importlib import resources
from typing import Any
from urllib.parse import urlsplit

import jinja2
from aiohttp import web

from controllers.commands import kinds
from controllers.commands.common import CliError
from controllers.dashboard import access, actions, state, watch

log = logging.getLogger(__name__)

SSE_HEARTBEAT_SECONDS = 15.0
STATIC_FILES = {
    "htmx.min.js": "application/javascript",
    "live.js": "application/javascript",
    "style.css": "text/css",
}

SESSIONS = web.AppKey("sessions", access.Sessions)
BROADCASTER = web.AppKey("broadcaster", watch.Broadcaster)
TEMPLATES = web.AppKey("templates", jinja2.Environment)
WATCH = web.AppKey("watch", bool)

STATE_COLOURS = {
    "Ready": "ok",
    "Current": "ok",
    "Progressing": "busy",
    "InProgress": "busy",
    "Unknown": "busy",
    "Failed": "bad",
    "Stalled": "bad",
    "NotFound": "bad",
    "Terminating": "busy",
    "Suspended": "off",
}


def templates() -> jinja2.Environment:
    env = jinja2.Environment(
        loader=jinja2.PackageLoader("controllers.dashboard", "templates"),
        autoescape=True,
        undefined=jinja2.StrictUndefined,
        trim_blocks=True,
        lstrip_blocks=True,
    )
    env.globals["colour"] = lambda word: STATE_COLOURS.get(str(word), "busy")
    env.globals["kinds"] = [k.kind for k in state.SHOWN_KINDS]
    env.globals["states"] = state.STATES
    return env


def _fragment(request: web.Request) -> bool:
    return "HX-Request" in request.headers and "HX-History-Restore-Request" not in request.headers


def _user(request: web.Request) -> str | None:
    try:
        return request.app[SESSIONS].user_of(request.headers)
    except access.Unauthenticated as exc:
        raise web.HTTPUnauthorized(text=str(exc)) from None


async def _render(request: web.Request, name: str, **context: Any) -> web.Response:
    env = request.app[TEMPLATES]
    user = context.pop("user", None)
    body = await asyncio.to_thread(
        env.get_template(name).render,
        fragment=_fragment(request),
        path=request.path,
        user=user,
        **context,
    )
    return web.Response(text=body, content_type="text/html", headers={"Cache-Control": "no-store"})


def _allowed(request: web.Request, user: str | None, rows: list[state.Row]) -> dict[str, bool]:
    """Per row key, whether its identity may patch it (one review per kind and namespace)."""
    sessions = request.app[SESSIONS]
    return {
        state.key_text(r.key): sessions.can_patch(user, r.kind, r.namespace)
        for r in rows
        if r.kind.has_status
    }


async def overview(request: web.Request) -> web.Response:
    user = _user(request)
    session = request.app[SESSIONS].get(user)
    filters = state.Filters.of(request.query)
    started = time.perf_counter()
    found = await asyncio.to_thread(state.overview, session, filters)
    allowed = await asyncio.to_thread(_allowed, request, user, found.rows)
    return await _render(
        request,
        "overview.html",
        user=user,
        view=found,
        filters=filters,
        allowed=allowed,
        key_text=state.key_text,
        read_ms=round((time.perf_counter() - started) * 1000),
    )


async def graph_page(request: web.Request) -> web.Response:
    user = _user(request)
    session = request.app[SESSIONS].get(user)
    filters = state.Filters.of(request.query)
    found = await asyncio.to_thread(state.graph, session, filters)
    return await _render(
        request, "graph.html", user=user, graph=layout(found), filters=filters, view=None
    )


async def object_page(request: web.Request) -> web.Response:
    user = _user(request)
    kind = _kind(request.match_info["kind"])
    namespace, name = request.match_info["namespace"], request.match_info["name"]
    session = request.app[SESSIONS].get(user)
    found = await asyncio.to_thread(state.detail, session, kind, namespace, name)
    if found is None:
        raise web.HTTPNotFound(text=f"{kind.kind} {namespace}/{name} not found (or not yours)")
    allowed = await asyncio.to_thread(request.app[SESSIONS].can_patch, user, kind, namespace)
    return await _render(request, "object.html", user=user, d=found, allowed=allowed)


def _kind(text: str) -> kinds.FluxKind:
    try:
        kind = kinds.resolve(text)
    except CliError:
        raise web.HTTPNotFound(text=f"no kind {text!r}") from None
    if kind not in state.SHOWN_KINDS:
        raise web.HTTPNotFound(text=f"the dashboard does not show {kind.kind}")
    return kind


def _same_origin(request: web.Request) -> bool:
    origin = request.headers.get("Origin")
    if origin is None:
        return True
    return urlsplit(origin).netloc == request.host


async def act(request: web.Request) -> web.Response:
    if "HX-Request" not in request.headers or not _same_origin(request):
        raise web.HTTPForbidden(text="actions are taken from the dashboard's own pages")
    user = _user(request)
    action = request.match_info["action"]
    if action not in actions.ACTIONS:
        raise web.HTTPNotFound(text=f"no action {action!r}")
    kind = _kind(request.match_info["kind"])
    namespace, name = request.match_info["namespace"], request.match_info["name"]
    sessions = request.app[SESSIONS]
    if not await asyncio.to_thread(sessions.can_patch, user, kind, namespace):
        raise web.HTTPForbidden(text=f"you may not change {kind.kind} in {namespace}")
    session = sessions.get(user)
    if action == "reconcile-with-source":
        # The source is waited for in the background; the page shows both as they move.
        asyncio.get_running_loop().create_task(
            _in_background(session, action, kind, namespace, name)
        )
        message, ok = f"{kind.kind} {namespace}/{name}: reconciling its source first", True
    else:
        try:
            message, ok = (
                await asyncio.to_thread(actions.act, session, action, kind, namespace, name),
                True,
            )
        except CliError as exc:
            message, ok = str(exc), False
    return await _render(request, "flash.html", message=message, ok=ok)


async def _in_background(
    session: Any, action: str, kind: kinds.FluxKind, namespace: str, name: str
) -> None:
    try:
        await asyncio.to_thread(actions.act, session, action, kind, namespace, name)
    except CliError as exc:
        log.warning("dashboard: %s", exc)


async def sse(request: web.Request) -> web.StreamResponse:
    _user(request)
    broadcaster = request.app[BROADCASTER]
    response = web.StreamResponse(
        headers={
            "Content-Type": "text/event-stream",
            "Cache-Control": "no-store",
            "X-Accel-Buffering": "no",
        }
    )
    await response.prepare(request)
    queue = broadcaster.subscribe()
    try:
        await response.write(b"retry: 1000\nevent: hello\ndata: 0\n\n")
        while True:
            try:
                what = await asyncio.wait_for(queue.get(), SSE_HEARTBEAT_SECONDS)
            except TimeoutError:
                await response.write(b": ping\n\n")
                continue
            await response.write(f"event: change\ndata: {what}\n\n".encode())
    except (ConnectionResetError, asyncio.CancelledError):
        pass
    finally:
        broadcaster.unsubscribe(queue)
    return response


async def static(request: web.Request) -> web.Response:
    name = request.match_info["name"]
    content_type = STATIC_FILES.get(name)
    if content_type is None:
        raise web.HTTPNotFound()
    body = resources.files("controllers.dashboard").joinpath("static", name).read_bytes()
    return web.Response(
        body=body, content_type=content_type, headers={"Cache-Control": "max-age=3600"}
    )


async def healthz(_: web.Request) -> web.Response:
    return web.Response(text="ok\n")


@web.middleware
async def security_headers(
    request: web.Request, handler: Callable[[web.Request], Awaitable[web.StreamResponse]]
) -> web.StreamResponse:
    response = await handler(request)
    response.headers.setdefault("X-Frame-Options", "DENY")
    response.headers.setdefault("X-Content-Type-Options", "nosniff")
    response.headers.setdefault(
        "Content-Security-Policy",
        "default-src 'self'; style-src 'self' 'unsafe-inline'; img-src 'self' data:",
    )
    return response


# --- the graph's layout -------------------------------------------------------------------

COLUMN_X = (20, 330, 660)
NODE_WIDTH = 260
NODE_HEIGHT = 24
ROW_GAP = 32


def layout(found: state.Graph) -> dict[str, Any]:
    """Positions for the SVG: three columns (sources, appliers, objects), edges as curves."""
    nodes: list[dict[str, Any]] = []
    where: dict[str, tuple[int, int]] = {}

    def place(column: int, index: int, key: str, label: str, word: str, href: str | None) -> None:
        x, y = COLUMN_X[column], 40 + index * ROW_GAP
        where[key] = (x, y)
        nodes.append(
            {
                "x": x,
                "y": y,
                "label": label,
                "state": word,
                "href": href,
                "title": f"{label}: {word}",
            }
        )

    for i, r in enumerate(found.sources):
        place(0, i, state.key_text(r.key), f"{r.kind.kind}/{r.name}", r.state, r.href)
    for i, r in enumerate(found.appliers):
        place(1, i, state.key_text(r.key), f"{r.kind.kind}/{r.name}", r.state, r.href)
    for i, o in enumerate(found.objects):
        place(2, i, o.id.format(), f"{o.id.kind}/{o.id.name}", o.status, o.href)
    edges = []
    for what, start, end in found.edges:
        if start not in where or end not in where:
            continue
        (x1, y1), (x2, y2) = where[start], where[end]
        y1, y2 = y1 + NODE_HEIGHT // 2, y2 + NODE_HEIGHT // 2
        if x1 == x2:
            # Within the column: dependsOn arcs on its left side, ownership on its right.
            bend = 20 + abs(y2 - y1) // 6
            if what == "depends":
                path = f"M{x1},{y1} C{x1 - bend},{y1} {x2 - bend},{y2} {x2},{y2}"
            else:
                x1 = x2 = x1 + NODE_WIDTH
                path = f"M{x1},{y1} C{x1 + bend},{y1} {x2 + bend},{y2} {x2},{y2}"
        else:
            x1 += NODE_WIDTH
            middle = (x1 + x2) // 2
            path = f"M{x1},{y1} C{middle},{y1} {middle},{y2} {x2},{y2}"
        edges.append({"kind": what, "path": path})
    rows = max(len(found.sources), len(found.appliers), len(found.objects), 1)
    return {
        "nodes": nodes,
        "edges": edges,
        "width": COLUMN_X[2] + NODE_WIDTH + 20,
        "height": 60 + rows * ROW_GAP,
        "node_width": NODE_WIDTH,
        "node_height": NODE_HEIGHT,
        "notes": found.notes,
        "empty": not nodes,
    }


# --- the app ------------------------------------------------------------------------------


def make_app(sessions: access.Sessions, *, watch_api: bool = True) -> web.Application:
    app = web.Application(middlewares=[security_headers])
    app[SESSIONS] = sessions
    app[BROADCASTER] = watch.Broadcaster()
    app[TEMPLATES] = templates()
    app[WATCH] = watch_api
    app.router.add_get("/", overview)
    app.router.add_get("/graph", graph_page)
    app.router.add_get("/object/{kind}/{namespace}/{name}", object_page)
    app.router.add_post("/act/{action}/{kind}/{namespace}/{name}", act)
    app.router.add_get("/sse", sse)
    app.router.add_get("/static/{name}", static)
    app.router.add_get("/healthz", healthz)
    app.cleanup_ctx.append(_watching)
    return app


async def _watching(app: web.Application) -> AsyncIterator[None]:
    watcher = None
    if app[WATCH]:
        watcher = watch.Watcher(
            app[SESSIONS].base(), state.SHOWN_KINDS, app[BROADCASTER], asyncio.get_running_loop()
        )
        watcher.start()
    yield
    if watcher is not None:
        watcher.stop()
    with contextlib.suppress(Exception):
        app[SESSIONS].close()
