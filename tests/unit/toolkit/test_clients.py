"""The client pool: one client per identity, rotation, impersonation, remote clusters."""

from __future__ import annotations

import asyncio
import base64
from collections.abc import Iterator, Mapping, Sequence
from typing import Any

import kubernetes.client
import pytest

from controllers.toolkit.apply.resources import ResourceClient
from controllers.toolkit.runtime.clients import (
    ClientError,
    ClientPool,
    IdentityNotFound,
    RemoteCluster,
    SecretKeyRef,
    Token,
)
from tests.support.cluster import kubeconfig_yaml

CA = "-----BEGIN CERTIFICATE-----\nnot checked until a request is made\n-----END CERTIFICATE-----\n"


class Store:
    """The Secrets and ConfigMaps the pool reads, and the tokens it asks for."""

    def __init__(self) -> None:
        self.secrets: dict[tuple[str, str], dict[str, bytes]] = {}
        self.config_maps: dict[tuple[str, str], dict[str, str]] = {}
        self.token_requests: list[tuple[str, str, tuple[str, ...]]] = []
        self.now = 1000.0

    async def read_secret(self, namespace: str, name: str) -> Mapping[str, bytes] | None:
        return self.secrets.get((namespace, name))

    async def read_config_map(self, namespace: str, name: str) -> Mapping[str, str] | None:
        return self.config_maps.get((namespace, name))

    def request_token(self, namespace: str, name: str, audiences: Sequence[str]) -> Token:
        self.token_requests.append((namespace, name, tuple(audiences)))
        return Token(f"token-{len(self.token_requests)}", self.now + 3600, self.now)

    def clock(self) -> float:
        return self.now


@pytest.fixture
def store() -> Store:
    return Store()


@pytest.fixture
def pool(store: Store) -> Iterator[ClientPool]:
    api = kubernetes.client.ApiClient(
        kubernetes.client.Configuration(host="https://local.example:6443")
    )
    pool = ClientPool(
        api,
        read_secret=store.read_secret,
        read_config_map=store.read_config_map,
        request_token=store.request_token,
        retire_after=0.05,
        clock=store.clock,
    )
    yield pool
    pool.close()


def headers(client: ResourceClient) -> dict[str, str]:
    return dict(client._api.default_headers)


def configuration(client: ResourceClient) -> kubernetes.client.Configuration:
    config: kubernetes.client.Configuration = client._api.configuration
    return config


def bearer(client: ResourceClient) -> Any:
    # What the client sends; asking runs the renewal hook, as a request does.
    return configuration(client).get_api_key_with_prefix("BearerToken")


async def is_closed(client: ResourceClient) -> bool:
    try:
        await client._run(lambda: None)
    except RuntimeError:
        return True
    return False


def kubeconfig_secret(store: Store, server: str, token: str, name: str = "remote") -> None:
    store.secrets[("apps", name)] = {
        "value": kubeconfig_yaml(server, {"token": token}).encode(),
    }


def generic_cluster(store: Store, **data: str) -> None:
    store.config_maps[("apps", "cluster")] = {
        "provider": "generic",
        "address": "https://remote.example:6443",
        "ca.crt": CA,
        "serviceAccountName": "deployer",
        **data,
    }


async def test_no_identity_is_the_controllers_own_client(pool: ClientPool) -> None:
    assert await pool.client("apps") is pool.default
    assert "Impersonate-User" not in headers(pool.default)


async def test_a_service_account_is_impersonated_with_one_client_per_identity(
    pool: ClientPool,
) -> None:
    deployer = await pool.client("apps", service_account="deployer")
    assert headers(deployer)["Impersonate-User"] == "system:serviceaccount:apps:deployer"
    assert configuration(deployer).host == "https://local.example:6443"
    assert await pool.client("apps", service_account="deployer") is deployer
    other_namespace = await pool.client("web", service_account="deployer")
    assert headers(other_namespace)["Impersonate-User"] == "system:serviceaccount:web:deployer"
    assert other_namespace is not deployer
    assert "Impersonate-User" not in headers(pool.default), "our own client is left alone"


async def test_a_kubeconfig_secret_client_is_kept_until_the_secret_is_rotated(
    pool: ClientPool, store: Store
) -> None:
    kubeconfig_secret(store, "https://remote.example:6443", "first")
    ref = SecretKeyRef("remote")
    first = await pool.client("apps", kubeconfig_secret=ref)
    assert configuration(first).host == "https://remote.example:6443"
    assert bearer(first) == "Bearer first"
    assert await pool.client("apps", kubeconfig_secret=ref) is first

    kubeconfig_secret(store, "https://remote.example:6443", "rotated")
    rotated = await pool.client("apps", kubeconfig_secret=ref)
    assert rotated is not first
    assert bearer(rotated) == "Bearer rotated"
    # A reconcile may still be using the old client: closed later, not now.
    assert not await is_closed(first)
    await asyncio.sleep(0.2)
    assert await is_closed(first)
    assert not await is_closed(rotated)


async def test_a_remote_identity_impersonates_the_service_account_there(
    pool: ClientPool, store: Store
) -> None:
    kubeconfig_secret(store, "https://remote.example:6443", "t")
    client = await pool.client(
        "apps", service_account="deployer", kubeconfig_secret=SecretKeyRef("remote")
    )
    assert configuration(client).host == "https://remote.example:6443"
    assert headers(client)["Impersonate-User"] == "system:serviceaccount:apps:deployer"
    plain = await pool.client("apps", kubeconfig_secret=SecretKeyRef("remote"))
    assert "Impersonate-User" not in headers(plain)


async def test_kubeconfig_errors_name_the_secret_and_key_but_not_its_content(
    pool: ClientPool, store: Store
) -> None:
    with pytest.raises(IdentityNotFound) as missing:
        await pool.client("apps", kubeconfig_secret=SecretKeyRef("remote"))
    assert missing.value.message == (
        "spec.kubeConfig.secretRef: key 'value' of Secret 'apps/remote' not found"
    )
    kubeconfig_secret(store, "https://remote.example:6443", "t")
    with pytest.raises(IdentityNotFound, match="key 'config' of Secret 'apps/remote' not found"):
        await pool.client("apps", kubeconfig_secret=SecretKeyRef("remote", "config"))

    store.secrets[("apps", "broken")] = {"value": b"password: hunter2\nnot: [a kubeconfig"}
    with pytest.raises(ClientError) as broken:
        await pool.client("apps", kubeconfig_secret=SecretKeyRef("broken"))
    assert not isinstance(broken.value, IdentityNotFound)
    assert not broken.value.stalled, "the Secret can be fixed: retried"
    assert broken.value.message.startswith(
        "spec.kubeConfig.secretRef: key 'value' of Secret 'apps/broken': cannot load"
    )
    assert "hunter2" not in broken.value.message


async def test_a_generic_cluster_is_reached_with_a_service_account_token(
    pool: ClientPool, store: Store
) -> None:
    generic_cluster(store, audiences="https://issuer.example\nhttps://remote.example:6443\n")
    client = await pool.client("apps", cluster_config_map="cluster")
    assert store.token_requests == [
        ("apps", "deployer", ("https://issuer.example", "https://remote.example:6443"))
    ]
    config = configuration(client)
    assert config.host == "https://remote.example:6443"
    assert config.ssl_ca_cert is not None
    with open(config.ssl_ca_cert) as ca:
        assert ca.read() == CA
    assert bearer(client) == "Bearer token-1"
    assert "Impersonate-User" not in headers(client)
    assert await pool.client("apps", cluster_config_map="cluster") is client
    assert len(store.token_requests) == 1, "one token while it is fresh"


async def test_the_audience_is_the_address_when_not_given(pool: ClientPool, store: Store) -> None:
    generic_cluster(store)
    await pool.client("apps", cluster_config_map="cluster")
    assert store.token_requests == [("apps", "deployer", ("https://remote.example:6443",))]


async def test_the_token_is_renewed_before_it_expires(pool: ClientPool, store: Store) -> None:
    generic_cluster(store)
    client = await pool.client("apps", cluster_config_map="cluster")
    store.now += 3600 * 0.7
    assert bearer(client) == "Bearer token-1", "70% of its life left unused: kept"
    store.now += 3600 * 0.15
    # A request made late in a long reconcile renews it on its way out.
    assert bearer(client) == "Bearer token-2"
    assert len(store.token_requests) == 2
    store.now += 3600 * 0.85
    assert await pool.client("apps", cluster_config_map="cluster") is client
    assert len(store.token_requests) == 3, "renewed when the next reconcile asks, too"
    assert bearer(client) == "Bearer token-3"


async def test_a_changed_cluster_config_map_gets_a_new_client_and_token(
    pool: ClientPool, store: Store
) -> None:
    generic_cluster(store)
    first = await pool.client("apps", cluster_config_map="cluster")
    generic_cluster(store, address="https://other.example:6443")
    second = await pool.client("apps", cluster_config_map="cluster")
    assert second is not first
    assert configuration(second).host == "https://other.example:6443"
    assert bearer(second) == "Bearer token-2"
    await asyncio.sleep(0.2)
    assert await is_closed(first)


@pytest.mark.parametrize("provider", ["aws", "azure", "gcp"])
async def test_cloud_providers_are_refused_by_name(
    pool: ClientPool, store: Store, provider: str
) -> None:
    generic_cluster(store, provider=provider)
    with pytest.raises(ClientError) as refused:
        await pool.client("apps", cluster_config_map="cluster")
    assert refused.value.stalled
    assert refused.value.message == (
        "spec.kubeConfig.configMapRef: ConfigMap 'apps/cluster': key 'provider': "
        f"'{provider}' is a cloud provider, not supported by headwater (supported: generic)"
    )
    assert store.token_requests == []


@pytest.mark.parametrize(
    ("change", "message"),
    [
        ({"provider": ""}, "key 'provider' not found"),
        ({"provider": "vsphere"}, "key 'provider': 'vsphere' is not a provider"),
        ({"address": ""}, "key 'address' not found"),
        ({"address": "http://remote:80"}, "key 'address': 'http://remote:80' is not an https"),
        ({"serviceAccountName": ""}, "key 'serviceAccountName' not found"),
        ({"cluster": "arn:aws:eks:x"}, "key 'cluster' names a cloud provider's cluster"),
    ],
)
async def test_config_map_errors_name_the_config_map_and_key(
    pool: ClientPool, store: Store, change: dict[str, str], message: str
) -> None:
    generic_cluster(store, **change)
    with pytest.raises(ClientError) as error:
        await pool.client("apps", cluster_config_map="cluster")
    assert error.value.message.startswith(
        "spec.kubeConfig.configMapRef: ConfigMap 'apps/cluster': " + message
    ), error.value.message


async def test_a_missing_config_map_is_an_identity_not_found(pool: ClientPool) -> None:
    with pytest.raises(IdentityNotFound) as missing:
        await pool.client("apps", cluster_config_map="cluster")
    assert missing.value.message == (
        "spec.kubeConfig.configMapRef: ConfigMap 'apps/cluster' not found"
    )
    assert not missing.value.stalled


def test_remote_cluster_kubeconfig_carries_the_ca_and_token() -> None:
    remote = RemoteCluster.parse(
        {"provider": "generic", "address": "https://r:6443/", "serviceAccountName": "sa"},
        "ConfigMap 'a/b'",
    )
    assert remote.address == "https://r:6443"
    assert remote.ca_cert is None
    assert "certificate-authority-data" not in remote.kubeconfig("t")
    with_ca = RemoteCluster.parse(
        {"provider": "generic", "address": "https://r", "serviceAccountName": "sa", "ca.crt": CA},
        "ConfigMap 'a/b'",
    )
    assert base64.b64encode(CA.encode()).decode() in with_ca.kubeconfig("t")
