"""Real HTTP servers on loopback standing in for the notification providers.

Each runs aiohttp on 127.0.0.1 in a thread of its own, so both sync tests
(which drive the controllers in a subprocess) and async tests can use it.
Every request is recorded (`received`), including those answered with a
failure, so retries can be counted. Failures on demand:

- `fail(status=500, times=None)`: answer `status` (to the next `times`
  requests, or until `recover()`);
- `hang()`: hold every request open until `recover()` or `stop()`.

Servers: `SlackServer` (incoming webhooks at `/services/...` and the Web
API's `/api/chat.postMessage` with a bot token), `DiscordServer`
(`/api/webhooks/<id>/<token>/slack`), `TeamsServer` (workflow URL),
`GitHubServer` (commit statuses API under `/api/v3`), `AlertmanagerServer`
(`/api/v2/alerts`) and `WebhookServer` (generic; verifies `X-Signature`
when given the HMAC key; serves HTTPS when given a server SSL context, and
stands in for a forward proxy too, recording `Proxy-Authorization`).
"""

from __future__ import annotations

import asyncio
import hashlib
import hmac
import json
import ssl
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import parse_qs

import pytest
from aiohttp import web

__all__ = [
    "AlertmanagerServer",
    "DiscordServer",
    "GitHubServer",
    "Received",
    "SlackServer",
    "StandInServer",
    "TeamsServer",
    "WebhookServer",
    "alertmanager_server",
    "discord_server",
    "github_server",
    "slack_server",
    "teams_server",
    "webhook_server",
]

SLACK_BOT_TOKEN = "xoxb-headwater-test-bot-token"
GITHUB_TOKEN = "ghp_headwaterTestToken0123456789"


@dataclass
class Received:
    """One request as the server saw it, and what it answered."""

    method: str
    path: str
    query: str
    headers: dict[str, str]
    body: bytes
    status: int = 0
    notes: dict[str, Any] = field(default_factory=dict)

    def json(self) -> Any:
        content_type = self.headers.get("Content-Type", "")
        if content_type.startswith("application/x-www-form-urlencoded"):
            return {k: v[0] for k, v in parse_qs(self.body.decode()).items()}
        return json.loads(self.body)


ENTRY_KEY = web.RequestKey("entry", Received)


class StandInServer:
    """Base: a thread with an event loop running one aiohttp app."""

    def __init__(self, *, tls: ssl.SSLContext | None = None) -> None:
        self.tls = tls
        self.received: list[Received] = []
        self._lock = threading.Lock()
        self._fail_status: int | None = None
        self._fail_left: int | None = None
        self._fail_headers: dict[str, str] = {}
        self._hanging = False
        self._loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self._loop.run_forever, daemon=True)
        self._runner: web.AppRunner | None = None
        self._release: asyncio.Event | None = None
        self.port = 0

    # -- to override -------------------------------------------------------------------

    def routes(self, app: web.Application) -> None:
        raise NotImplementedError

    # -- lifecycle ---------------------------------------------------------------------

    def start(self) -> StandInServer:
        self._thread.start()
        asyncio.run_coroutine_threadsafe(self._start(), self._loop).result(10)
        return self

    async def _start(self) -> None:
        self._release = asyncio.Event()
        app = web.Application(middlewares=[self._record])
        self.routes(app)
        runner = web.AppRunner(app, access_log=None, shutdown_timeout=0.5)
        await runner.setup()
        site = web.TCPSite(runner, "127.0.0.1", 0, ssl_context=self.tls)
        await site.start()
        self._runner = runner
        self.port = int(runner.addresses[0][1])

    def stop(self) -> None:
        async def _stop() -> None:
            if self._release is not None:
                self._release.set()
            if self._runner is not None:
                await self._runner.cleanup()

        asyncio.run_coroutine_threadsafe(_stop(), self._loop).result(20)
        self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join(10)
        self._loop.close()

    def __enter__(self) -> StandInServer:
        return self.start()

    def __exit__(self, *_: object) -> None:
        self.stop()

    @property
    def url(self) -> str:
        scheme = "https" if self.tls is not None else "http"
        return f"{scheme}://127.0.0.1:{self.port}"

    # -- failure modes -----------------------------------------------------------------

    def fail(
        self, status: int = 500, times: int | None = None, *, retry_after: str | None = None
    ) -> None:
        """Answer `status` (`times` times, or until `recover`), with `Retry-After` if given."""
        with self._lock:
            self._fail_status, self._fail_left = status, times
            self._fail_headers = {"Retry-After": retry_after} if retry_after is not None else {}

    def hang(self) -> None:
        with self._lock:
            self._hanging = True

    def recover(self) -> None:
        with self._lock:
            self._fail_status, self._fail_left, self._hanging = None, None, False
        if self._release is not None:
            self._loop.call_soon_threadsafe(self._release.set)

    # -- what tests read ---------------------------------------------------------------

    def requests(self, path_prefix: str = "", method: str | None = None) -> list[Received]:
        with self._lock:
            return [
                r
                for r in self.received
                if r.path.startswith(path_prefix) and (method is None or r.method == method)
            ]

    def wait_for(
        self,
        predicate: Callable[[Received], bool],
        *,
        count: int = 1,
        timeout: float = 60.0,
        what: str = "request",
    ) -> list[Received]:
        """Block until `count` recorded requests satisfy `predicate`; returns them."""
        deadline = time.monotonic() + timeout
        while True:
            found = [r for r in self.requests() if predicate(r)]
            if len(found) >= count:
                return found
            if time.monotonic() > deadline:
                paths = [(r.method, r.path, r.status) for r in self.requests()]
                raise AssertionError(
                    f"timed out after {timeout}s waiting for {count} {what}; got {paths}"
                )
            time.sleep(0.1)

    # -- plumbing ----------------------------------------------------------------------

    @web.middleware
    async def _record(
        self, request: web.Request, handler: Callable[[web.Request], Any]
    ) -> web.StreamResponse:
        body = await request.read()
        entry = Received(
            method=request.method,
            path=request.path,
            query=request.query_string,
            headers=dict(request.headers),
            body=body,
        )
        with self._lock:
            self.received.append(entry)
            hanging = self._hanging
            status = self._fail_status
            fail_headers = dict(self._fail_headers)
            if status is not None and self._fail_left is not None:
                self._fail_left -= 1
                if self._fail_left <= 0:
                    self._fail_status, self._fail_left = None, None
        if hanging and self._release is not None:
            await self._release.wait()
            entry.status = 503
            return web.Response(status=503, text="released\n")
        if status is not None:
            entry.status = status
            return web.Response(
                status=status, text="stand-in failure on demand\n", headers=fail_headers
            )
        request[ENTRY_KEY] = entry
        response: web.StreamResponse = await handler(request)
        entry.status = response.status
        return response


def _entry(request: web.Request) -> Received:
    return request[ENTRY_KEY]


class SlackServer(StandInServer):
    """Incoming webhooks (`/services/...`) and the Web API (`/api/chat.postMessage`)."""

    def __init__(self, bot_token: str = SLACK_BOT_TOKEN) -> None:
        super().__init__()
        self.bot_token = bot_token

    @property
    def webhook_url(self) -> str:
        return f"{self.url}/services/T0HEADWATER/B0TEST/s3cr3tWebhookPath"

    @property
    def api_url(self) -> str:
        return f"{self.url}/api/chat.postMessage"

    def routes(self, app: web.Application) -> None:
        app.router.add_post("/services/{rest:.+}", self._webhook)
        app.router.add_post("/api/chat.postMessage", self._post_message)

    async def _webhook(self, request: web.Request) -> web.Response:
        try:
            payload = _entry(request).json()
        except ValueError:
            return web.Response(status=400, text="invalid_payload")
        if not isinstance(payload, dict) or not (payload.get("text") or payload.get("attachments")):
            return web.Response(status=400, text="no_text")
        return web.Response(text="ok")

    async def _post_message(self, request: web.Request) -> web.Response:
        entry = _entry(request)
        auth = request.headers.get("Authorization", "")
        if auth != f"Bearer {self.bot_token}":
            entry.notes["error"] = "invalid_auth"
            return web.json_response({"ok": False, "error": "invalid_auth"})
        payload = entry.json()
        if not payload.get("channel"):
            return web.json_response({"ok": False, "error": "channel_not_found"})
        return web.json_response({"ok": True, "channel": payload["channel"], "ts": "1.000001"})


class DiscordServer(StandInServer):
    @property
    def webhook_url(self) -> str:
        return f"{self.url}/api/webhooks/1234567890/discordWebhookToken"

    def routes(self, app: web.Application) -> None:
        app.router.add_post("/api/webhooks/{id}/{token}/slack", self._slack_compatible)

    async def _slack_compatible(self, request: web.Request) -> web.Response:
        return web.Response(text="ok")


class TeamsServer(StandInServer):
    @property
    def workflow_url(self) -> str:
        return f"{self.url}/workflows/abc123/triggers/manual/paths/invoke?sig=teamsSignature"

    def routes(self, app: web.Application) -> None:
        app.router.add_post("/workflows/{rest:.+}", self._accept)

    async def _accept(self, request: web.Request) -> web.Response:
        return web.Response(status=202)


class GitHubServer(StandInServer):
    """The commit statuses API of GitHub Enterprise (`/api/v3`), with a token check."""

    def __init__(self, token: str = GITHUB_TOKEN) -> None:
        super().__init__()
        self.token = token
        # (owner, repo, sha) -> statuses, newest first
        self.statuses: dict[tuple[str, str, str], list[dict[str, Any]]] = {}

    def repo_url(self, owner: str, repo: str) -> str:
        return f"{self.url}/{owner}/{repo}"

    def routes(self, app: web.Application) -> None:
        base = "/api/v3/repos/{owner}/{repo}"
        app.router.add_get(base + "/commits/{sha}/statuses", self._list)
        app.router.add_post(base + "/statuses/{sha}", self._create)

    def _authorized(self, request: web.Request) -> bool:
        return request.headers.get("Authorization") in (
            f"Bearer {self.token}",
            f"token {self.token}",
        )

    def _key(self, request: web.Request) -> tuple[str, str, str]:
        info = request.match_info
        return info["owner"], info["repo"], info["sha"]

    async def _list(self, request: web.Request) -> web.Response:
        if not self._authorized(request):
            return web.json_response({"message": "Bad credentials"}, status=401)
        return web.json_response(self.statuses.get(self._key(request), []))

    async def _create(self, request: web.Request) -> web.Response:
        if not self._authorized(request):
            return web.json_response({"message": "Bad credentials"}, status=401)
        status = _entry(request).json()
        if status.get("state") not in ("error", "failure", "pending", "success"):
            return web.json_response({"message": "Validation Failed"}, status=422)
        with self._lock:
            self.statuses.setdefault(self._key(request), []).insert(0, status)
        return web.json_response(status, status=201)


class AlertmanagerServer(StandInServer):
    def routes(self, app: web.Application) -> None:
        app.router.add_post("/api/v2/alerts", self._alerts)

    @property
    def alerts_url(self) -> str:
        return f"{self.url}/api/v2/alerts"

    async def _alerts(self, request: web.Request) -> web.Response:
        alerts = _entry(request).json()
        if not isinstance(alerts, list) or not all("labels" in a for a in alerts):
            return web.json_response({"message": "bad alerts"}, status=400)
        return web.Response(status=200)


class WebhookServer(StandInServer):
    """Any POST; with `hmac_key`, only requests whose X-Signature verifies are accepted."""

    def __init__(self, hmac_key: bytes | None = None, *, tls: ssl.SSLContext | None = None) -> None:
        super().__init__(tls=tls)
        self.hmac_key = hmac_key

    def routes(self, app: web.Application) -> None:
        app.router.add_post("/{rest:.*}", self._accept)

    async def _accept(self, request: web.Request) -> web.Response:
        entry = _entry(request)
        if self.hmac_key is not None:
            given = request.headers.get("X-Signature", "")
            expected = "sha256=" + hmac.new(self.hmac_key, entry.body, hashlib.sha256).hexdigest()
            entry.notes["verified"] = hmac.compare_digest(given, expected)
            if not entry.notes["verified"]:
                return web.Response(status=401, text="bad signature")
        return web.Response(status=200, text="ok")


def _serve(server: StandInServer) -> Iterator[Any]:
    with server:
        yield server


@pytest.fixture
def slack_server() -> Iterator[SlackServer]:
    yield from _serve(SlackServer())


@pytest.fixture
def discord_server() -> Iterator[DiscordServer]:
    yield from _serve(DiscordServer())


@pytest.fixture
def teams_server() -> Iterator[TeamsServer]:
    yield from _serve(TeamsServer())


@pytest.fixture
def github_server() -> Iterator[GitHubServer]:
    yield from _serve(GitHubServer())


@pytest.fixture
def alertmanager_server() -> Iterator[AlertmanagerServer]:
    yield from _serve(AlertmanagerServer())


@pytest.fixture
def webhook_server() -> Iterator[WebhookServer]:
    yield from _serve(WebhookServer())
