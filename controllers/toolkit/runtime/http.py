"""An aiohttp application served on host:port, for the controllers' own HTTP endpoints."""

from __future__ import annotations

from aiohttp import web


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
