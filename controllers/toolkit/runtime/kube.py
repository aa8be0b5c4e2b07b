"""Access to the Kubernetes API, shared by our own client calls and kopf.

Credentials are found the way controller-runtime finds them, so headwater
behaves like Flux: an explicit kubeconfig path, then `$KUBECONFIG`, then
the pod's service account when running in a cluster, then
`~/.kube/config`. Kopf is logged in from the same configuration, so kopf's
watches and our client calls always talk to the same server as the same user.
"""

from __future__ import annotations

import asyncio
import base64
import logging
import os
from collections.abc import Awaitable, Callable, Mapping
from typing import Any

import kopf
import kubernetes.client
import kubernetes.config
import yaml
from kubernetes.client.rest import ApiException

log = logging.getLogger(__name__)

_SERVICE_ACCOUNT_TOKEN = "/var/run/secrets/kubernetes.io/serviceaccount/token"
# Pooled connections per ApiClient. The client's default (5 per CPU) is fewer
# than the threads sharing one client: the ResourceClient's workers, one
# long-lived watch per applied kind, and status and event writes. Past the
# pool, each request opens (and then drops) a new TLS connection.
CONNECTION_POOL_SIZE = 64


class KubeConfigError(RuntimeError):
    """No usable credentials were found."""


def in_cluster() -> bool:
    """True when running in a pod with a service account mounted."""
    return bool(os.environ.get("KUBERNETES_SERVICE_HOST")) and os.path.exists(
        _SERVICE_ACCOUNT_TOKEN
    )


def _new_configuration() -> kubernetes.client.Configuration:
    configuration = kubernetes.client.Configuration()
    configuration.connection_pool_maxsize = max(
        CONNECTION_POOL_SIZE, configuration.connection_pool_maxsize or 0
    )
    return configuration


def configuration_from_text(kubeconfig: str) -> kubernetes.client.Configuration:
    """A client configuration from a kubeconfig document (e.g. a Secret's value)."""
    configuration = _new_configuration()
    try:
        loader = kubernetes.config.kube_config.KubeConfigLoader(
            config_dict=yaml.safe_load(kubeconfig)
        )
        loader.load_and_set(configuration)
    except (kubernetes.config.ConfigException, yaml.YAMLError, AttributeError) as exc:
        raise KubeConfigError(f"cannot load the kubeconfig: {exc}") from exc
    return configuration


def load_configuration(kubeconfig: str | None = None) -> kubernetes.client.Configuration:
    """A fresh client configuration; never touches the kubernetes module's global default."""
    configuration = _new_configuration()
    # The kubernetes package reads $KUBECONFIG once at import; read it now instead.
    path = kubeconfig or os.environ.get("KUBECONFIG") or None
    try:
        if path is None and in_cluster():
            kubernetes.config.load_incluster_config(client_configuration=configuration)
            return configuration
        kubernetes.config.load_kube_config(
            config_file=path or os.path.expanduser("~/.kube/config"),
            client_configuration=configuration,
        )
    except (kubernetes.config.ConfigException, OSError) as exc:
        where = path or "~/.kube/config (and not in a cluster)"
        raise KubeConfigError(f"cannot load Kubernetes credentials from {where}: {exc}") from exc
    return configuration


def api_client(
    configuration: kubernetes.client.Configuration | None = None,
) -> kubernetes.client.ApiClient:
    """An ApiClient for our own calls; close it when done (it owns a connection pool)."""
    return kubernetes.client.ApiClient(configuration or load_configuration())


def connection_info(configuration: kubernetes.client.Configuration) -> kopf.ConnectionInfo:
    """Translate a client configuration into kopf's credentials."""
    # get_api_key_with_prefix runs the refresh hook (exec plugins, rotated
    # service-account tokens), so this is the token the client would send now.
    # kubernetes 36 moved bearer tokens from "authorization" to "BearerToken".
    header = configuration.get_api_key_with_prefix(
        "BearerToken"
    ) or configuration.get_api_key_with_prefix("authorization")
    scheme: str | None = None
    token: str | None = None
    if header:
        first, _, rest = str(header).partition(" ")
        scheme, token = (first, rest) if rest else (None, first)
    return kopf.ConnectionInfo(
        server=configuration.host,
        ca_path=configuration.ssl_ca_cert or None,
        insecure=not configuration.verify_ssl,
        username=configuration.username or None,
        password=configuration.password or None,
        scheme=scheme,
        token=token,
        certificate_path=configuration.cert_file or None,
        private_key_path=configuration.key_file or None,
    )


def login(**_: Any) -> kopf.ConnectionInfo:
    """Kopf's login handler: reload credentials each time kopf asks.

    Kopf asks again after a 401, so reloading (rather than caching) picks up
    rotated tokens and refreshed exec-plugin credentials.
    """
    try:
        return connection_info(load_configuration())
    except KubeConfigError as exc:
        # A temporary error: kopf logs one line (no traceback) and retries.
        raise kopf.TemporaryError(str(exc), delay=10) from exc


def register_login(registry: kopf.OperatorRegistry) -> None:
    """Make kopf log in with the same credentials as `api_client()`."""
    kopf.on.login(registry=registry, id="headwater-login")(login)


SecretReader = Callable[[str, str], Awaitable[Mapping[str, bytes] | None]]
ConfigMapReader = Callable[[str, str], Awaitable[Mapping[str, str] | None]]


def secret_reader(api: kubernetes.client.ApiClient) -> SecretReader:
    """`(namespace, name)` -> a Secret's decoded data, None when it does not exist."""
    core = kubernetes.client.CoreV1Api(api)

    async def read_secret(namespace: str, name: str) -> Mapping[str, bytes] | None:
        try:
            secret = await asyncio.to_thread(core.read_namespaced_secret, name, namespace)
        except ApiException as exc:
            if exc.status == 404:
                return None
            raise
        return {key: base64.b64decode(value) for key, value in (secret.data or {}).items()}

    return read_secret


def config_map_reader(api: kubernetes.client.ApiClient) -> ConfigMapReader:
    """`(namespace, name)` -> a ConfigMap's data, None when it does not exist."""
    core = kubernetes.client.CoreV1Api(api)

    async def read_config_map(namespace: str, name: str) -> Mapping[str, str] | None:
        try:
            config_map = await asyncio.to_thread(core.read_namespaced_config_map, name, namespace)
        except ApiException as exc:
            if exc.status == 404:
                return None
            raise
        return dict(config_map.data or {})

    return read_config_map
