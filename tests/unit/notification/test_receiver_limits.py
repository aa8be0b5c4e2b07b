"""Receiver limits over real HTTP on loopback: rate limit, body size, replays, unknown paths,
and constant-time checks."""

from __future__ import annotations

import hashlib
import hmac
import inspect
from collections.abc import AsyncIterator, Mapping
from typing import Any

import aiohttp
import pytest

from controllers.notification import webhooks
from controllers.notification.receiver import ResourceRef, webhook_path
from controllers.notification.webhooks import MAX_BODY, RateLimiter, make_app
from controllers.toolkit.runtime.http import HttpServer

TOKEN = "limits-token-0123456789"
BODY = b'{"ref":"refs/heads/main"}'


class Backend:
    def __init__(self, receivers: list[dict[str, Any]]) -> None:
        self.receivers = receivers
        self.requested: list[str] = []

    def list(self) -> list[dict[str, Any]]:
        return self.receivers

    async def read_secret(self, namespace: str, name: str) -> Mapping[str, bytes] | None:
        return {"token": TOKEN.encode()}

    async def request(self, ref: ResourceRef, namespace: str, value: str) -> list[str]:
        self.requested.append(value)
        return [f"{namespace}/{ref.name}"]


def hmac_receiver(name: str = "app") -> dict[str, Any]:
    return {
        "metadata": {"name": name, "namespace": "apps"},
        "spec": {
            "type": "generic-hmac",
            "secretRef": {"name": "t"},
            "resources": [{"kind": "GitRepository", "name": "app"}],
        },
        "status": {
            "webhookPath": webhook_path(TOKEN, name, "apps"),
            "conditions": [{"type": "Ready", "status": "True"}],
        },
    }


def signature(body: bytes) -> str:
    return "sha256=" + hmac.new(TOKEN.encode(), body, hashlib.sha256).hexdigest()


async def serve(backend: Backend, rate: float = 0.0) -> HttpServer:
    server = HttpServer(
        make_app(backend.list, backend.read_secret, backend.request, rate_limit=rate),
        "127.0.0.1",
        0,
    )
    await server.start()
    return server


async def post(url: str, body: bytes = BODY, **headers: str) -> tuple[int, str, Any]:
    async with (
        aiohttp.ClientSession() as session,
        session.post(url, data=body, headers=headers) as r,
    ):
        return r.status, await r.text(), r.headers


@pytest.fixture
async def backend() -> AsyncIterator[tuple[str, Backend]]:
    found = Backend([hmac_receiver()])
    server = await serve(found)
    try:
        yield server.url.rstrip("/"), found
    finally:
        await server.stop()


async def test_unknown_paths_get_the_same_404_whatever_receivers_exist() -> None:
    answers = []
    for receivers in ([], [hmac_receiver()], [hmac_receiver(f"r{i}") for i in range(50)]):
        server = await serve(Backend(receivers))
        try:
            base = server.url.rstrip("/")
            for digest in ("0" * 64, webhook_path(TOKEN, "app", "apps")[6:-1] + "0", "x"):
                status, text, _ = await post(f"{base}/hook/{digest}")
                answers.append((status, text))
            status, _, _ = await post(f"{base}/not-a-hook")
            assert status == 404
        finally:
            await server.stop()
    assert set(answers) == {(404, "no receiver for this path\n")}


async def test_a_replayed_signed_body_only_asks_for_another_reconcile(
    backend: tuple[str, Backend],
) -> None:
    base, found = backend
    url = base + webhook_path(TOKEN, "app", "apps")
    for _ in range(3):
        status, text, _ = await post(url, **{"X-Signature": signature(BODY)})
        assert (status, text) == (200, "reconcile requested for 1 object(s)\n")
    # Each replay sets requestedAt again (a reconcile, idempotent), and nothing else.
    assert len(found.requested) == 3 and len(set(found.requested)) == 3


async def test_a_body_over_the_limit_is_refused_before_it_is_checked(
    backend: tuple[str, Backend],
) -> None:
    base, found = backend
    url = base + webhook_path(TOKEN, "app", "apps")
    big = b"x" * (MAX_BODY + 1)
    status, _, _ = await post(url, big, **{"X-Signature": signature(big)})
    assert status == 413 and not found.requested


async def test_the_rate_limit_answers_429_with_retry_after() -> None:
    found = Backend([hmac_receiver()])
    server = await serve(found, rate=1.0)  # bursts of 5
    try:
        url = server.url.rstrip("/") + "/hook/" + "0" * 64
        statuses = [(await post(url))[0] for _ in range(8)]
        assert statuses[:5] == [404] * 5
        assert statuses[5:] == [429] * 3
        _, _, headers = await post(url)
        assert int(headers["Retry-After"]) >= 1
    finally:
        await server.stop()


def test_the_rate_limiter_refills_and_forgets_idle_clients() -> None:
    limiter = RateLimiter(2.0, burst=2, max_clients=3)
    assert [limiter.admit("a", now=0.0) for _ in range(3)] == [0.0, 0.0, 0.5]
    assert limiter.admit("a", now=1.0) == 0.0  # two tokens back after a second
    for client in ("b", "c", "d"):
        limiter.admit(client, now=1.0)
    assert "a" not in limiter._buckets and len(limiter._buckets) == 3
    assert RateLimiter(0).admit("a") == 0.0  # 0 turns it off


def test_token_and_signature_checks_are_constant_time() -> None:
    source = inspect.getsource(webhooks)
    assert source.count("hmac.compare_digest(") >= 3  # signature, gitlab token, path lookup
    assert "==" not in inspect.getsource(webhooks.verify_signature)
    assert " == token" not in source and "token ==" not in source
