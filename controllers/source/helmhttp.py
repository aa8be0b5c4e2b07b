"""Downloads from HTTP(S) chart repositories: the index and chart archives.

Every download is bounded in bytes (`max_size`, checked against Content-Length and
while streaming) and in time (`timeout`, the whole request). Credentials come from the
HelmRepository's Secrets:

- `secretRef`: ``username`` and ``password`` (basic auth);
- `certSecretRef`: ``ca.crt`` (trust this CA), ``tls.crt`` + ``tls.key`` (client cert).

Basic auth goes only to the repository's own host (scheme, host and port), unless
`passCredentials` is set, as in Helm and Flux; redirects never carry it elsewhere
either. Messages never contain credentials: URLs are shown without userinfo or query.
"""

from __future__ import annotations

import os
import ssl
import tempfile
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import urlsplit

import aiohttp

from controllers.toolkit.artifacts import redact_url
from controllers.toolkit.git.redact import scrub_text

_CHUNK = 1 << 16
_Sink = Callable[[bytes], object]
DEFAULT_TIMEOUT = 60.0
# Flux's --helm-index-max-size and --helm-chart-max-size defaults.
MAX_INDEX_SIZE = 50 * 1024 * 1024
MAX_CHART_SIZE = 10 * 1024 * 1024


class RepositoryAuthError(ValueError):
    """The Secret's auth or TLS data cannot be used."""


class FetchError(Exception):
    """The download failed: connection, HTTP status, timeout or size limit."""

    def __init__(self, message: str) -> None:
        self.message = scrub_text(message)
        super().__init__(self.message)

    def __str__(self) -> str:
        return self.message


@dataclass(frozen=True)
class BasicAuth:
    username: str
    password: str = ""

    def __repr__(self) -> str:  # never print the password
        return f"BasicAuth(username={self.username!r}, password='***')"


@dataclass(frozen=True)
class TLSMaterial:
    ca_pem: bytes | None = None
    cert_pem: bytes | None = None
    key_pem: bytes | None = None

    def __repr__(self) -> str:
        return f"TLSMaterial(ca={self.ca_pem is not None}, cert={self.cert_pem is not None})"


def basic_auth_from_secret(data: Mapping[str, bytes], where: str) -> BasicAuth:
    username = data.get("username")
    password = data.get("password")
    if not username or password is None:
        raise RepositoryAuthError(
            f"secret {where} must hold both 'username' and 'password' for basic auth"
        )
    return BasicAuth(username.decode("utf-8", "replace"), password.decode("utf-8", "replace"))


def tls_from_secret(data: Mapping[str, bytes], where: str) -> TLSMaterial:
    cert, key, ca = data.get("tls.crt"), data.get("tls.key"), data.get("ca.crt")
    if bool(cert) != bool(key):
        raise RepositoryAuthError(f"secret {where}: 'tls.crt' and 'tls.key' must be given together")
    if not (cert or ca):
        raise RepositoryAuthError(f"secret {where} must hold 'ca.crt', or 'tls.crt' and 'tls.key'")
    return TLSMaterial(ca_pem=ca or None, cert_pem=cert or None, key_pem=key or None)


def ssl_context(tls: TLSMaterial | None) -> ssl.SSLContext | None:
    """A client context trusting the system CAs plus `tls.ca_pem`, with the client cert."""
    if tls is None:
        return None
    ctx = ssl.create_default_context()
    try:
        if tls.ca_pem:
            ctx.load_verify_locations(cadata=tls.ca_pem.decode("ascii", "replace"))
        if tls.cert_pem and tls.key_pem:
            # The ssl module loads a client key only from files: write them 0600, briefly.
            with tempfile.TemporaryDirectory(prefix="headwater-tls-") as tmp:
                cert_path, key_path = Path(tmp) / "tls.crt", Path(tmp) / "tls.key"
                for path, data in ((cert_path, tls.cert_pem), (key_path, tls.key_pem)):
                    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
                    with os.fdopen(fd, "wb") as fh:
                        fh.write(data)
                ctx.load_cert_chain(str(cert_path), str(key_path))
    except (ssl.SSLError, ValueError) as exc:
        raise RepositoryAuthError(f"invalid TLS data in certSecretRef: {exc}") from None
    return ctx


def same_origin(a: str, b: str) -> bool:
    pa, pb = urlsplit(a), urlsplit(b)
    return (pa.scheme, pa.hostname, pa.port) == (pb.scheme, pb.hostname, pb.port)


@dataclass(frozen=True)
class RepositoryClient:
    """How to talk to one chart repository."""

    url: str
    auth: BasicAuth | None = None
    tls: TLSMaterial | None = None
    pass_credentials: bool = False
    timeout: float = DEFAULT_TIMEOUT

    def index_url(self) -> str:
        return self.url.rstrip("/") + "/index.yaml"

    async def fetch_index(self, max_size: int = MAX_INDEX_SIZE) -> bytes:
        """The raw ``index.yaml``."""
        chunks: list[bytes] = []
        await self._get(self.index_url(), max_size, chunks.append, what="index", decompress=True)
        return b"".join(chunks)

    async def fetch_chart(self, url: str, dest: Path, max_size: int = MAX_CHART_SIZE) -> None:
        """Download a chart archive to `dest` (created, never followed if it exists)."""
        fd = os.open(dest, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW, 0o600)
        with os.fdopen(fd, "wb") as out:
            # Never decompressed: the bytes must match the index digest.
            await self._get(url, max_size, out.write, what="chart", decompress=False)

    async def _get(
        self, url: str, max_size: int, sink: _Sink, *, what: str, decompress: bool
    ) -> None:
        shown = redact_url(url)
        auth = None
        if self.auth is not None and (self.pass_credentials or same_origin(url, self.url)):
            auth = aiohttp.BasicAuth(self.auth.username, self.auth.password)
        timeout = aiohttp.ClientTimeout(total=self.timeout)
        connector = aiohttp.TCPConnector(ssl=ssl_context(self.tls) or True)
        try:
            async with (
                aiohttp.ClientSession(connector=connector, auto_decompress=decompress) as session,
                session.get(url, auth=auth, timeout=timeout, max_redirects=5) as resp,
            ):
                if resp.status != 200:
                    raise FetchError(f"GET {shown}: HTTP {resp.status} {resp.reason or ''}".strip())
                if resp.content_length is not None and resp.content_length > max_size:
                    raise FetchError(
                        f"{what} at {shown} is {resp.content_length} bytes, more than the "
                        f"limit of {max_size} bytes"
                    )
                received = 0
                async for chunk in resp.content.iter_chunked(_CHUNK):
                    received += len(chunk)
                    if received > max_size:
                        raise FetchError(
                            f"{what} at {shown} is more than the limit of {max_size} bytes"
                        )
                    sink(chunk)
        except FetchError:
            raise
        except TimeoutError:
            raise FetchError(f"GET {shown}: no complete answer within {self.timeout:g}s") from None
        except aiohttp.ClientError as exc:
            detail = str(exc) or type(exc).__name__
            raise FetchError(f"GET {shown}: {detail.replace(url, shown)}") from None
        except OSError as exc:
            raise FetchError(f"GET {shown}: {exc.strerror or exc}") from None
