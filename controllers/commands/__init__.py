"""The daily verbs of the `headwater` CLI, the ones a Flux user runs: get, reconcile,
suspend, resume, delete, events, tree, trace, diff and logs.

They talk to the API server with the kubernetes client and the current
kubeconfig (`--kubeconfig`, `--context`, as kubectl), like `flux` does; the
CLI is not a controller, so it uses the toolkit's pure parts (conditions,
health, inventory) and no controller package. One module per verb or family;
common.py holds the connection, flags and output they share.

The verb modules are imported by `add_parsers`, not by this package: the
dashboard imports a few of them (through `controllers.commands.common`) and
must not carry `diff`'s git and cryptography for its whole life.
"""

from __future__ import annotations

from typing import Any


def add_parsers(commands: Any) -> None:
    from controllers.commands import delete, diff, events, get, logs, reconcile, trace, tree

    get.add_parser(commands)
    reconcile.add_parsers(commands)
    delete.add_parser(commands)
    events.add_parser(commands)
    tree.add_parser(commands)
    trace.add_parser(commands)
    diff.add_parser(commands)
    logs.add_parser(commands)
