"""A real forwarding HTTP proxy on loopback, with basic proxy auth, that counts its work.

`ForwardProxy` forwards absolute-form requests (``GET http://host/path``, what a client
sends a proxy for plain HTTP) and tunnels ``CONNECT host:port`` (HTTPS). With
`credentials` set, a request without the right ``Proxy-Authorization: Basic`` is
answered ``407`` and counted in `refused`; every request it passed on is in `forwarded`
as (method, target), so a test can tell that traffic really went through it.
"""

from __future__ import annotations

import base64
import http.client
import select
import socket
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import urlsplit

_HOP_BY_HOP = frozenset(
    {
        "connection",
        "keep-alive",
        "proxy-authorization",
        "proxy-authenticate",
        "proxy-connection",
        "te",
        "trailer",
        "transfer-encoding",
        "upgrade",
    }
)


class ForwardProxy:
    """``with ForwardProxy(credentials=("u", "p")) as proxy: proxy.address``."""

    def __init__(self, credentials: tuple[str, str] | None = None) -> None:
        self.credentials = credentials
        self.forwarded: list[tuple[str, str]] = []
        self.refused = 0
        self._lock = threading.Lock()
        self._server = ThreadingHTTPServer(("127.0.0.1", 0), _handler(self))
        self._server.daemon_threads = True
        self._thread = threading.Thread(target=self._server.serve_forever, daemon=True)

    @property
    def address(self) -> str:
        return f"http://127.0.0.1:{self._server.server_address[1]}"

    def authorized(self, header: str | None) -> bool:
        if self.credentials is None:
            return True
        expected = base64.b64encode(":".join(self.credentials).encode()).decode()
        return header is not None and header.strip() == f"Basic {expected}"

    def record(self, method: str, target: str, *, refused: bool) -> None:
        with self._lock:
            if refused:
                self.refused += 1
            else:
                self.forwarded.append((method, target))

    def __enter__(self) -> ForwardProxy:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._server.shutdown()
        self._server.server_close()
        self._thread.join(timeout=10)


def _handler(proxy: ForwardProxy) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def log_message(self, format: str, *args: object) -> None:
            pass  # quiet: the test reads `forwarded`, not stderr

        def _refuse(self) -> bool:
            if proxy.authorized(self.headers.get("Proxy-Authorization")):
                return False
            proxy.record(self.command, self.path, refused=True)
            self._drain_body()
            self.send_response(407)
            self.send_header("Proxy-Authenticate", 'Basic realm="headwater-test-proxy"')
            self.send_header("Content-Length", "0")
            self.end_headers()
            return True

        def _drain_body(self) -> bytes:
            if "chunked" in self.headers.get("Transfer-Encoding", "").lower():
                body = b""
                while True:
                    size = int(self.rfile.readline().split(b";")[0].strip() or b"0", 16)
                    if size == 0:
                        while self.rfile.readline() not in (b"\r\n", b"\n", b""):
                            pass
                        return body
                    body += self.rfile.read(size)
                    self.rfile.readline()
            length = int(self.headers.get("Content-Length") or 0)
            return self.rfile.read(length) if length else b""

        def _forward(self) -> None:
            if self._refuse():
                return
            target = urlsplit(self.path)
            if target.scheme != "http" or not target.hostname:
                self.send_error(400, "absolute http:// URL expected")
                return
            body = self._drain_body()
            headers = {k: v for k, v in self.headers.items() if k.lower() not in _HOP_BY_HOP}
            path = target.path + (f"?{target.query}" if target.query else "")
            upstream = http.client.HTTPConnection(target.hostname, target.port or 80, timeout=60)
            try:
                upstream.request(self.command, path or "/", body=body or None, headers=headers)
                response = upstream.getresponse()
                data = response.read()
            finally:
                upstream.close()
            proxy.record(self.command, self.path, refused=False)
            self.send_response(response.status, response.reason)
            for key, value in response.getheaders():
                if key.lower() not in _HOP_BY_HOP and key.lower() != "content-length":
                    self.send_header(key, value)
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            self.wfile.write(data)

        do_GET = do_POST = do_HEAD = _forward

        def do_CONNECT(self) -> None:
            if self._refuse():
                return
            host, _, port = self.path.rpartition(":")
            try:
                upstream = socket.create_connection((host, int(port)), timeout=60)
            except (OSError, ValueError):
                self.send_error(502, "cannot reach the target")
                return
            proxy.record("CONNECT", self.path, refused=False)
            self.send_response(200, "Connection established")
            self.end_headers()
            self.wfile.flush()
            sockets = [self.connection, upstream]
            try:
                while True:
                    readable, _, _ = select.select(sockets, [], [], 60)
                    if not readable:
                        return
                    for sock in readable:
                        data = sock.recv(65536)
                        if not data:
                            return
                        (upstream if sock is self.connection else self.connection).sendall(data)
            finally:
                upstream.close()
                self.close_connection = True

    return Handler
