"""Sealed secrets, byte-compatible with Bitnami's kubeseal.

A sealed value is `uint16 BE len(rsa) || rsa || aes`, base64-encoded: a fresh
32-byte session key wrapped with RSA-OAEP (SHA-256, MGF1-SHA-256) under an
OAEP label that pins the value to its scope, and the value sealed with
AES-256-GCM under that key (zero nonce: each session key seals one value).

Scopes and their labels: strict `<namespace>/<name>`, namespace-wide
`<namespace>`, cluster-wide empty. A value moved to another name or
namespace than its label allows cannot be opened, which is what stops one
tenant from unsealing another's value into their own namespace.

Nothing here ever puts a secret value, or a piece of one, in an exception
message: errors name the object, the data key and the sealing key.
"""

from __future__ import annotations

import base64
import binascii
import copy
import enum
import hashlib
import json
import os
import re
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from cryptography import x509
from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import padding, rsa
from cryptography.hazmat.primitives.ciphers.aead import AESGCM

API_VERSION = "bitnami.com/v1alpha1"
KIND = "SealedSecret"

ANNOTATION_PREFIX = "sealedsecrets.bitnami.com/"
CLUSTER_WIDE_ANNOTATION = ANNOTATION_PREFIX + "cluster-wide"
NAMESPACE_WIDE_ANNOTATION = ANNOTATION_PREFIX + "namespace-wide"

# Annotations that hold a full copy of an applied object: sealing one would
# leave the secret's values in clear inside the SealedSecret.
LAST_APPLIED_ANNOTATIONS = (
    "kubectl.kubernetes.io/last-applied-configuration",
    "kubecfg.ksonnet.io/last-applied-configuration",
)
# Set by the API server; meaningless (or harmful) in a manifest kept in git.
SERVER_SIDE_METADATA = (
    "uid",
    "resourceVersion",
    "generation",
    "creationTimestamp",
    "deletionTimestamp",
    "deletionGracePeriodSeconds",
    "selfLink",
    "managedFields",
    "ownerReferences",
)

SESSION_KEY_BYTES = 32
_NONCE = bytes(12)
_LENGTH_PREFIX_BYTES = 2
# A Secret holds at most 1 MiB, so no single sealed value needs more; the
# bound stops a hostile manifest from making us decode arbitrary amounts.
MAX_VALUE_BYTES = 1024 * 1024
MAX_SEALED_BYTES = MAX_VALUE_BYTES + 4096


class Scope(enum.Enum):
    """How far a sealed value may move: kubeseal's three scopes."""

    STRICT = "strict"
    NAMESPACE_WIDE = "namespace-wide"
    CLUSTER_WIDE = "cluster-wide"

    @classmethod
    def parse(cls, text: str) -> Scope:
        for scope in cls:
            if scope.value == text:
                return scope
        choices = ", ".join(scope.value for scope in cls)
        raise SealingError(f"invalid scope {text!r}: must be one of {choices}")


class SealingError(ValueError):
    """Input that cannot be sealed or unsealed; the message never holds a value."""


class UnsealError(SealingError):
    """No key could open a sealed value (wrong key, scope, name, or tampering)."""


def encryption_label(namespace: str, name: str, scope: Scope) -> bytes:
    """The OAEP label that binds a value to its scope, exactly as kubeseal builds it."""
    if scope is Scope.CLUSTER_WIDE:
        return b""
    if scope is Scope.NAMESPACE_WIDE:
        return namespace.encode()
    return f"{namespace}/{name}".encode()


def scope_from_annotations(annotations: Mapping[str, Any] | None) -> Scope:
    """The scope an object's annotations ask for; cluster-wide wins over namespace-wide.

    Only the exact string "true" counts, as in kubeseal.
    """
    values = annotations or {}
    if values.get(CLUSTER_WIDE_ANNOTATION) == "true":
        return Scope.CLUSTER_WIDE
    if values.get(NAMESPACE_WIDE_ANNOTATION) == "true":
        return Scope.NAMESPACE_WIDE
    return Scope.STRICT


def with_scope_annotations(annotations: Mapping[str, str] | None, scope: Scope) -> dict[str, str]:
    """A copy of `annotations` that states `scope` and no other scope."""
    result = {
        key: value
        for key, value in (annotations or {}).items()
        if key not in (CLUSTER_WIDE_ANNOTATION, NAMESPACE_WIDE_ANNOTATION)
    }
    if scope is Scope.NAMESPACE_WIDE:
        result[NAMESPACE_WIDE_ANNOTATION] = "true"
    elif scope is Scope.CLUSTER_WIDE:
        result[CLUSTER_WIDE_ANNOTATION] = "true"
    return result


# --- the hybrid cipher -------------------------------------------------------


def _oaep(label: bytes) -> padding.OAEP:
    # An empty label and no label hash the same under OAEP; None is what
    # cryptography expects for "no label".
    return padding.OAEP(
        mgf=padding.MGF1(algorithm=hashes.SHA256()),
        algorithm=hashes.SHA256(),
        label=label or None,
    )


def hybrid_encrypt(public_key: rsa.RSAPublicKey, plaintext: bytes, label: bytes) -> bytes:
    """kubeseal's HybridEncrypt: the raw bytes, before base64."""
    if len(plaintext) > MAX_VALUE_BYTES:
        raise SealingError(f"value of {len(plaintext)} bytes exceeds {MAX_VALUE_BYTES} bytes")
    session_key = os.urandom(SESSION_KEY_BYTES)
    wrapped = public_key.encrypt(session_key, _oaep(label))
    sealed = AESGCM(session_key).encrypt(_NONCE, plaintext, None)
    return len(wrapped).to_bytes(_LENGTH_PREFIX_BYTES, "big") + wrapped + sealed


def _open_with(private_key: rsa.RSAPrivateKey, blob: bytes, label: bytes) -> bytes | None:
    if len(blob) < _LENGTH_PREFIX_BYTES:
        return None
    rsa_length = int.from_bytes(blob[:_LENGTH_PREFIX_BYTES], "big")
    end = _LENGTH_PREFIX_BYTES + rsa_length
    # A ciphertext block must match this key's size; skip the costly RSA
    # operation for keys it cannot belong to.
    if len(blob) < end or rsa_length != (private_key.key_size + 7) // 8:
        return None
    try:
        session_key = private_key.decrypt(blob[_LENGTH_PREFIX_BYTES:end], _oaep(label))
    except ValueError:
        return None
    if len(session_key) not in (16, 24, 32):
        return None
    try:
        return AESGCM(session_key).decrypt(_NONCE, blob[end:], None)
    except InvalidTag:
        return None


def hybrid_decrypt(keys: Iterable[rsa.RSAPrivateKey], blob: bytes, label: bytes) -> bytes:
    """kubeseal's HybridDecrypt: the first key that opens `blob` wins."""
    if len(blob) < _LENGTH_PREFIX_BYTES:
        raise UnsealError("sealed data is too short")
    for key in keys:
        plaintext = _open_with(key, blob, label)
        if plaintext is not None:
            return plaintext
    raise UnsealError("no key could decrypt secret")


def decode_sealed(text: str, *, where: str) -> bytes:
    """Base64 (standard alphabet, padded) of a sealed value; line breaks are ignored as by Go."""
    if not isinstance(text, str):
        raise SealingError(f"{where}: expected a base64 string, got {type(text).__name__}")
    compact = text.replace("\n", "").replace("\r", "")
    if len(compact) > (MAX_SEALED_BYTES * 4) // 3 + 4:
        raise SealingError(f"{where}: sealed value is larger than {MAX_SEALED_BYTES} bytes")
    try:
        return base64.b64decode(compact, validate=True)
    except (binascii.Error, ValueError) as exc:
        raise SealingError(f"{where}: not valid base64") from exc


def seal_value(
    public_key: rsa.RSAPublicKey, value: bytes, *, namespace: str, name: str, scope: Scope
) -> str:
    """One value sealed as `kubeseal --raw` does: base64 text."""
    blob = hybrid_encrypt(public_key, value, encryption_label(namespace, name, scope))
    return base64.b64encode(blob).decode("ascii")


def unseal_value(
    keys: Sequence[rsa.RSAPrivateKey], sealed: str, *, namespace: str, name: str, scope: Scope
) -> bytes:
    """Open a value sealed for `namespace`/`name` under `scope`."""
    blob = decode_sealed(sealed, where="sealed value")
    return hybrid_decrypt(keys, blob, encryption_label(namespace, name, scope))


# --- certificates and fingerprints ---------------------------------------------


def fingerprint(public_key: rsa.RSAPublicKey) -> str:
    """`SHA256:<base64>` of the SSH wire form, as kubeseal names keys."""
    openssh = public_key.public_bytes(
        serialization.Encoding.OpenSSH, serialization.PublicFormat.OpenSSH
    )
    wire = base64.b64decode(openssh.split()[1])
    digest = hashlib.sha256(wire).digest()
    return "SHA256:" + base64.b64encode(digest).decode("ascii").rstrip("=")


def public_key_from_cert(pem: bytes, *, now: datetime | None = None) -> rsa.RSAPublicKey:
    """The RSA public key of the first PEM certificate; refuses an expired one, like kubeseal."""
    try:
        certificates = x509.load_pem_x509_certificates(pem)
    except ValueError as exc:
        raise SealingError("no PEM certificate found") from exc
    certificate = certificates[0]
    key = certificate.public_key()
    if not isinstance(key, rsa.RSAPublicKey):
        raise SealingError(
            f"expected an RSA public key in the certificate, found {type(key).__name__}"
        )
    moment = now or datetime.now(UTC)
    if moment > certificate.not_valid_after_utc:
        expiry = certificate.not_valid_after_utc.strftime("%B %d, %Y")
        raise SealingError(f"failed to encrypt using an expired certificate on {expiry}")
    return key


# --- whole objects ---------------------------------------------------------------


def is_sealed_secret(obj: Mapping[str, Any]) -> bool:
    return obj.get("apiVersion") == API_VERSION and obj.get("kind") == KIND


def _mapping(value: Any, *, where: str) -> dict[str, Any]:
    if value is None:
        return {}
    if not isinstance(value, Mapping):
        raise SealingError(f"{where} must be a mapping, got {type(value).__name__}")
    return dict(value)


def _string_map(value: Any, *, where: str) -> dict[str, str]:
    result = _mapping(value, where=where)
    for key, item in result.items():
        if not isinstance(key, str) or not isinstance(item, str):
            raise SealingError(f"{where}[{key}] must be a string")
    return result


def _template_metadata(metadata: Mapping[str, Any]) -> dict[str, Any]:
    """Metadata worth keeping in git: no server-set fields, no last-applied copies."""
    result = {
        key: copy.deepcopy(value)
        for key, value in metadata.items()
        if key not in SERVER_SIDE_METADATA and value is not None
    }
    annotations = result.get("annotations")
    if isinstance(annotations, dict):
        for key in LAST_APPLIED_ANNOTATIONS:
            annotations.pop(key, None)
        if not annotations:
            del result["annotations"]
    return result


def secret_values(secret: Mapping[str, Any], *, where: str) -> dict[str, bytes]:
    """A Secret's values: `data` (base64) then `stringData`, which wins, as the API server does."""
    values: dict[str, bytes] = {}
    for key, text in _string_map(secret.get("data"), where=f"{where}: data").items():
        try:
            values[key] = base64.b64decode(text, validate=True)
        except (binascii.Error, ValueError) as exc:
            raise SealingError(f"{where}: data[{key}] is not valid base64") from exc
    for key, text in _string_map(secret.get("stringData"), where=f"{where}: stringData").items():
        values[key] = text.encode()
    return values


def seal_secret(
    secret: Mapping[str, Any],
    public_key: rsa.RSAPublicKey,
    *,
    scope: Scope | None = None,
    name: str | None = None,
    namespace: str | None = None,
    allow_empty: bool = False,
) -> dict[str, Any]:
    """The SealedSecret for a Secret, shaped as `kubeseal` writes it.

    `scope` overrides the Secret's scope annotations (which decide when it is
    None); `name` overrides the Secret's name; `namespace` is used when the
    Secret has none. Each value is sealed separately, so one can be replaced
    later without the others.
    """
    if secret.get("kind", "Secret") != "Secret" or secret.get("apiVersion", "v1") != "v1":
        raise SealingError(
            f"expected a v1 Secret, got {secret.get('apiVersion')}/{secret.get('kind')}"
        )
    metadata = _template_metadata(_mapping(secret.get("metadata"), where="metadata"))
    if name:
        metadata["name"] = name
    secret_name = metadata.get("name")
    if not isinstance(secret_name, str) or not secret_name:
        raise SealingError("missing metadata.name in input Secret")
    where = f"Secret {secret_name}"
    annotations = _string_map(metadata.get("annotations"), where=f"{where}: metadata.annotations")
    chosen = scope if scope is not None else scope_from_annotations(annotations)
    annotations = with_scope_annotations(annotations, chosen)
    if annotations:
        metadata["annotations"] = annotations
    else:
        metadata.pop("annotations", None)
    # As kubeseal: a cluster-wide Secret keeps "no namespace" rather than
    # being pinned to the fallback.
    if namespace and not metadata.get("namespace") and chosen is not Scope.CLUSTER_WIDE:
        metadata["namespace"] = namespace
    secret_namespace = metadata.get("namespace") or ""
    if not isinstance(secret_namespace, str):
        raise SealingError(f"{where}: metadata.namespace must be a string")
    if chosen is not Scope.CLUSTER_WIDE and not secret_namespace:
        raise SealingError(f"{where}: a {chosen.value} Secret must declare a namespace")

    values = secret_values(secret, where=where)
    if not values and not allow_empty:
        raise SealingError(
            f"{where}: data is empty; refusing to seal an empty Secret (allow it explicitly)"
        )
    label = encryption_label(secret_namespace, secret_name, chosen)
    encrypted = {
        key: base64.b64encode(hybrid_encrypt(public_key, value, label)).decode("ascii")
        for key, value in sorted(values.items())
    }

    template: dict[str, Any] = {"metadata": metadata}
    if secret.get("type"):
        template["type"] = secret["type"]
    if secret.get("immutable") is not None:
        template["immutable"] = bool(secret["immutable"])
    sealed_metadata: dict[str, Any] = {"name": secret_name}
    if secret_namespace:
        sealed_metadata["namespace"] = secret_namespace
    scope_annotations = with_scope_annotations({}, chosen)
    if scope_annotations:
        sealed_metadata["annotations"] = scope_annotations
    return {
        "apiVersion": API_VERSION,
        "kind": KIND,
        "metadata": sealed_metadata,
        "spec": {"template": template, "encryptedData": encrypted},
    }


@dataclass(frozen=True)
class SealedRef:
    """Where a SealedSecret unseals to, and under which scope."""

    namespace: str
    name: str
    scope: Scope

    def __str__(self) -> str:
        return f"{self.namespace}/{self.name}" if self.namespace else self.name


def sealed_ref(sealed: Mapping[str, Any], *, default_namespace: str | None = None) -> SealedRef:
    """The SealedSecret's own name, namespace and scope: what its label is built from.

    As in Bitnami's controller, the scope comes from the SealedSecret's own
    annotations, not the template's.
    """
    metadata = _mapping(sealed.get("metadata"), where="SealedSecret metadata")
    name = metadata.get("name")
    if not isinstance(name, str) or not name:
        raise SealingError("SealedSecret without metadata.name")
    namespace = metadata.get("namespace") or default_namespace or ""
    if not isinstance(namespace, str):
        raise SealingError(f"SealedSecret {name}: metadata.namespace must be a string")
    annotations = _mapping(metadata.get("annotations"), where=f"SealedSecret {name} annotations")
    scope = scope_from_annotations(annotations)
    if scope is not Scope.CLUSTER_WIDE and not namespace:
        raise SealingError(f"SealedSecret {name}: a {scope.value} SealedSecret needs a namespace")
    return SealedRef(namespace=namespace, name=name, scope=scope)


class UnsealFailure(UnsealError):
    """A SealedSecret whose values no key opens; names the object and data keys only."""

    def __init__(self, ref: SealedRef, data_keys: Sequence[str], detail: str) -> None:
        self.ref = ref
        self.data_keys = tuple(data_keys)
        self.detail = detail
        shown = ", ".join(data_keys)
        super().__init__(f"SealedSecret {ref}: cannot unseal {shown}: {detail}")


def unseal_sealed_secret(
    sealed: Mapping[str, Any],
    keys: Sequence[rsa.RSAPrivateKey],
    *,
    default_namespace: str | None = None,
    accept_v1_data: bool = True,
) -> dict[str, Any]:
    """The Secret a SealedSecret seals; raises UnsealFailure or SealingError.

    Name and namespace are forced from the SealedSecret; labels, annotations,
    type and immutability come from `spec.template`. The deprecated v1
    format (`spec.data`, one sealed JSON Secret) is accepted like Bitnami's
    controller does by default.
    """
    ref = sealed_ref(sealed, default_namespace=default_namespace)
    where = f"SealedSecret {ref}"
    spec = _mapping(sealed.get("spec"), where=f"{where}: spec")
    template = _mapping(spec.get("template"), where=f"{where}: spec.template")
    encrypted = _string_map(spec.get("encryptedData"), where=f"{where}: spec.encryptedData")
    label = encryption_label(ref.namespace, ref.name, ref.scope)

    if spec.get("data") is not None:
        if encrypted:
            raise SealingError(
                f"{where}: cannot use the field 'encryptedData' and the deprecated field "
                "'data' at the same time"
            )
        if not accept_v1_data:
            raise SealingError(f"{where}: uses the deprecated 'data' field")
        secret = _unseal_v1(spec["data"], keys, label, ref)
    else:
        secret = _unseal_v2(encrypted, template, keys, label, ref)

    metadata = secret["metadata"]
    metadata["name"] = ref.name
    if ref.namespace:
        metadata["namespace"] = ref.namespace
    else:
        metadata.pop("namespace", None)
    return secret


def _unseal_v2(
    encrypted: Mapping[str, str],
    template: Mapping[str, Any],
    keys: Sequence[rsa.RSAPrivateKey],
    label: bytes,
    ref: SealedRef,
) -> dict[str, Any]:
    where = f"SealedSecret {ref}"
    metadata = _template_metadata(_mapping(template.get("metadata"), where=f"{where}: metadata"))
    values: dict[str, bytes] = {}
    failed: list[str] = []
    for key in sorted(encrypted):
        blob = decode_sealed(encrypted[key], where=f"{where}: encryptedData[{key}]")
        try:
            values[key] = hybrid_decrypt(keys, blob, label)
        except UnsealError:
            failed.append(key)
    if failed:
        raise UnsealFailure(ref, failed, "no key could decrypt it")
    for key, text in sorted(
        _string_map(template.get("data"), where=f"{where}: spec.template.data").items()
    ):
        values[key] = render_template(text, values, where=f"{where}: spec.template.data[{key}]")
    secret: dict[str, Any] = {"apiVersion": "v1", "kind": "Secret", "metadata": metadata}
    if template.get("type"):
        secret["type"] = template["type"]
    if template.get("immutable") is not None:
        secret["immutable"] = bool(template["immutable"])
    secret["data"] = {key: base64.b64encode(value).decode("ascii") for key, value in values.items()}
    return secret


def _unseal_v1(
    data: Any, keys: Sequence[rsa.RSAPrivateKey], label: bytes, ref: SealedRef
) -> dict[str, Any]:
    where = f"SealedSecret {ref}"
    blob = decode_sealed(data, where=f"{where}: spec.data")
    try:
        plaintext = hybrid_decrypt(keys, blob, label)
    except UnsealError as exc:
        raise UnsealFailure(ref, ["data"], "no key could decrypt it") from exc
    try:
        inner = json.loads(plaintext)
    except ValueError:
        # Not the exception's text: it quotes the document, i.e. the secret.
        raise SealingError(f"{where}: spec.data does not hold a JSON Secret") from None
    if not isinstance(inner, dict):
        raise SealingError(f"{where}: spec.data does not hold a JSON Secret")
    values = secret_values(inner, where=f"{where}: spec.data")
    secret: dict[str, Any] = {
        "apiVersion": "v1",
        "kind": "Secret",
        "metadata": _template_metadata(_mapping(inner.get("metadata"), where=f"{where}: metadata")),
    }
    if inner.get("type"):
        secret["type"] = inner["type"]
    if inner.get("immutable") is not None:
        secret["immutable"] = bool(inner["immutable"])
    secret["data"] = {key: base64.b64encode(value).decode("ascii") for key, value in values.items()}
    return secret


# `spec.template.data` holds Go templates rendered against the opened values.
# headwater renders the plain forms people write ({{ .key }}, {{ index . "key" }})
# and refuses the rest (sprig functions, pipelines) by name rather than guess.
_ACTION = re.compile(r"\{\{-?\s*(.*?)\s*-?\}\}", re.DOTALL)
_FIELD = re.compile(r"^\.([A-Za-z_][A-Za-z0-9_]*)$")
_INDEX = re.compile(r'^index\s+\.\s+"((?:[^"\\]|\\.)*)"$')


def render_template(text: str, values: Mapping[str, bytes], *, where: str) -> bytes:
    """Render one `spec.template.data` entry; errors name the entry, never a value."""
    out: list[bytes] = []
    position = 0
    for match in _ACTION.finditer(text):
        head = text[position : match.start()]
        tail_trim = match.group(0).startswith("{{-")
        out.append((head.rstrip() if tail_trim else head).encode())
        action = match.group(1)
        field = _FIELD.match(action)
        index = _INDEX.match(action)
        if field:
            key = field.group(1)
        elif index:
            key = json.loads(f'"{index.group(1)}"')
        else:
            raise SealingError(
                f"{where}: unsupported template action; headwater renders only "
                '{{ .key }} and {{ index . "key" }}'
            )
        if key not in values:
            raise SealingError(f"{where}: refers to {key!r}, which encryptedData does not hold")
        out.append(values[key])
        position = match.end()
        if match.group(0).endswith("-}}"):
            rest = text[position:]
            position += len(rest) - len(rest.lstrip())
    remainder = text[position:]
    if "{{" in remainder:
        raise SealingError(f"{where}: unterminated template action")
    out.append(remainder.encode())
    return b"".join(out)
