"""The `headwater` command.

Each area registers its own subcommand (`cluster`, `run`, ...) so this module
stays a thin dispatcher and never grows knowledge of what the commands do.

An area's module is imported only when its command runs (or for `--help` and
usage errors, which list every command): `headwater run kustomize` then never
imports the OCI push (pathspec, oras), the sealing CLI, the daily verbs or the
dashboard, whose imports each controller process would otherwise carry for
its whole life. `AREAS` names the commands each area registers;
tests/unit/test_cli.py checks it against what the areas really register.
"""

from __future__ import annotations

import argparse
import importlib
import sys
from collections.abc import Sequence
from dataclasses import dataclass


@dataclass(frozen=True)
class Area:
    """A module whose `register(commands)` adds the subcommands `commands`."""

    module: str
    register: str
    commands: tuple[str, ...]


AREAS: tuple[Area, ...] = (
    Area("devcluster.cli", "add_parser", ("demo", "cluster")),
    Area("controllers.toolkit.runtime.runner", "add_parser", ("run",)),
    Area("controllers.sealing.cli", "add_parser", ("seal", "keys")),
    Area("controllers.source.push", "add_parser", ("push",)),
    Area(
        "controllers.commands",
        "add_parsers",
        (
            "get",
            "reconcile",
            "suspend",
            "resume",
            "delete",
            "events",
            "tree",
            "trace",
            "diff",
            "logs",
        ),
    ),
    Area("controllers.dashboard", "add_parser", ("dashboard",)),
)


def command_word(argv: Sequence[str]) -> str | None:
    """The subcommand `argv` names (its first word), or None (`--help`, nothing)."""
    for arg in argv:
        return None if arg.startswith("-") else arg
    return None


def build_parser(command: str | None = None) -> argparse.ArgumentParser:
    """The CLI's parser: with `command`, only the area that registers it; else every one."""
    parser = argparse.ArgumentParser(
        prog="headwater",
        description="GitOps toolkit for Kubernetes: Flux-compatible controllers in Python.",
    )
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    areas = [area for area in AREAS if command in area.commands] or list(AREAS)
    for area in areas:
        getattr(importlib.import_module(area.module), area.register)(commands)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    arguments = list(sys.argv[1:] if argv is None else argv)
    parser = build_parser(command_word(arguments))
    args = parser.parse_args(arguments)
    code: int = args.func(args)
    return code


if __name__ == "__main__":
    sys.exit(main())
