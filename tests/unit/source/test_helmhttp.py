"""Chart repository downloads are bounded in size and time, and keep credentials home."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from pathlib import Path

import pytest
from aiohttp import web

from controllers.source.helmhttp import BasicAuth, FetchError, RepositoryClient

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]


async def _serve(handler: Handler) -> tuple[web.AppRunner, str]:
    app = web.Application()
    app.router.add_get("/{path:.*}", handler)
    runner = web.AppRunner(app)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    port = site._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]
    return runner, f"http://127.0.0.1:{port}"


def _run(handler: Handler, call: Callable[[str], Awaitable[object]]) -> object:
    async def main() -> object:
        runner, url = await _serve(handler)
        try:
            return await call(url)
        finally:
            await runner.cleanup()

    return asyncio.run(main())


def test_an_index_over_the_limit_is_refused_even_without_content_length() -> None:
    async def big(request: web.Request) -> web.StreamResponse:
        resp = web.StreamResponse()  # chunked: no Content-Length to check up front
        await resp.prepare(request)
        for _ in range(64):
            await resp.write(b"x" * 1024)
        return resp

    with pytest.raises(FetchError, match="more than the limit of 10000 bytes"):
        _run(big, lambda url: RepositoryClient(url).fetch_index(max_size=10_000))


def test_a_slow_repository_hits_the_timeout() -> None:
    async def slow(request: web.Request) -> web.StreamResponse:
        await asyncio.sleep(5)
        return web.Response(text="apiVersion: v1\n")

    with pytest.raises(FetchError, match=r"no complete answer within 0\.5s"):
        _run(slow, lambda url: RepositoryClient(url, timeout=0.5).fetch_index())


def test_credentials_go_to_the_repository_host_only(tmp_path: Path) -> None:
    seen: list[str | None] = []

    async def record(request: web.Request) -> web.StreamResponse:
        seen.append(request.headers.get("Authorization"))
        return web.Response(body=b"chart")

    auth = BasicAuth("user", "s3cret-pass")

    async def fetch(url: str) -> None:
        other = url.replace("127.0.0.1", "localhost")  # same server, another origin
        await RepositoryClient(url, auth=auth).fetch_chart(f"{url}/a.tgz", tmp_path / "a")
        await RepositoryClient(url, auth=auth).fetch_chart(f"{other}/b.tgz", tmp_path / "b")
        await RepositoryClient(url, auth=auth, pass_credentials=True).fetch_chart(
            f"{other}/c.tgz", tmp_path / "c"
        )

    _run(record, fetch)
    assert [s is not None for s in seen] == [True, False, True]
    assert "s3cret-pass" not in repr(auth)


def test_http_errors_name_the_url_without_credentials() -> None:
    async def denied(request: web.Request) -> web.StreamResponse:
        return web.Response(status=401)

    with pytest.raises(FetchError) as info:
        _run(
            denied,
            lambda url: RepositoryClient(url.replace("http://", "http://u:pw1234@")).fetch_index(),
        )
    assert "HTTP 401" in str(info.value) and "pw1234" not in str(info.value)
