"""A registry that asks for bearer tokens, as Docker Hub, GHCR and Harbor do.

`TokenAuthRegistry` is an aiohttp front for a real `OciRegistry` (plain HTTP): a
request to `/v2/...` without a valid token is answered 401 with
`WWW-Authenticate: Bearer realm=".../token",service="headwater-test",scope=...`;
`GET /token` with the right basic credentials hands out a token; requests with it
are passed to the registry behind. `token_requests` counts the token fetches.
"""

from __future__ import annotations

import base64
import secrets
from collections.abc import Iterator

import aiohttp
import pytest
from aiohttp import web

from tests.support.chatservers import StandInServer
from tests.support.fixtures import HTTP_PASSWORD, HTTP_USER
from tests.support.registry import OciRegistry

SERVICE = "headwater-test"


class TokenAuthRegistry(StandInServer):
    def __init__(self, upstream: OciRegistry, user: str = HTTP_USER, password: str = HTTP_PASSWORD):
        super().__init__()
        self.upstream = upstream
        self.basic = (user, password)
        self.token = secrets.token_hex(16)
        self.token_requests = 0

    @property
    def host(self) -> str:
        return f"127.0.0.1:{self.port}"

    def dockerconfigjson(self) -> str:
        user, password = self.basic
        return (
            '{"auths": {"'
            + self.host
            + '": {"username": "'
            + user
            + '", "password": "'
            + password
            + '"}}}'
        )

    def routes(self, app: web.Application) -> None:
        app.router.add_get("/token", self._token)
        app.router.add_route("*", "/v2/{tail:.*}", self._proxy)

    async def _token(self, request: web.Request) -> web.Response:
        self.token_requests += 1
        expected = base64.b64encode(":".join(self.basic).encode()).decode()
        if request.headers.get("Authorization") != f"Basic {expected}":
            return web.json_response({"errors": [{"code": "UNAUTHORIZED"}]}, status=401)
        if request.query.get("service") != SERVICE:
            return web.json_response({"errors": [{"code": "DENIED"}]}, status=403)
        return web.json_response({"token": self.token})

    async def _proxy(self, request: web.Request) -> web.StreamResponse:
        if request.headers.get("Authorization") != f"Bearer {self.token}":
            name = request.match_info["tail"].rsplit("/tags/", 1)[0]
            challenge = (
                f'Bearer realm="{self.url}/token",service="{SERVICE}",'
                f'scope="repository:{name}:pull"'
            )
            return web.json_response(
                {"errors": [{"code": "UNAUTHORIZED"}]},
                status=401,
                headers={"WWW-Authenticate": challenge},
            )
        target = f"http://{self.upstream.host}{request.path_qs}"
        async with (
            aiohttp.ClientSession() as session,
            session.request(request.method, target) as upstream,
        ):
            body = await upstream.read()
            keep = ("content-type", "link")
            headers = {k: v for k, v in upstream.headers.items() if k.lower() in keep}
            return web.Response(body=body, status=upstream.status, headers=headers)


@pytest.fixture(scope="session")
def token_registry(oci_registry: OciRegistry) -> Iterator[TokenAuthRegistry]:
    with TokenAuthRegistry(oci_registry) as server:
        yield server  # type: ignore[misc]
