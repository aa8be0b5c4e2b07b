"""Turning a Provider object and its Secrets into a ProviderConfig.

Secret keys, as Flux reads them: `spec.secretRef` holds `address` (wins over
spec.address), `token`, `username`/`password`, `headers` (a YAML map) and the
deprecated `proxy`; `spec.proxySecretRef` holds `address` plus optional
`username`/`password`; `spec.certSecretRef` holds `ca.crt` and/or
`tls.crt` + `tls.key` (for commit status providers, a `ca.crt` in secretRef
is used when there is no certSecretRef). Errors name the Secret and key,
never a value.
"""

from __future__ import annotations

import os
import ssl
import tempfile
from collections.abc import Mapping
from typing import Any
from urllib.parse import urlsplit, urlunsplit

import yaml

from controllers.notification.providers.base import (
    COMMIT_STATUS_TYPES,
    DEFAULT_TIMEOUT,
    ProviderConfig,
    ProviderConfigError,
)
from controllers.toolkit.runtime.durations import DurationError, parse_duration
from controllers.toolkit.runtime.fields import unsupported_in
from controllers.toolkit.runtime.kube import SecretReader

# Flux refuses longer addresses from Secrets.
MAX_ADDRESS_LENGTH = 2048

# Provider fields the CRD accepts and headwater does not implement. A Provider
# has no status, so the refusal reaches the user as the Alert's Warning event
# (NotificationDispatchFailed) naming the field, instead of a silent default.
UNSUPPORTED_FIELDS: dict[str, str] = {
    "spec.commitStatusExpr": (
        "custom commit status expressions are not implemented; the commit status "
        "is named after the Kustomization, as Flux does without the expression"
    ),
    "spec.serviceAccountName": (
        "workload identity is only used by the cloud provider types "
        "(azureeventhub, azuredevops, googlepubsub), which headwater does not implement"
    ),
}
# Accepted and ignored, exactly as Flux does: v1beta3 deprecated the Provider's
# interval and no longer reads it (a Provider has nothing to reconcile).
IGNORED_AS_IN_FLUX = ("interval",)


def _text(data: Mapping[str, bytes], key: str) -> str:
    return data[key].decode("utf-8", "replace").strip() if key in data else ""


async def _secret(read: SecretReader, namespace: str, name: str, field: str) -> Mapping[str, bytes]:
    data = await read(namespace, name)
    if data is None:
        raise ProviderConfigError(f"secret '{namespace}/{name}' ({field}) not found")
    return data


def parse_headers(raw: bytes, where: str) -> dict[str, str]:
    try:
        loaded = yaml.safe_load(raw.decode("utf-8", "replace")) if raw.strip() else {}
    except yaml.YAMLError:
        raise ProviderConfigError(f"{where} key 'headers' is not a YAML map") from None
    if loaded is None:
        return {}
    if not isinstance(loaded, Mapping):
        raise ProviderConfigError(f"{where} key 'headers' is not a YAML map")
    headers = {str(k): str(v) for k, v in loaded.items()}
    for key, value in headers.items():
        if not key or any(c in key + value for c in "\r\n") or ":" in key:
            raise ProviderConfigError(f"{where} key 'headers' has an invalid header {key!r}")
    return headers


def proxy_from_secret(data: Mapping[str, bytes], where: str) -> tuple[str, str, str]:
    """(proxy URL without credentials, username, password)."""
    address = _text(data, "address")
    if not address:
        raise ProviderConfigError(f"{where} has no 'address' key")
    parts = urlsplit(address)
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise ProviderConfigError(f"{where} key 'address' is not an http(s) proxy URL")
    username = _text(data, "username") or (parts.username or "")
    password = _text(data, "password") or (parts.password or "")
    host = parts.hostname + (f":{parts.port}" if parts.port else "")
    return urlunsplit(parts._replace(netloc=host)), username, password


def tls_context(data: Mapping[str, bytes], where: str) -> ssl.SSLContext | None:
    """An SSL context trusting `ca.crt` and presenting `tls.crt`/`tls.key`; None when neither."""
    ca = data.get("ca.crt")
    cert, key = data.get("tls.crt"), data.get("tls.key")
    if not ca and not cert and not key:
        return None
    if bool(cert) != bool(key):
        raise ProviderConfigError(
            f"{where} needs both 'tls.crt' and 'tls.key' for a client certificate"
        )
    context = ssl.create_default_context()
    try:
        if ca:
            context.load_verify_locations(cadata=ca.decode("ascii", "replace"))
        if cert and key:
            _load_client_pair(context, cert, key)
    except (ssl.SSLError, ValueError):
        raise ProviderConfigError(
            f"{where} holds a certificate or key that cannot be loaded"
        ) from None
    return context


def _load_client_pair(context: ssl.SSLContext, cert: bytes, key: bytes) -> None:
    # ssl only loads client pairs from files: a private directory, removed at once.
    with tempfile.TemporaryDirectory(prefix="headwater-tls-") as tmp:
        cert_path, key_path = os.path.join(tmp, "tls.crt"), os.path.join(tmp, "tls.key")
        for path, blob in ((cert_path, cert), (key_path, key)):
            fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
            with os.fdopen(fd, "wb") as handle:
                handle.write(blob)
        context.load_cert_chain(cert_path, key_path)


async def resolve_provider(obj: Mapping[str, Any], read_secret: SecretReader) -> ProviderConfig:
    """The Provider `obj` with its Secrets read; ProviderConfigError naming what is wrong."""
    refused = unsupported_in(obj, UNSUPPORTED_FIELDS)
    if refused:
        raise ProviderConfigError("; ".join(refused))
    metadata = obj.get("metadata") or {}
    spec = obj.get("spec") or {}
    namespace = str(metadata.get("namespace") or "")
    name = str(metadata.get("name") or "")
    kind = str(spec.get("type") or "")
    timeout = DEFAULT_TIMEOUT
    if spec.get("timeout"):
        try:
            timeout = parse_duration(str(spec["timeout"]), field="spec.timeout")
        except DurationError as exc:
            raise ProviderConfigError(str(exc)) from None
    values: dict[str, Any] = {
        "name": name,
        "namespace": namespace,
        "uid": str(metadata.get("uid") or ""),
        "type": kind,
        "address": str(spec.get("address") or "").strip(),
        "channel": str(spec.get("channel") or ""),
        "username": str(spec.get("username") or ""),
        "timeout": timeout if timeout > 0 else DEFAULT_TIMEOUT,
    }
    if spec.get("proxy"):
        # Deprecated in Flux in favour of proxySecretRef, still honoured.
        values["proxy"], values["proxy_username"], values["proxy_password"] = proxy_from_secret(
            {"address": str(spec["proxy"]).encode()}, "spec.proxy"
        )
    secret: Mapping[str, bytes] | None = None
    secret_name = (spec.get("secretRef") or {}).get("name")
    if secret_name:
        where = f"secret '{namespace}/{secret_name}' (spec.secretRef)"
        secret = await _secret(read_secret, namespace, secret_name, "spec.secretRef")
        address = _text(secret, "address")
        if len(address) > MAX_ADDRESS_LENGTH:
            raise ProviderConfigError(f"{where} key 'address' is longer than {MAX_ADDRESS_LENGTH}")
        if address:
            values["address"] = address
            values["address_is_secret"] = True
        values["token"] = _text(secret, "token")
        values["basic_username"] = _text(secret, "username")
        values["password"] = _text(secret, "password")
        if "headers" in secret:
            values["headers"] = parse_headers(secret["headers"], where)
        if _text(secret, "proxy"):
            values["proxy"], values["proxy_username"], values["proxy_password"] = proxy_from_secret(
                {"address": secret["proxy"]}, where
            )
    proxy_name = (spec.get("proxySecretRef") or {}).get("name")
    if proxy_name:
        where = f"secret '{namespace}/{proxy_name}' (spec.proxySecretRef)"
        data = await _secret(read_secret, namespace, proxy_name, "spec.proxySecretRef")
        values["proxy"], values["proxy_username"], values["proxy_password"] = proxy_from_secret(
            data, where
        )
    cert_name = (spec.get("certSecretRef") or {}).get("name")
    if cert_name:
        where = f"secret '{namespace}/{cert_name}' (spec.certSecretRef)"
        data = await _secret(read_secret, namespace, cert_name, "spec.certSecretRef")
        values["ssl_context"] = tls_context(data, where)
    elif kind in COMMIT_STATUS_TYPES and secret is not None and secret.get("ca.crt"):
        values["ssl_context"] = tls_context(
            {"ca.crt": secret["ca.crt"]}, f"secret '{namespace}/{secret_name}' (spec.secretRef)"
        )
    address = values["address"]
    if address:
        parts = urlsplit(address)
        if kind != "github" and (parts.scheme not in ("http", "https") or not parts.hostname):
            source = (
                "'address' in spec.secretRef" if values.get("address_is_secret") else "spec.address"
            )
            raise ProviderConfigError(f"{source} is not an http(s) URL")
    return ProviderConfig(**values)
