"""An ImagePolicy's spec (image.toolkit.fluxcd.io/v1), parsed once; what cannot work stalls.

`digestReflectionPolicy` other than `Never` is refused by value (no digest lookup
yet), and with it `spec.interval`, which Flux accepts only with `Always`.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, Literal

from controllers.image.policy import Policy
from controllers.toolkit.runtime.fields import UNSUPPORTED_FIELD, refuse_unsupported
from controllers.toolkit.runtime.frame import ReconcileError

UNSUPPORTED_FIELDS: dict[str, str] = {
    "spec.interval": "it only schedules digest refreshes (digestReflectionPolicy: Always), "
    "which headwater does not do yet",
}

NEVER = "Never"
# Flux's reason for a spec it cannot use.
INVALID_POLICY = "InvalidPolicy"


@dataclass(frozen=True)
class ImagePolicySpec:
    repository_name: str
    repository_namespace: str | None
    policy: Policy

    @classmethod
    def parse(cls, spec: Mapping[str, Any]) -> ImagePolicySpec:
        refuse_unsupported({"spec": spec}, UNSUPPORTED_FIELDS)
        reflect = spec.get("digestReflectionPolicy") or NEVER
        if reflect != NEVER:
            raise ReconcileError(
                UNSUPPORTED_FIELD,
                f"spec.digestReflectionPolicy '{reflect}' is not supported by headwater: "
                "digests are not looked up yet (only 'Never')",
                stalled=True,
            )
        ref = spec.get("imageRepositoryRef") or {}
        choice = spec.get("policy") or {}
        chosen = [k for k in ("semver", "alphabetical", "numerical") if choice.get(k) is not None]
        if len(chosen) != 1:
            raise ReconcileError(
                INVALID_POLICY,
                "spec.policy must set exactly one of semver, alphabetical, numerical",
                stalled=True,
            )
        kind: Literal["semver", "alphabetical", "numerical"] = chosen[0]  # type: ignore[assignment]
        filters = spec.get("filterTags") or {}
        pattern = None
        if filters.get("pattern"):
            try:
                pattern = re.compile(_go_regexp(str(filters["pattern"])))
            except re.error as exc:
                raise ReconcileError(
                    INVALID_POLICY,
                    f"spec.filterTags.pattern is not a valid regular expression: {exc}",
                    stalled=True,
                ) from None
        if kind == "semver":
            policy = Policy("semver", semver_range=str(choice["semver"].get("range") or ""))
        else:
            order = choice[kind].get("order") or "asc"
            if order not in ("asc", "desc"):
                raise ReconcileError(
                    INVALID_POLICY, f"spec.policy.{kind}.order must be asc or desc", stalled=True
                )
            policy = Policy(kind, order="asc" if order == "asc" else "desc")
        policy = Policy(
            policy.kind,
            semver_range=policy.semver_range,
            order=policy.order,
            pattern=pattern,
            extract=str(filters.get("extract") or ""),
        )
        return cls(str(ref.get("name") or ""), ref.get("namespace"), policy)


def _go_regexp(pattern: str) -> str:
    # Go's RE2 spells named groups (?P<name>...) and (?<name>...); Python knows the first.
    return re.sub(r"\(\?<(?=[A-Za-z_])", "(?P<", pattern)
