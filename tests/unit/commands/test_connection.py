"""The connection follows kubectl: --kubeconfig, --context, and the context's namespace."""

from __future__ import annotations

import argparse
from pathlib import Path

import pytest
import yaml

from controllers.commands import common
from controllers.commands.common import CliError

KUBECONFIG = {
    "apiVersion": "v1",
    "kind": "Config",
    "current-context": "dev",
    "clusters": [
        {"name": "dev", "cluster": {"server": "https://dev.example:6443"}},
        {"name": "prod", "cluster": {"server": "https://prod.example:6443"}},
    ],
    "users": [{"name": "me", "user": {"token": "not-a-real-token"}}],
    "contexts": [
        {"name": "dev", "context": {"cluster": "dev", "user": "me"}},
        {"name": "prod", "context": {"cluster": "prod", "user": "me", "namespace": "shop"}},
    ],
}


def args(path: Path, **flags: str | None) -> argparse.Namespace:
    return argparse.Namespace(kubeconfig=str(path), context=None, namespace=None, **flags)


@pytest.fixture
def kubeconfig(tmp_path: Path) -> Path:
    path = tmp_path / "config"
    path.write_text(yaml.safe_dump(KUBECONFIG))
    return path


def test_current_context_and_default_namespace(kubeconfig: Path) -> None:
    session = common.connect(args(kubeconfig))
    try:
        assert session.api.configuration.host == "https://dev.example:6443"
        assert session.namespace == common.DEFAULT_NAMESPACE
    finally:
        session.close()


def test_context_flag_picks_server_and_namespace(kubeconfig: Path) -> None:
    flags = args(kubeconfig)
    flags.context = "prod"
    session = common.connect(flags)
    try:
        assert session.api.configuration.host == "https://prod.example:6443"
        assert session.namespace == "shop"
    finally:
        session.close()


def test_namespace_flag_wins(kubeconfig: Path) -> None:
    flags = args(kubeconfig)
    flags.context, flags.namespace = "prod", "other"
    session = common.connect(flags)
    try:
        assert session.namespace == "other"
    finally:
        session.close()


def test_unknown_context_is_a_clear_error(kubeconfig: Path) -> None:
    flags = args(kubeconfig)
    flags.context = "staging"
    with pytest.raises(CliError, match="staging"):
        common.connect(flags)


def test_missing_kubeconfig_names_the_file(tmp_path: Path) -> None:
    with pytest.raises(CliError, match=r"cannot load Kubernetes credentials from .*nope"):
        common.connect(args(tmp_path / "nope"))
