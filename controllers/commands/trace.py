"""`headwater trace <kind> <name>`: where a cluster object comes from.

    headwater trace deployment web -n apps
    headwater trace configmap settings -n apps -o json

For any object: the Kustomization or HelmRelease that manages it (its owner labels
`kustomize.toolkit.fluxcd.io/name` and `/namespace`, as Flux sets them), the
path and revision that Kustomization applied, its source with URL, ref and
fetched revision, and the DriftDetected events of that Kustomization that
name the object (a change made outside git, reverted). An object a
HelmRelease installed is found by Flux's origin labels
(`helm.toolkit.fluxcd.io/name`) or helm's release annotations; the report
then names the release, its chart version and the HelmChart it came from.
Exit 1 when nothing headwater runs manages the object.
"""

from __future__ import annotations

import argparse
import urllib.parse
from collections.abc import Mapping
from typing import Any

from kubernetes.client.exceptions import ApiException
from rich.console import Group
from rich.markup import escape
from rich.rule import Rule
from rich.table import Table

from controllers.commands import common, events, kinds, live, waiting
from controllers.commands.common import CliError, Session
from controllers.commands.reconcile import source_of
from controllers.toolkit.apply.inventory import ObjectId

NAME_LABEL = "kustomize.toolkit.fluxcd.io/name"
NAMESPACE_LABEL = "kustomize.toolkit.fluxcd.io/namespace"
# Flux's origin labels on a HelmRelease's objects (set while drift detection is on) and
# helm's own annotations on every object it installs.
HELM_NAME_LABEL = "helm.toolkit.fluxcd.io/name"
HELM_NAMESPACE_LABEL = "helm.toolkit.fluxcd.io/namespace"
HELM_RELEASE_NAME = "meta.helm.sh/release-name"
HELM_RELEASE_NAMESPACE = "meta.helm.sh/release-namespace"
DRIFT_DETECTED = "DriftDetected"


def owner_of(obj: Mapping[str, Any]) -> tuple[str, str] | None:
    """(namespace, name) of the managing Kustomization, from the owner labels."""
    labels = (obj.get("metadata") or {}).get("labels") or {}
    name, namespace = labels.get(NAME_LABEL), labels.get(NAMESPACE_LABEL)
    return (str(namespace), str(name)) if name and namespace else None


def helm_owner_of(session: Session, obj: Mapping[str, Any]) -> tuple[str, str] | None:
    """(namespace, name) of the HelmRelease that installed the object: from the origin
    labels, else the HelmRelease in the release's namespace whose release it is."""
    meta = obj.get("metadata") or {}
    labels = meta.get("labels") or {}
    name, namespace = labels.get(HELM_NAME_LABEL), labels.get(HELM_NAMESPACE_LABEL)
    if name and namespace:
        return str(namespace), str(name)
    annotations = meta.get("annotations") or {}
    release = annotations.get(HELM_RELEASE_NAME)
    release_namespace = annotations.get(HELM_RELEASE_NAMESPACE)
    if not release or not release_namespace:
        return None
    hr = kinds.HELM_RELEASE
    try:
        listing = session.custom.list_namespaced_custom_object(
            hr.group, hr.version, str(release_namespace), hr.plural
        )
    except ApiException:
        return None
    for item in listing.get("items") or []:
        history = (item.get("status") or {}).get("history") or []
        if history and isinstance(history[0], Mapping) and history[0].get("name") == release:
            item_meta = item.get("metadata") or {}
            return str(item_meta.get("namespace")), str(item_meta.get("name"))
    return None


def names_object(message: str, object_id: ObjectId) -> bool:
    """Whether a DriftDetected message lists the object (`Kind/ns/name configured`)."""
    subject = object_id.subject
    return any(
        line.strip() == subject or line.strip().startswith(subject + " ")
        for line in message.splitlines()
    )


def drift_lines(message: str, object_id: ObjectId) -> list[str]:
    """The field changes a DriftDetected message lists under the object's line."""
    found: list[str] = []
    inside = False
    for line in message.splitlines():
        if not line.startswith((" ", "\t")):
            inside = names_object(line, object_id)
            continue
        if inside and line.strip():
            found.append(line.strip())
    return found


def without_password(url: str) -> str:
    """A URL with any password in it masked: trace output is pasted into chats and tickets."""
    parts = urllib.parse.urlsplit(url)
    if parts.password is None:
        return url
    host = parts.hostname or ""
    if parts.port is not None:
        host = f"{host}:{parts.port}"
    netloc = f"{parts.username or ''}:***@{host}"
    return urllib.parse.urlunsplit(parts._replace(netloc=netloc))


def _ref(spec: Mapping[str, Any]) -> str:
    ref = spec.get("ref") or {}
    for key in ("commit", "name", "tag", "semver", "branch"):
        if ref.get(key):
            return f"{key} {ref[key]}"
    return ""


def _ready(kind: kinds.FluxKind, obj: Mapping[str, Any]) -> dict[str, str]:
    status, message = kinds.ready(kind, obj)
    return {"ready": status, "message": message}


def trace(session: Session, kind_text: str, name: str) -> dict[str, Any]:
    resource = live.resolve_kind(session, kind_text)
    namespace = session.namespace if resource.namespaced else ""
    obj = live.get_object(session, resource, namespace, name)
    if obj is None:
        where = f"{namespace}/{name}" if namespace else name
        raise CliError(f"{resource.kind} {where} not found")
    object_id = ObjectId.of(obj)
    report: dict[str, Any] = {
        "object": {
            "apiVersion": obj.get("apiVersion"),
            "kind": obj.get("kind"),
            "namespace": namespace or None,
            "name": name,
        },
        "managed": False,
    }
    owner = owner_of(obj)
    manager_kind = kinds.KUSTOMIZATION
    if owner is None:
        owner = helm_owner_of(session, obj)
        manager_kind = kinds.HELM_RELEASE
    if owner is None:
        return report
    manager_namespace, manager_name = owner
    manager = waiting.fetch(session, manager_kind, manager_namespace, manager_name)
    manager_status = manager.get("status") or {}
    report["managed"] = True
    if manager_kind is kinds.KUSTOMIZATION:
        in_inventory = any(
            entry.get("id") == object_id.format()
            for entry in (manager_status.get("inventory") or {}).get("entries") or []
        )
        report["kustomization"] = {
            "namespace": manager_namespace,
            "name": manager_name,
            "path": (manager.get("spec") or {}).get("path") or "./",
            "revision": manager_status.get("lastAppliedRevision") or "",
            "suspended": kinds.suspended(manager),
            "inInventory": in_inventory,
            **_ready(manager_kind, manager),
        }
    else:
        history = manager_status.get("history") or [{}]
        latest = history[0] if isinstance(history[0], Mapping) else {}
        report["helmRelease"] = {
            "namespace": manager_namespace,
            "name": manager_name,
            "release": f"{latest.get('namespace') or ''}/{latest.get('name') or ''}",
            "chart": str(latest.get("chartName") or ""),
            "revision": kinds.revision(manager_kind, manager),
            "releaseVersion": latest.get("version"),
            "suspended": kinds.suspended(manager),
            **_ready(manager_kind, manager),
        }
    source_kind, source_namespace, source_name = source_of(manager_kind, manager)
    source = waiting.fetch(session, source_kind, source_namespace, source_name)
    source_spec = source.get("spec") or {}
    report["source"] = {
        "kind": source_kind.kind,
        "namespace": source_namespace,
        "name": source_name,
        "url": without_password(str(source_spec.get("url") or "")),
        "ref": _ref(source_spec),
        "revision": kinds.revision(source_kind, source),
        **_ready(source_kind, source),
    }
    if source_kind is kinds.HELM_CHART:
        report["source"]["url"] = without_password(
            str((source.get("status") or {}).get("url") or "")
        )
        report["source"]["ref"] = (
            f"chart {source_spec.get('chart')} {source_spec.get('version') or '*'}"
        )
    drift_events = events.list_events(
        session, [(manager_namespace, manager_kind.kind, manager_name)]
    )
    report["drift"] = [
        {
            "lastSeen": events.last_seen(event),
            "changes": drift_lines(str(event.get("message") or ""), object_id),
        }
        for event in drift_events
        if event.get("reason") == DRIFT_DETECTED
        and names_object(str(event.get("message") or ""), object_id)
    ]
    return report


def render(report: Mapping[str, Any], terminal: bool) -> Group:
    def section(rows: list[tuple[str, str]]) -> Table:
        grid = Table.grid(padding=(0, 2))
        grid.add_column(style="bold" if terminal else "")
        grid.add_column()
        for key, value in rows:
            grid.add_row(f"{key}:", escape(value))
        return grid

    thing = report["object"]
    parts: list[Any] = [
        section(
            [
                ("Object", f"{thing['kind']}/{thing['name']}"),
                *([("Namespace", str(thing["namespace"]))] if thing["namespace"] else []),
                (
                    "Status",
                    "Managed by headwater"
                    if report["managed"]
                    else f"not managed by headwater (no {NAME_LABEL} label)",
                ),
            ]
        )
    ]
    if not report["managed"]:
        return Group(*parts)
    rule = Rule(style="dim") if terminal else "---"
    if "kustomization" in report:
        ks = report["kustomization"]
        manager_rows = [
            ("Kustomization", ks["name"]),
            ("Namespace", ks["namespace"]),
            ("Path", ks["path"]),
            ("Revision", ks["revision"] or "(none applied yet)"),
            ("Ready", ks["ready"]),
            ("Message", ks["message"]),
            *([("Suspended", "True")] if ks["suspended"] else []),
            *([] if ks["inInventory"] else [("Inventory", "the object is not in it")]),
        ]
    else:
        hr = report["helmRelease"]
        manager_rows = [
            ("HelmRelease", hr["name"]),
            ("Namespace", hr["namespace"]),
            ("Release", f"{hr['release']} (revision {hr['releaseVersion']})"),
            ("Chart", f"{hr['chart']} {hr['revision']}"),
            ("Ready", hr["ready"]),
            ("Message", hr["message"]),
            *([("Suspended", "True")] if hr["suspended"] else []),
        ]
    parts += [rule, section(manager_rows)]
    source = report["source"]
    parts += [
        rule,
        section(
            [
                (source["kind"], source["name"]),
                ("Namespace", source["namespace"]),
                ("URL", source["url"]),
                *([("Ref", source["ref"])] if source["ref"] else []),
                ("Revision", source["revision"]),
                ("Ready", source["ready"]),
                ("Message", source["message"]),
            ]
        ),
        rule,
    ]
    drift = report["drift"]
    if drift:
        latest = drift[-1]
        when = common.age(latest["lastSeen"], common.now())
        parts.append(
            section(
                [
                    (
                        "Drift",
                        f"corrected {len(drift)} time(s), last {when} ago",
                    ),
                    ("Changed", "\n".join(latest["changes"]) or "(fields not listed)"),
                ]
            )
        )
    else:
        parts.append(section([("Drift", "none recorded in its manager's events")]))
    return Group(*parts)


def _trace(args: argparse.Namespace) -> int:
    out = common.console()
    session = common.connect(args)
    try:
        report = trace(session, args.kind, args.name)
    finally:
        session.close()
    if args.output != "table":
        out.file.write(common.dump(report, args.output))
    else:
        out.print(render(report, out.is_terminal))
    return common.EXIT_OK if report["managed"] else common.EXIT_FAILED


def add_parser(commands: Any) -> None:
    parser = commands.add_parser(
        "trace",
        help="show which Kustomization and source manage a cluster object",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("kind", metavar="KIND", help="any kind, e.g. deployment, configmap")
    parser.add_argument("name", metavar="NAME")
    common.add_namespace_flags(parser, all_namespaces=False)
    common.add_output_flag(parser)
    common.add_connection_flags(parser)
    parser.set_defaults(func=common.guarded("trace", _trace))
