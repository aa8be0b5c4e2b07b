"""An ImageRepository's spec (image.toolkit.fluxcd.io/v1), parsed once; what cannot work stalls.

Refused by name: `serviceAccountName` (image pull secrets of an account, and workload
identity), `proxySecretRef`; `provider` other than `generic` is refused by value.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from controllers.image.registry import IMAGE_URL_INVALID, ImageName, RegistryError, parse_image
from controllers.toolkit.runtime.durations import DurationError, parse_duration
from controllers.toolkit.runtime.fields import UNSUPPORTED_FIELD, refuse_unsupported
from controllers.toolkit.runtime.frame import ReconcileError

UNSUPPORTED_FIELDS: dict[str, str] = {
    "spec.serviceAccountName": "image pull secrets of a ServiceAccount and workload identity "
    "are not implemented; use spec.secretRef",
    "spec.proxySecretRef": "scans do not go through a proxy yet",
}

DEFAULT_EXCLUSION_LIST = (r"^.*\.sig$",)
GENERIC = "generic"


@dataclass(frozen=True)
class AccessFrom:
    """spec.accessFrom: namespace label sets allowed to refer to this repository."""

    selectors: tuple[Mapping[str, str], ...]


@dataclass(frozen=True)
class ImageRepositorySpec:
    image: ImageName
    interval: float
    timeout: float
    secret_name: str | None
    cert_secret_name: str | None
    insecure: bool
    exclusion_list: tuple[str, ...]
    exclusions: tuple[re.Pattern[str], ...]
    access_from: AccessFrom | None

    @classmethod
    def parse(cls, spec: Mapping[str, Any]) -> ImageRepositorySpec:
        refuse_unsupported({"spec": spec}, UNSUPPORTED_FIELDS)
        provider = spec.get("provider") or GENERIC
        if provider != GENERIC:
            raise ReconcileError(
                UNSUPPORTED_FIELD,
                f"spec.provider '{provider}' is not supported by headwater: only 'generic' "
                "(spec.secretRef credentials) is implemented",
                stalled=True,
            )
        try:
            image = parse_image(str(spec.get("image") or ""))
        except RegistryError as exc:
            raise ReconcileError(exc.reason, exc.message, stalled=True) from None
        try:
            interval = parse_duration(str(spec.get("interval") or ""), field="spec.interval")
            timeout = (
                parse_duration(str(spec["timeout"]), field="spec.timeout")
                if spec.get("timeout")
                else interval
            )
        except DurationError as exc:
            raise ReconcileError(IMAGE_URL_INVALID, str(exc), stalled=True) from None
        raw = spec.get("exclusionList")
        exclusion_list = tuple(str(p) for p in raw) if raw is not None else DEFAULT_EXCLUSION_LIST
        exclusions = []
        for pattern in exclusion_list:
            try:
                exclusions.append(re.compile(pattern))
            except re.error as exc:
                raise ReconcileError(
                    "ExclusionListInvalid",
                    f"spec.exclusionList entry '{pattern}' is not a regular expression: {exc}",
                    stalled=True,
                ) from None
        access = spec.get("accessFrom")
        access_from = None
        if access is not None:
            access_from = AccessFrom(
                tuple(
                    dict(sel.get("matchLabels") or {})
                    for sel in access.get("namespaceSelectors") or []
                )
            )
        return cls(
            image=image,
            interval=interval,
            timeout=max(timeout, 1.0),
            secret_name=(spec.get("secretRef") or {}).get("name"),
            cert_secret_name=(spec.get("certSecretRef") or {}).get("name"),
            insecure=bool(spec.get("insecure")),
            exclusion_list=exclusion_list,
            exclusions=tuple(exclusions),
            access_from=access_from,
        )

    def excluded(self, tag: str) -> bool:
        return any(p.search(tag) for p in self.exclusions)
