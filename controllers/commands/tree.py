"""`headwater tree kustomization NAME`: every object a Kustomization applied, with its health.

    headwater tree ks apps
    headwater tree ks apps -o json

The objects come from `status.inventory`; a Kustomization or HelmRelease
among them is opened in turn (recursively), so a tree shows every object down
to the leaves. A HelmRelease's objects are those of its deployed revision's
manifest in helm's release storage (helm_inventory.py; only their names are
read out of it). Each object's health is read with the kstatus rules of
controllers/toolkit/apply/health.py: Current, InProgress, Failed,
Terminating, or NotFound when the inventory names an object that is gone.
"""

from __future__ import annotations

import argparse
import dataclasses
from typing import Any

from rich.markup import escape
from rich.tree import Tree

from controllers.commands import common, helm_inventory, kinds, live, waiting
from controllers.commands.common import CliError, Session
from controllers.toolkit.apply import health
from controllers.toolkit.apply.inventory import Inventory, InventoryEntry, InventoryError, ObjectId

STYLES = {
    health.Status.CURRENT: "green",
    health.Status.IN_PROGRESS: "yellow",
    health.Status.FAILED: "red",
    health.Status.TERMINATING: "magenta",
    health.Status.NOT_FOUND: "red",
    health.Status.UNKNOWN: "yellow",
}


@dataclasses.dataclass
class Node:
    id: ObjectId
    api_version: str
    status: str
    message: str
    children: list[Node] = dataclasses.field(default_factory=list)

    def to_json(self) -> dict[str, Any]:
        return {
            "apiVersion": self.api_version,
            "kind": self.id.kind,
            "namespace": self.id.namespace or None,
            "name": self.id.name,
            "status": self.status,
            "message": self.message,
            "children": [child.to_json() for child in self.children],
        }

    def label(self) -> str:
        subject = (
            f"{self.id.kind}/{self.id.namespace + '/' if self.id.namespace else ''}{self.id.name}"
        )
        return f"{subject}  {self.status}" + (f": {self.message}" if self.message else "")


def inventory_of(session: Session, obj: dict[str, Any]) -> list[InventoryEntry]:
    """A Kustomization's `status.inventory`, or the objects of a HelmRelease's release."""
    meta = obj.get("metadata") or {}
    where = f"{obj.get('kind')} {meta.get('namespace')}/{meta.get('name')}"
    if obj.get("kind") == kinds.HELM_RELEASE.kind:

        def namespaced(api_version: str, kind: str) -> bool | None:
            resource = live.resource_for(session, api_version, kind)
            return None if resource is None else bool(resource.namespaced)

        try:
            return helm_inventory.helm_inventory(session, obj, namespaced)
        except helm_inventory.HelmInventoryError as exc:
            raise CliError(f"{where}: {exc}") from None
    try:
        return list(Inventory.from_status((obj.get("status") or {}).get("inventory")))
    except InventoryError as exc:
        raise CliError(f"{where}: {exc}") from None


def _opens(object_id: ObjectId) -> bool:
    """Whether the tree goes on below this object: it owns objects of its own."""
    return (object_id.group, object_id.kind) in (
        (kinds.KUSTOMIZATION.group, kinds.KUSTOMIZATION.kind),
        (kinds.HELM_RELEASE.group, kinds.HELM_RELEASE.kind),
    )


def build(session: Session, obj: dict[str, Any], visited: set[ObjectId] | None = None) -> Node:
    """The node of a Kustomization or HelmRelease and, below it, what it owns (nested
    Kustomizations and HelmReleases opened in turn)."""
    visited = visited if visited is not None else set()
    root_id = ObjectId.of(obj)
    visited.add(root_id)
    status = health.compute_status(obj)
    node = Node(root_id, str(obj.get("apiVersion") or ""), str(status.status), status.message)
    for entry in inventory_of(session, obj):
        resource = live.resource_for(session, entry.api_version, entry.id.kind)
        found = (
            live.get_object(session, resource, entry.id.namespace, entry.id.name)
            if resource is not None
            else None
        )
        if found is None:
            node.children.append(
                Node(
                    entry.id, entry.api_version, str(health.Status.NOT_FOUND), "not in the cluster"
                )
            )
            continue
        if _opens(entry.id) and entry.id not in visited:
            try:
                node.children.append(build(session, found, visited))
                continue
            except CliError as exc:
                # A release whose storage cannot be read still shows, with the reason.
                child = health.compute_status(found)
                node.children.append(Node(entry.id, entry.api_version, str(child.status), str(exc)))
                continue
        child = health.compute_status(found)
        node.children.append(Node(entry.id, entry.api_version, str(child.status), child.message))
    return node


def render(node: Node, terminal: bool, tree: Tree | None = None) -> Tree:
    style = STYLES.get(health.Status(node.status), "") if terminal else ""
    text = escape(node.label())
    label = f"[{style}]{text}[/{style}]" if style else text
    branch = Tree(label) if tree is None else tree.add(label)
    for child in node.children:
        render(child, terminal, branch)
    return branch


def _tree(args: argparse.Namespace) -> int:
    kind = kinds.resolve(args.kind)
    if kind not in (kinds.KUSTOMIZATION, kinds.HELM_RELEASE):
        raise CliError(
            "tree shows Kustomizations and HelmReleases: headwater tree kustomization NAME", 2
        )
    out = common.console()
    session = common.connect(args)
    try:
        root = build(session, waiting.fetch(session, kind, session.namespace, args.name))
    finally:
        session.close()
    if args.output != "table":
        out.file.write(common.dump(root.to_json(), args.output))
    else:
        out.print(render(root, out.is_terminal))
    return common.EXIT_OK


def add_parser(commands: Any) -> None:
    parser = commands.add_parser(
        "tree",
        help="show the objects a Kustomization manages, recursively, with their health",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("kind", metavar="KIND", help="kustomization (ks) or helmrelease (hr)")
    parser.add_argument("name", metavar="NAME")
    common.add_namespace_flags(parser, all_namespaces=False)
    common.add_output_flag(parser)
    common.add_connection_flags(parser)
    parser.set_defaults(func=common.guarded("tree", _tree))
