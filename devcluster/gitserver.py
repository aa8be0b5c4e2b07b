"""A smart-HTTP git server on loopback: git's own `git http-backend` behind Python's HTTP server.

The demo serves its example repository with it, and the tests serve every
repository they make, optionally behind basic or bearer auth and TLS. Every
request is recorded, so a test can tell a ref listing from a fetch.
"""

from __future__ import annotations

import base64
import gzip
import http.server
import os
import shutil
import socketserver
import ssl
import subprocess
import tempfile
import threading
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import unquote, urlsplit

HTTP_BACKEND = "/usr/lib/git-core/git-http-backend"
CGI_TIMEOUT = 120.0


@dataclass(frozen=True)
class CertPair:
    cert_pem: bytes
    key_pem: bytes


@dataclass(frozen=True)
class RequestRecord:
    method: str
    path: str
    query: str
    status: int
    command: str  # "ls-refs", "fetch" (upload-pack v2 commands), "want" (v0 fetch) or ""


def _upload_pack_command(body: bytes) -> str:
    if b"command=fetch" in body:
        return "fetch"
    if b"command=ls-refs" in body:
        return "ls-refs"
    if b"want " in body[:200]:
        return "want"
    return ""


class _Handler(http.server.BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    server: _HTTPServer

    def log_message(self, format: str, *args: Any) -> None:  # quiet: tests read `requests`
        return

    def do_GET(self) -> None:
        self._handle()

    def do_POST(self) -> None:
        self._handle()

    def _read_body(self) -> bytes:
        if "chunked" in self.headers.get("Transfer-Encoding", "").lower():
            chunks = []
            while True:
                size_line = self.rfile.readline()
                size = int(size_line.split(b";")[0].strip() or b"0", 16)
                if size == 0:
                    # Trailers end with an empty line.
                    while self.rfile.readline() not in (b"\r\n", b"\n", b""):
                        pass
                    break
                chunks.append(self.rfile.read(size))
                self.rfile.readline()
            return b"".join(chunks)
        length = int(self.headers.get("Content-Length") or 0)
        return self.rfile.read(length) if length else b""

    def _authorized(self) -> str | None:
        """The authenticated user ("" when no auth is configured), None if refused."""
        cfg = self.server.git
        if cfg.basic is None and cfg.bearer is None:
            return ""
        header = self.headers.get("Authorization", "")
        scheme, _, value = header.partition(" ")
        if cfg.basic is not None and scheme.lower() == "basic":
            try:
                user, _, password = base64.b64decode(value).decode().partition(":")
            except ValueError:
                return None
            if (user, password) == cfg.basic:
                return user
        if cfg.bearer is not None and scheme.lower() == "bearer" and value == cfg.bearer:
            return "bearer"
        return None

    def _reply(self, status: int, body: bytes, headers: dict[str, str] | None = None) -> None:
        self.send_response(status)
        for k, v in (headers or {}).items():
            self.send_header(k, v)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        if self.command != "HEAD":
            self.wfile.write(body)

    def _handle(self) -> None:
        parts = urlsplit(self.path)
        body = self._read_body()
        user = self._authorized()
        cfg = self.server.git
        if user is None:
            challenge = 'Basic realm="git"' if cfg.basic is not None else 'Bearer realm="git"'
            self._record(parts.path, parts.query, 401, "")
            self._reply(401, b"unauthorized\n", {"WWW-Authenticate": challenge})
            return
        inspect = body
        if self.headers.get("Content-Encoding", "").lower() in ("gzip", "x-gzip"):
            try:
                inspect = gzip.decompress(body)
            except OSError:
                inspect = b""
        command = _upload_pack_command(inspect) if parts.path.endswith("git-upload-pack") else ""
        env = {
            "PATH": os.environ.get("PATH", "/usr/bin:/bin"),
            "GIT_PROJECT_ROOT": str(cfg.project_root),
            "GIT_HTTP_EXPORT_ALL": "1",
            "GIT_CONFIG_NOSYSTEM": "1",
            "GIT_CONFIG_GLOBAL": "/dev/null",
            "GATEWAY_INTERFACE": "CGI/1.1",
            "SERVER_PROTOCOL": "HTTP/1.1",
            "SERVER_SOFTWARE": "headwater-test",
            "REQUEST_METHOD": self.command,
            "PATH_INFO": unquote(parts.path),
            "QUERY_STRING": parts.query,
            "REMOTE_ADDR": self.client_address[0],
            "REMOTE_USER": user,
            "CONTENT_TYPE": self.headers.get("Content-Type", ""),
            "CONTENT_LENGTH": str(len(body)),
        }
        if self.headers.get("Content-Encoding"):
            # http-backend inflates gzip request bodies itself.
            env["HTTP_CONTENT_ENCODING"] = self.headers["Content-Encoding"]
        if self.headers.get("Git-Protocol") and cfg.protocol_v2:
            env["GIT_PROTOCOL"] = self.headers["Git-Protocol"]
        try:
            proc = subprocess.run(
                [HTTP_BACKEND],
                input=body,
                env=env,
                capture_output=True,
                timeout=CGI_TIMEOUT,
                check=False,
            )
        except subprocess.TimeoutExpired:
            self._record(parts.path, parts.query, 504, command)
            self._reply(504, b"git http-backend timed out\n")
            return
        out = proc.stdout
        sep = out.find(b"\r\n\r\n")
        head_len = 4
        if sep < 0 or (0 <= out.find(b"\n\n") < sep):
            sep, head_len = out.find(b"\n\n"), 2
        if sep < 0:
            self._record(parts.path, parts.query, 500, command)
            self._reply(500, b"bad CGI output\n" + proc.stderr)
            return
        status = 200
        headers: dict[str, str] = {}
        for line in out[:sep].decode("latin-1").splitlines():
            name, _, value = line.partition(":")
            if name.lower() == "status":
                status = int(value.strip().split()[0])
            elif name.lower() != "content-length":
                headers[name.strip()] = value.strip()
        self._record(parts.path, parts.query, status, command)
        self._reply(status, out[sep + head_len :], headers)

    def _record(self, path: str, query: str, status: int, command: str) -> None:
        with self.server.git.lock:
            self.server.git.requests.append(
                RequestRecord(self.command, path, query, status, command)
            )


@dataclass
class _GitHTTPConfig:
    project_root: Path
    basic: tuple[str, str] | None
    bearer: str | None
    protocol_v2: bool = True
    requests: list[RequestRecord] = field(default_factory=list)
    lock: threading.Lock = field(default_factory=threading.Lock)


class _HTTPServer(socketserver.ThreadingMixIn, http.server.HTTPServer):
    daemon_threads = True
    allow_reuse_address = True

    def __init__(self, git: _GitHTTPConfig, tls: ssl.SSLContext | None) -> None:
        self.git = git
        self.tls = tls
        super().__init__(("127.0.0.1", 0), _Handler)

    def finish_request(self, request: Any, client_address: Any) -> None:
        # The TLS handshake happens here, in the connection's own thread.
        if self.tls is not None:
            try:
                request = self.tls.wrap_socket(request, server_side=True)
            except (ssl.SSLError, OSError):
                return
        super().finish_request(request, client_address)


class GitHttpServer:
    """Smart-HTTP git server for every repository under `project_root`.

    `basic=(user, password)` and/or `bearer=token` require auth; `tls` (a server CertPair)
    turns on HTTPS; `client_ca` additionally requires a client certificate from that CA;
    `protocol_v2=False` makes it an old server that only speaks protocol v0.
    """

    def __init__(
        self,
        project_root: Path,
        *,
        basic: tuple[str, str] | None = None,
        bearer: str | None = None,
        tls: CertPair | None = None,
        client_ca: bytes | None = None,
        protocol_v2: bool = True,
    ) -> None:
        self.project_root = project_root
        self.basic = basic
        self.bearer = bearer
        self._config = _GitHTTPConfig(project_root, basic, bearer, protocol_v2)
        self._tls_pair = tls
        self._client_ca = client_ca
        self._server: _HTTPServer | None = None
        self._thread: threading.Thread | None = None
        self._tmp: Path | None = None

    @property
    def scheme(self) -> str:
        return "https" if self._tls_pair else "http"

    @property
    def port(self) -> int:
        assert self._server is not None
        return int(self._server.server_address[1])

    @property
    def requests(self) -> list[RequestRecord]:
        with self._config.lock:
            return list(self._config.requests)

    def clear_requests(self) -> None:
        with self._config.lock:
            self._config.requests.clear()

    def set_credentials(
        self, *, basic: tuple[str, str] | None = None, bearer: str | None = None
    ) -> None:
        """Change what the server accepts while it runs (credentials rotated or revoked)."""
        with self._config.lock:
            self.basic = self._config.basic = basic
            self.bearer = self._config.bearer = bearer

    def url(self, repo: str) -> str:
        return f"{self.scheme}://127.0.0.1:{self.port}/{repo}.git"

    def _context(self) -> ssl.SSLContext | None:
        if self._tls_pair is None:
            return None
        self._tmp = Path(tempfile.mkdtemp(prefix="hw-https-"))
        cert, key = self._tmp / "server.crt", self._tmp / "server.key"
        cert.write_bytes(self._tls_pair.cert_pem)
        key.write_bytes(self._tls_pair.key_pem)
        key.chmod(0o600)
        ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        ctx.load_cert_chain(cert, key)
        if self._client_ca is not None:
            ctx.verify_mode = ssl.CERT_REQUIRED
            ctx.load_verify_locations(cadata=self._client_ca.decode())
        return ctx

    def start(self) -> GitHttpServer:
        self._server = _HTTPServer(self._config, self._context())
        self._thread = threading.Thread(
            target=self._server.serve_forever, kwargs={"poll_interval": 0.2}, daemon=True
        )
        self._thread.start()
        return self

    def stop(self) -> None:
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()
            self._server = None
        if self._thread is not None:
            self._thread.join(timeout=10)
            self._thread = None
        if self._tmp is not None:
            shutil.rmtree(self._tmp, ignore_errors=True)
            self._tmp = None

    def __enter__(self) -> GitHttpServer:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()
