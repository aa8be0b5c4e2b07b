"""An aiohttp application served on host:port, for the controllers' own HTTP endpoints."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable

from aiohttp import web

# How long a handler may take, reading the body included: a client that stalls mid-body
# (or announces a huge chunk and sends nothing) is answered 408 rather than held forever.
REQUEST_TIMEOUT = 30.0

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]


def time_limit(seconds: float = REQUEST_TIMEOUT) -> Callable[..., Awaitable[web.StreamResponse]]:
    """Middleware answering 408 when a request's handler runs longer than `seconds`."""

    @web.middleware
    async def limited(request: web.Request, handler: Handler) -> web.StreamResponse:
        try:
            async with asyncio.timeout(seconds):
                return await handler(request)
        except TimeoutError:
            return web.Response(status=408, text=f"request not complete within {seconds:g}s\n")

    return limited


class HttpServer:
    """Runs an aiohttp app on host:port (port 0 picks one) until `stop`."""

    def __init__(self, app: web.Application, host: str | None, port: int) -> None:
        self.app = app
        self.host = host
        self.port = port
        self._runner: web.AppRunner | None = None

    async def start(self) -> None:
        runner = web.AppRunner(self.app, access_log=None)
        await runner.setup()
        site = web.TCPSite(runner, self.host, self.port)
        await site.start()
        self._runner = runner
        if runner.addresses:  # the bound address tells the real port when port was 0
            self.port = int(runner.addresses[0][1])

    async def stop(self) -> None:
        if self._runner is not None:
            await self._runner.cleanup()
            self._runner = None

    @property
    def url(self) -> str:
        host = self.host or "127.0.0.1"
        host = f"[{host}]" if ":" in host else host
        return f"http://{host}:{self.port}/"
