"""headwater and the real kubeseal against one real cluster, in both directions.

Each test uses a fresh namespace as the controllers' namespace, so the key
Secrets it makes are its own. kubeseal is built from its Go module on first use.
"""

from __future__ import annotations

import asyncio
import base64
import json
import logging
import secrets
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
import yaml
from cryptography import x509
from cryptography.hazmat.primitives.asymmetric import rsa
from kubernetes import client

from controllers.kustomize import decrypt
from controllers.sealing import format as sealing
from controllers.sealing import keys as sealing_keys
from controllers.sealing.format import Scope
from tests.support.cli import run_headwater
from tests.support.cluster import TestCluster, kubectl_json
from tests.support.sealing import run_kubeseal, sealed_secret

pytestmark = pytest.mark.integration

RENEW = 720 * 3600.0
# Values unique to this run, so grepping output for them cannot match by chance.
RUN = secrets.token_hex(6)


def plaintext(label: str) -> str:
    return f"{label}-{RUN}-plaintext"


def secret_manifest(name: str, namespace: str, values: dict[str, str], **extra: Any) -> bytes:
    metadata: dict[str, Any] = {"name": name, "namespace": namespace, **extra}
    manifest = {"apiVersion": "v1", "kind": "Secret", "metadata": metadata, "stringData": values}
    return yaml.safe_dump(manifest).encode()


def ok(result: Any) -> bytes:
    assert result.returncode == 0, result.stderr.decode(errors="replace")
    data: bytes = result.stdout
    return data


def recovery_unseal(kubeseal: Path, private_key: Path, sealed: bytes) -> dict[str, Any]:
    """The Secret kubeseal opens from `sealed` with `private_key`, offline (as in a restore)."""
    opened: dict[str, Any] = json.loads(
        ok(
            run_kubeseal(
                kubeseal,
                "--recovery-unseal",
                "--recovery-private-key",
                str(private_key),
                "-o",
                "json",
                input=sealed,
            )
        )
    )
    return opened


def values_of(secret: dict[str, Any]) -> dict[str, str]:
    return {key: base64.b64decode(value).decode() for key, value in secret["data"].items()}


async def ensure(api_client: client.ApiClient, namespace: str) -> list[sealing_keys.SealingKey]:
    return await sealing_keys.KeyManager(api_client, namespace, renew_period=RENEW).ensure()


def key_secrets(cluster: TestCluster, namespace: str) -> list[dict[str, Any]]:
    listed = kubectl_json(
        cluster, "get", "secrets", "-n", namespace, "-l", sealing_keys.KEY_SELECTOR
    )
    items: list[dict[str, Any]] = listed["items"]
    return items


def dump_keys(cluster: TestCluster, namespace: str, path: Path) -> Path:
    """The key Secrets as a `kubectl get -o yaml` List: what a backup looks like."""
    dump = cluster.kubectl(
        "get", "secrets", "-n", namespace, "-l", sealing_keys.KEY_SELECTOR, "-o", "yaml"
    ).stdout
    path.write_text(dump)
    return path


def fetch_cert(cluster: TestCluster, namespace: str) -> bytes:
    return ok(
        run_headwater(
            "seal",
            "--fetch-cert",
            "--controller-namespace",
            namespace,
            kubeconfig=cluster.kubeconfig,
        )
    )


@dataclass(frozen=True)
class Keyed:
    """A namespace holding one sealing key, shared by the tests that only read it."""

    namespace: str
    cert: Path


@pytest.fixture(scope="module")
def keyed(
    cluster: TestCluster, api_client: client.ApiClient, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Keyed]:
    name = f"sealing-keys-{secrets.token_hex(3)}"
    cluster.kubectl("create", "namespace", name)
    try:
        sealing_keys.ensure_keys(api_client, name, renew_period=RENEW)
        cert = tmp_path_factory.mktemp("keyed") / "cert.pem"
        cert.write_bytes(fetch_cert(cluster, name))
        yield Keyed(namespace=name, cert=cert)
    finally:
        cluster.kubectl("delete", "namespace", name, "--wait=false", check=False)


async def test_key_manager_makes_bitnami_shaped_keys(
    cluster: TestCluster, api_client: client.ApiClient, namespace: str
) -> None:
    keys = await ensure(api_client, namespace)
    assert len(keys) == 1
    # A second pass within the renew period adds nothing.
    assert [key.fingerprint for key in await ensure(api_client, namespace)] == [keys[0].fingerprint]
    (secret,) = key_secrets(cluster, namespace)
    assert secret["type"] == "kubernetes.io/tls"
    assert secret["metadata"]["name"].startswith("sealed-secrets-key")
    assert secret["metadata"]["labels"] == {sealing_keys.KEY_LABEL: "active"}
    assert set(secret["data"]) == {"tls.key", "tls.crt"}
    key_pem = base64.b64decode(secret["data"]["tls.key"])
    assert key_pem.startswith(b"-----BEGIN RSA PRIVATE KEY-----\n")  # PKCS#1, as Go writes it
    certificate = x509.load_pem_x509_certificate(base64.b64decode(secret["data"]["tls.crt"]))
    public = certificate.public_key()
    assert isinstance(public, rsa.RSAPublicKey)
    assert public.key_size == 4096
    assert public.public_numbers() == keys[0].public_key.public_numbers()
    assert certificate.not_valid_after_utc - certificate.not_valid_before_utc == timedelta(
        days=3650
    )
    assert keys[0].source == f"{namespace}/{secret['metadata']['name']}"


async def test_key_manager_loop_creates_the_first_key(
    cluster: TestCluster, api_client: client.ApiClient, namespace: str
) -> None:
    manager = sealing_keys.KeyManager(api_client, namespace, renew_period=RENEW)
    task = asyncio.create_task(manager.run())
    try:
        deadline = asyncio.get_running_loop().time() + 60
        while not await sealing_keys.load_keys(api_client, namespace):
            assert asyncio.get_running_loop().time() < deadline, "no key was created"
            await asyncio.sleep(0.5)
    finally:
        task.cancel()
        await asyncio.gather(task, return_exceptions=True)
    assert len(key_secrets(cluster, namespace)) == 1


async def test_renewal_adds_a_key_and_keeps_the_old_one(
    cluster: TestCluster, api_client: client.ApiClient, namespace: str
) -> None:
    first = await ensure(api_client, namespace)
    # Renewal off: nothing is added however old the key is.
    later = datetime.now(UTC) + timedelta(days=365)
    kept = await asyncio.to_thread(
        sealing_keys.ensure_keys, api_client, namespace, renew_period=0, now=later
    )
    assert len(kept) == 1
    renewed = await asyncio.to_thread(
        sealing_keys.ensure_keys, api_client, namespace, renew_period=RENEW, now=later
    )
    assert len(renewed) == 2
    assert renewed[1].fingerprint == first[0].fingerprint
    assert len(key_secrets(cluster, namespace)) == 2


@pytest.mark.parametrize("scope", list(Scope))
async def test_kubeseal_raw_values_open_in_headwater(
    api_client: client.ApiClient, keyed: Keyed, kubeseal: Path, scope: Scope
) -> None:
    cert = keyed.cert
    value = plaintext(f"raw-{scope.value}")
    sealed_value = ok(
        run_kubeseal(
            kubeseal,
            "--raw",
            "--cert",
            str(cert),
            "--scope",
            scope.value,
            "--name",
            "db",
            "--namespace",
            "team-a",
            input=value.encode(),
        )
    ).decode()
    assert sealed_value.startswith("Ag")
    keys = await sealing_keys.load_keys(api_client, keyed.namespace)
    objects = [sealed_secret("db", "team-a", {"password": sealed_value}, scope)]
    (secret,) = decrypt.unseal_objects(objects, keys)
    assert secret["kind"] == "Secret"
    assert (secret["metadata"]["namespace"], secret["metadata"]["name"]) == ("team-a", "db")
    assert values_of(secret) == {"password": value}


@pytest.mark.parametrize("scope", list(Scope))
async def test_kubeseal_sealed_secrets_open_in_headwater(
    api_client: client.ApiClient, keyed: Keyed, kubeseal: Path, scope: Scope
) -> None:
    cert = keyed.cert
    values = {"username": "admin", "password": plaintext(f"whole-{scope.value}")}
    manifest = secret_manifest(
        "app-credentials", "team-a", values, labels={"app": "web"}, annotations={"owner": "me"}
    )
    output = ok(
        run_kubeseal(
            kubeseal, "--cert", str(cert), "--scope", scope.value, "-o", "yaml", input=manifest
        )
    )
    objects = [obj for obj in yaml.safe_load_all(output) if obj]
    keys = await sealing_keys.load_keys(api_client, keyed.namespace)
    (secret,) = decrypt.unseal_objects(objects, keys)
    assert values_of(secret) == values
    assert secret["metadata"]["labels"] == {"app": "web"}
    assert secret["metadata"]["annotations"]["owner"] == "me"
    assert secret["metadata"]["name"] == "app-credentials"
    assert secret["metadata"]["namespace"] == "team-a"


@pytest.mark.parametrize("scope", list(Scope))
async def test_headwater_sealed_secrets_open_in_kubeseal(
    cluster: TestCluster, keyed: Keyed, kubeseal: Path, tmp_path: Path, scope: Scope
) -> None:
    namespace = keyed.namespace
    values = {"token": plaintext(f"hw-{scope.value}")}
    manifest = secret_manifest("api", "team-b", values, labels={"tier": "backend"})
    sealed_yaml = ok(
        run_headwater(
            "seal",
            "--controller-namespace",
            namespace,
            "--scope",
            scope.value,
            input=manifest,
            kubeconfig=cluster.kubeconfig,
        )
    )
    assert values["token"].encode() not in sealed_yaml
    backup = dump_keys(cluster, namespace, tmp_path / "keys.yaml")
    opened = recovery_unseal(kubeseal, backup, sealed_yaml)
    assert values_of(opened) == values
    assert opened["metadata"]["labels"] == {"tier": "backend"}
    assert (opened["metadata"]["namespace"], opened["metadata"]["name"]) == ("team-b", "api")


@pytest.mark.parametrize("scope", list(Scope))
async def test_headwater_raw_values_open_in_kubeseal(
    cluster: TestCluster, keyed: Keyed, kubeseal: Path, tmp_path: Path, scope: Scope
) -> None:
    namespace = keyed.namespace
    value = plaintext(f"hw-raw-{scope.value}")
    sealed_value = ok(
        run_headwater(
            "seal",
            "--raw",
            "--controller-namespace",
            namespace,
            "--scope",
            scope.value,
            "--name",
            "cache",
            "--namespace",
            "team-c",
            input=value.encode(),
            kubeconfig=cluster.kubeconfig,
        )
    ).decode()
    # kubeseal opens SealedSecrets, not bare values: wrap it as a user would.
    wrapped = json.dumps(sealed_secret("cache", "team-c", {"value": sealed_value}, scope))
    pem_key = tmp_path / "key.pem"
    secret = key_secrets(cluster, namespace)[0]
    pem_key.write_bytes(base64.b64decode(secret["data"]["tls.key"]))
    opened = recovery_unseal(kubeseal, pem_key, wrapped.encode())
    assert values_of(opened) == {"value": value}


async def test_strict_scope_refuses_moved_values(
    cluster: TestCluster,
    api_client: client.ApiClient,
    keyed: Keyed,
    kubeseal: Path,
    tmp_path: Path,
) -> None:
    cert = keyed.cert
    value = plaintext("strict")
    manifest = secret_manifest("db", "team-a", {"password": value})
    original = yaml.safe_load(
        ok(run_kubeseal(kubeseal, "--cert", str(cert), "-o", "yaml", input=manifest))
    )
    keys = await sealing_keys.load_keys(api_client, keyed.namespace)
    assert values_of(decrypt.unseal_objects([original], keys)[0]) == {"password": value}

    renamed = json.loads(json.dumps(original))
    renamed["metadata"]["name"] = "db-copy"
    moved = json.loads(json.dumps(original))
    moved["metadata"]["namespace"] = "team-b"
    for tampered, where in ((renamed, "team-a/db-copy"), (moved, "team-b/db")):
        with pytest.raises(decrypt.DecryptionError) as caught:
            decrypt.unseal_objects([tampered], keys)
        assert caught.value.reason == "DecryptionFailed"
        assert f"SealedSecret {where}: no key could decrypt encryptedData[password]" in str(
            caught.value
        )
        assert value not in str(caught.value)

    # kubeseal agrees: the moved value does not open there either.
    backup = dump_keys(cluster, keyed.namespace, tmp_path / "keys.yaml")
    refused = run_kubeseal(
        kubeseal,
        "--recovery-unseal",
        "--recovery-private-key",
        str(backup),
        input=json.dumps(moved).encode(),
    )
    assert refused.returncode != 0
    assert b"no key could decrypt secret" in refused.stderr


async def test_rotation_old_values_open_new_values_use_new_key(
    cluster: TestCluster,
    api_client: client.ApiClient,
    namespace: str,
    kubeseal: Path,
    tmp_path: Path,
) -> None:
    (old_key,) = await ensure(api_client, namespace)
    old_cert = fetch_cert(cluster, namespace)
    assert old_cert == old_key.cert_pem()
    old_value = plaintext("before-rotation")
    old_sealed = yaml.safe_load(
        ok(
            run_headwater(
                "seal",
                "--controller-namespace",
                namespace,
                input=secret_manifest("db", "app", {"password": old_value}),
                kubeconfig=cluster.kubeconfig,
            )
        )
    )

    rotated = run_headwater(
        "keys", "rotate", "--controller-namespace", namespace, kubeconfig=cluster.kubeconfig
    )
    assert b"created sealing key " + namespace.encode() in ok(rotated)
    assert len(key_secrets(cluster, namespace)) == 2
    new_cert = fetch_cert(cluster, namespace)
    assert new_cert != old_cert

    keys = await sealing_keys.load_keys(api_client, namespace)
    assert len(keys) == 2
    new_key = keys[0]
    assert keys[1].fingerprint == old_key.fingerprint
    assert new_key.cert_pem() == new_cert

    new_value = plaintext("after-rotation")
    new_sealed = yaml.safe_load(
        ok(
            run_headwater(
                "seal",
                "--controller-namespace",
                namespace,
                input=secret_manifest("api", "app", {"token": new_value}),
                kubeconfig=cluster.kubeconfig,
            )
        )
    )
    opened = decrypt.unseal_objects([old_sealed, new_sealed], keys)
    assert values_of(opened[0]) == {"password": old_value}
    assert values_of(opened[1]) == {"token": new_value}
    # Sealed with the new key alone.
    assert values_of(decrypt.unseal_objects([new_sealed], [new_key])[0]) == {"token": new_value}
    with pytest.raises(decrypt.DecryptionError):
        decrypt.unseal_objects([new_sealed], [keys[1]])
    # A specific key Secret, as spec.decryption.secretRef names it.
    old_name = keys[1].source.split("/", 1)[1]
    only_old = await sealing_keys.load_keys(api_client, namespace, old_name)
    assert values_of(decrypt.unseal_objects([old_sealed], only_old)[0]) == {"password": old_value}
    with pytest.raises(decrypt.DecryptionError) as caught:
        decrypt.unseal_objects([new_sealed], only_old)
    assert f"keys tried: {keys[1].source} (" in str(caught.value)

    # kubeseal, with the cert the cluster now serves, seals for the new key too.
    cert = tmp_path / "cert.pem"
    cert.write_bytes(new_cert)
    raw = ok(
        run_kubeseal(kubeseal, "--raw", "--cert", str(cert), "--scope", "cluster-wide", input=b"x")
    ).decode()
    assert (
        sealing.unseal_value(
            [new_key.private_key], raw, namespace="", name="", scope=Scope.CLUSTER_WIDE
        )
        == b"x"
    )


async def test_missing_key_secret_is_named(api_client: client.ApiClient, namespace: str) -> None:
    with pytest.raises(sealing_keys.SealingKeyError, match=f"{namespace}/nope not found"):
        await sealing_keys.load_keys(api_client, namespace, "nope")
    assert await sealing_keys.load_keys(api_client, namespace) == []


async def test_no_secret_value_in_errors_or_logs(
    cluster: TestCluster,
    api_client: client.ApiClient,
    namespace: str,
    kubeseal: Path,
    tmp_path: Path,
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.DEBUG)
    value = plaintext("never-shown")
    seen: list[str] = []

    await ensure(api_client, namespace)
    sealed_yaml = ok(
        run_headwater(
            "seal",
            "--controller-namespace",
            namespace,
            input=secret_manifest("db", "app", {"password": value}),
            kubeconfig=cluster.kubeconfig,
        )
    )
    sealed = yaml.safe_load(sealed_yaml)
    sealed_file = tmp_path / "sealed.yaml"
    sealed_file.write_bytes(sealed_yaml)

    # Decryption failures: moved, and with a key that is not the cluster's.
    sealed["metadata"]["namespace"] = "elsewhere"
    keys = await sealing_keys.load_keys(api_client, namespace)
    with pytest.raises(decrypt.DecryptionError) as caught:
        decrypt.unseal_objects([sealed], keys)
    seen.append(str(caught.value))
    private_key, certificate = sealing_keys.generate_key(key_size=2048)
    stranger = tmp_path / "stranger.yaml"
    stranger.write_text(yaml.safe_dump(sealing_keys.key_secret("x", private_key, certificate)))
    for result in (
        run_headwater("keys", "recover", "--key", str(stranger), "-f", str(sealed_file)),
        # Input that does not parse, with the value on the offending line.
        run_headwater(
            "seal",
            "--controller-namespace",
            namespace,
            input=f"kind: Secret\nstringData:\n  password: {value}: oops\n".encode(),
            kubeconfig=cluster.kubeconfig,
        ),
        run_headwater(
            "seal",
            "--controller-namespace",
            namespace,
            input=json.dumps(
                {"kind": "Secret", "metadata": {"name": "a"}, "data": {"password": value}}
            ).encode(),
            kubeconfig=cluster.kubeconfig,
        ),
    ):
        assert result.returncode != 0
        seen.append(result.stdout.decode(errors="replace") + result.stderr.decode(errors="replace"))
    assert all(text.strip() for text in seen)

    # A successful round with keys created and read, logged at debug level.
    await sealing_keys.KeyManager(api_client, namespace, renew_period=RENEW).ensure()
    opened = decrypt.unseal_objects([yaml.safe_load(sealed_yaml)], keys)
    assert values_of(opened[0]) == {"password": value}

    seen.append(caplog.text)
    encoded = base64.b64encode(value.encode()).decode()
    for text in seen:
        assert value not in text
        assert encoded not in text
        assert "PRIVATE KEY" not in text
