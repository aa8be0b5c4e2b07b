"""The Flux kinds the CLI knows, the names people type for them, and one table row each.

Names follow `flux` and kubectl: plural, singular, the CRDs' short names and
the Kind itself, in any case (`ks`, `kustomization`, `Kustomizations`,
`gitrepo`). `sources` means every source kind, `all` every kind.

The columns are `flux get`'s: NAME, REVISION (for the kinds that have one),
SUSPENDED, READY, MESSAGE, plus AGE as kubectl shows it. Alerts and Providers
(v1beta3) have no status at all, so their READY is `-`, never a guess.
"""

from __future__ import annotations

import dataclasses
import datetime
from collections.abc import Mapping, Sequence
from typing import Any

from controllers.commands.common import CliError, age
from controllers.toolkit.runtime import conditions as cond


@dataclasses.dataclass(frozen=True)
class FluxKind:
    kind: str
    group: str
    version: str
    plural: str
    aliases: tuple[str, ...] = ()
    has_revision: bool = True
    has_status: bool = True
    source: bool = False

    @property
    def api_version(self) -> str:
        return f"{self.group}/{self.version}"

    @property
    def names(self) -> tuple[str, ...]:
        singular = self.kind.lower()
        return (self.plural, singular, *self.aliases)

    @property
    def columns(self) -> tuple[str, ...]:
        revision = ("REVISION",) if self.has_revision else ()
        return ("NAME", *revision, "SUSPENDED", "READY", "MESSAGE", "AGE")


SOURCE = "source.toolkit.fluxcd.io"
KUSTOMIZE = "kustomize.toolkit.fluxcd.io"
NOTIFICATION = "notification.toolkit.fluxcd.io"
HELM = "helm.toolkit.fluxcd.io"

GIT_REPOSITORY = FluxKind(
    "GitRepository", SOURCE, "v1", "gitrepositories", ("gitrepo", "gitrepos", "git"), source=True
)
HELM_REPOSITORY = FluxKind(
    "HelmRepository", SOURCE, "v1", "helmrepositories", ("helmrepo", "helmrepos"), source=True
)
HELM_CHART = FluxKind("HelmChart", SOURCE, "v1", "helmcharts", ("hc", "chart"), source=True)
OCI_REPOSITORY = FluxKind(
    "OCIRepository", SOURCE, "v1", "ocirepositories", ("ocirepo", "ocirepos", "oci"), source=True
)
KUSTOMIZATION = FluxKind("Kustomization", KUSTOMIZE, "v1", "kustomizations", ("ks",))
HELM_RELEASE = FluxKind("HelmRelease", HELM, "v2", "helmreleases", ("hr",))
RECEIVER = FluxKind("Receiver", NOTIFICATION, "v1", "receivers", ("rcv",), has_revision=False)
ALERT = FluxKind(
    "Alert", NOTIFICATION, "v1beta3", "alerts", (), has_revision=False, has_status=False
)
PROVIDER = FluxKind(
    "Provider",
    NOTIFICATION,
    "v1beta3",
    "providers",
    ("alert-providers", "alert-provider"),
    has_revision=False,
    has_status=False,
)

# `get all` order: sources, then what applies them, then notification.
KINDS: tuple[FluxKind, ...] = (
    GIT_REPOSITORY,
    HELM_REPOSITORY,
    HELM_CHART,
    OCI_REPOSITORY,
    KUSTOMIZATION,
    HELM_RELEASE,
    RECEIVER,
    ALERT,
    PROVIDER,
)
_BY_NAME = {name: kind for kind in KINDS for name in kind.names}


def resolve(text: str) -> FluxKind:
    """The kind `text` names; a clear error listing the accepted names otherwise."""
    found = _BY_NAME.get(text.lower())
    if found is None:
        accepted = ", ".join(kind.plural for kind in KINDS)
        raise CliError(f"unknown kind {text!r}; expected one of: {accepted} (or all, sources)", 2)
    return found


def resolve_many(text: str) -> list[FluxKind]:
    """`all`, `sources`, or one kind."""
    if text.lower() == "all":
        return list(KINDS)
    if text.lower() in ("sources", "source"):
        return [kind for kind in KINDS if kind.source]
    return [resolve(text)]


def kind_of(obj: Mapping[str, Any]) -> FluxKind | None:
    """The FluxKind of an object from the API, by its Kind and group."""
    group = str(obj.get("apiVersion") or "").partition("/")[0]
    return next((k for k in KINDS if k.kind == obj.get("kind") and k.group == group), None)


# --- rows -------------------------------------------------------------------------------


def revision(kind: FluxKind, obj: Mapping[str, Any]) -> str:
    """What `flux get` shows as REVISION: the artifact's, or the applied one."""
    status = obj.get("status") or {}
    if kind is KUSTOMIZATION:
        return str(status.get("lastAppliedRevision") or "")
    if kind is HELM_RELEASE:
        # `flux get hr`: the chart version of the latest release, else the one attempted.
        history = status.get("history") or []
        latest = history[0] if history and isinstance(history[0], Mapping) else {}
        return str(latest.get("chartVersion") or status.get("lastAttemptedRevision") or "")
    artifact = status.get("artifact") or {}
    return str(artifact.get("revision") or "") if isinstance(artifact, Mapping) else ""


def suspended(obj: Mapping[str, Any]) -> bool:
    return (obj.get("spec") or {}).get("suspend") is True


def ready(kind: FluxKind, obj: Mapping[str, Any]) -> tuple[str, str]:
    """READY and MESSAGE: the Ready condition's status and message, as `flux get` shows."""
    if not kind.has_status:
        return "-", ""
    status = obj.get("status") or {}
    condition = cond.get_condition(status, cond.READY)
    if condition is None:
        return "Unknown", "waiting to be reconciled"
    return str(condition.get("status") or "Unknown"), str(condition.get("message") or "")


def row(
    kind: FluxKind,
    obj: Mapping[str, Any],
    now: datetime.datetime,
    *,
    with_namespace: bool = False,
) -> list[str]:
    """One table row for `obj`, in the order of `kind.columns` (NAMESPACE first with -A)."""
    meta = obj.get("metadata") or {}
    cells = [str(meta.get("namespace") or "")] if with_namespace else []
    cells.append(str(meta.get("name") or ""))
    if kind.has_revision:
        cells.append(revision(kind, obj))
    status, message = ready(kind, obj)
    cells += ["True" if suspended(obj) else "False", status, message]
    cells.append(age(meta.get("creationTimestamp"), now))
    return cells


def columns(kind: FluxKind, *, with_namespace: bool = False) -> list[str]:
    return (["NAMESPACE"] if with_namespace else []) + list(kind.columns)


def summary(kind: FluxKind, obj: Mapping[str, Any]) -> dict[str, Any]:
    """The row's facts for `-o json` of a table-shaped output (watch lines)."""
    meta = obj.get("metadata") or {}
    status, message = ready(kind, obj)
    return {
        "kind": kind.kind,
        "namespace": meta.get("namespace"),
        "name": meta.get("name"),
        "revision": revision(kind, obj) if kind.has_revision else None,
        "suspended": suspended(obj),
        "ready": status,
        "message": message,
    }


# --- --status-selector ------------------------------------------------------------------


def parse_selector(text: str | None) -> dict[str, str]:
    """`ready=false[,suspended=true]` -> {"ready": "false", ...}; keys are READY etc. columns."""
    if not text:
        return {}
    selector: dict[str, str] = {}
    for part in text.split(","):
        key, sep, value = part.partition("=")
        key = key.strip().lower()
        if not sep or key not in ("ready", "suspended") or not value.strip():
            raise CliError(
                f"--status-selector: {part!r} is not ready=<true|false|unknown> "
                "or suspended=<true|false>",
                2,
            )
        selector[key] = value.strip().lower()
    return selector


def matches(kind: FluxKind, obj: Mapping[str, Any], selector: Mapping[str, str]) -> bool:
    wanted_ready = selector.get("ready")
    if wanted_ready is not None:
        status, _ = ready(kind, obj)
        if status.lower() != wanted_ready:
            return False
    wanted_suspended = selector.get("suspended")
    return wanted_suspended is None or str(suspended(obj)).lower() == wanted_suspended


def sort_rows(objects: Sequence[Mapping[str, Any]]) -> list[Mapping[str, Any]]:
    return sorted(
        objects,
        key=lambda o: (
            str((o.get("metadata") or {}).get("namespace") or ""),
            str((o.get("metadata") or {}).get("name") or ""),
        ),
    )
