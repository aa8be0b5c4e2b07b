"""Decrypt step: turn every SealedSecret in a build into the Secret it seals.

Runs after `kustomize build` and before apply when a Kustomization has
`spec.decryption.provider: sealedsecrets`. The Secret replaces the
SealedSecret in place, so it is what gets applied, inventoried and pruned;
the cluster never sees the SealedSecret. Failing on any SealedSecret fails
the whole build, so nothing of a revision is applied half-decrypted.

Usage from the reconcile:

    keys = await sealing_keys.load_keys(api, namespace, secret_name)  # newest first
    objects = unseal_objects(objects, keys, default_namespace=...)

`has_sealed_secrets` lets the reconcile skip reading keys for builds with none.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from controllers.sealing import format as sealing
from controllers.sealing.keys import SealingKey, private_keys
from controllers.toolkit.runtime.frame import ReconcileError

PROVIDER = "sealedsecrets"
# Flux's reason for a build whose secrets cannot be decrypted.
DECRYPTION_FAILED = "DecryptionFailed"
# A message lists at most this many SealedSecrets; the rest are counted.
MAX_NAMED = 10


class DecryptionError(ReconcileError):
    """SealedSecrets that could not be opened; `reason` is the condition reason.

    The message names each SealedSecret (namespace/name), its data keys that
    failed and the sealing keys tried, never a value or ciphertext.
    """

    def __init__(self, message: str, failures: Sequence[str] = ()) -> None:
        super().__init__(DECRYPTION_FAILED, message)
        self.failures = tuple(failures)


def has_sealed_secrets(objects: Sequence[dict[str, Any]]) -> bool:
    return any(sealing.is_sealed_secret(obj) for obj in objects)


def unseal_objects(
    objects: Sequence[dict[str, Any]],
    keys: Sequence[SealingKey],
    *,
    default_namespace: str | None = None,
) -> list[dict[str, Any]]:
    """`objects` with each `bitnami.com/v1alpha1` SealedSecret replaced by its Secret.

    `keys` are tried in order (newest first is cheapest: new values use the
    newest key). `default_namespace` is where a SealedSecret without a
    namespace is applied, and so what its label is checked against. Raises
    DecryptionError naming every SealedSecret that failed.
    """
    if not has_sealed_secrets(objects):
        return list(objects)
    if not keys:
        raise DecryptionError(
            "no sealing keys found to decrypt "
            + _list(
                [_name(obj, default_namespace) for obj in objects if sealing.is_sealed_secret(obj)]
            )
        )
    candidates = private_keys(keys)
    tried = ", ".join(str(key) for key in keys[:MAX_NAMED]) + (
        f" and {len(keys) - MAX_NAMED} more" if len(keys) > MAX_NAMED else ""
    )
    result: list[dict[str, Any]] = []
    failures: list[str] = []
    for obj in objects:
        if not sealing.is_sealed_secret(obj):
            result.append(obj)
            continue
        try:
            result.append(
                sealing.unseal_sealed_secret(obj, candidates, default_namespace=default_namespace)
            )
        except sealing.UnsealFailure as exc:
            keys_text = ", ".join(f"encryptedData[{key}]" for key in exc.data_keys)
            if exc.data_keys == ("data",):
                keys_text = "spec.data"
            failures.append(f"SealedSecret {exc.ref}: no key could decrypt {keys_text}")
        except sealing.SealingError as exc:
            # Already names the object; its text never holds a value.
            failures.append(str(exc))
    if failures:
        message = "; ".join(failures[:MAX_NAMED])
        if len(failures) > MAX_NAMED:
            message += f"; and {len(failures) - MAX_NAMED} more"
        raise DecryptionError(f"{message} (keys tried: {tried})", failures)
    return result


def _name(obj: dict[str, Any], default_namespace: str | None) -> str:
    metadata = obj.get("metadata") or {}
    name = metadata.get("name", "(unnamed)")
    namespace = metadata.get("namespace") or default_namespace
    return f"SealedSecret {namespace}/{name}" if namespace else f"SealedSecret {name}"


def _list(names: Sequence[str]) -> str:
    shown = ", ".join(names[:MAX_NAMED])
    return shown + (f" and {len(names) - MAX_NAMED} more" if len(names) > MAX_NAMED else "")
