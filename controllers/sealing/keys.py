"""Sealing keys: the private keys that open sealed secrets, kept in Secrets.

Key Secrets have the shape Bitnami's sealed-secrets controller writes, so its
keys can be copied over and ours read by `kubeseal --recovery-private-key`:
type `kubernetes.io/tls`, label `sealedsecrets.bitnami.com/sealed-secrets-key:
active`, `tls.key` a PKCS#1 PEM RSA key, `tls.crt` a self-signed certificate.
They live in the controllers' namespace. The newest key (by its
certificate's notBefore, as Bitnami orders them) seals; every key opens, and
none is ever deleted here, so values sealed years ago still open.
"""

from __future__ import annotations

import asyncio
import base64
import binascii
import logging
import secrets
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

import kubernetes.client
import yaml
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import rsa
from cryptography.x509.oid import ExtensionOID
from kubernetes.client.exceptions import ApiException

from controllers.sealing.format import fingerprint

log = logging.getLogger(__name__)

KEY_LABEL = "sealedsecrets.bitnami.com/sealed-secrets-key"
KEY_LABEL_VALUE = "active"
KEY_SELECTOR = f"{KEY_LABEL}={KEY_LABEL_VALUE}"
# Bitnami's `--key-prefix`; a Secret named exactly this is its legacy key.
KEY_PREFIX = "sealed-secrets-key"
SECRET_TYPE = "kubernetes.io/tls"
TLS_KEY = "tls.key"
TLS_CERT = "tls.crt"

DEFAULT_KEY_SIZE = 4096
# Bitnami's `--key-ttl` default. The certificate's expiry only stops sealing
# with it; opening never looks at it.
CERT_VALIDITY = timedelta(days=3650)
# The key manager re-checks at least this often, so a key added by hand or
# by another replica is noticed and clock jumps do not stall renewal.
MAX_SLEEP_SECONDS = 3600.0
RETRY_SECONDS = 30.0
# While the controllers' namespace is missing, look for it this often: a
# user who has just created it should not wait a retry period for a key.
NAMESPACE_POLL_SECONDS = 2.0
# Key files and Secrets dumps are small; refuse anything absurd before parsing.
MAX_KEY_FILE_BYTES = 4 * 1024 * 1024

# keyUsage with only encipherOnly set (DER BIT STRING 0x01, no unused bits),
# which is what Bitnami's certificates carry. cryptography's KeyUsage type
# refuses encipherOnly without keyAgreement, so the extension is written raw.
_KEY_USAGE_ENCIPHER_ONLY = bytes([0x03, 0x02, 0x00, 0x01])


class SealingKeyError(RuntimeError):
    """A key Secret or key file that cannot be used; names it, never its contents."""


class NamespaceMissingError(SealingKeyError):
    """The controllers' namespace, where the key Secrets live, does not exist."""

    def __init__(self, namespace: str) -> None:
        super().__init__(
            f"namespace {namespace} does not exist: it is the controllers' namespace, "
            f"where the sealing keys are kept (Secrets labelled {KEY_SELECTOR}); "
            f"create it with `kubectl create namespace {namespace}`"
        )
        self.namespace = namespace


def check_namespace(api: kubernetes.client.ApiClient, namespace: str) -> None:
    """NamespaceMissingError unless `namespace` exists.

    Listing Secrets in a missing namespace answers an empty list, so without
    this a missing namespace reads as "no key yet". When namespaces may not
    be read (403), the Secret calls that follow say what is wrong.
    """
    try:
        kubernetes.client.CoreV1Api(api).read_namespace(namespace)
    except ApiException as exc:
        if exc.status == 404:
            raise NamespaceMissingError(namespace) from None
        if exc.status != 403:
            raise


@dataclass(frozen=True)
class SealingKey:
    """One private key and where it came from."""

    source: str  # "<namespace>/<secret>" or a file path, for messages
    private_key: rsa.RSAPrivateKey
    certificate: x509.Certificate | None = None
    created: datetime | None = None  # the Secret's creationTimestamp

    @property
    def public_key(self) -> rsa.RSAPublicKey:
        return self.private_key.public_key()

    @property
    def fingerprint(self) -> str:
        return fingerprint(self.public_key)

    @property
    def not_before(self) -> datetime | None:
        return self.certificate.not_valid_before_utc if self.certificate else None

    @property
    def issued(self) -> datetime | None:
        """When this key started sealing: its certificate's notBefore, else its Secret's age."""
        return self.not_before or self.created

    def cert_pem(self) -> bytes:
        if self.certificate is None:
            raise SealingKeyError(f"{self.source} has no certificate")
        return self.certificate.public_bytes(serialization.Encoding.PEM)

    def __str__(self) -> str:
        return f"{self.source} ({self.fingerprint})"


def private_keys(keys: Sequence[SealingKey]) -> list[rsa.RSAPrivateKey]:
    return [key.private_key for key in keys]


def newest_first(keys: Sequence[SealingKey]) -> list[SealingKey]:
    """Newest first: the one that seals leads, and is tried first when opening."""
    floor = datetime.min.replace(tzinfo=UTC)
    return sorted(
        keys,
        key=lambda key: (key.issued or floor, key.created or floor, key.source),
        reverse=True,
    )


# --- generating -----------------------------------------------------------------


def generate_key(
    *, key_size: int = DEFAULT_KEY_SIZE, now: datetime | None = None, common_name: str = ""
) -> tuple[rsa.RSAPrivateKey, x509.Certificate]:
    """A new RSA key and a self-signed certificate like Bitnami's controller makes."""
    private_key = rsa.generate_private_key(public_exponent=65537, key_size=key_size)
    start = (now or datetime.now(UTC)).replace(microsecond=0)
    # Bitnami's default CN is empty; an empty Name is how that encodes.
    name = x509.Name(
        [x509.NameAttribute(x509.NameOID.COMMON_NAME, common_name)] if common_name else []
    )
    certificate = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(private_key.public_key())
        .serial_number(secrets.randbits(128) | 1)
        .not_valid_before(start)
        .not_valid_after(start + CERT_VALIDITY)
        .add_extension(
            x509.UnrecognizedExtension(ExtensionOID.KEY_USAGE, _KEY_USAGE_ENCIPHER_ONLY),
            critical=True,
        )
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .sign(private_key, hashes.SHA256())
    )
    return private_key, certificate


def key_secret(
    namespace: str, private_key: rsa.RSAPrivateKey, certificate: x509.Certificate
) -> dict[str, Any]:
    """The key Secret manifest, in Bitnami's shape (the API server picks the name suffix)."""
    key_pem = private_key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.TraditionalOpenSSL,  # PKCS#1 "RSA PRIVATE KEY"
        serialization.NoEncryption(),
    )
    cert_pem = certificate.public_bytes(serialization.Encoding.PEM)
    return {
        "apiVersion": "v1",
        "kind": "Secret",
        "metadata": {
            "generateName": KEY_PREFIX,
            "namespace": namespace,
            "labels": {KEY_LABEL: KEY_LABEL_VALUE},
        },
        "type": SECRET_TYPE,
        "data": {
            TLS_KEY: base64.b64encode(key_pem).decode("ascii"),
            TLS_CERT: base64.b64encode(cert_pem).decode("ascii"),
        },
    }


# --- parsing ----------------------------------------------------------------------


def _load_private_key_pem(data: bytes, *, source: str) -> rsa.RSAPrivateKey:
    try:
        key = serialization.load_pem_private_key(data, password=None)
    except (ValueError, TypeError) as exc:
        # TypeError: an encrypted key. Neither message quotes the key.
        raise SealingKeyError(f"{source}: not an unencrypted PEM private key") from exc
    if not isinstance(key, rsa.RSAPrivateKey):
        raise SealingKeyError(f"{source}: expected an RSA private key, got {type(key).__name__}")
    return key


def _decode_data(secret: Mapping[str, Any], *, source: str) -> dict[str, bytes]:
    data = secret.get("data") or {}
    if not isinstance(data, Mapping):
        raise SealingKeyError(f"{source}: data must be a mapping")
    result: dict[str, bytes] = {}
    for key, value in data.items():
        if not isinstance(value, str):
            raise SealingKeyError(f"{source}: data[{key}] must be a base64 string")
        try:
            result[str(key)] = base64.b64decode(value, validate=True)
        except (binascii.Error, ValueError) as exc:
            raise SealingKeyError(f"{source}: data[{key}] is not valid base64") from exc
    for key, value in (secret.get("stringData") or {}).items():
        if isinstance(value, str):
            result[str(key)] = value.encode()
    return result


def _parse_time(value: Any) -> datetime | None:
    if isinstance(value, datetime):
        return value if value.tzinfo else value.replace(tzinfo=UTC)
    if isinstance(value, str) and value:
        try:
            return datetime.fromisoformat(value.replace("Z", "+00:00"))
        except ValueError:
            return None
    return None


def key_from_secret(secret: Mapping[str, Any]) -> SealingKey:
    """The key in a key Secret (a dict as the API serves it: base64 `data`).

    `tls.key` is what Bitnami writes. A Secret without it may hold one
    PEM private key in any entry, which is what a hand-made Secret named
    by `spec.decryption.secretRef` usually looks like.
    """
    metadata = secret.get("metadata") or {}
    name = str(metadata.get("name") or "(unnamed)")
    source = (
        f"Secret {metadata['namespace']}/{name}" if metadata.get("namespace") else f"Secret {name}"
    )
    data = _decode_data(secret, source=source)
    if TLS_KEY in data:
        private_key = _load_private_key_pem(data[TLS_KEY], source=f"{source} {TLS_KEY}")
    else:
        candidates = [key for key, value in data.items() if b"PRIVATE KEY-----" in value]
        if len(candidates) != 1:
            raise SealingKeyError(
                f"{source}: expected a PEM private key in {TLS_KEY}"
                + (f", found several in {', '.join(sorted(candidates))}" if candidates else "")
            )
        private_key = _load_private_key_pem(data[candidates[0]], source=f"{source} {candidates[0]}")
    certificate = None
    if TLS_CERT in data:
        try:
            certificate = x509.load_pem_x509_certificates(data[TLS_CERT])[0]
        except ValueError as exc:
            raise SealingKeyError(f"{source}: {TLS_CERT} is not a PEM certificate") from exc
    return SealingKey(
        source=source.removeprefix("Secret "),
        private_key=private_key,
        certificate=certificate,
        created=_parse_time(metadata.get("creationTimestamp")),
    )


def parse_key_file(data: bytes, *, source: str) -> list[SealingKey]:
    """Keys in a file: PEM private keys, or a YAML/JSON dump of key Secrets (or a List).

    These are what `kubeseal --recovery-private-key` accepts: a PEM file, or
    `kubectl get secret -l sealedsecrets.bitnami.com/sealed-secrets-key -o yaml`.
    """
    if len(data) > MAX_KEY_FILE_BYTES:
        raise SealingKeyError(f"{source}: larger than {MAX_KEY_FILE_BYTES} bytes")
    if b"-----BEGIN" in data and b"PRIVATE KEY-----" in data and b"apiVersion" not in data:
        return _pem_keys(data, source=source)
    try:
        documents = [doc for doc in yaml.safe_load_all(data) if doc is not None]
    except yaml.YAMLError:
        # Not the parser's message: it quotes the offending line.
        raise SealingKeyError(
            f"{source}: neither a PEM private key nor a YAML/JSON Secret"
        ) from None
    secrets_found: list[Mapping[str, Any]] = []
    for document in documents:
        if not isinstance(document, Mapping):
            raise SealingKeyError(
                f"{source}: expected Secret objects, found {type(document).__name__}"
            )
        items = document.get("items") if str(document.get("kind", "")).endswith("List") else None
        if isinstance(items, list):
            secrets_found.extend(item for item in items if isinstance(item, Mapping))
        else:
            secrets_found.append(document)
    if not secrets_found:
        raise SealingKeyError(f"{source}: holds no private key")
    keys: list[SealingKey] = []
    for number, secret in enumerate(secrets_found, start=1):
        if secret.get("kind", "Secret") != "Secret":
            raise SealingKeyError(
                f"{source}: object {number} is a {secret.get('kind')}, not a Secret"
            )
        key = key_from_secret(secret)
        keys.append(
            SealingKey(f"{source}: {key.source}", key.private_key, key.certificate, key.created)
        )
    return keys


def _pem_keys(data: bytes, *, source: str) -> list[SealingKey]:
    keys = []
    marker = b"-----BEGIN "
    blocks = [marker + part for part in data.split(marker)[1:]]
    for number, block in enumerate(blocks, start=1):
        if b"PRIVATE KEY-----" not in block.split(b"\n", 1)[0]:
            continue  # a certificate or other block next to the key
        where = source if len(blocks) == 1 else f"{source} (PEM block {number})"
        keys.append(SealingKey(where, _load_private_key_pem(block, source=where)))
    if not keys:
        raise SealingKeyError(f"{source}: holds no PEM private key")
    return keys


# --- reading and writing key Secrets --------------------------------------------


def _as_dict(api: kubernetes.client.ApiClient, secret: Any) -> dict[str, Any]:
    result: dict[str, Any] = api.sanitize_for_serialization(secret)
    return result


def read_keys(
    api: kubernetes.client.ApiClient, namespace: str, secret_name: str | None = None
) -> list[SealingKey]:
    """Keys from the cluster, newest first.

    With `secret_name`, exactly that Secret, which must hold a usable key.
    Without, every Secret labelled as a sealing key in `namespace` (plus
    Bitnami's legacy Secret named `sealed-secrets-key`); one that cannot be
    parsed is logged and skipped, so a stray Secret cannot stop every
    decryption.
    """
    core = kubernetes.client.CoreV1Api(api)
    if secret_name is not None:
        try:
            secret = core.read_namespaced_secret(secret_name, namespace)
        except ApiException as exc:
            if exc.status == 404:
                raise SealingKeyError(f"key Secret {namespace}/{secret_name} not found") from None
            raise
        return [key_from_secret(_as_dict(api, secret))]
    listed = core.list_namespaced_secret(namespace, label_selector=KEY_SELECTOR)
    found = [_as_dict(api, item) for item in listed.items]
    if not any(item["metadata"]["name"] == KEY_PREFIX for item in found):
        try:
            found.append(_as_dict(api, core.read_namespaced_secret(KEY_PREFIX, namespace)))
        except ApiException as exc:
            if exc.status not in (403, 404):
                raise
    keys: list[SealingKey] = []
    for item in found:
        try:
            keys.append(key_from_secret(item))
        except SealingKeyError as exc:
            log.warning("skipping sealing key Secret: %s", exc)
    return newest_first(keys)


async def load_keys(
    api: kubernetes.client.ApiClient, namespace: str, secret_name: str | None = None
) -> list[SealingKey]:
    """`read_keys` off the event loop: the keys that may open sealed secrets, newest first."""
    return await asyncio.to_thread(read_keys, api, namespace, secret_name)


def create_key(
    api: kubernetes.client.ApiClient,
    namespace: str,
    *,
    key_size: int = DEFAULT_KEY_SIZE,
    existing: Sequence[SealingKey] | None = None,
) -> SealingKey:
    """Generate a key and store it as a new key Secret; returns it.

    Its certificate's notBefore is made later than every existing key's,
    even when keys are added within one second (certificate times have
    whole seconds), so "newest" stays well defined, for us and for a
    Bitnami controller sharing the keys, which orders them the same way.
    """
    keys = read_keys(api, namespace) if existing is None else existing
    start = datetime.now(UTC).replace(microsecond=0)
    issued = [key.not_before for key in keys if key.not_before is not None]
    if issued and max(issued) >= start:
        start = max(issued) + timedelta(seconds=1)
    private_key, certificate = generate_key(key_size=key_size, now=start)
    body = key_secret(namespace, private_key, certificate)
    created = kubernetes.client.CoreV1Api(api).create_namespaced_secret(namespace, body)
    metadata = _as_dict(api, created)["metadata"]
    key = SealingKey(
        source=f"{namespace}/{metadata['name']}",
        private_key=private_key,
        certificate=certificate,
        created=_parse_time(metadata.get("creationTimestamp")),
    )
    log.info(
        "created sealing key",
        extra={"secret": key.source, "fingerprint": key.fingerprint},
    )
    return key


def renewal_due_in(
    newest: SealingKey | None, *, renew_period: float, now: datetime | None = None
) -> float | None:
    """Seconds until a new key is due: 0 when one is due now, None when never.

    No key at all is always due; a renew period of 0 turns renewal off.
    A key with no date (a hand-made Secret without certificate or
    timestamp) counts as old, so a dated key is made to seal from then on.
    """
    if newest is None:
        return 0.0
    if renew_period <= 0:
        return None
    issued = newest.issued
    if issued is None:
        return 0.0
    moment = now or datetime.now(UTC)
    remaining = (issued + timedelta(seconds=renew_period) - moment).total_seconds()
    return max(0.0, remaining)


def ensure_keys(
    api: kubernetes.client.ApiClient,
    namespace: str,
    *,
    renew_period: float,
    key_size: int = DEFAULT_KEY_SIZE,
    now: datetime | None = None,
) -> list[SealingKey]:
    """Keys after making sure one exists and the newest is not past its renewal; newest first.

    `now` only decides whether a key is due; a new key is always dated now.
    """
    keys = read_keys(api, namespace)
    due = renewal_due_in(keys[0] if keys else None, renew_period=renew_period, now=now)
    if due == 0.0:
        if not keys:
            # Before generating a key: the namespace may simply not exist yet.
            check_namespace(api, namespace)
        created = create_key(api, namespace, key_size=key_size, existing=keys)
        keys = newest_first([created, *keys])
    return keys


def current_certificate(api: kubernetes.client.ApiClient, namespace: str) -> bytes:
    """The PEM certificate new values are sealed with: the newest key's."""
    keys = [key for key in read_keys(api, namespace) if key.certificate is not None]
    if not keys:
        check_namespace(api, namespace)
        raise SealingKeyError(
            f"no sealing key with a certificate in namespace {namespace} "
            f"(Secrets labelled {KEY_SELECTOR}): the kustomize controller creates "
            f"one when it starts (`headwater run kustomize` or `headwater run all`) "
            f"with this namespace as its HEADWATER_NAMESPACE"
        )
    return keys[0].cert_pem()


class KeyManager:
    """Keeps a current sealing key: creates the first, adds one every renew period.

    Run `run()` as a background task in the controller process; it never
    returns on its own. Failures (no namespace yet, no permission) are
    logged once per outage and retried, never fatal: existing keys keep
    working meanwhile. A missing namespace is looked for every
    `namespace_poll` seconds, so the first key follows its creation closely.
    """

    def __init__(
        self,
        api: kubernetes.client.ApiClient,
        namespace: str,
        *,
        renew_period: float,
        key_size: int = DEFAULT_KEY_SIZE,
        retry: float = RETRY_SECONDS,
        namespace_poll: float = NAMESPACE_POLL_SECONDS,
    ) -> None:
        self.api = api
        self.namespace = namespace
        self.renew_period = renew_period
        self.key_size = key_size
        self.retry = retry
        self.namespace_poll = namespace_poll

    async def ensure(self) -> list[SealingKey]:
        """One pass: create a key if due; returns the keys, newest first."""
        return await asyncio.to_thread(
            ensure_keys,
            self.api,
            self.namespace,
            renew_period=self.renew_period,
            key_size=self.key_size,
        )

    async def run(self) -> None:
        outage: str | None = None  # what is wrong, as last logged
        while True:
            try:
                keys = await self.ensure()
            except NamespaceMissingError as exc:
                outage = _log_once(outage, f"{exc}; the first key is made as soon as it exists")
                await asyncio.sleep(self.namespace_poll)
                continue
            except Exception as exc:
                # Never fatal, whatever went wrong: the loop is all that renews keys.
                outage = _log_once(
                    outage,
                    f"cannot ensure a sealing key in namespace {self.namespace}: {_describe(exc)}",
                )
                await asyncio.sleep(self.retry)
                continue
            if outage is not None:
                log.info("sealing key ready in namespace %s", self.namespace)
                outage = None
            due = renewal_due_in(keys[0] if keys else None, renew_period=self.renew_period)
            # At least a second between passes: a tiny renew period must not spin.
            pause = MAX_SLEEP_SECONDS if due is None else min(max(due, 1.0), MAX_SLEEP_SECONDS)
            await asyncio.sleep(pause)


def _log_once(previous: str | None, message: str) -> str:
    """Log `message` unless it is what the current outage already logged; returns it."""
    if message != previous:
        log.warning("%s", message)
    return message


def _describe(exc: BaseException) -> str:
    # An ApiException's text carries the whole response; status and reason say enough.
    if isinstance(exc, ApiException):
        return f"{exc.status} {exc.reason}"
    return str(exc) or type(exc).__name__
