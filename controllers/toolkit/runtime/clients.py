"""The API clients a controller applies with, one per identity, kept across reconciles.

A Flux object names who applies its objects; `ClientPool.client` turns that
into a `ResourceClient` and keeps it, so the connection pool and the
discovery cache of each identity outlive one reconcile:

- nothing: the controller's own client;
- `serviceAccountName`: the controller's credentials, impersonating
  `system:serviceaccount:<namespace>:<name>` (RBAC decides what it may do);
- `kubeConfig.secretRef`: a kubeconfig in a Secret, for another cluster. The
  Secret is read on every call; when its text changed (rotated credentials)
  a new client is built and the old one is closed an hour later, since a
  reconcile may still be using it;
- `kubeConfig.configMapRef`: a ConfigMap describing another cluster, Flux's
  `generic` provider: `address` and `ca.crt` of its API server, and a
  ServiceAccount (`serviceAccountName`, in the object's namespace) whose
  token, asked for with the TokenRequest API for `audiences` (the address
  when not set), is the identity. The token is renewed before it expires.
  The cloud providers (`aws`, `azure`, `gcp`) are refused by name.

With a kubeConfig and a `serviceAccountName`, the remote identity impersonates
that ServiceAccount on the remote cluster, as Flux does.

The pool knows no Flux kind: it takes plain values, so every controller
(kustomize, helm) can use it. Its errors are `ReconcileError`s naming the
field, the object and the key.
"""

from __future__ import annotations

import asyncio
import base64
import dataclasses
import hashlib
import logging
import threading
import time
from collections.abc import Callable, Mapping, Sequence
from typing import Any

import kubernetes.client
import yaml
from kubernetes.client.rest import ApiException

from controllers.toolkit.apply.resources import ResourceClient
from controllers.toolkit.runtime import conditions as cond
from controllers.toolkit.runtime import kube
from controllers.toolkit.runtime.fields import UNSUPPORTED_FIELD
from controllers.toolkit.runtime.frame import ReconcileError

log = logging.getLogger(__name__)

# How long the client of a rotated kubeconfig is kept for reconciles still using it.
RETIRED_CLIENT_SECONDS = 3600.0
# The lifetime asked for a ServiceAccount token; it is renewed once this share
# of its lifetime is left (the kubelet renews projected tokens at 80% too).
TOKEN_SECONDS = 3600
TOKEN_RENEW_SHARE = 0.2

GENERIC_PROVIDER = "generic"
CLOUD_PROVIDERS = ("aws", "azure", "gcp")
# The keys of a kubeConfig.configMapRef ConfigMap (Flux's names).
KEY_PROVIDER = "provider"
KEY_ADDRESS = "address"
KEY_CA = "ca.crt"
KEY_AUDIENCES = "audiences"
KEY_SERVICE_ACCOUNT = "serviceAccountName"
KEY_CLUSTER = "cluster"

SECRET_FIELD = "spec.kubeConfig.secretRef"
CONFIG_MAP_FIELD = "spec.kubeConfig.configMapRef"


class ClientError(ReconcileError):
    """The identity to apply as cannot be set up; the message names field, object and key."""

    def __init__(self, message: str, *, stalled: bool = False, reason: str = "") -> None:
        super().__init__(reason or cond.RECONCILIATION_FAILED, message, stalled=stalled)


class IdentityNotFound(ClientError):
    """The ServiceAccount, kubeconfig Secret (or its key) or cluster ConfigMap does not exist."""


@dataclasses.dataclass(frozen=True)
class SecretKeyRef:
    """A Secret holding a kubeconfig under `key` (Flux's default key is `value`)."""

    name: str
    key: str = "value"


@dataclasses.dataclass(frozen=True)
class Token:
    value: str
    expires_at: float  # seconds since the epoch
    issued_at: float


# (namespace, service account, audiences) -> a token; synchronous, it runs on
# the thread that makes a request when the token is due for renewal.
TokenRequester = Callable[[str, str, Sequence[str]], Token]


@dataclasses.dataclass(frozen=True)
class RemoteCluster:
    """What a configMapRef ConfigMap says, checked (Flux's `generic` provider)."""

    address: str
    ca_cert: str | None
    audiences: tuple[str, ...]
    service_account: str

    @classmethod
    def parse(cls, data: Mapping[str, str], where: str) -> RemoteCluster:
        """Check the ConfigMap's keys; `where` names it ("ConfigMap 'ns/name'")."""
        prefix = f"{CONFIG_MAP_FIELD}: {where}"
        provider = (data.get(KEY_PROVIDER) or "").strip()
        if not provider:
            raise ClientError(f"{prefix}: key '{KEY_PROVIDER}' not found")
        if provider != GENERIC_PROVIDER:
            known = provider in CLOUD_PROVIDERS
            raise ClientError(
                f"{prefix}: key '{KEY_PROVIDER}': {provider!r} is "
                + ("a cloud provider, not supported by headwater" if known else "not a provider")
                + f" (supported: {GENERIC_PROVIDER})",
                stalled=True,
                reason=UNSUPPORTED_FIELD,
            )
        if (data.get(KEY_CLUSTER) or "").strip():
            raise ClientError(
                f"{prefix}: key '{KEY_CLUSTER}' names a cloud provider's cluster; "
                f"the {GENERIC_PROVIDER} provider takes '{KEY_ADDRESS}' and '{KEY_CA}'",
                stalled=True,
                reason=UNSUPPORTED_FIELD,
            )
        address = (data.get(KEY_ADDRESS) or "").strip()
        if not address:
            raise ClientError(f"{prefix}: key '{KEY_ADDRESS}' not found")
        if not address.startswith("https://"):
            raise ClientError(f"{prefix}: key '{KEY_ADDRESS}': {address!r} is not an https:// URL")
        account = (data.get(KEY_SERVICE_ACCOUNT) or "").strip()
        if not account:
            raise ClientError(
                f"{prefix}: key '{KEY_SERVICE_ACCOUNT}' not found "
                f"(the {GENERIC_PROVIDER} provider authenticates with that ServiceAccount's token)"
            )
        # One audience a line, as Flux writes them; commas are tolerated.
        audiences = tuple(
            item.strip()
            for line in (data.get(KEY_AUDIENCES) or "").splitlines()
            for item in line.split(",")
            if item.strip()
        )
        return cls(
            address=address.rstrip("/"),
            ca_cert=data.get(KEY_CA) or None,
            audiences=audiences or (address,),
            service_account=account,
        )

    def kubeconfig(self, token: str) -> str:
        """A kubeconfig document for this cluster, authenticating with `token`."""
        cluster: dict[str, Any] = {"server": self.address}
        if self.ca_cert:
            cluster["certificate-authority-data"] = base64.b64encode(self.ca_cert.encode()).decode()
        return yaml.safe_dump(
            {
                "apiVersion": "v1",
                "kind": "Config",
                "clusters": [{"name": "remote", "cluster": cluster}],
                "users": [{"name": "remote", "user": {"token": token}}],
                "contexts": [
                    {"name": "remote", "context": {"cluster": "remote", "user": "remote"}}
                ],
                "current-context": "remote",
            }
        )


def service_account_user(namespace: str, name: str) -> str:
    return f"system:serviceaccount:{namespace}:{name}"


def token_requester(api: kubernetes.client.ApiClient, clock: Callable[[], float]) -> TokenRequester:
    """Tokens from the TokenRequest API (`serviceaccounts/token`, create) of `api`'s cluster."""
    core = kubernetes.client.CoreV1Api(api)

    def request(namespace: str, name: str, audiences: Sequence[str]) -> Token:
        body = kubernetes.client.AuthenticationV1TokenRequest(
            spec=kubernetes.client.V1TokenRequestSpec(
                audiences=list(audiences), expiration_seconds=TOKEN_SECONDS
            )
        )
        issued = clock()
        try:
            answer = core.create_namespaced_service_account_token(name, namespace, body)
        except ApiException as exc:
            if exc.status == 404:
                raise IdentityNotFound(
                    f"{CONFIG_MAP_FIELD}: ServiceAccount '{namespace}/{name}' not found"
                ) from None
            raise
        expires = answer.status.expiration_timestamp
        return Token(
            value=answer.status.token,
            expires_at=expires.timestamp() if expires else issued + TOKEN_SECONDS,
            issued_at=issued,
        )

    return request


class _RenewedToken:
    """A ServiceAccount token kept fresh on a client configuration.

    The client asks `refresh` before every request (the configuration's
    refresh hook, on the requesting thread); the token is renewed once the
    due share of its lifetime is left, so it never reaches its expiry.
    """

    def __init__(
        self, fetch: Callable[[], Token], clock: Callable[[], float], first: Token
    ) -> None:
        self._fetch = fetch
        self._clock = clock
        self._lock = threading.Lock()
        self.token = first

    def due(self) -> bool:
        lifetime = max(self.token.expires_at - self.token.issued_at, 0.0)
        return self._clock() >= self.token.expires_at - lifetime * TOKEN_RENEW_SHARE

    def renew_if_due(self) -> None:
        with self._lock:
            if self.due():
                self.token = self._fetch()

    def refresh(self, configuration: kubernetes.client.Configuration) -> None:
        try:
            self.renew_if_due()
        except Exception as exc:  # the old token may still do; the request will say
            log.warning("renewing a ServiceAccount token failed: %s", exc)
        configuration.api_key["BearerToken"] = self.token.value
        configuration.api_key_prefix["BearerToken"] = "Bearer"


@dataclasses.dataclass
class _Entry:
    source: str  # digest of what the client was built from
    client: ResourceClient
    token: _RenewedToken | None = None


class ClientPool:
    """One `ResourceClient` per identity (see the module docstring), built on first use."""

    def __init__(
        self,
        api: kubernetes.client.ApiClient,
        *,
        read_secret: kube.SecretReader,
        read_config_map: kube.ConfigMapReader,
        concurrency: int = 8,
        request_token: TokenRequester | None = None,
        retire_after: float = RETIRED_CLIENT_SECONDS,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self._api = api
        self._read_secret = read_secret
        self._read_config_map = read_config_map
        self._request_token = request_token or token_requester(api, clock)
        self._retire_after = retire_after
        self._clock = clock
        self._core = kubernetes.client.CoreV1Api(api)
        self.default = ResourceClient(api, concurrency=concurrency)
        self._entries: dict[tuple[str, ...], _Entry] = {}
        self._retired: list[ResourceClient] = []

    async def client(
        self,
        namespace: str,
        *,
        service_account: str | None = None,
        kubeconfig_secret: SecretKeyRef | None = None,
        cluster_config_map: str | None = None,
        account_must_exist: bool = False,
    ) -> ResourceClient:
        """The client to apply with for an object in `namespace`.

        Raises IdentityNotFound for a missing Secret, key, ConfigMap or
        ServiceAccount token, ClientError for content that cannot work. With
        `account_must_exist`, a local `service_account` is looked up first:
        impersonating a deleted account still works, only RBAC refuses it,
        so only a lookup tells "gone" from "denied" (Flux's CanImpersonate).
        """
        user = service_account_user(namespace, service_account) if service_account else None
        if kubeconfig_secret is not None:
            return await self._kubeconfig_client(namespace, kubeconfig_secret, user)
        if cluster_config_map is not None:
            return await self._cluster_client(namespace, cluster_config_map, user)
        if service_account and user:
            if account_must_exist:
                await self._require_service_account(namespace, service_account)
            return self.impersonating(user)
        return self.default

    def impersonating(self, user: str | None) -> ResourceClient:
        """The local cluster as `user` (a full user name), or as the controller for None."""
        if user is None:
            return self.default
        configuration = self._api.configuration
        return self._cached(
            ("impersonate", user), "", lambda: _resource_client(configuration, user)
        )

    def close(self) -> None:
        for client in [self.default, *self._retired, *(e.client for e in self._entries.values())]:
            client.close()
        self._entries.clear()
        self._retired.clear()

    # -- identities ----------------------------------------------------------------------

    async def _kubeconfig_client(
        self, namespace: str, ref: SecretKeyRef, user: str | None
    ) -> ResourceClient:
        where = f"key '{ref.key}' of Secret '{namespace}/{ref.name}'"
        data = await self._read_secret(namespace, ref.name)
        if data is None or ref.key not in data:
            raise IdentityNotFound(f"{SECRET_FIELD}: {where} not found")
        text = data[ref.key].decode("utf-8", "replace")

        def build() -> ResourceClient:
            try:
                configuration = kube.configuration_from_text(text)
            except kube.KubeConfigError as exc:
                raise ClientError(f"{SECRET_FIELD}: {where}: {exc}") from None
            return _resource_client(configuration, user)

        key = ("kubeconfig", namespace, ref.name, ref.key, user or "")
        return self._cached(key, _digest(text), build)

    async def _cluster_client(self, namespace: str, name: str, user: str | None) -> ResourceClient:
        where = f"ConfigMap '{namespace}/{name}'"
        data = await self._read_config_map(namespace, name)
        if data is None:
            raise IdentityNotFound(f"{CONFIG_MAP_FIELD}: {where} not found")
        remote = RemoteCluster.parse(data, where)
        key = ("cluster", namespace, name, user or "")
        source = _digest(repr(remote))
        entry = self._entries.get(key)
        if entry is not None and entry.source == source:
            if entry.token is not None and entry.token.due():
                # Renew here, where a failure is a clean reconcile error.
                await asyncio.to_thread(entry.token.renew_if_due)
            return entry.client

        def fetch() -> Token:
            return self._request_token(namespace, remote.service_account, remote.audiences)

        first = await asyncio.to_thread(fetch)
        token = _RenewedToken(fetch, self._clock, first)

        def build() -> ResourceClient:
            try:
                configuration = kube.configuration_from_text(remote.kubeconfig(first.value))
            except kube.KubeConfigError as exc:
                raise ClientError(f"{CONFIG_MAP_FIELD}: {where}: {exc}") from None
            configuration.refresh_api_key_hook = token.refresh
            token.refresh(configuration)
            return _resource_client(configuration, user)

        client = self._cached(key, source, build)
        self._entries[key].token = token
        return client

    async def _require_service_account(self, namespace: str, name: str) -> None:
        try:
            await asyncio.to_thread(self._core.read_namespaced_service_account, name, namespace)
        except ApiException as exc:
            if exc.status == 404:
                raise IdentityNotFound(f"ServiceAccount '{namespace}/{name}' not found") from None
            raise

    # -- the cache -----------------------------------------------------------------------

    def _cached(
        self, key: tuple[str, ...], source: str, build: Callable[[], ResourceClient]
    ) -> ResourceClient:
        entry = self._entries.get(key)
        if entry is not None and entry.source == source:
            return entry.client
        client = build()
        if entry is not None:
            self._retire(entry.client)
        self._entries[key] = _Entry(source, client)
        return client

    def _retire(self, client: ResourceClient) -> None:
        # The credentials changed. A reconcile may still be using the old
        # client, so it is closed later rather than now.
        self._retired.append(client)

        def close() -> None:
            if client in self._retired:
                self._retired.remove(client)
            client.close()

        asyncio.get_running_loop().call_later(self._retire_after, close)


def _resource_client(
    configuration: kubernetes.client.Configuration, user: str | None
) -> ResourceClient:
    """A client of its own for `configuration`, impersonating `user` when given."""
    api = kubernetes.client.ApiClient(configuration)
    if user is not None:
        api.set_default_header("Impersonate-User", user)
    return ResourceClient(api)


def _digest(text: str) -> str:
    # Only compared, never shown: the kubeconfig text itself is not kept around.
    return hashlib.sha256(text.encode()).hexdigest()


__all__ = [
    "CLOUD_PROVIDERS",
    "GENERIC_PROVIDER",
    "ClientError",
    "ClientPool",
    "IdentityNotFound",
    "RemoteCluster",
    "SecretKeyRef",
    "Token",
    "TokenRequester",
    "service_account_user",
    "token_requester",
]
