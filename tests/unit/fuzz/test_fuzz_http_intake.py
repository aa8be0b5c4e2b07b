"""Fuzzed webhook receiver and event intake: the real aiohttp apps, driven by its test client.

Any method, path, header set and body gets one of the documented answers (intake: 202,
400, 404, 405, 413, 415, 429, 503; receiver: 200, 400, 404, 405, 413, 429, 503), never a
500 from an unhandled exception, and no answer echoes the receiver's token. A request that
does not prove it knows the token never asks anything to reconcile.
"""

from __future__ import annotations

import asyncio
import hashlib
import hmac
import json
from collections.abc import Iterator, Mapping
from typing import Any

import pytest
from aiohttp.test_utils import TestClient, TestServer
from hypothesis import example, given
from hypothesis import strategies as st

from controllers.notification.dedup import DuplicateFilter
from controllers.notification.event import FluxEvent
from controllers.notification.intake import make_app as make_intake_app
from controllers.notification.receiver import ResourceRef, webhook_path
from controllers.notification.webhooks import make_app as make_webhook_app
from tests.unit.notification.events import wire_event

TOKEN = "fuzz-canary-token-5f1c2a"
HOOK = webhook_path(TOKEN, "app", "apps")
HEADER_NAMES = [
    "Content-Type",
    "X-Signature",
    "X-Hub-Signature",
    "X-Hub-Signature-256",
    "X-GitHub-Event",
    "X-Gitlab-Token",
    "X-Gitlab-Event",
    "Content-Encoding",
    "Accept-Encoding",
    "Expect",
    "X-Forwarded-For",
]
HEADER_VALUES = [
    "",
    "sha256=",
    "sha1=00",
    "sha512=zz",
    "application/json",
    "text/plain",
    "push",
    "ping",
    "gzip",
    TOKEN[:-1],
    "sha256=" + "0" * 64,
    "é",
    "a" * 5000,
    "application/json; charset=latin-1",
    "multipart/form-data; boundary=x",
]
headers = st.dictionaries(
    st.sampled_from(HEADER_NAMES),
    st.sampled_from(HEADER_VALUES)
    | st.text(
        alphabet=st.characters(min_codepoint=32, max_codepoint=255, exclude_characters="\x7f"),
        max_size=40,
    ),
    max_size=5,
)
bodies = (
    st.binary(max_size=512)
    | st.sampled_from(
        [b"{}", b"[]", b"null", b'{"involvedObject": 1}', b"\xff\xfe", b'{"a":' * 1000]
    )
    | st.builds(lambda e: json.dumps(e).encode(), st.just(wire_event()))
)
methods = st.sampled_from(["POST", "GET", "PUT", "DELETE", "PATCH", "OPTIONS", "HEAD"])
paths = st.sampled_from(
    [
        "/",
        HOOK,
        HOOK + "x",
        "/hook/",
        "/hook/" + "0" * 64,
        "/hook/../",
        "/%2e%2e/",
        "/hook/%00",
        "//",
        "/metrics",
    ]
) | st.text(alphabet="/abcdef0123456789%.", max_size=20).map(lambda p: "/" + p.lstrip("/"))

INTAKE_ANSWERS = {202, 400, 408, 404, 405, 413, 415, 417, 429, 503}
RECEIVER_ANSWERS = {200, 400, 408, 404, 405, 413, 417, 429, 503}


class Sink:
    def __init__(self) -> None:
        self.events: list[FluxEvent] = []

    def submit(self, event: FluxEvent) -> bool:
        if len(self.events) >= 20:
            return False
        self.events.append(event)
        return True


class Receivers:
    def __init__(self) -> None:
        self.requested: list[str] = []

    def list(self) -> list[dict[str, Any]]:
        return [
            {
                "metadata": {"name": "app", "namespace": "apps"},
                "spec": {
                    "type": kind,
                    "secretRef": {"name": "tok"},
                    "events": ["push"],
                    "resources": [{"kind": "GitRepository", "name": "app"}],
                },
                "status": {
                    "webhookPath": webhook_path(TOKEN, "app", "apps")
                    if kind == "github"
                    else webhook_path(TOKEN, kind, "apps"),
                    "conditions": [{"type": "Ready", "status": "True"}],
                },
            }
            for kind in ("github", "gitlab", "generic-hmac")
        ]

    async def read_secret(self, namespace: str, name: str) -> Mapping[str, bytes] | None:
        return {"token": TOKEN.encode()}

    async def request(self, ref: ResourceRef, namespace: str, value: str) -> list[str]:
        self.requested.append(value)
        return [f"{namespace}/{ref.name}"]


@pytest.fixture(scope="module")
def loop() -> Iterator[asyncio.AbstractEventLoop]:
    loop = asyncio.new_event_loop()
    yield loop
    loop.close()


def _signed(body: bytes) -> str:
    return "sha256=" + hmac.new(TOKEN.encode(), body, hashlib.sha256).hexdigest()


def _client(loop: asyncio.AbstractEventLoop, app: Any) -> TestClient[Any, Any]:
    client: TestClient[Any, Any] = TestClient(TestServer(app), loop=loop)
    loop.run_until_complete(client.start_server())
    return client


@given(method=methods, path=paths, hdrs=headers, body=bodies)
@example(
    method="POST",
    path="/",
    hdrs={"Content-Type": "application/json; charset=latin-1"},
    body=json.dumps(wire_event()).encode(),
)
@example(method="POST", path="/", hdrs={}, body=b'{"a":' * 1000)
@example(method="POST", path="/", hdrs={"Content-Encoding": "gzip"}, body=b"\x1f\x8b")
def test_intake_answers_only_as_documented(
    loop: asyncio.AbstractEventLoop, method: str, path: str, hdrs: dict[str, str], body: bytes
) -> None:
    client = _client(loop, make_intake_app(Sink(), DuplicateFilter(300.0)))
    try:

        async def go() -> int:
            async with client.request(method, path, data=body, headers=hdrs) as resp:
                await resp.read()
                return resp.status

        status = loop.run_until_complete(go())
    finally:
        loop.run_until_complete(client.close())
    assert status in INTAKE_ANSWERS, status


@given(method=methods, path=paths, hdrs=headers, body=bodies, sign=st.booleans())
@example(
    method="POST",
    path=HOOK,
    hdrs={"X-GitHub-Event": "push", "X-Hub-Signature-256": "é"},
    body=b"{}",
    sign=False,
)
@example(method="POST", path=HOOK, hdrs={"X-GitHub-Event": "push"}, body=b"{}", sign=True)
def test_receiver_answers_only_as_documented(
    loop: asyncio.AbstractEventLoop,
    method: str,
    path: str,
    hdrs: dict[str, str],
    body: bytes,
    sign: bool,
) -> None:
    receivers = Receivers()
    client = _client(
        loop, make_webhook_app(receivers.list, receivers.read_secret, receivers.request)
    )
    if sign:
        hdrs = {**hdrs, "X-Hub-Signature-256": _signed(body)}
    try:

        async def go() -> tuple[int, str]:
            async with client.request(method, path, data=body, headers=hdrs) as resp:
                return resp.status, (await resp.read()).decode("utf-8", "replace")

        status, text = loop.run_until_complete(go())
    finally:
        loop.run_until_complete(client.close())
    assert status in RECEIVER_ANSWERS, (status, text)
    assert TOKEN not in text
    if receivers.requested:
        # Only a request that proved it knows the token gets this far.
        assert status == 200 and method == "POST"
        assert sign or "X-Gitlab-Token" in hdrs or "X-Signature" in hdrs


RAW_REQUESTS = [
    b"POST / HTTP/1.1\r\nHost: x\r\nContent-Length: \r\n\r\n{}",
    b"POST / HTTP/1.1\r\nHost: x\r\nContent-Length: 5\r\n"
    b"Transfer-Encoding: chunked\r\n\r\n0\r\n\r\n",
    b"POST / HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\nffffffffffff\r\n",
    b"POST / HTTP/1.1\r\nHost: x\r\nContent-Length: 100\r\n\r\n{",  # then stalls
    b"POST /hook/HOOK HTTP/1.1\r\nHost: x\r\nContent-Length: 100\r\n\r\n{",
    b"POST / HTTP/1.1\r\nHost: x\r\nContent-Length: 99999999999999999999\r\n\r\n",
    b"POST / HTTP/1.1\r\nHost: x\r\nX: \x7f\x00\r\n\r\n",
    b"POST //0 HTTP/1.1\r\nHost: x\r\n\r\n",
    b"GARBAGE\r\n\r\n",
    b"POST / HTTP/1.1\r\n" + b"X-Long: " + b"a" * 100_000 + b"\r\n\r\n",
]


@pytest.mark.parametrize("raw", RAW_REQUESTS)
@pytest.mark.parametrize("which", ["intake", "receiver"])
def test_malformed_framing_gets_a_4xx(
    loop: asyncio.AbstractEventLoop, raw: bytes, which: str
) -> None:
    receivers = Receivers()
    app = (
        make_intake_app(Sink(), DuplicateFilter(300.0), request_timeout=2)
        if which == "intake"
        else make_webhook_app(
            receivers.list, receivers.read_secret, receivers.request, request_timeout=2
        )
    )
    server = TestServer(app)
    loop.run_until_complete(server.start_server())

    async def send() -> bytes:
        reader, writer = await asyncio.open_connection(server.host, server.port)
        writer.write(raw.replace(b"/hook/HOOK", HOOK.encode()))
        await writer.drain()
        try:
            return await asyncio.wait_for(reader.read(4096), 30)
        finally:
            writer.close()

    try:
        answer = loop.run_until_complete(send())
    finally:
        loop.run_until_complete(server.close())
    status = int(answer.split(b" ", 2)[1]) if answer.startswith(b"HTTP/") else 0
    assert 400 <= status < 500, answer[:200]
    assert not receivers.requested
