"""Real git servers on loopback for tests.

- `GitHttpServer`: git's own ``git http-backend`` (smart HTTP, protocol v0 and v2) behind
  a threaded Python HTTP server, with optional basic and/or bearer auth and optional TLS
  (certificates from `TestCA`, optionally requiring a client certificate).
- `GitSshServer`: a real OpenSSH ``sshd`` in the foreground (``-D -e``) with its own host
  key and config in a temporary directory, public-key auth only, running ``git-shell``.
"""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ed25519

from devcluster import pki
from devcluster.cluster import free_port
from devcluster.gitserver import CertPair, GitHttpServer, RequestRecord
from tests.support.servers import ServerProcess

# The HTTP server lives in devcluster/ (the demo serves its repository with it);
# tests import everything git-server related from here.
__all__ = [
    "CertPair",
    "GitHttpServer",
    "GitSshServer",
    "RequestRecord",
    "SSHKey",
    "TestCA",
    "free_port",
    "make_ssh_key",
]

SSHD = "/usr/sbin/sshd"
START_TIMEOUT = 30.0


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


class TestCA:
    """A self-signed CA that issues server (127.0.0.1/localhost) and client certificates.

    A thin test-facing face on devcluster's CA, which the control plane uses too.
    """

    __test__ = False

    def __init__(self, name: str = "headwater test CA") -> None:
        self._ca = pki.CertificateAuthority(name)

    @property
    def cert_pem(self) -> bytes:
        return self._ca.cert_pem

    def issue(self, common_name: str, *, server: bool) -> CertPair:
        issued = self._ca.issue(
            common_name,
            dns_names=("localhost",) if server else (),
            ip_addresses=("127.0.0.1",) if server else (),
            server=server,
            client=not server,
        )
        return CertPair(cert_pem=issued.cert_pem, key_pem=issued.key_pem)


# -- smart HTTP ----------------------------------------------------------------------------


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
        self._server = ServerProcess("sshd", self.dir / "sshd.log")
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

        def prepare() -> list[str]:
            self.port = free_port()
            config = self._config()
            subprocess.run(
                [SSHD, "-t", "-f", str(config)], check=True, capture_output=True, timeout=30
            )
            return [SSHD, "-D", "-e", "-f", str(config)]

        self._server.start(prepare, lambda proc: _wait_for_port(self.port, proc))
        return self

    def log(self) -> str:
        return self._server.log()

    def stop(self) -> None:
        self._server.terminate()
        shutil.rmtree(self.dir, ignore_errors=True)

    def __enter__(self) -> GitSshServer:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()
