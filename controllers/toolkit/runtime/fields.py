"""Fields a CRD accepts that a controller does not implement: refused by name.

A field the schema accepts is either handled or refused, never silently
ignored. Each kind's spec module keeps its refusals in one commented mapping,
`UNSUPPORTED_FIELDS` (dotted path under the object -> why), and its parser
calls `refuse_unsupported` first; `tests/unit/test_crd_fields.py` walks every
CRD schema and fails on a field that is neither mentioned by the controller
nor listed there.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from controllers.toolkit.runtime.frame import ReconcileError

# Flux's reason for a spec that cannot work as written.
UNSUPPORTED_FIELD = "UnsupportedField"

_MISSING = object()


def field_value(obj: Mapping[str, Any], path: str) -> Any:
    """The value at a dotted path (`spec.kubeConfig.configMapRef`), or `_MISSING`.

    A list on the way stands for its items, as in the CRD schema's paths:
    `spec.resources.filter` is the first `filter` any `spec.resources[]` item sets.
    """
    values: list[Any] = [obj]
    for part in path.split("."):
        found: list[Any] = []
        for value in values:
            items = value if isinstance(value, list) else [value]
            found.extend(item[part] for item in items if isinstance(item, Mapping) and part in item)
        values = found
    set_values = [value for value in values if value is not None]
    if set_values:
        return set_values[0]
    return None if values else _MISSING


def unsupported_in(obj: Mapping[str, Any], unsupported: Mapping[str, str]) -> list[str]:
    """The messages for every unsupported field that `obj` sets (null counts as unset)."""
    found = []
    for path, why in unsupported.items():
        value = field_value(obj, path)
        if value is not _MISSING and value is not None:
            found.append(f"{path} is not supported by headwater: {why}")
    return found


def refuse_unsupported(obj: Mapping[str, Any], unsupported: Mapping[str, str]) -> None:
    """Stall the object (ReconcileError, stalled) when it sets a field headwater refuses."""
    found = unsupported_in(obj, unsupported)
    if found:
        raise ReconcileError(UNSUPPORTED_FIELD, "; ".join(found), stalled=True)
