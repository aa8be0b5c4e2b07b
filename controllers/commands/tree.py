"""`headwater tree kustomization NAME`: every object a Kustomization applied, with its health.

    headwater tree ks apps
    headwater tree ks apps -o json

The objects come from `status.inventory`; a Kustomization among them is
opened in turn (recursively), so a tree of Kustomizations shows every object
down to the leaves. Each object's health is read with the kstatus rules of
controllers/toolkit/apply/health.py: Current, InProgress, Failed,
Terminating, or NotFound when the inventory names an object that is gone.
"""

from __future__ import annotations

import argparse
import dataclasses
from typing import Any

from rich.markup import escape
from rich.tree import Tree

from controllers.commands import common, kinds, live, waiting
from controllers.commands.common import CliError, Session
from controllers.toolkit.apply import health
from controllers.toolkit.apply.inventory import Inventory, InventoryError, ObjectId

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


def inventory_of(obj: dict[str, Any]) -> Inventory:
    meta = obj.get("metadata") or {}
    try:
        return Inventory.from_status((obj.get("status") or {}).get("inventory"))
    except InventoryError as exc:
        raise CliError(f"Kustomization {meta.get('namespace')}/{meta.get('name')}: {exc}") from None


def build(session: Session, obj: dict[str, Any], visited: set[ObjectId] | None = None) -> Node:
    """The node of a Kustomization and, below it, its inventory (nested ones opened)."""
    visited = visited if visited is not None else set()
    root_id = ObjectId.of(obj)
    visited.add(root_id)
    status = health.compute_status(obj)
    node = Node(root_id, str(obj.get("apiVersion") or ""), str(status.status), status.message)
    for entry in inventory_of(obj):
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
        is_kustomization = (
            entry.id.group == kinds.KUSTOMIZATION.group and entry.id.kind == "Kustomization"
        )
        if is_kustomization and entry.id not in visited:
            node.children.append(build(session, found, visited))
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
    if kind is not kinds.KUSTOMIZATION:
        raise CliError("tree shows Kustomizations only: headwater tree kustomization NAME", 2)
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
    parser.add_argument("kind", metavar="KIND", help="kustomization (ks)")
    parser.add_argument("name", metavar="NAME")
    common.add_namespace_flags(parser, all_namespaces=False)
    common.add_output_flag(parser)
    common.add_connection_flags(parser)
    parser.set_defaults(func=common.guarded("tree", _tree))
