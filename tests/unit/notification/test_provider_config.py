"""Providers resolved with their Secrets: address, token, headers, proxy and TLS."""

from __future__ import annotations

import ssl
import tempfile
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import pytest

from controllers.notification.providers import DeliveryError, ProviderConfigError, build_sender
from controllers.notification.providers.config import resolve_provider
from tests.support.chatservers import WebhookServer
from tests.support.gitservers import TestCA
from tests.unit.notification.events import notification

NAMESPACE = "apps"


def provider(**spec: Any) -> dict[str, Any]:
    return {
        "metadata": {"name": "prov", "namespace": NAMESPACE, "uid": "u-1"},
        "spec": {"type": "generic", **spec},
    }


def secrets(**named: Mapping[str, bytes]) -> Any:
    async def read(namespace: str, name: str) -> Mapping[str, bytes] | None:
        return named.get(name) if namespace == NAMESPACE else None

    return read


async def test_spec_fields_and_defaults() -> None:
    config = await resolve_provider(
        provider(type="slack", address="https://hooks.example/x", channel="#c", username="u"),
        secrets(),
    )
    assert (config.type, config.channel, config.username, config.timeout) == (
        "slack",
        "#c",
        "u",
        15.0,
    )
    assert config.key == "apps/prov"
    timed = await resolve_provider(provider(address="https://h/x", timeout="2m"), secrets())
    assert timed.timeout == 120.0


async def test_the_secret_address_token_auth_and_headers_win() -> None:
    config = await resolve_provider(
        provider(address="https://spec.example/a", secretRef={"name": "creds"}),
        secrets(
            creds={
                "address": b" https://secret.example/hook \n",
                "token": b"tok-123\n",
                "username": b"user",
                "password": b"pass",
                "headers": b"X-Team: platform\nX-Env: prod\n",
            }
        ),
    )
    assert config.address == "https://secret.example/hook"
    assert config.address_is_secret
    assert (config.token, config.basic_username, config.password) == ("tok-123", "user", "pass")
    assert config.headers == {"X-Team": "platform", "X-Env": "prod"}
    assert "tok-123" not in repr(config)
    assert "secret.example" not in repr(config)


@pytest.mark.parametrize(
    ("spec", "data", "problem"),
    [
        ({"secretRef": {"name": "absent"}}, {}, "secret 'apps/absent' (spec.secretRef) not found"),
        (
            {"secretRef": {"name": "s"}},
            {"s": {"headers": b"- a\n- b\n"}},
            "key 'headers' is not a YAML map",
        ),
        ({"secretRef": {"name": "s"}}, {"s": {"headers": b'X-A: "b\\nc"\n'}}, "invalid header"),
        ({"secretRef": {"name": "s"}}, {"s": {"address": b"x" * 3000}}, "longer than 2048"),
        ({"address": "ftp://example.com/x"}, {}, "spec.address is not an http(s) URL"),
        ({"timeout": "forever", "address": "https://h/x"}, {}, "spec.timeout"),
        ({"proxySecretRef": {"name": "p"}}, {"p": {"username": b"u"}}, "has no 'address' key"),
        (
            {"certSecretRef": {"name": "c"}},
            {"c": {"tls.crt": b"x"}},
            "both 'tls.crt' and 'tls.key'",
        ),
        ({"certSecretRef": {"name": "c"}}, {"c": {"ca.crt": b"not a cert"}}, "cannot be loaded"),
    ],
)
async def test_bad_configuration_names_the_secret_and_key(
    spec: dict[str, Any], data: dict[str, Mapping[str, bytes]], problem: str
) -> None:
    spec.setdefault("address", "https://h/x")
    with pytest.raises(ProviderConfigError) as caught:
        await resolve_provider(provider(**spec), secrets(**data))
    assert problem in caught.value.message


async def test_requests_go_through_the_proxy_with_its_credentials() -> None:
    with WebhookServer() as proxy:
        config = await resolve_provider(
            provider(address="http://provider.invalid/events", proxySecretRef={"name": "proxy"}),
            secrets(
                proxy={"address": proxy.url.encode(), "username": b"pu", "password": b"pp-secret"}
            ),
        )
        assert config.proxy == proxy.url
        await build_sender(config).send(notification())
        [request] = proxy.requests()
    assert request.path == "/events"
    assert request.headers["Host"] == "provider.invalid"
    assert request.headers["Proxy-Authorization"] == "Basic cHU6cHAtc2VjcmV0"


@pytest.fixture(scope="module")
def ca() -> TestCA:
    return TestCA()


def server_tls(ca: TestCA, *, client_ca: bool) -> ssl.SSLContext:
    pair = ca.issue("provider", server=True)
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    with tempfile.TemporaryDirectory() as tmp:
        cert, key = Path(tmp, "c.pem"), Path(tmp, "k.pem")
        cert.write_bytes(pair.cert_pem)
        key.write_bytes(pair.key_pem)
        context.load_cert_chain(cert, key)
    if client_ca:
        context.verify_mode = ssl.CERT_REQUIRED
        context.load_verify_locations(cadata=ca.cert_pem.decode())
    return context


async def test_cert_secret_ref_trusts_the_ca_and_presents_the_client_cert(ca: TestCA) -> None:
    client = ca.issue("headwater", server=False)
    with WebhookServer(tls=server_tls(ca, client_ca=True)) as server:
        mtls = await resolve_provider(
            provider(address=f"{server.url}/events", certSecretRef={"name": "tls"}),
            secrets(
                tls={"ca.crt": ca.cert_pem, "tls.crt": client.cert_pem, "tls.key": client.key_pem}
            ),
        )
        await build_sender(mtls).send(notification())
        assert len(server.requests()) == 1
        ca_only = await resolve_provider(
            provider(address=f"{server.url}/events", certSecretRef={"name": "tls"}),
            secrets(tls={"ca.crt": ca.cert_pem}),
        )
        with pytest.raises(DeliveryError):
            await build_sender(ca_only).send(notification())  # no client certificate
        untrusted = await resolve_provider(provider(address=f"{server.url}/events"), secrets())
        with pytest.raises(DeliveryError, match=r"certificate|SSL"):
            await build_sender(untrusted).send(notification())
    assert len(server.requests()) == 1


async def test_proxy_credentials_in_a_url_are_split_out() -> None:
    config = await resolve_provider(
        provider(address="https://h/x", proxy="http://user:pw-secret@proxy.example:3128"), secrets()
    )
    assert config.proxy == "http://proxy.example:3128"
    assert (config.proxy_username, config.proxy_password) == ("user", "pw-secret")
    assert "pw-secret" not in repr(config)


@pytest.mark.parametrize(
    ("field", "value"),
    [("commitStatusExpr", "event.metadata.revision"), ("serviceAccountName", "notifier")],
)
async def test_fields_headwater_does_not_implement_are_refused_by_name(
    field: str, value: str
) -> None:
    with pytest.raises(ProviderConfigError, match=rf"spec\.{field} is not supported by headwater"):
        await resolve_provider(provider(address="https://h/x", **{field: value}), secrets())


async def test_the_deprecated_interval_is_accepted_and_ignored_as_in_flux() -> None:
    config = await resolve_provider(provider(address="https://h/x", interval="10m"), secrets())
    assert config.address == "https://h/x"
