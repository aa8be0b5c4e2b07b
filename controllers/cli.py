"""The `headwater` command.

Each area registers its own subcommand (`cluster`, `run`, ...) so this module
stays a thin dispatcher and never grows knowledge of what the commands do.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence

from controllers import commands as daily
from controllers import dashboard
from controllers.sealing import cli as sealing_cli
from controllers.source import push as push_cli
from controllers.toolkit.runtime import runner
from devcluster import cli as cluster_cli


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="headwater",
        description="GitOps toolkit for Kubernetes: Flux-compatible controllers in Python.",
    )
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    cluster_cli.add_parser(commands)
    runner.add_parser(commands)
    sealing_cli.add_parser(commands)
    push_cli.add_parser(commands)
    daily.add_parsers(commands)
    dashboard.add_parser(commands)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    code: int = args.func(args)
    return code


if __name__ == "__main__":
    sys.exit(main())
