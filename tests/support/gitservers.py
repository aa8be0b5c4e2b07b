"""Real git servers on loopback for tests.

- `GitHttpServer`: git's own ``git http-backend`` (smart HTTP, protocol v0 and v2) behind
  a threaded Python HTTP server, with optional basic and/or bearer auth and optional TLS
  (certificates from `TestCA`, optionally requiring a client certificate).
- `GitSshServer`: a real OpenSSH ``sshd`` in the foreground (``-D -e``) with its own host
  key and config in a temporary directory, public-key auth only, running ``git-shell``.
"""

from __future__ import annotations

import base64
import datetime
import gzip
import http.server
import ipaddress
import os
import shutil
import socket
import socketserver
import ssl
import subprocess
import tempfile
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import unquote, urlsplit

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, ed25519
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

HTTP_BACKEND = "/usr/lib/git-core/git-http-backend"
SSHD = "/usr/sbin/sshd"
CGI_TIMEOUT = 120.0
START_TIMEOUT = 30.0


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _wait_for_port(port: int, proc: subprocess.Popen[bytes] | None = None) -> None:
    deadline = time.monotonic() + START_TIMEOUT
    while time.monotonic() < deadline:
        if proc is not None and proc.poll() is not None:
            raise RuntimeError(f"server exited with {proc.returncode} before listening")
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=1):
                return
        except OSError:
            time.sleep(0.05)
    raise RuntimeError(f"nothing listens on 127.0.0.1:{port} after {START_TIMEOUT}s")


# -- TLS ---------------------------------------------------------------------------------


@dataclass(frozen=True)
class CertPair:
    cert_pem: bytes
    key_pem: bytes


class TestCA:
    """A self-signed CA that issues server (127.0.0.1/localhost) and client certificates."""

    __test__ = False

    def __init__(self, name: str = "headwater test CA") -> None:
        self._key = ec.generate_private_key(ec.SECP256R1())
        subject = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, name)])
        now = datetime.datetime.now(datetime.UTC)
        self._name = subject
        self._cert = (
            x509.CertificateBuilder()
            .subject_name(subject)
            .issuer_name(subject)
            .public_key(self._key.public_key())
            .serial_number(x509.random_serial_number())
            .not_valid_before(now - datetime.timedelta(minutes=5))
            .not_valid_after(now + datetime.timedelta(days=2))
            .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
            .add_extension(
                x509.KeyUsage(
                    digital_signature=True,
                    content_commitment=False,
                    key_encipherment=False,
                    data_encipherment=False,
                    key_agreement=False,
                    key_cert_sign=True,
                    crl_sign=True,
                    encipher_only=False,
                    decipher_only=False,
                ),
                critical=True,
            )
            .add_extension(
                x509.SubjectKeyIdentifier.from_public_key(self._key.public_key()), critical=False
            )
            .sign(self._key, hashes.SHA256())
        )

    @property
    def cert_pem(self) -> bytes:
        return self._cert.public_bytes(serialization.Encoding.PEM)

    def issue(self, common_name: str, *, server: bool) -> CertPair:
        key = ec.generate_private_key(ec.SECP256R1())
        now = datetime.datetime.now(datetime.UTC)
        builder = (
            x509.CertificateBuilder()
            .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, common_name)]))
            .issuer_name(self._name)
            .public_key(key.public_key())
            .serial_number(x509.random_serial_number())
            .not_valid_before(now - datetime.timedelta(minutes=5))
            .not_valid_after(now + datetime.timedelta(days=1))
            .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
            .add_extension(
                x509.ExtendedKeyUsage(
                    [ExtendedKeyUsageOID.SERVER_AUTH if server else ExtendedKeyUsageOID.CLIENT_AUTH]
                ),
                critical=False,
            )
            .add_extension(
                x509.AuthorityKeyIdentifier.from_issuer_public_key(self._key.public_key()),
                critical=False,
            )
        )
        if server:
            builder = builder.add_extension(
                x509.SubjectAlternativeName(
                    [
                        x509.DNSName("localhost"),
                        x509.IPAddress(ipaddress.IPv4Address("127.0.0.1")),
                    ]
                ),
                critical=False,
            )
        cert = builder.sign(self._key, hashes.SHA256())
        return CertPair(
            cert_pem=cert.public_bytes(serialization.Encoding.PEM),
            key_pem=key.private_bytes(
                serialization.Encoding.PEM,
                serialization.PrivateFormat.PKCS8,
                serialization.NoEncryption(),
            ),
        )


# -- smart HTTP ----------------------------------------------------------------------------


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


# -- SSH -----------------------------------------------------------------------------------


@dataclass(frozen=True)
class SSHKey:
    """A client key: `private` in OpenSSH format (encrypted when `password` is set)."""

    private: bytes
    public: str
    password: str | None = None


def make_ssh_key(password: str | None = None) -> SSHKey:
    """An ed25519 client key; encrypted keys come from ssh-keygen (needs bcrypt otherwise)."""
    if password is None:
        key = ed25519.Ed25519PrivateKey.generate()
        private = key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.OpenSSH,
            serialization.NoEncryption(),
        )
        public = key.public_key().public_bytes(
            serialization.Encoding.OpenSSH, serialization.PublicFormat.OpenSSH
        )
        return SSHKey(private=private, public=public.decode() + " headwater-test")
    tmp = Path(tempfile.mkdtemp(prefix="hw-sshkey-"))
    try:
        path = tmp / "id"
        subprocess.run(
            [
                "ssh-keygen",
                "-q",
                "-t",
                "ed25519",
                "-N",
                password,
                "-C",
                "headwater-enc",
                "-f",
                str(path),
            ],
            check=True,
            capture_output=True,
            timeout=30,
        )
        return SSHKey(
            private=path.read_bytes(),
            public=(tmp / "id.pub").read_text().strip(),
            password=password,
        )
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


class GitSshServer:
    """OpenSSH on 127.0.0.1:<free port> serving repositories under `project_root` as root.

    Only keys passed to `authorize` get in, and only to run git-shell commands.
    URLs look like ``ssh://root@127.0.0.1:<port>/<project_root>/<name>.git``.
    """

    def __init__(self, project_root: Path) -> None:
        self.project_root = project_root
        self.dir = Path(tempfile.mkdtemp(prefix="hw-sshd-"))
        self.port = 0
        self._proc: subprocess.Popen[bytes] | None = None
        self._log: Any = None
        self.host_public = ""

    @property
    def known_hosts(self) -> bytes:
        return f"[127.0.0.1]:{self.port} {self.host_public}\n".encode()

    def url(self, repo: str, user: str = "root") -> str:
        return f"ssh://{user}@127.0.0.1:{self.port}{self.project_root}/{repo}.git"

    def authorize(self, public_key: str) -> None:
        with open(self.dir / "authorized_keys", "a") as fh:
            fh.write(public_key.strip() + "\n")

    def _config(self) -> Path:
        host_key = self.dir / "ssh_host_ed25519_key"
        if not host_key.exists():
            subprocess.run(
                ["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-f", str(host_key)],
                check=True,
                capture_output=True,
                timeout=30,
            )
            host_key.chmod(0o600)  # sshd ignores a host key others can read
        self.host_public = " ".join((self.dir / "ssh_host_ed25519_key.pub").read_text().split()[:2])
        (self.dir / "authorized_keys").touch(mode=0o600)
        config = self.dir / "sshd_config"
        config.write_text(
            "\n".join(
                [
                    f"Port {self.port}",
                    "ListenAddress 127.0.0.1",
                    f"HostKey {host_key}",
                    "PidFile none",
                    f"AuthorizedKeysFile {self.dir}/authorized_keys",
                    # The temp dir sits under world-writable /tmp, which StrictModes rejects.
                    "StrictModes no",
                    "PubkeyAuthentication yes",
                    "PasswordAuthentication no",
                    "KbdInteractiveAuthentication no",
                    "PermitRootLogin prohibit-password",
                    "AllowUsers root",
                    "UsePAM no",
                    "AllowTcpForwarding no",
                    "AllowAgentForwarding no",
                    "X11Forwarding no",
                    "PermitTTY no",
                    "PrintMotd no",
                    # git asks for protocol v2 through this variable.
                    "AcceptEnv GIT_PROTOCOL",
                    'ForceCommand /usr/bin/git-shell -c "$SSH_ORIGINAL_COMMAND"',
                    "LogLevel ERROR",
                    "",
                ]
            )
        )
        config.chmod(0o600)
        return config

    def start(self) -> GitSshServer:
        if not os.path.exists(SSHD):
            raise RuntimeError(
                f"{SSHD} is missing: DEBIAN_FRONTEND=noninteractive "
                "apt-get install -y openssh-server"
            )
        # sshd insists on its privilege-separation directory.
        Path("/run/sshd").mkdir(mode=0o755, exist_ok=True)
        last_error: Exception | None = None
        for _ in range(3):  # a freshly picked free port can be taken by someone else
            self.port = free_port()
            config = self._config()
            subprocess.run(
                [SSHD, "-t", "-f", str(config)], check=True, capture_output=True, timeout=30
            )
            self._log = open(self.dir / "sshd.log", "ab")  # noqa: SIM115 - closed in _terminate
            self._proc = subprocess.Popen(
                [SSHD, "-D", "-e", "-f", str(config)],
                stdout=self._log,
                stderr=subprocess.STDOUT,
                stdin=subprocess.DEVNULL,
            )
            try:
                _wait_for_port(self.port, self._proc)
                return self
            except RuntimeError as exc:
                last_error = exc
                self._terminate()
        raise RuntimeError(f"sshd did not start: {last_error}; log: {self.log()}")

    def log(self) -> str:
        path = self.dir / "sshd.log"
        return path.read_text(errors="replace") if path.exists() else ""

    def _terminate(self) -> None:
        if self._proc is not None:
            self._proc.terminate()
            try:
                self._proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self._proc.kill()
                self._proc.wait(timeout=10)
            self._proc = None
        if self._log is not None:
            self._log.close()
            self._log = None

    def stop(self) -> None:
        self._terminate()
        shutil.rmtree(self.dir, ignore_errors=True)

    def __enter__(self) -> GitSshServer:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()
