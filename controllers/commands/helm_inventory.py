"""What a HelmRelease owns: the objects of its deployed revision's manifest.

A HelmRelease has no `status.inventory`; helm keeps the manifest in its own
release storage, the Secret `sh.helm.release.v1.<release>.v<version>` in the
release's storage namespace (`status.storageNamespace`, and the name and
version from `status.history`). Its `release` key is helm's base64 of a
gzipped JSON document whose `manifest` is the rendered YAML.

Only the identity of each object (apiVersion, kind, namespace, name) is taken
out of it; the manifest itself, which can hold Secrets and values, is never
kept, shown or logged. Reading it needs the right to get Secrets in that
namespace; without it the caller gets `HelmInventoryError` and says so.
"""

from __future__ import annotations

import base64
import binascii
import json
import zlib
from collections.abc import Callable, Mapping
from typing import Any

import yaml
from kubernetes.client.exceptions import ApiException

from controllers.commands.common import Session
from controllers.toolkit.apply.inventory import InventoryEntry, ObjectId

# A release body bigger than this (decompressed) is not read: helm itself caps at 1 MiB
# per Secret, compressed.
MAX_RELEASE_BYTES = 32 * 1024 * 1024
GZIP_MAGIC = b"\x1f\x8b"

Namespaced = Callable[[str, str], bool | None]


class HelmInventoryError(Exception):
    """The release's manifest cannot be read; the message says why (never its content)."""


def release_of(obj: Mapping[str, Any]) -> tuple[str, str, int] | None:
    """(storage namespace, release name, version) of the deployed revision, from the status."""
    status = obj.get("status") or {}
    history = [h for h in status.get("history") or [] if isinstance(h, Mapping)]
    if not history:
        return None
    chosen = next((h for h in history if h.get("status") == "deployed"), history[0])
    namespace = str(
        status.get("storageNamespace")
        or chosen.get("namespace")
        or (obj.get("metadata") or {}).get("namespace")
    )
    try:
        version = int(chosen.get("version") or 0)
    except (TypeError, ValueError):
        return None
    if not chosen.get("name") or version <= 0:
        return None
    return namespace, str(chosen["name"]), version


def decode_release(encoded: str) -> dict[str, Any]:
    """helm's stored release: base64 (the Secret's) of base64 (helm's) of gzip of JSON."""
    try:
        raw = base64.b64decode(base64.b64decode(encoded, validate=False), validate=False)
    except (binascii.Error, ValueError):
        raise HelmInventoryError("the release storage is not base64") from None
    if raw[:2] == GZIP_MAGIC:
        inflater = zlib.decompressobj(16 + zlib.MAX_WBITS)
        try:
            raw = inflater.decompress(raw, MAX_RELEASE_BYTES)
        except zlib.error:
            raise HelmInventoryError("the release storage is not valid gzip") from None
        if inflater.unconsumed_tail:
            raise HelmInventoryError(f"the release is over {MAX_RELEASE_BYTES} bytes")
    try:
        body = json.loads(raw)
    except ValueError:
        raise HelmInventoryError("the release storage is not JSON") from None
    if not isinstance(body, dict):
        raise HelmInventoryError("the release storage is not a JSON object")
    return body


def manifest_entries(manifest: str, namespace: str, namespaced: Namespaced) -> list[InventoryEntry]:
    """The identities of the manifest's objects; a namespaced one without a namespace is in
    the release's, as helm installs it."""
    entries: list[InventoryEntry] = []
    try:
        documents = list(yaml.safe_load_all(manifest))
    except yaml.YAMLError:
        raise HelmInventoryError("the release manifest is not YAML") from None
    for document in documents:
        if not isinstance(document, dict) or not document.get("kind"):
            continue
        meta = document.get("metadata") or {}
        api_version = str(document.get("apiVersion") or "")
        kind = str(document["kind"])
        object_namespace = str(meta.get("namespace") or "")
        if not object_namespace and namespaced(api_version, kind) is not False:
            object_namespace = namespace
        group, _, version = api_version.rpartition("/")
        entries.append(
            InventoryEntry(
                ObjectId(group, kind, object_namespace, str(meta.get("name") or "")), version
            )
        )
    return sorted(entries, key=lambda e: e.id.sort_key())


def helm_inventory(
    session: Session, obj: Mapping[str, Any], namespaced: Namespaced
) -> list[InventoryEntry]:
    """The objects the HelmRelease's deployed revision installed (empty before any release)."""
    found = release_of(obj)
    if found is None:
        return []
    namespace, release, version = found
    secret_name = f"sh.helm.release.v1.{release}.v{version}"
    try:
        secret = session.core.read_namespaced_secret(secret_name, namespace)
    except ApiException as exc:
        if exc.status == 404:
            raise HelmInventoryError(
                f"helm's storage Secret {namespace}/{secret_name} is gone"
            ) from None
        raise HelmInventoryError(
            f"cannot read helm's storage Secret {namespace}/{secret_name} ({exc.status})"
        ) from None
    encoded = (secret.data or {}).get("release")
    if not encoded:
        raise HelmInventoryError(f"helm's storage Secret {namespace}/{secret_name} has no release")
    body = decode_release(encoded)
    target = str(body.get("namespace") or namespace)
    return manifest_entries(str(body.get("manifest") or ""), target, namespaced)
