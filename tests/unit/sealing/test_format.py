"""Sealed secrets without a cluster: the cipher, scopes, objects, keys and the decrypt step.

The golden files in data/sealing were written once by the real kubeseal
(see data/sealing/README.md), so these tests pin headwater to its bytes.
"""

from __future__ import annotations

import base64
import json
import shutil
import subprocess
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
import yaml
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import padding, rsa

from controllers.kustomize import decrypt
from controllers.sealing import format as sealing
from controllers.sealing import keys as sealing_keys
from controllers.sealing.format import Scope
from controllers.toolkit.runtime.settings import Settings, SettingsError

DATA = Path(__file__).parent / "data" / "sealing"
GOLDEN_SECRET_VALUES = {"username": b"admin", "password": b"correct horse battery staple"}


@pytest.fixture(scope="module")
def golden_key() -> rsa.RSAPrivateKey:
    key = serialization.load_pem_private_key((DATA / "key.pem").read_bytes(), password=None)
    assert isinstance(key, rsa.RSAPrivateKey)
    return key


@pytest.fixture(scope="module")
def key() -> rsa.RSAPrivateKey:
    # 2048 bits keeps the suite fast; the golden key covers 4096.
    return rsa.generate_private_key(public_exponent=65537, key_size=2048)


@pytest.fixture(scope="module")
def other_key() -> rsa.RSAPrivateKey:
    return rsa.generate_private_key(public_exponent=65537, key_size=2048)


def _load(name: str) -> dict[str, Any]:
    document: dict[str, Any] = yaml.safe_load((DATA / name).read_text())
    return document


def _values(secret: dict[str, Any]) -> dict[str, bytes]:
    return {key: base64.b64decode(value) for key, value in secret["data"].items()}


def _secret(**extra: Any) -> dict[str, Any]:
    secret: dict[str, Any] = {
        "apiVersion": "v1",
        "kind": "Secret",
        "metadata": {"name": "db", "namespace": "app"},
        "stringData": {"password": "hunter2"},
    }
    secret.update(extra)
    return secret


# --- golden vectors from kubeseal ----------------------------------------------------


@pytest.mark.parametrize("scope", list(Scope))
def test_kubeseal_raw_values_open(golden_key: rsa.RSAPrivateKey, scope: Scope) -> None:
    sealed = (DATA / f"raw-{scope.value}.txt").read_text()
    # A 4096-bit key wraps into 512 bytes: the 0x0200 prefix is why values start "Ag".
    assert sealed.startswith("Ag")
    value = sealing.unseal_value(
        [golden_key], sealed, namespace="team-a", name="db-credentials", scope=scope
    )
    assert value == f"golden value, {scope.value} scope".encode()


@pytest.mark.parametrize("scope", list(Scope))
def test_kubeseal_sealed_secrets_open(golden_key: rsa.RSAPrivateKey, scope: Scope) -> None:
    sealed = _load(f"sealedsecret-{scope.value}.yaml")
    secret = sealing.unseal_sealed_secret(sealed, [golden_key])
    assert _values(secret) == GOLDEN_SECRET_VALUES
    assert secret["metadata"]["name"] == "db-credentials"
    assert secret["metadata"]["namespace"] == "team-a"
    assert secret["metadata"]["labels"] == {"app.kubernetes.io/name": "db"}
    assert secret["metadata"]["annotations"]["team"] == "a"
    assert secret["type"] == "kubernetes.io/basic-auth"
    assert secret["immutable"] is True


def test_golden_strict_value_does_not_open_under_another_scope(
    golden_key: rsa.RSAPrivateKey,
) -> None:
    sealed = (DATA / "raw-strict.txt").read_text()
    for scope in (Scope.NAMESPACE_WIDE, Scope.CLUSTER_WIDE):
        with pytest.raises(sealing.UnsealError):
            sealing.unseal_value(
                [golden_key], sealed, namespace="team-a", name="db-credentials", scope=scope
            )


def test_golden_cluster_wide_sealed_secret_opens_in_any_namespace(
    golden_key: rsa.RSAPrivateKey,
) -> None:
    sealed = _load("sealedsecret-cluster-wide.yaml")
    sealed["metadata"]["namespace"] = "elsewhere"
    sealed["metadata"]["name"] = "renamed"
    secret = sealing.unseal_sealed_secret(sealed, [golden_key])
    assert secret["metadata"]["namespace"] == "elsewhere"
    assert secret["metadata"]["name"] == "renamed"
    assert _values(secret) == GOLDEN_SECRET_VALUES


# --- the cipher and labels ----------------------------------------------------------


def test_labels_are_kubeseals() -> None:
    assert sealing.encryption_label("ns", "name", Scope.STRICT) == b"ns/name"
    assert sealing.encryption_label("ns", "name", Scope.NAMESPACE_WIDE) == b"ns"
    assert sealing.encryption_label("ns", "name", Scope.CLUSTER_WIDE) == b""


def test_byte_layout_and_label(key: rsa.RSAPrivateKey) -> None:
    sealed = sealing.seal_value(
        key.public_key(), b"value", namespace="ns", name="db", scope=Scope.STRICT
    )
    blob = base64.b64decode(sealed, validate=True)
    rsa_length = int.from_bytes(blob[:2], "big")
    assert rsa_length == 256  # 2048-bit key
    # The RSA part opens with exactly the label "ns/db" under OAEP-SHA256/MGF1-SHA256...
    oaep = padding.OAEP(
        mgf=padding.MGF1(algorithm=hashes.SHA256()), algorithm=hashes.SHA256(), label=b"ns/db"
    )
    session_key = key.decrypt(blob[2 : 2 + rsa_length], oaep)
    assert len(session_key) == 32
    # ...and the rest is AES-256-GCM: plaintext plus a 16-byte tag.
    assert len(blob) - 2 - rsa_length == len(b"value") + 16
    wrong = padding.OAEP(
        mgf=padding.MGF1(algorithm=hashes.SHA256()), algorithm=hashes.SHA256(), label=b"ns"
    )
    with pytest.raises(ValueError):
        key.decrypt(blob[2 : 2 + rsa_length], wrong)


@pytest.mark.parametrize("scope", list(Scope))
def test_value_round_trip(key: rsa.RSAPrivateKey, scope: Scope) -> None:
    value = bytes(range(256)) * 3
    sealed = sealing.seal_value(key.public_key(), value, namespace="ns", name="db", scope=scope)
    assert sealing.unseal_value([key], sealed, namespace="ns", name="db", scope=scope) == value


def test_each_seal_is_fresh(key: rsa.RSAPrivateKey) -> None:
    first = sealing.seal_value(key.public_key(), b"v", namespace="n", name="a", scope=Scope.STRICT)
    second = sealing.seal_value(key.public_key(), b"v", namespace="n", name="a", scope=Scope.STRICT)
    assert first != second


def test_wrong_key_refused(key: rsa.RSAPrivateKey, other_key: rsa.RSAPrivateKey) -> None:
    sealed = sealing.seal_value(
        key.public_key(), b"v", namespace="n", name="a", scope=Scope.CLUSTER_WIDE
    )
    with pytest.raises(sealing.UnsealError, match="no key could decrypt"):
        sealing.unseal_value([other_key], sealed, namespace="n", name="a", scope=Scope.CLUSTER_WIDE)
    # Any one of several keys is enough.
    assert (
        sealing.unseal_value(
            [other_key, key], sealed, namespace="n", name="a", scope=Scope.CLUSTER_WIDE
        )
        == b"v"
    )


def test_wrong_key_size_refused(golden_key: rsa.RSAPrivateKey, key: rsa.RSAPrivateKey) -> None:
    sealed = (DATA / "raw-cluster-wide.txt").read_text()
    with pytest.raises(sealing.UnsealError):
        sealing.unseal_value([key], sealed, namespace="x", name="y", scope=Scope.CLUSTER_WIDE)


def test_strict_refuses_other_name_or_namespace(key: rsa.RSAPrivateKey) -> None:
    sealed = sealing.seal_value(
        key.public_key(), b"v", namespace="team-a", name="db", scope=Scope.STRICT
    )
    for namespace, name in (("team-b", "db"), ("team-a", "db2"), ("team", "a/db")):
        with pytest.raises(sealing.UnsealError):
            sealing.unseal_value([key], sealed, namespace=namespace, name=name, scope=Scope.STRICT)


def test_namespace_wide_allows_other_names_only(key: rsa.RSAPrivateKey) -> None:
    sealed = sealing.seal_value(
        key.public_key(), b"v", namespace="team-a", name="db", scope=Scope.NAMESPACE_WIDE
    )
    opened = sealing.unseal_value(
        [key], sealed, namespace="team-a", name="other", scope=Scope.NAMESPACE_WIDE
    )
    assert opened == b"v"
    with pytest.raises(sealing.UnsealError):
        sealing.unseal_value(
            [key], sealed, namespace="team-b", name="db", scope=Scope.NAMESPACE_WIDE
        )


@pytest.mark.parametrize("where", ["prefix", "rsa", "aes", "tag", "truncated", "extended"])
def test_tampered_ciphertext_refused(key: rsa.RSAPrivateKey, where: str) -> None:
    sealed = sealing.seal_value(
        key.public_key(), b"secret-value", namespace="n", name="a", scope=Scope.STRICT
    )
    blob = bytearray(base64.b64decode(sealed))
    if where == "prefix":
        blob[1] ^= 0x01
    elif where == "rsa":
        blob[10] ^= 0x01
    elif where == "aes":
        blob[2 + 256] ^= 0x01
    elif where == "tag":
        blob[-1] ^= 0x01
    elif where == "truncated":
        del blob[-1]
    else:
        blob.append(0)
    tampered = base64.b64encode(bytes(blob)).decode()
    with pytest.raises(sealing.UnsealError) as caught:
        sealing.unseal_value([key], tampered, namespace="n", name="a", scope=Scope.STRICT)
    assert "secret-value" not in str(caught.value)


def test_not_base64_and_too_short() -> None:
    with pytest.raises(sealing.SealingError, match="not valid base64"):
        sealing.unseal_value([], "not base64!", namespace="n", name="a", scope=Scope.STRICT)
    with pytest.raises(sealing.UnsealError, match="too short"):
        sealing.unseal_value([], "AA==", namespace="n", name="a", scope=Scope.STRICT)


def test_scope_annotations_precedence() -> None:
    cluster = sealing.CLUSTER_WIDE_ANNOTATION
    namespace = sealing.NAMESPACE_WIDE_ANNOTATION
    assert sealing.scope_from_annotations(None) is Scope.STRICT
    assert sealing.scope_from_annotations({namespace: "true"}) is Scope.NAMESPACE_WIDE
    assert sealing.scope_from_annotations({cluster: "true"}) is Scope.CLUSTER_WIDE
    # Cluster-wide is checked first, as in kubeseal.
    assert sealing.scope_from_annotations({cluster: "true", namespace: "true"}) is (
        Scope.CLUSTER_WIDE
    )
    # Only the exact string "true" counts.
    for value in ("True", "yes", "1", ""):
        assert sealing.scope_from_annotations({cluster: value, namespace: value}) is Scope.STRICT
    assert sealing.scope_from_annotations({cluster: "false", namespace: "true"}) is (
        Scope.NAMESPACE_WIDE
    )


def test_scope_parse() -> None:
    assert Scope.parse("namespace-wide") is Scope.NAMESPACE_WIDE
    with pytest.raises(sealing.SealingError, match="strict, namespace-wide, cluster-wide"):
        Scope.parse("global")


# --- whole Secrets -----------------------------------------------------------------


def test_secret_round_trip_keeps_template(key: rsa.RSAPrivateKey) -> None:
    secret = _secret(
        type="kubernetes.io/basic-auth",
        immutable=True,
        data={"username": base64.b64encode(b"admin").decode()},
    )
    secret["metadata"].update(
        labels={"app": "db"},
        annotations={
            "note": "kept",
            "kubectl.kubernetes.io/last-applied-configuration": '{"stringData": "hunter2"}',
        },
        uid="1234",
        resourceVersion="99",
        creationTimestamp="2026-01-01T00:00:00Z",
        managedFields=[{"manager": "kubectl"}],
    )
    sealed = sealing.seal_secret(secret, key.public_key())
    assert sealed["apiVersion"] == "bitnami.com/v1alpha1"
    assert sealed["kind"] == "SealedSecret"
    assert sealed["metadata"] == {"name": "db", "namespace": "app"}
    template = sealed["spec"]["template"]
    assert template["type"] == "kubernetes.io/basic-auth"
    assert template["immutable"] is True
    assert template["metadata"] == {
        "name": "db",
        "namespace": "app",
        "labels": {"app": "db"},
        "annotations": {"note": "kept"},
    }
    assert set(sealed["spec"]["encryptedData"]) == {"username", "password"}
    assert "hunter2" not in json.dumps(sealed)

    opened = sealing.unseal_sealed_secret(sealed, [key])
    assert _values(opened) == {"username": b"admin", "password": b"hunter2"}
    assert opened["metadata"] == template["metadata"]
    assert opened["type"] == "kubernetes.io/basic-auth"
    assert opened["immutable"] is True


def test_string_data_wins_over_data(key: rsa.RSAPrivateKey) -> None:
    secret = _secret(data={"password": base64.b64encode(b"old").decode()})
    opened = sealing.unseal_sealed_secret(sealing.seal_secret(secret, key.public_key()), [key])
    assert _values(opened) == {"password": b"hunter2"}


@pytest.mark.parametrize("scope", list(Scope))
def test_secret_scope_annotations_written_both_places(key: rsa.RSAPrivateKey, scope: Scope) -> None:
    sealed = sealing.seal_secret(_secret(), key.public_key(), scope=scope)
    expected = sealing.with_scope_annotations({}, scope)
    assert sealed["metadata"].get("annotations", {}) == expected
    assert sealed["spec"]["template"]["metadata"].get("annotations", {}) == expected
    assert _values(sealing.unseal_sealed_secret(sealed, [key])) == {"password": b"hunter2"}


def test_explicit_scope_overrides_annotations(key: rsa.RSAPrivateKey) -> None:
    secret = _secret()
    secret["metadata"]["annotations"] = {sealing.CLUSTER_WIDE_ANNOTATION: "true"}
    sealed = sealing.seal_secret(secret, key.public_key(), scope=Scope.STRICT)
    assert "annotations" not in sealed["metadata"]
    moved = json.loads(json.dumps(sealed))
    moved["metadata"]["namespace"] = "elsewhere"
    with pytest.raises(sealing.UnsealFailure):
        sealing.unseal_sealed_secret(moved, [key])


def test_unseal_scope_comes_from_the_sealed_secrets_own_annotations(
    key: rsa.RSAPrivateKey,
) -> None:
    # Claiming cluster-wide in the template alone must not widen a strict value.
    sealed = sealing.seal_secret(_secret(), key.public_key())
    sealed["spec"]["template"]["metadata"]["annotations"] = {
        sealing.CLUSTER_WIDE_ANNOTATION: "true"
    }
    sealed["metadata"]["namespace"] = "elsewhere"
    with pytest.raises(sealing.UnsealFailure):
        sealing.unseal_sealed_secret(sealed, [key])
    # And claiming it on the SealedSecret changes the label, so that fails too.
    sealed["metadata"]["namespace"] = "app"
    sealed["metadata"]["annotations"] = {sealing.CLUSTER_WIDE_ANNOTATION: "true"}
    with pytest.raises(sealing.UnsealFailure):
        sealing.unseal_sealed_secret(sealed, [key])


def test_strict_sealed_secret_moved_is_refused_and_named(key: rsa.RSAPrivateKey) -> None:
    sealed = sealing.seal_secret(_secret(), key.public_key())
    sealed["metadata"]["name"] = "stolen"
    with pytest.raises(sealing.UnsealFailure) as caught:
        sealing.unseal_sealed_secret(sealed, [key])
    assert str(caught.value).startswith("SealedSecret app/stolen: cannot unseal password")
    assert caught.value.data_keys == ("password",)
    assert "hunter2" not in str(caught.value)


def test_name_and_namespace_forced_from_sealed_secret(key: rsa.RSAPrivateKey) -> None:
    sealed = sealing.seal_secret(_secret(), key.public_key(), scope=Scope.NAMESPACE_WIDE)
    sealed["metadata"]["name"] = "renamed"
    sealed["spec"]["template"]["metadata"]["name"] = "something-else"
    sealed["spec"]["template"]["metadata"]["namespace"] = "kube-system"
    opened = sealing.unseal_sealed_secret(sealed, [key])
    assert opened["metadata"]["name"] == "renamed"
    assert opened["metadata"]["namespace"] == "app"


def test_default_namespace_for_sealed_secret_without_one(key: rsa.RSAPrivateKey) -> None:
    sealed = sealing.seal_secret(_secret(), key.public_key())
    del sealed["metadata"]["namespace"]
    with pytest.raises(sealing.SealingError, match="needs a namespace"):
        sealing.unseal_sealed_secret(sealed, [key])
    opened = sealing.unseal_sealed_secret(sealed, [key], default_namespace="app")
    assert opened["metadata"]["namespace"] == "app"
    with pytest.raises(sealing.UnsealFailure):
        sealing.unseal_sealed_secret(sealed, [key], default_namespace="other")


def test_seal_secret_input_errors(key: rsa.RSAPrivateKey) -> None:
    public = key.public_key()
    with pytest.raises(sealing.SealingError, match=r"missing metadata\.name"):
        sealing.seal_secret({"kind": "Secret", "stringData": {"a": "b"}}, public)
    with pytest.raises(sealing.SealingError, match="must declare a namespace"):
        secret = _secret()
        del secret["metadata"]["namespace"]
        sealing.seal_secret(secret, public)
    with pytest.raises(sealing.SealingError, match="expected a v1 Secret"):
        sealing.seal_secret({"apiVersion": "v1", "kind": "ConfigMap"}, public)
    with pytest.raises(sealing.SealingError, match="data is empty"):
        sealing.seal_secret(_secret(stringData={}), public)
    empty = sealing.seal_secret(_secret(stringData={}), public, allow_empty=True)
    assert empty["spec"]["encryptedData"] == {}
    with pytest.raises(sealing.SealingError, match=r"data\[token\] is not valid base64") as caught:
        sealing.seal_secret(_secret(data={"token": "plain-secret!"}), public)
    assert "plain-secret" not in str(caught.value)


def test_cluster_wide_secret_needs_no_namespace(key: rsa.RSAPrivateKey) -> None:
    secret = _secret()
    del secret["metadata"]["namespace"]
    sealed = sealing.seal_secret(secret, key.public_key(), scope=Scope.CLUSTER_WIDE, namespace="x")
    assert "namespace" not in sealed["metadata"]
    opened = sealing.unseal_sealed_secret(sealed, [key], default_namespace="anywhere")
    assert opened["metadata"]["namespace"] == "anywhere"


def test_v1_data_format(key: rsa.RSAPrivateKey) -> None:
    inner = {
        "apiVersion": "v1",
        "kind": "Secret",
        "metadata": {"name": "db", "namespace": "app", "labels": {"v": "1"}},
        "type": "Opaque",
        "data": {"password": base64.b64encode(b"hunter2").decode()},
    }
    blob = sealing.hybrid_encrypt(key.public_key(), json.dumps(inner).encode(), b"app/db")
    sealed: dict[str, Any] = {
        "apiVersion": sealing.API_VERSION,
        "kind": sealing.KIND,
        "metadata": {"name": "db", "namespace": "app"},
        "spec": {"data": base64.b64encode(blob).decode()},
    }
    opened = sealing.unseal_sealed_secret(sealed, [key])
    assert _values(opened) == {"password": b"hunter2"}
    assert opened["metadata"]["labels"] == {"v": "1"}
    assert opened["type"] == "Opaque"
    with pytest.raises(sealing.SealingError, match="deprecated"):
        sealing.unseal_sealed_secret(sealed, [key], accept_v1_data=False)
    sealed["spec"]["encryptedData"] = {"x": "AA=="}
    with pytest.raises(sealing.SealingError, match="at the same time"):
        sealing.unseal_sealed_secret(sealed, [key])


def test_template_data_rendering(key: rsa.RSAPrivateKey) -> None:
    secret = _secret(stringData={"user": "admin", "password": "hunter2"})
    sealed = sealing.seal_secret(secret, key.public_key())
    sealed["spec"]["template"]["data"] = {
        "dsn": 'postgres://{{ .user }}:{{ index . "password" }}@db/app',
        "static": "plain text",
    }
    values = _values(sealing.unseal_sealed_secret(sealed, [key]))
    assert values["dsn"] == b"postgres://admin:hunter2@db/app"
    assert values["static"] == b"plain text"
    sealed["spec"]["template"]["data"] = {"dsn": "{{ .password | b64enc }}"}
    with pytest.raises(sealing.SealingError, match=r"template.data\[dsn\]: unsupported") as caught:
        sealing.unseal_sealed_secret(sealed, [key])
    assert "hunter2" not in str(caught.value)
    sealed["spec"]["template"]["data"] = {"dsn": "{{ .missing }}"}
    with pytest.raises(sealing.SealingError, match="'missing'"):
        sealing.unseal_sealed_secret(sealed, [key])


def test_malformed_sealed_secrets_are_named(key: rsa.RSAPrivateKey) -> None:
    base = sealing.seal_secret(_secret(), key.public_key())
    broken = json.loads(json.dumps(base))
    broken["spec"]["encryptedData"]["password"] = 42
    with pytest.raises(sealing.SealingError, match=r"app/db: spec.encryptedData\[password\]"):
        sealing.unseal_sealed_secret(broken, [key])
    broken["spec"]["encryptedData"]["password"] = "%%%"
    with pytest.raises(sealing.SealingError, match="not valid base64"):
        sealing.unseal_sealed_secret(broken, [key])
    with pytest.raises(sealing.SealingError, match=r"without metadata\.name"):
        sealing.unseal_sealed_secret({"metadata": {}, "spec": {}}, [key])


# --- certificates and keys -----------------------------------------------------------


def test_generated_key_and_certificate_look_like_bitnamis() -> None:
    now = datetime(2026, 3, 1, 12, 0, 0, tzinfo=UTC)
    private_key, certificate = sealing_keys.generate_key(key_size=2048, now=now)
    assert private_key.key_size == 2048
    assert certificate.not_valid_before_utc == now
    assert certificate.not_valid_after_utc == now + timedelta(days=3650)
    assert certificate.subject == certificate.issuer == x509.Name([])
    assert 0 < certificate.serial_number < 2**128
    certificate.verify_directly_issued_by(certificate)  # self-signed
    der = certificate.public_bytes(serialization.Encoding.DER)
    # keyUsage (2.5.29.15), critical, encipherOnly only: what Go writes for Bitnami.
    assert bytes.fromhex("0603551d0f0101ff040403020001") in der
    assert (
        sealing.public_key_from_cert(
            certificate.public_bytes(serialization.Encoding.PEM), now=now
        ).public_numbers()
        == private_key.public_key().public_numbers()
    )


def test_expired_certificate_refused() -> None:
    then = datetime(2000, 1, 1, tzinfo=UTC)
    _, certificate = sealing_keys.generate_key(key_size=2048, now=then)
    pem = certificate.public_bytes(serialization.Encoding.PEM)
    with pytest.raises(sealing.SealingError, match="expired certificate on December"):
        sealing.public_key_from_cert(pem)
    with pytest.raises(sealing.SealingError, match="no PEM certificate"):
        sealing.public_key_from_cert(b"junk")


def test_golden_certificate_matches_golden_key(golden_key: rsa.RSAPrivateKey) -> None:
    public = sealing.public_key_from_cert((DATA / "cert.pem").read_bytes())
    assert public.public_numbers() == golden_key.public_key().public_numbers()


def test_fingerprint_is_sshs(tmp_path: Path, golden_key: rsa.RSAPrivateKey) -> None:
    ssh_keygen = shutil.which("ssh-keygen")
    assert ssh_keygen, "ssh-keygen is needed (the git SSH tests use it too)"
    public = tmp_path / "key.pub"
    public.write_bytes(
        golden_key.public_key().public_bytes(
            serialization.Encoding.OpenSSH, serialization.PublicFormat.OpenSSH
        )
    )
    listed = subprocess.run(
        [ssh_keygen, "-l", "-E", "sha256", "-f", str(public)],
        capture_output=True,
        text=True,
        check=True,
    ).stdout.split()
    assert sealing.fingerprint(golden_key.public_key()) == listed[1]


def test_key_secret_shape_and_parse_back() -> None:
    private_key, certificate = sealing_keys.generate_key(key_size=2048)
    secret = sealing_keys.key_secret("headwater-system", private_key, certificate)
    assert secret["type"] == "kubernetes.io/tls"
    assert secret["metadata"]["labels"] == {
        "sealedsecrets.bitnami.com/sealed-secrets-key": "active"
    }
    assert secret["metadata"]["generateName"] == "sealed-secrets-key"
    key_pem = base64.b64decode(secret["data"]["tls.key"])
    assert key_pem.startswith(b"-----BEGIN RSA PRIVATE KEY-----")  # PKCS#1
    assert base64.b64decode(secret["data"]["tls.crt"]).startswith(b"-----BEGIN CERTIFICATE-----")
    secret["metadata"]["name"] = "sealed-secrets-keyxyz"
    parsed = sealing_keys.key_from_secret(secret)
    assert parsed.source == "headwater-system/sealed-secrets-keyxyz"
    assert parsed.private_key.private_numbers() == private_key.private_numbers()
    assert parsed.not_before == certificate.not_valid_before_utc


def test_key_files_pem_secret_list_and_errors(tmp_path: Path) -> None:
    pem = (DATA / "key.pem").read_bytes()
    assert len(sealing_keys.parse_key_file(pem, source="key.pem")) == 1
    # A PEM with the certificate next to the key is fine.
    both = pem + (DATA / "cert.pem").read_bytes()
    assert len(sealing_keys.parse_key_file(both, source="both.pem")) == 1

    secrets = []
    for number in range(2):
        private_key, certificate = sealing_keys.generate_key(key_size=2048)
        secret = sealing_keys.key_secret("hw", private_key, certificate)
        secret["metadata"]["name"] = f"k{number}"
        secrets.append(secret)
    listed = yaml.safe_dump({"apiVersion": "v1", "kind": "List", "items": secrets}).encode()
    assert [k.source for k in sealing_keys.parse_key_file(listed, source="dump.yaml")] == [
        "dump.yaml: hw/k0",
        "dump.yaml: hw/k1",
    ]
    streamed = yaml.safe_dump_all(secrets).encode()
    assert len(sealing_keys.parse_key_file(streamed, source="all.yaml")) == 2
    as_json = json.dumps(secrets[0]).encode()
    assert len(sealing_keys.parse_key_file(as_json, source="one.json")) == 1

    with pytest.raises(sealing_keys.SealingKeyError, match=r"bad\.yaml: neither"):
        sealing_keys.parse_key_file(b"a: [unclosed", source="bad.yaml")
    no_key = {"kind": "Secret", "metadata": {"name": "x"}, "data": {"a": "YQ=="}}
    with pytest.raises(sealing_keys.SealingKeyError, match=r"Secret x: expected a PEM"):
        sealing_keys.parse_key_file(json.dumps(no_key).encode(), source="x.json")
    with pytest.raises(sealing_keys.SealingKeyError, match="not an unencrypted PEM"):
        sealing_keys.parse_key_file(
            b"-----BEGIN RSA PRIVATE KEY-----\nAAAA\n-----END RSA PRIVATE KEY-----\n",
            source="broken.pem",
        )


def _dated(source: str, when: datetime | None) -> sealing_keys.SealingKey:
    private_key = rsa.generate_private_key(public_exponent=65537, key_size=1024)
    return sealing_keys.SealingKey(source=source, private_key=private_key, created=when)


def test_newest_first_and_renewal() -> None:
    now = datetime(2026, 6, 1, tzinfo=UTC)
    old = _dated("old", now - timedelta(days=40))
    new = _dated("new", now - timedelta(days=10))
    undated = _dated("undated", None)
    ordered = sealing_keys.newest_first([old, undated, new])
    assert [key.source for key in ordered] == ["new", "old", "undated"]
    day = 24 * 3600.0
    assert sealing_keys.renewal_due_in(None, renew_period=30 * day, now=now) == 0.0
    assert sealing_keys.renewal_due_in(new, renew_period=30 * day, now=now) == 20 * day
    assert sealing_keys.renewal_due_in(old, renew_period=30 * day, now=now) == 0.0
    assert sealing_keys.renewal_due_in(old, renew_period=0, now=now) is None
    assert sealing_keys.renewal_due_in(None, renew_period=0, now=now) == 0.0
    assert sealing_keys.renewal_due_in(undated, renew_period=30 * day, now=now) == 0.0


def test_renew_period_setting() -> None:
    assert Settings().sealing_key_renew_period == 720 * 3600
    loaded = Settings.load({"HEADWATER_SEALING_KEY_RENEW_PERIOD": "0"})
    assert loaded.sealing_key_renew_period == 0
    loaded = Settings.load({}, flags={"sealing_key_renew_period": "24h"})
    assert loaded.sealing_key_renew_period == 24 * 3600
    with pytest.raises(SettingsError, match="HEADWATER_SEALING_KEY_RENEW_PERIOD"):
        Settings.load({"HEADWATER_SEALING_KEY_RENEW_PERIOD": "30d"})


# --- the decrypt step -------------------------------------------------------------


def _sealing_key(private_key: rsa.RSAPrivateKey, source: str) -> sealing_keys.SealingKey:
    return sealing_keys.SealingKey(source=source, private_key=private_key)


def test_unseal_objects_replaces_in_place(
    key: rsa.RSAPrivateKey, other_key: rsa.RSAPrivateKey
) -> None:
    config_map = {"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "c"}}
    sealed = sealing.seal_secret(_secret(), key.public_key())
    objects = [config_map, sealed, {"apiVersion": "v1", "kind": "Secret", "metadata": {}}]
    keys = [_sealing_key(other_key, "hw/new"), _sealing_key(key, "hw/old")]
    result = decrypt.unseal_objects(objects, keys)
    assert result[0] is config_map
    assert result[1]["kind"] == "Secret"
    assert _values(result[1]) == {"password": b"hunter2"}
    assert result[2] is objects[2]
    assert objects[1] is sealed  # the input list is not changed
    assert decrypt.has_sealed_secrets(objects) and not decrypt.has_sealed_secrets(result)


def test_unseal_objects_names_every_failure_and_no_value(
    key: rsa.RSAPrivateKey, other_key: rsa.RSAPrivateKey
) -> None:
    good = sealing.seal_secret(_secret(), key.public_key())
    wrong_key = sealing.seal_secret(
        _secret(metadata={"name": "api", "namespace": "app"}), other_key.public_key()
    )
    moved = sealing.seal_secret(_secret(), key.public_key())
    moved["metadata"]["namespace"] = "team-b"
    keys = [_sealing_key(key, "headwater-system/sealed-secrets-keyabc")]
    with pytest.raises(decrypt.DecryptionError) as caught:
        decrypt.unseal_objects([good, wrong_key, moved], keys)
    error = caught.value
    assert error.reason == "DecryptionFailed"
    message = str(error)
    assert "SealedSecret app/api: no key could decrypt encryptedData[password]" in message
    assert "SealedSecret team-b/db: no key could decrypt encryptedData[password]" in message
    assert "app/db:" not in message
    assert "headwater-system/sealed-secrets-keyabc (SHA256:" in message
    assert len(error.failures) == 2
    assert "hunter2" not in message


def test_unseal_objects_without_keys(key: rsa.RSAPrivateKey) -> None:
    assert decrypt.unseal_objects([{"kind": "ConfigMap"}], []) == [{"kind": "ConfigMap"}]
    sealed = sealing.seal_secret(_secret(), key.public_key())
    with pytest.raises(
        decrypt.DecryptionError, match="no sealing keys found to decrypt SealedSecret app/db"
    ):
        decrypt.unseal_objects([sealed], [])


def test_unseal_objects_default_namespace(key: rsa.RSAPrivateKey) -> None:
    sealed = sealing.seal_secret(_secret(), key.public_key())
    del sealed["metadata"]["namespace"]
    keys = [_sealing_key(key, "k")]
    with pytest.raises(decrypt.DecryptionError, match="needs a namespace"):
        decrypt.unseal_objects([sealed], keys)
    result = decrypt.unseal_objects([sealed], keys, default_namespace="app")
    assert result[0]["metadata"]["namespace"] == "app"
