"""Listing a registry repository's tags: the OCI distribution API, auth, TLS, limits.

`list_tags` GETs `/v2/<repository>/tags/list?n=<page>` and follows the `Link: <...>;
rel="next"` pages, answering a 401 the way registries ask:
- `WWW-Authenticate: Basic ...`: the request again with the Secret's username/password;
- `WWW-Authenticate: Bearer realm=...,service=...,scope=...`: the token flow (a GET of
  the realm with the credentials, or anonymously without any), then the request again
  with the token, which is kept for the following pages.

Written here rather than with the `oras` package, which does list tags with
pagination, because of three things measured against it (oras 0.2.43): its requests
carry no timeout; every request is wrapped in a retry that sleeps 3, 5, 11, 29 and 83
seconds on a connection error, so a registry that is down holds a reconcile (and a
worker thread) for over two minutes instead of failing at once and retrying through
the queue; and its token backend answers a `Basic` challenge (the plain htpasswd
registry) by asking a token from a realm that is not a URL. What we need is one GET
per page, so it is an aiohttp call here, bounded in time (`timeout`), pages, bytes
per page and tag count, with the credentials never in a message.
"""

from __future__ import annotations

import asyncio
import base64
import json
import re
import ssl
import urllib.parse
from collections.abc import Mapping
from dataclasses import dataclass, field

import aiohttp

# Flux's reasons for an ImageRepository.
AUTHENTICATION_FAILED = "AuthenticationFailed"
IMAGE_URL_INVALID = "ImageURLInvalid"
FAILURE = "Failure"
# headwater's, for a repository with more tags than the controller keeps.
TAG_LIMIT_EXCEEDED = "TagLimitExceeded"

PAGE_SIZE = 1000
MAX_PAGE_BYTES = 8 * 1024 * 1024
DOCKER_HUB = "index.docker.io"
_DOCKER_HUB_API = "registry-1.docker.io"
_REPO_PATH = re.compile(
    r"^[a-z0-9]+(?:(?:[._]|__|-+)[a-z0-9]+)*(?:/[a-z0-9]+(?:(?:[._]|__|-+)[a-z0-9]+)*)*$"
)


class RegistryError(Exception):
    """A scan failed; `reason` is Flux's condition reason."""

    def __init__(self, reason: str, message: str) -> None:
        super().__init__(message)
        self.reason = reason
        self.message = message


@dataclass(frozen=True)
class ImageName:
    """`spec.image` made canonical: the registry host and the repository path in it."""

    host: str  # as written (with port), docker.io's canonical "index.docker.io"
    repository: str

    @property
    def canonical(self) -> str:
        return f"{self.host}/{self.repository}"

    @property
    def api_host(self) -> str:
        return _DOCKER_HUB_API if self.host == DOCKER_HUB else self.host


def parse_image(image: str) -> ImageName:
    """Flux's canonical form: `alpine` is `index.docker.io/library/alpine`; no tag allowed."""
    text = image.strip()
    if "://" in text:
        raise RegistryError(IMAGE_URL_INVALID, f"image '{image}' must not have a scheme")
    if "@" in text or ":" in text.rsplit("/", 1)[-1]:
        raise RegistryError(
            IMAGE_URL_INVALID, f"image '{image}' must name a repository, without tag or digest"
        )
    first, _, rest = text.partition("/")
    if rest and ("." in first or ":" in first or first == "localhost"):
        host, path = first, rest
    else:
        host, path = DOCKER_HUB, text
        if "/" not in path:
            path = f"library/{path}"
    if host in ("docker.io", "registry-1.docker.io"):
        host = DOCKER_HUB
    if not _REPO_PATH.match(path):
        raise RegistryError(IMAGE_URL_INVALID, f"could not parse reference: {image}")
    return ImageName(host, path)


@dataclass(frozen=True)
class Credentials:
    username: str = field(default="", repr=False)
    password: str = field(default="", repr=False)

    def basic(self) -> str:
        return base64.b64encode(f"{self.username}:{self.password}".encode()).decode()


def credentials_from_dockerconfig(data: Mapping[str, bytes], host: str, where: str) -> Credentials:
    """The credentials a docker-registry Secret (`.dockerconfigjson`) holds for `host`."""
    raw = data.get(".dockerconfigjson") or data.get(".dockercfg")
    if raw is None:
        raise RegistryError(AUTHENTICATION_FAILED, f"{where} has no '.dockerconfigjson' key")
    try:
        config = json.loads(raw)
    except ValueError:
        raise RegistryError(
            AUTHENTICATION_FAILED, f"{where}: .dockerconfigjson is not JSON"
        ) from None
    auths = config.get("auths", config) if isinstance(config, dict) else {}
    wanted = {host, "docker.io", "https://index.docker.io/v1/"} if host == DOCKER_HUB else {host}
    for key, entry in (auths or {}).items():
        name = urllib.parse.urlsplit(key).netloc if "://" in key else key.split("/", 1)[0]
        if (name in wanted or key in wanted) and isinstance(entry, dict):
            username, password = entry.get("username") or "", entry.get("password") or ""
            if entry.get("auth") and not username:
                try:
                    decoded = base64.b64decode(entry["auth"]).decode()
                except (ValueError, UnicodeDecodeError):
                    raise RegistryError(
                        AUTHENTICATION_FAILED,
                        f"{where}: the 'auth' entry for '{key}' is not base64",
                    ) from None
                username, _, password = decoded.partition(":")
            return Credentials(username, password)
    raise RegistryError(AUTHENTICATION_FAILED, f"{where} holds no credentials for '{host}'")


def ssl_context(data: Mapping[str, bytes] | None, where: str) -> ssl.SSLContext:
    """TLS from certSecretRef: `ca.crt` to trust, `tls.crt`+`tls.key` for mutual TLS."""
    context = ssl.create_default_context()
    if not data:
        return context
    ca = data.get("ca.crt") or data.get("caFile")
    cert, key = (
        data.get("tls.crt") or data.get("certFile"),
        data.get("tls.key") or data.get("keyFile"),
    )
    try:
        if ca:
            context.load_verify_locations(cadata=ca.decode())
        if bool(cert) != bool(key):
            raise RegistryError(FAILURE, f"{where} must hold both tls.crt and tls.key, or neither")
        if cert and key:
            import os
            import tempfile

            # The ssl module reads a client key from a file only: a private one, removed at once.
            with tempfile.TemporaryDirectory(prefix="headwater-tls-") as tmp:
                cert_path, key_path = os.path.join(tmp, "tls.crt"), os.path.join(tmp, "tls.key")
                for path, blob in ((cert_path, cert), (key_path, key)):
                    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
                    with os.fdopen(fd, "wb") as handle:
                        handle.write(blob)
                context.load_cert_chain(cert_path, key_path)
    except (ssl.SSLError, ValueError, UnicodeDecodeError) as exc:
        raise RegistryError(
            FAILURE, f"{where} holds invalid TLS data: {type(exc).__name__}"
        ) from None
    return context


@dataclass
class _Session:
    http: aiohttp.ClientSession
    credentials: Credentials | None
    authorization: str | None = field(default=None, repr=False)


def _challenge(header: str) -> tuple[str, dict[str, str]]:
    scheme, _, rest = header.strip().partition(" ")
    params = dict(re.findall(r'(\w+)="([^"]*)"', rest))
    return scheme.lower(), params


async def _read_json(response: aiohttp.ClientResponse, url: str) -> object:
    body = await response.content.read(MAX_PAGE_BYTES + 1)
    if len(body) > MAX_PAGE_BYTES:
        raise RegistryError(FAILURE, f"response from {url} is larger than {MAX_PAGE_BYTES} bytes")
    try:
        return json.loads(body)
    except ValueError:
        raise RegistryError(FAILURE, f"response from {url} is not JSON") from None


async def _token(session: _Session, params: Mapping[str, str], scope: str) -> str:
    realm = params.get("realm", "")
    if not realm.startswith(("http://", "https://")):
        raise RegistryError(AUTHENTICATION_FAILED, f"registry asked for a token from '{realm}'")
    query = {
        k: v
        for k, v in (("service", params.get("service", "")), ("scope", params.get("scope", scope)))
        if v
    }
    headers = {}
    if session.credentials is not None:
        headers["Authorization"] = f"Basic {session.credentials.basic()}"
    async with session.http.get(realm, params=query, headers=headers) as response:
        if response.status in (401, 403):
            raise RegistryError(
                AUTHENTICATION_FAILED,
                f"token server {realm} refused the credentials ({response.status})",
            )
        if response.status != 200:
            raise RegistryError(FAILURE, f"token server {realm} answered {response.status}")
        data = await _read_json(response, realm)
    token = data.get("token") or data.get("access_token") if isinstance(data, dict) else None
    if not isinstance(token, str) or not token:
        raise RegistryError(AUTHENTICATION_FAILED, f"token server {realm} gave no token")
    return token


async def _get(session: _Session, url: str, scope: str) -> tuple[object, str | None]:
    for attempt in range(2):
        headers = {"Accept": "application/json"}
        if session.authorization:
            headers["Authorization"] = session.authorization
        async with session.http.get(url, headers=headers, allow_redirects=True) as response:
            if response.status == 401 and attempt == 0:
                scheme, params = _challenge(response.headers.get("WWW-Authenticate", ""))
                if scheme == "basic" and session.credentials is not None:
                    session.authorization = f"Basic {session.credentials.basic()}"
                    continue
                if scheme == "bearer":
                    session.authorization = f"Bearer {await _token(session, params, scope)}"
                    continue
            if response.status in (401, 403):
                why = "credentials refused" if session.credentials else "authentication required"
                raise RegistryError(AUTHENTICATION_FAILED, f"GET {url}: {response.status}: {why}")
            if response.status == 404:
                raise RegistryError(FAILURE, f"GET {url}: 404: repository not found")
            if response.status != 200:
                raise RegistryError(FAILURE, f"GET {url}: unexpected status {response.status}")
            data = await _read_json(response, url)
            following = response.links.get("next")
            return data, str(following["url"]) if following and following.get("url") else None
    raise RegistryError(AUTHENTICATION_FAILED, f"GET {url}: authentication failed")


async def list_tags(
    image: ImageName,
    *,
    credentials: Credentials | None,
    tls: ssl.SSLContext | None,
    insecure: bool,
    timeout: float,
    max_tags: int,
) -> list[str]:
    """Every tag of the repository; RegistryError (TagLimitExceeded past `max_tags`)."""
    scheme = "http" if insecure else "https"
    base = f"{scheme}://{image.api_host}"
    url: str | None = f"{base}/v2/{image.repository}/tags/list?n={min(PAGE_SIZE, max_tags + 1)}"
    scope = f"repository:{image.repository}:pull"
    tags: list[str] = []
    connector = aiohttp.TCPConnector(ssl=tls if not insecure and tls is not None else True)
    try:
        async with asyncio.timeout(timeout):
            async with aiohttp.ClientSession(
                connector=connector, timeout=aiohttp.ClientTimeout(total=timeout), trust_env=False
            ) as http:
                session = _Session(http, credentials)
                pages = 0
                while url:
                    pages += 1
                    data, next_link = await _get(session, url, scope)
                    page = data.get("tags") if isinstance(data, dict) else None
                    if page is None:
                        page = []
                    if not isinstance(page, list) or not all(isinstance(t, str) for t in page):
                        raise RegistryError(FAILURE, f"GET {url}: 'tags' is not a list of strings")
                    tags.extend(page)
                    if len(tags) > max_tags:
                        raise RegistryError(
                            TAG_LIMIT_EXCEEDED,
                            f"repository '{image.canonical}' has more than {max_tags} tags, the "
                            "most headwater keeps (HEADWATER_IMAGE_MAX_TAGS); narrow it, or raise "
                            "the limit",
                        )
                    if not page or not next_link:
                        break
                    url = urllib.parse.urljoin(base + "/", next_link)
                    if urllib.parse.urlsplit(url).netloc != image.api_host:
                        raise RegistryError(FAILURE, f"registry paginated to another host: {url}")
    except TimeoutError:
        raise RegistryError(
            FAILURE, f"scanning '{image.canonical}' timed out after {timeout:g}s (spec.timeout)"
        ) from None
    except aiohttp.ClientError as exc:
        raise RegistryError(
            FAILURE, f"scanning '{image.canonical}' failed: {type(exc).__name__}: {exc}"
        ) from None
    return list(dict.fromkeys(tags))
