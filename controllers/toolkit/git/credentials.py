"""A GitRepository Secret's data turned into git auth: HTTP headers, TLS files, SSH command.

Secret keys (Flux): ``username``/``password`` (HTTPS basic), ``bearerToken``, ``ca.crt``,
``tls.crt``/``tls.key`` (mTLS), ``identity``/``known_hosts``/``password`` (SSH).
Everything sensitive reaches git through the environment or 0600 files in a private
temporary directory that is removed afterwards, never through argv or the repository.
"""

from __future__ import annotations

import base64
import binascii
import os
import shlex
import shutil
import ssl
import tempfile
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from urllib.parse import quote, urlsplit

from controllers.toolkit.git.errors import AuthenticationError
from controllers.toolkit.git.gitexec import base_config, hermetic_env
from controllers.toolkit.git.giturl import GitURL


@dataclass(frozen=True)
class GitAuth:
    """Credentials for one repository. `repr` never shows values."""

    username: str | None = field(default=None, repr=False)
    password: str | None = field(default=None, repr=False)
    bearer_token: str | None = field(default=None, repr=False)
    ca_cert: bytes | None = field(default=None, repr=False)
    tls_cert: bytes | None = field(default=None, repr=False)
    tls_key: bytes | None = field(default=None, repr=False)
    ssh_identity: bytes | None = field(default=None, repr=False)
    ssh_known_hosts: bytes | None = field(default=None, repr=False)
    ssh_password: str | None = field(default=None, repr=False)

    def secret_values(self) -> tuple[str, ...]:
        """Values to scrub from any message (including the basic-auth header form)."""
        out = [v for v in (self.password, self.bearer_token, self.ssh_password) if v is not None]
        if self.username and self.password:
            out.append(_basic(self.username, self.password))
        for blob in (self.tls_key, self.ssh_identity):
            if blob:
                out.append(blob.decode("utf-8", "replace"))
        return tuple(out)

    def kinds(self) -> list[str]:
        """What kind of auth this is, for messages (names only, no values)."""
        names = {
            "basic": self.username is not None,
            "bearer": self.bearer_token is not None,
            "ca": self.ca_cert is not None,
            "mtls": self.tls_cert is not None,
            "ssh": self.ssh_identity is not None,
        }
        return [k for k, on in names.items() if on]


def _basic(username: str, password: str) -> str:
    return base64.b64encode(f"{username}:{password}".encode()).decode()


def basic_credentials(auth: GitAuth) -> str | None:
    """The value of a basic ``Authorization`` header for `auth`, or None without one."""
    if auth.username is None or auth.password is None:
        return None
    return _basic(auth.username, auth.password)


def _text(data: Mapping[str, bytes], key: str) -> str | None:
    raw = data.get(key)
    if raw is None:
        return None
    try:
        # Trailing newlines sneak in from `kubectl create secret --from-file`.
        return raw.decode("utf-8").rstrip("\r\n")
    except UnicodeDecodeError:
        raise AuthenticationError(f"secret key '{key}' is not valid UTF-8") from None


def _is_encrypted_key(identity: bytes) -> bool:
    """Whether an SSH private key needs a passphrase (OpenSSH or PEM format)."""
    text = identity.decode("ascii", "replace")
    if "Proc-Type: 4,ENCRYPTED" in text or "BEGIN ENCRYPTED PRIVATE KEY" in text:
        return True
    if "BEGIN OPENSSH PRIVATE KEY" not in text:
        return False
    body = "".join(ln for ln in text.splitlines() if ln and not ln.startswith("-----"))
    try:
        blob = base64.b64decode(body)
    except (binascii.Error, ValueError):
        return False
    magic = b"openssh-key-v1\0"
    if not blob.startswith(magic) or len(blob) < len(magic) + 4:
        return False
    n = int.from_bytes(blob[len(magic) : len(magic) + 4], "big")
    cipher = blob[len(magic) + 4 : len(magic) + 4 + n]
    return cipher != b"none"


def auth_from_secret(data: Mapping[str, bytes] | None, url: GitURL) -> GitAuth:
    """Validate a Secret's (decoded) data against the URL's transport and build GitAuth.

    Without a Secret, credentials in an http(s) URL's userinfo are used as basic auth.
    """
    data = data or {}
    if url.is_http:
        username = _text(data, "username")
        password = _text(data, "password")
        if username is None and password is None:
            username, password = url.username, url.password
        token = _text(data, "bearerToken")
        if username and not password:
            raise AuthenticationError("invalid basic auth: 'password' must be set with 'username'")
        if token and username:
            raise AuthenticationError(
                "invalid auth: 'bearerToken' and 'username' cannot both be set"
            )
        tls_cert, tls_key = data.get("tls.crt"), data.get("tls.key")
        if (tls_cert is None) != (tls_key is None):
            raise AuthenticationError("invalid TLS auth: 'tls.crt' and 'tls.key' go together")
        return GitAuth(
            username=username or None,
            password=password if username else None,
            bearer_token=token or None,
            ca_cert=data.get("ca.crt"),
            tls_cert=tls_cert,
            tls_key=tls_key,
        )
    identity = data.get("identity")
    known_hosts = data.get("known_hosts")
    missing = [k for k, v in (("identity", identity), ("known_hosts", known_hosts)) if not v]
    if missing or identity is None or known_hosts is None:
        raise AuthenticationError(
            "SSH needs a secretRef with 'identity' and 'known_hosts'"
            f" (missing: {', '.join(missing)})"
        )
    if not identity.endswith(b"\n"):
        identity += b"\n"  # ssh rejects a key file without a final newline
    passphrase = _text(data, "password")
    if _is_encrypted_key(identity) and not passphrase:
        raise AuthenticationError("SSH identity is encrypted but the secret has no 'password'")
    return GitAuth(ssh_identity=identity, ssh_known_hosts=known_hosts, ssh_password=passphrase)


PROXY_SCHEMES = ("http", "https", "socks5", "socks5h")


@dataclass(frozen=True)
class ProxyConfig:
    """spec.proxySecretRef: where git's HTTP(S) traffic goes. `repr` never shows values."""

    address: str = field(repr=False)
    username: str | None = field(default=None, repr=False)
    password: str | None = field(default=None, repr=False)

    def git_url(self) -> str:
        """The address with the credentials as userinfo: git hands them to curl itself."""
        if self.username is None:
            return self.address
        parts = urlsplit(self.address)
        userinfo = quote(self.username, safe="")
        if self.password is not None:
            userinfo += ":" + quote(self.password, safe="")
        return parts._replace(netloc=f"{userinfo}@{parts.netloc}").geturl()

    def secret_values(self) -> tuple[str, ...]:
        if not self.password:
            return ()
        out = [self.password, quote(self.password, safe="")]
        if self.username is not None:
            out.append(_basic(self.username, self.password))
        return tuple(out)


def proxy_from_secret(data: Mapping[str, bytes], where: str) -> ProxyConfig:
    """A proxy Secret's keys (Flux's): `address` (required), `username`, `password`.

    `where` names the Secret for messages ("secret 'ns/name' (spec.proxySecretRef)").
    """
    address = _text(data, "address")
    if not address:
        raise AuthenticationError(f"invalid proxy {where}: key 'address' is missing or empty")
    try:
        parts = urlsplit(address)
        parts.port  # noqa: B018 - raises ValueError for a bad port
    except ValueError:
        parts = None
    if parts is None or parts.scheme not in PROXY_SCHEMES or not parts.hostname:
        raise AuthenticationError(
            f"invalid proxy {where}: 'address' must be a URL like http://proxy:3128 "
            f"(scheme one of {', '.join(PROXY_SCHEMES)})"
        )
    if parts.username is not None or parts.password is not None:
        raise AuthenticationError(
            f"invalid proxy {where}: put credentials in 'username' and 'password', not in 'address'"
        )
    username, password = _text(data, "username"), _text(data, "password")
    if password and not username:
        raise AuthenticationError(f"invalid proxy {where}: 'password' needs a 'username'")
    return ProxyConfig(address=address, username=username or None, password=password)


@dataclass(frozen=True)
class GitEnvironment:
    """What git needs for one source: env vars and the values to scrub from messages."""

    env: dict[str, str] = field(repr=False)
    secrets: tuple[str, ...] = field(repr=False)
    home: Path


def _write_private(path: Path, data: bytes, mode: int = 0o600) -> Path:
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, mode)
    with os.fdopen(fd, "wb") as fh:
        fh.write(data)
    return path


def _ca_bundle(ca: bytes) -> bytes:
    # Like Flux, a custom CA is trusted in addition to the usual roots, not instead.
    system = os.environ.get("GIT_SSL_CAINFO") or ssl.get_default_verify_paths().cafile
    if system and os.path.isfile(system):
        with open(system, "rb") as fh:
            return fh.read().rstrip(b"\n") + b"\n" + ca
    return ca


def _ssh_command(dir_: Path, auth: GitAuth, timeout: float) -> tuple[str, dict[str, str]]:
    assert auth.ssh_identity is not None and auth.ssh_known_hosts is not None
    key = _write_private(dir_ / "identity", auth.ssh_identity)
    known = _write_private(dir_ / "known_hosts", auth.ssh_known_hosts)
    opts = {
        "IdentitiesOnly": "yes",
        "IdentityAgent": "none",
        "UserKnownHostsFile": str(known),
        "GlobalKnownHostsFile": "/dev/null",
        "StrictHostKeyChecking": "yes",
        "UpdateHostKeys": "no",
        "HashKnownHosts": "no",
        "PreferredAuthentications": "publickey",
        "PasswordAuthentication": "no",
        "KbdInteractiveAuthentication": "no",
        "ConnectTimeout": str(max(1, int(timeout))),
        "ServerAliveInterval": "15",
        "ServerAliveCountMax": "2",
        "LogLevel": "ERROR",
        # BatchMode would also suppress the passphrase prompt our askpass answers.
        "BatchMode": "no" if auth.ssh_password else "yes",
    }
    parts = ["ssh", "-F", "/dev/null", "-i", str(key)]
    for name, value in opts.items():
        parts += ["-o", f"{name}={value}"]
    extra: dict[str, str] = {}
    if auth.ssh_password:
        # ssh reads the passphrase from an askpass program; the program reads a 0600 file so
        # the passphrase is in neither argv nor the environment of git and its children.
        secret = _write_private(dir_ / "passphrase", auth.ssh_password.encode() + b"\n")
        askpass = _write_private(
            dir_ / "askpass",
            f"#!/bin/sh\nexec cat {shlex.quote(str(secret))}\n".encode(),
            0o700,
        )
        extra = {"SSH_ASKPASS": str(askpass), "SSH_ASKPASS_REQUIRE": "force", "DISPLAY": ""}
    return shlex.join(parts), extra


@contextmanager
def git_environment(
    auth: GitAuth, url: GitURL, timeout: float, proxy: ProxyConfig | None = None
) -> Iterator[GitEnvironment]:
    """Materialise `auth` (and `proxy`) for git; the temporary directory is removed on exit."""
    tmp = Path(tempfile.mkdtemp(prefix="headwater-git-"))  # mkdtemp makes it 0700
    try:
        config = base_config(timeout)
        extra: dict[str, str] = {}
        scope = f"http.{url.origin}"  # credentials go only to the repository's own origin
        credentials = basic_credentials(auth)
        if credentials is not None:
            config.append((f"{scope}.extraHeader", f"Authorization: Basic {credentials}"))
        if auth.bearer_token is not None:
            config.append((f"{scope}.extraHeader", f"Authorization: Bearer {auth.bearer_token}"))
        if auth.ca_cert is not None:
            # Through GIT_SSL_CAINFO, which beats config: it may be set for the whole
            # deployment, and this environment only serves this one repository anyway.
            ca = _write_private(tmp / "ca.crt", _ca_bundle(auth.ca_cert))
            extra["GIT_SSL_CAINFO"] = str(ca)
        if auth.tls_cert is not None and auth.tls_key is not None:
            config.append((f"{scope}.sslCert", str(_write_private(tmp / "tls.crt", auth.tls_cert))))
            config.append((f"{scope}.sslKey", str(_write_private(tmp / "tls.key", auth.tls_key))))
        if auth.ssh_identity is not None:
            command, ssh_env = _ssh_command(tmp, auth, timeout)
            extra.update(ssh_env)
            extra["GIT_SSH_COMMAND"] = command
        else:
            # No key: still never prompt, never trust an unknown host, never use an agent.
            extra["GIT_SSH_COMMAND"] = (
                "ssh -F /dev/null -o BatchMode=yes -o StrictHostKeyChecking=yes "
                "-o IdentityAgent=none -o UserKnownHostsFile=/dev/null "
                f"-o ConnectTimeout={max(1, int(timeout))}"
            )
        secrets = auth.secret_values()
        if proxy is not None:
            # Every http(s) transport of this source, submodules included, as in Flux.
            config.append(("http.proxy", proxy.git_url()))
            # The deployment's no_proxy must not send this source around its proxy.
            extra.update({"no_proxy": "", "NO_PROXY": ""})
            secrets += proxy.secret_values()
        env = hermetic_env(tmp, config)
        env.update(extra)
        yield GitEnvironment(env=env, secrets=secrets, home=tmp)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
