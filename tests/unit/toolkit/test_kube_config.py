from __future__ import annotations

from pathlib import Path

import kubernetes.client
import pytest

from controllers.toolkit.apply.resources import ResourceClient
from controllers.toolkit.runtime.kube import (
    KubeConfigError,
    configuration_from_text,
    load_configuration,
)
from tests.support.cluster import kubeconfig_yaml


def test_one_client_has_connections_for_all_its_workers_and_watches(tmp_path: Path) -> None:
    kubeconfig = tmp_path / "kubeconfig"
    kubeconfig.write_text(kubeconfig_yaml("https://127.0.0.1:6443", {"token": "t"}))
    configuration = load_configuration(str(kubeconfig))
    assert configuration.host == "https://127.0.0.1:6443"
    # HEADWATER_CONCURRENT=4 gives the kustomize controller 16 API workers; the
    # client's own default pool (5 per CPU) would cap them at 10 on 2 cores.
    client = ResourceClient(kubernetes.client.ApiClient(configuration), concurrency=16)
    try:
        assert client.concurrency == 16
    finally:
        client.close()
    assert configuration.connection_pool_maxsize >= 16 + 20, "room for watches too"


def test_a_kubeconfig_from_a_secret_gets_the_same_pool_and_a_clear_error() -> None:
    configuration = configuration_from_text(
        kubeconfig_yaml("https://remote.example:6443", {"token": "t"})
    )
    assert configuration.host == "https://remote.example:6443"
    assert configuration.connection_pool_maxsize >= 16 + 20
    with pytest.raises(KubeConfigError, match="cannot load the kubeconfig"):
        configuration_from_text("not: [a kubeconfig")
    with pytest.raises(KubeConfigError, match="cannot load the kubeconfig"):
        configuration_from_text("apiVersion: v1\nkind: Config\n")
