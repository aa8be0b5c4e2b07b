"""`headwater delete <kind> NAME`: delete a Flux object after a confirmation.

    headwater delete ks webapp          # asks first
    headwater delete gitrepo webapp --yes

Deleting a Kustomization with `prune: true` deletes what it applied too (its
finalizer prunes the inventory), which is why the prompt says so. An answer
other than yes, or no answer at all (stdin closed), deletes nothing and
exits 1.
"""

from __future__ import annotations

import argparse
from typing import Any

from kubernetes.client.exceptions import ApiException
from rich.markup import escape
from rich.prompt import Confirm

from controllers.commands import common, kinds, waiting
from controllers.commands.common import CliError


def _delete(args: argparse.Namespace) -> int:
    kind = kinds.resolve(args.kind)
    out = common.console()
    session = common.connect(args)
    try:
        obj = waiting.fetch(session, kind, session.namespace, args.name)
        what = f"{kind.kind} {session.namespace}/{args.name}"
        if not args.yes:
            warning = ""
            if kind is kinds.KUSTOMIZATION and (obj.get("spec") or {}).get("prune"):
                warning = " (prune is on: the objects it applied are deleted too)"
            try:
                sure = Confirm.ask(
                    f"Are you sure you want to delete {escape(what)}{escape(warning)}?",
                    console=common.console(stderr=True),
                    default=False,
                )
            except EOFError:
                sure = False
            if not sure:
                raise CliError(f"{what} not deleted (not confirmed; --yes skips the question)")
        try:
            session.custom.delete_namespaced_custom_object(
                kind.group, kind.version, session.namespace, kind.plural, args.name
            )
        except ApiException as exc:
            if exc.status == 404:
                raise CliError(f"{what} not found") from None
            raise common.api_error(exc, f"deleting {what}") from None
    finally:
        session.close()
    if args.output == "table":
        out.print(f"✔ {escape(what)} deleted")
    else:
        out.file.write(common.dump(kinds.summary(kind, obj) | {"result": "deleted"}, args.output))
    return common.EXIT_OK


def add_parser(commands: Any) -> None:
    parser = commands.add_parser(
        "delete",
        help="delete a Flux object (asks first)",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("kind", metavar="KIND")
    parser.add_argument("name", metavar="NAME")
    parser.add_argument("-y", "--yes", action="store_true", help="do not ask for confirmation")
    common.add_namespace_flags(parser, all_namespaces=False)
    common.add_output_flag(parser)
    common.add_connection_flags(parser)
    parser.set_defaults(func=common.guarded("delete", _delete))
