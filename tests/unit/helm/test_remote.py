"""spec.kubeConfig.secretRef: the spec, and helm's private kubeconfig file."""

from __future__ import annotations

import asyncio
import stat
from collections.abc import Mapping
from typing import Any

import pytest

from controllers.helm.remote import kubeconfig_file, read_kubeconfig
from controllers.helm.spec import SpecError, parse
from controllers.toolkit.runtime.clients import IdentityNotFound, SecretKeyRef


def release(**spec: Any) -> dict[str, Any]:
    return {
        "metadata": {"name": "blog", "namespace": "apps"},
        "spec": {"chartRef": {"kind": "HelmChart", "name": "wp"}, **spec},
    }


def test_secret_ref_is_read_with_fluxs_default_key() -> None:
    spec = parse(release(kubeConfig={"secretRef": {"name": "prod"}}))
    assert spec.kubeconfig_secret == ("prod", "value")
    keyed = parse(release(kubeConfig={"secretRef": {"name": "prod", "key": "config"}}))
    assert keyed.kubeconfig_secret == ("prod", "config")
    assert parse(release()).kubeconfig_secret is None
    with pytest.raises(SpecError, match=r"spec.kubeConfig.secretRef.name"):
        parse(release(kubeConfig={"secretRef": {"key": "value"}}))


def test_the_lockdown_default_account_is_not_impersonated_remotely() -> None:
    remote = parse(release(kubeConfig={"secretRef": {"name": "prod"}}))
    assert remote.impersonate("apps", "restricted") is None
    assert parse(release()).impersonate("apps", "restricted") == (
        "system:serviceaccount:apps:restricted"
    )
    named = parse(release(kubeConfig={"secretRef": {"name": "prod"}}, serviceAccountName="dep"))
    assert named.impersonate("apps", "restricted") == "system:serviceaccount:apps:dep"


def test_kubeconfig_file_is_private_and_removed_after() -> None:
    async def use() -> None:
        async with kubeconfig_file("apiVersion: v1\nkind: Config\n") as path:
            assert path.read_text() == "apiVersion: v1\nkind: Config\n"
            assert stat.S_IMODE(path.stat().st_mode) == 0o600
            assert stat.S_IMODE(path.parent.stat().st_mode) == 0o700
            seen.append(path)
            raise RuntimeError("the reconcile failed")

    seen: list[Any] = []
    with pytest.raises(RuntimeError):
        asyncio.run(use())
    assert not seen[0].exists() and not seen[0].parent.exists()


def test_a_missing_secret_or_key_is_named() -> None:
    async def read(namespace: str, name: str) -> Mapping[str, bytes] | None:
        return {"value": b"config"} if name == "prod" else None

    assert asyncio.run(read_kubeconfig(read, "apps", SecretKeyRef("prod"))) == "config"
    with pytest.raises(IdentityNotFound, match=r"key 'value' of Secret 'apps/gone' not found"):
        asyncio.run(read_kubeconfig(read, "apps", SecretKeyRef("gone")))
    with pytest.raises(IdentityNotFound, match=r"key 'other' of Secret 'apps/prod' not found"):
        asyncio.run(read_kubeconfig(read, "apps", SecretKeyRef("prod", "other")))
