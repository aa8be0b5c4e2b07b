"""The multi-tenancy lockdown, as Flux's kustomize and helm controllers have it.

Three settings (controllers/toolkit/runtime/settings.py):

- `--default-service-account`: an object without `spec.serviceAccountName`
  is applied as that ServiceAccount of its own namespace, not as the
  controller, so a tenant gets only what the platform granted that account;
- `--no-cross-namespace-refs`: an object may not name a source or a
  dependency in another namespace. That is a property of the spec, so it
  stalls (with Flux's reason, AccessDenied) until the spec changes;
- `--no-remote-bases` (on by default in headwater, off in Flux): a kustomization may not
  reference remote bases or files; the build names the file and the entry.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Iterable

from controllers.toolkit.runtime.frame import ReconcileError
from controllers.toolkit.runtime.settings import Settings

# Flux's reason (fluxcd/pkg/runtime/acl) for a refused cross-namespace reference.
ACCESS_DENIED = "AccessDenied"


@dataclasses.dataclass(frozen=True)
class Reference:
    """A reference an object makes: the spec field, what it names, and where."""

    field: str  # e.g. "spec.sourceRef", "spec.dependsOn[0]"
    kind: str
    name: str
    namespace: str


@dataclasses.dataclass(frozen=True)
class Lockdown:
    default_service_account: str = ""
    no_cross_namespace_refs: bool = False
    no_remote_bases: bool = True

    @classmethod
    def of(cls, settings: Settings) -> Lockdown:
        return cls(
            default_service_account=settings.default_service_account,
            no_cross_namespace_refs=settings.no_cross_namespace_refs,
            no_remote_bases=settings.no_remote_bases,
        )

    def service_account(self, requested: str | None) -> str | None:
        """The account to act as: the object's own, else the default (None: the controller)."""
        return requested or self.default_service_account or None

    def check_references(self, namespace: str, references: Iterable[Reference]) -> None:
        """Refuse the first reference out of `namespace` when cross-namespace refs are off."""
        if not self.no_cross_namespace_refs:
            return
        for ref in references:
            if ref.namespace and ref.namespace != namespace:
                raise ReconcileError(
                    ACCESS_DENIED,
                    f"{ref.field}: cannot use {ref.kind} '{ref.namespace}/{ref.name}' from "
                    f"namespace '{namespace}': cross-namespace references have been blocked "
                    f"(--no-cross-namespace-refs); the {ref.kind} must be in '{namespace}'",
                    stalled=True,
                )


__all__ = ["ACCESS_DENIED", "Lockdown", "Reference"]
