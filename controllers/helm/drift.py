"""`spec.driftDetection`: the release's objects compared with the live ones, and healed.

The desired objects are the release's own manifest (`helm get manifest` of
the deployed revision, read once per revision). Each is dry-run applied
with server-side apply and the result compared with the live object by the
toolkit (`ssa.apply_all`, `diff`, `ignore`), as Flux does; `ignore` rules
take paths out of the comparison and keep their live value.

- `warn`: the drift is reported (a DriftDetected Warning event naming each
  object and field, and Drifted=True), nothing is written;
- `enabled`: the drifted objects are applied again, with server-side apply
  as helm's own field manager, so helm keeps owning exactly the fields it
  set and the next upgrade can still remove what a chart drops. This heals a
  `kubectl delete` or `kubectl scale` at once and makes no helm revision
  (a helm upgrade would add one to the history per edit, and take seconds).

The objects carry Flux's origin labels (`helm.toolkit.fluxcd.io/name`,
`/namespace`, added by the post-renderer while drift detection is on): the
controller watches them by that label, so an edit requeues the release at
once instead of at the next interval.

Objects annotated `helm.toolkit.fluxcd.io/driftDetection: disabled` are
left out, as in Flux. Status: `Drifted` (DriftDetected | NoDriftDetected).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Literal

import yaml

from controllers.toolkit.apply import ssa
from controllers.toolkit.apply.ignore import IgnoreError, IgnoreRule, parse_rules
from controllers.toolkit.apply.resources import ApiError, NoMatchError, ResourceClient

Mode = Literal["disabled", "enabled", "warn"]
MODES: tuple[Mode, ...] = ("disabled", "enabled", "warn")

DRIFTED = "Drifted"
DRIFT_DETECTED = "DriftDetected"
NO_DRIFT_DETECTED = "NoDriftDetected"
GROUP = "helm.toolkit.fluxcd.io"
OPT_OUT = f"{GROUP}/driftDetection"
# helm names its field manager after its binary; applying as it keeps ownership whole.
HELM_FIELD_MANAGER = "helm"
# Flux's origin labels, which the post-renderer adds when drift detection is on.
NAME_LABEL = f"{GROUP}/name"
NAMESPACE_LABEL = f"{GROUP}/namespace"


class DriftSpecError(ValueError):
    """`spec.driftDetection` cannot work as written; the message names the field."""


@dataclass(frozen=True)
class DriftSettings:
    mode: Mode = "disabled"
    ignore: tuple[IgnoreRule, ...] = ()

    @property
    def active(self) -> bool:
        return self.mode != "disabled"


NO_DRIFT_DETECTION = DriftSettings()


def parse_drift_detection(raw: Any) -> DriftSettings:
    if raw in (None, {}):
        return NO_DRIFT_DETECTION
    if not isinstance(raw, Mapping):
        raise DriftSpecError("spec.driftDetection: must be an object")
    mode = raw.get("mode") or "disabled"
    chosen = next((m for m in MODES if m == mode), None)
    if chosen is None:
        raise DriftSpecError(f"spec.driftDetection.mode: {mode!r} is not one of {', '.join(MODES)}")
    try:
        rules = parse_rules(raw.get("ignore"), "spec.driftDetection.ignore")
    except IgnoreError as exc:
        raise DriftSpecError(str(exc)) from None
    return DriftSettings(chosen, rules)


def manifest_objects(manifest: str) -> list[dict[str, Any]]:
    """The objects of helm's manifest (`---`-separated YAML), minus opted-out ones."""
    objects = []
    for document in yaml.safe_load_all(manifest):
        if not isinstance(document, dict) or not document.get("kind"):
            continue
        annotations = (document.get("metadata") or {}).get("annotations") or {}
        if annotations.get(OPT_OUT) == "disabled":
            continue
        objects.append(document)
    return objects


def helm_metadata(release_name: str, release_namespace: str) -> tuple[dict[str, str], ...]:
    """The label and annotations helm adds to every object it installs (not in the manifest)."""
    return (
        {"app.kubernetes.io/managed-by": "Helm"},
        {
            "meta.helm.sh/release-name": release_name,
            "meta.helm.sh/release-namespace": release_namespace,
        },
    )


async def as_installed(
    client: ResourceClient,
    objects: Sequence[Mapping[str, Any]],
    release_name: str,
    namespace: str,
) -> list[dict[str, Any]]:
    """The manifest's objects as helm installed them: its metadata added, and namespaced
    objects without a namespace in the release's.

    Applying as helm's field manager without helm's metadata would remove it.
    """
    labels, annotations = helm_metadata(release_name, namespace)
    result = []
    for obj in objects:
        copy = dict(obj)
        meta = dict(copy.get("metadata") or {})
        meta["labels"] = {**(meta.get("labels") or {}), **labels}
        meta["annotations"] = {**(meta.get("annotations") or {}), **annotations}
        if not meta.get("namespace"):
            try:
                info = await client.resource_for(str(copy.get("apiVersion")), str(copy["kind"]))
            except (NoMatchError, ApiError):
                info = None  # apply_all reports the kind precisely
            if info is None or info.namespaced:
                meta["namespace"] = namespace
        copy["metadata"] = meta
        result.append(copy)
    return result


@dataclass
class DriftReport:
    """The objects that had drifted (and, with `enabled`, were applied again)."""

    drifted: list[ssa.ChangeSetEntry] = field(default_factory=list)
    corrected: bool = False

    def describe(self) -> str:
        return ssa.ChangeSet(self.drifted).describe()


async def detect(
    client: ResourceClient,
    objects: Sequence[Mapping[str, Any]],
    settings: DriftSettings,
    owner: Mapping[str, str],
) -> DriftReport:
    """Compare (and with mode `enabled`, re-apply) the release's objects.

    Raises ssa.ApplyError naming the objects that could not be checked or applied.
    """
    options = ssa.ApplyOptions(
        field_manager=HELM_FIELD_MANAGER,
        owner_group=GROUP,
        # The origin labels: live objects are read with one LIST per kind.
        owner_labels=owner,
        dry_run=settings.mode != "enabled",
        ignore=settings.ignore,
        # Only drift counts: no field takeovers or metadata clean-ups of our own.
        takeover=(),
        remove_annotations=(),
        remove_labels=(),
    )
    changeset = await ssa.apply_all(client, objects, options)
    return DriftReport(changeset.changed(), corrected=not options.dry_run)


def release_of(obj: Mapping[str, Any]) -> tuple[str, str] | None:
    """(namespace, name) of the HelmRelease an object comes from, by its origin labels."""
    labels = (obj.get("metadata") or {}).get("labels") or {}
    name, namespace = labels.get(NAME_LABEL), labels.get(NAMESPACE_LABEL)
    return (str(namespace), str(name)) if name and namespace else None


class SpecChanges:
    """Which foreign changes are worth a drift check: not a status-only update.

    An object whose scale someone else set (an ignored `/spec/replicas`) keeps
    that manager's entry as its newest, so every status update of it would
    look foreign; those leave the generation and the metadata as they were.
    Remembers the last seen state of at most `limit` objects.
    """

    def __init__(self, limit: int = 10_000) -> None:
        self._limit = limit
        self._seen: dict[str, tuple[Any, ...]] = {}

    def worth_a_look(self, event_type: str, obj: Mapping[str, Any]) -> bool:
        meta = obj.get("metadata") or {}
        uid = str(meta.get("uid") or "")
        if event_type == "DELETED" or not uid:
            self._seen.pop(uid, None)
            return True
        state = (
            meta.get("generation"),
            sorted((meta.get("labels") or {}).items()),
            sorted((meta.get("annotations") or {}).items()),
        )
        if self._seen.get(uid) == state:
            return False
        if uid not in self._seen and len(self._seen) >= self._limit:
            self._seen.pop(next(iter(self._seen)))
        self._seen[uid] = state
        return True
