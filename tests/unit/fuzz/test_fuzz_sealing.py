"""Fuzzed sealed-secret payloads: truncated, corrupted, wrong key, wrong scope, hostile shape.

`unseal_sealed_secret` and `unseal_value` either open exactly what was sealed for that
name, namespace and scope, or raise SealingError (UnsealFailure for a value no key opens);
never another exception, never a plaintext in a message.
"""

from __future__ import annotations

import base64
from typing import Any

import pytest
from cryptography.hazmat.primitives.asymmetric import rsa
from hypothesis import example, given
from hypothesis import strategies as st

from controllers.sealing.format import (
    CLUSTER_WIDE_ANNOTATION,
    NAMESPACE_WIDE_ANNOTATION,
    Scope,
    SealingError,
    seal_value,
    unseal_sealed_secret,
    unseal_value,
)

PLAINTEXT = b"fuzz-canary-plaintext-77c1"
KEY = rsa.generate_private_key(public_exponent=65537, key_size=2048)
OTHER = rsa.generate_private_key(public_exponent=65537, key_size=2048)
SEALED = {
    scope: seal_value(KEY.public_key(), PLAINTEXT, namespace="app", name="db", scope=scope)
    for scope in Scope
}
ANNOTATIONS = {
    Scope.STRICT: {},
    Scope.NAMESPACE_WIDE: {NAMESPACE_WIDE_ANNOTATION: "true"},
    Scope.CLUSTER_WIDE: {CLUSTER_WIDE_ANNOTATION: "true"},
}


def _mutate(text: str, cut: int, at: int, flips: bytes) -> str:
    blob = bytearray(base64.b64decode(text))
    for i, byte in enumerate(flips):
        blob[(at + i) % len(blob)] ^= byte
    return base64.b64encode(bytes(blob[: max(0, len(blob) - cut)])).decode()


@given(
    scope=st.sampled_from(list(Scope)),
    as_scope=st.sampled_from(list(Scope)),
    namespace=st.sampled_from(["app", "other", ""]),
    name=st.sampled_from(["db", "other", ""]),
    cut=st.integers(min_value=0, max_value=600),
    at=st.integers(min_value=0),
    flips=st.binary(max_size=3),
    wrong_key=st.booleans(),
)
@example(Scope.STRICT, Scope.STRICT, "app", "db", 0, 0, b"", False)  # opens
@example(Scope.STRICT, Scope.CLUSTER_WIDE, "app", "db", 0, 0, b"", False)  # wrong scope
@example(Scope.STRICT, Scope.STRICT, "app", "db", 300, 0, b"", False)  # truncated
@example(Scope.STRICT, Scope.STRICT, "app", "db", 0, 0, b"", True)  # wrong key
@example(Scope.STRICT, Scope.STRICT, "app", "db", 0, 1, b"\x01", False)  # length prefix
def test_a_sealed_secret_opens_only_as_sealed(
    scope: Scope,
    as_scope: Scope,
    namespace: str,
    name: str,
    cut: int,
    at: int,
    flips: bytes,
    wrong_key: bool,
) -> None:
    value = _mutate(SEALED[scope], cut, at, flips) if cut or flips else SEALED[scope]
    sealed: dict[str, Any] = {
        "apiVersion": "bitnami.com/v1alpha1",
        "kind": "SealedSecret",
        "metadata": {"name": name, "namespace": namespace, "annotations": ANNOTATIONS[as_scope]},
        "spec": {"encryptedData": {"password": value}, "template": {"metadata": {}}},
    }
    keys = [OTHER] if wrong_key else [OTHER, KEY]
    try:
        secret = unseal_sealed_secret(sealed, keys, default_namespace="app")
    except SealingError as exc:
        assert PLAINTEXT.decode() not in str(exc)
        return
    opened = base64.b64decode(secret["data"]["password"])
    assert opened == PLAINTEXT
    untouched = value == SEALED[scope] and not wrong_key and as_scope == scope
    assert untouched
    if scope is Scope.STRICT:
        assert (name, namespace or "app") == ("db", "app")


leaf = (
    st.none()
    | st.booleans()
    | st.integers()
    | st.text(max_size=8)
    | st.sampled_from([SEALED[Scope.STRICT], "!!!", "", "\n"])
)
shapes = st.recursive(
    leaf,
    lambda inner: (
        st.lists(inner, max_size=3)
        | st.dictionaries(
            st.sampled_from(
                [
                    "spec",
                    "metadata",
                    "encryptedData",
                    "template",
                    "data",
                    "name",
                    "namespace",
                    "annotations",
                    "type",
                    "immutable",
                    "password",
                    "labels",
                ]
            ),
            inner,
            max_size=4,
        )
    ),
    max_leaves=15,
)


@given(shapes)
@example({"spec": {"data": SEALED[Scope.STRICT]}, "metadata": {"name": "db"}})
@example(
    {
        "spec": {"encryptedData": {"p": SEALED[Scope.STRICT]}, "template": {"data": 5}},
        "metadata": {"name": "db", "namespace": "app"},
    }
)
@example(
    {
        "spec": {
            "encryptedData": {"p": SEALED[Scope.STRICT]},
            "template": {"data": {"x": "{{ .p }}{{"}},
        },
        "metadata": {"name": "db", "namespace": "app"},
    }
)
def test_a_hostile_sealed_secret_is_refused_by_name(shape: Any) -> None:
    sealed = shape if isinstance(shape, dict) else {"spec": shape}
    try:
        unseal_sealed_secret(sealed, [KEY], default_namespace="app")
    except SealingError as exc:
        assert PLAINTEXT.decode() not in str(exc)


@given(st.text(max_size=40) | st.binary(max_size=600).map(lambda b: base64.b64encode(b).decode()))
def test_arbitrary_sealed_values_fail_cleanly(text: str) -> None:
    with pytest.raises(SealingError):
        unseal_value([KEY], text, namespace="app", name="db", scope=Scope.STRICT)
