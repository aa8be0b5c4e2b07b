"""`headwater events`: the Events of Flux objects, oldest first, as `flux events` lists them.

    headwater events -n apps
    headwater events --for Kustomization/webapp     # and its source's events
    headwater events -A -o json

Without `--for`, only Events about Flux objects (`*.toolkit.fluxcd.io`) are
listed. `--for` takes any kind (`Deployment/web` works too); for a Flux kind
with a `spec.sourceRef`, the source's Events are listed with it.
"""

from __future__ import annotations

import argparse
from collections.abc import Mapping, Sequence
from typing import Any

from kubernetes.client.exceptions import ApiException
from rich.markup import escape

from controllers.commands import common, kinds, reconcile, waiting
from controllers.commands.common import CliError, Session

COLUMNS = ("LAST SEEN", "TYPE", "REASON", "OBJECT", "MESSAGE")
FLUX_GROUP_SUFFIX = ".toolkit.fluxcd.io"


def parse_for(text: str) -> tuple[str, str]:
    """`Kind/name` -> (Kind as the API spells it when it is a Flux kind, name)."""
    kind, sep, name = text.partition("/")
    if not sep or not kind or not name:
        raise CliError(f"--for: expected Kind/name, got {text!r}", common.EXIT_USAGE)
    try:
        return kinds.resolve(kind).kind, name
    except CliError:
        return kind, name


def last_seen(event: Mapping[str, Any]) -> str:
    return str(
        event.get("lastTimestamp")
        or (event.get("series") or {}).get("lastObservedTime")
        or event.get("eventTime")
        or event.get("firstTimestamp")
        or (event.get("metadata") or {}).get("creationTimestamp")
        or ""
    )


def is_flux_event(event: Mapping[str, Any]) -> bool:
    api_version = str((event.get("involvedObject") or {}).get("apiVersion") or "")
    return api_version.partition("/")[0].endswith(FLUX_GROUP_SUFFIX)


def event_row(
    event: Mapping[str, Any], now: Any, *, with_namespace: bool, terminal: bool
) -> list[str]:
    involved = event.get("involvedObject") or {}
    message = str(event.get("message") or "").strip()
    if not terminal:
        # One event, one line, so scripts can grep it.
        message = " ".join(part.strip() for part in message.splitlines() if part.strip())
    cells = [str(involved.get("namespace") or "")] if with_namespace else []
    cells += [
        common.age(last_seen(event), now),
        str(event.get("type") or ""),
        str(event.get("reason") or ""),
        f"{involved.get('kind')}/{involved.get('name')}",
        message,
    ]
    return cells


def list_events(
    session: Session, subjects: Sequence[tuple[str, str, str]] | None
) -> list[dict[str, Any]]:
    """Events in scope; with `subjects` ((namespace, kind, name), ...) only theirs."""
    core = session.core
    found: list[dict[str, Any]] = []
    try:
        if subjects is None:
            listing = (
                core.list_event_for_all_namespaces()
                if session.all_namespaces
                else core.list_namespaced_event(session.namespace)
            )
            raw = [session.api.sanitize_for_serialization(e) for e in listing.items]
            found = [e for e in raw if is_flux_event(e)]
        else:
            for namespace, kind, name in subjects:
                selector = f"involvedObject.kind={kind},involvedObject.name={name}"
                listing = core.list_namespaced_event(namespace, field_selector=selector)
                found += [session.api.sanitize_for_serialization(e) for e in listing.items]
    except ApiException as exc:
        raise common.api_error(exc, "listing events") from None
    return sorted(found, key=last_seen)


def _subjects(session: Session, text: str) -> list[tuple[str, str, str]]:
    kind_name, name = parse_for(text)
    subjects = [(session.namespace, kind_name, name)]
    flux_kind = next((k for k in kinds.KINDS if k.kind == kind_name), None)
    if flux_kind is not None and not flux_kind.source and flux_kind.has_revision:
        obj = waiting.fetch(session, flux_kind, session.namespace, name)
        try:
            source, namespace, source_name = reconcile.source_of(flux_kind, obj)
        except CliError:
            return subjects
        subjects.append((namespace, source.kind, source_name))
    return subjects


def _events(args: argparse.Namespace) -> int:
    out = common.console()
    session = common.connect(args)
    try:
        if args.for_ and session.all_namespaces:
            raise CliError("--for names one object: give -n, not -A", common.EXIT_USAGE)
        subjects = _subjects(session, args.for_) if args.for_ else None
        found = list_events(session, subjects)
    finally:
        session.close()
    if args.output != "table":
        out.file.write(common.dump(common.as_list(found), args.output))
        return common.EXIT_OK
    if not found:
        where = "any namespace" if session.all_namespaces else f"namespace {session.namespace}"
        common.console(stderr=True).print(f"no events found in {where}")
        return common.EXIT_OK
    moment = common.now()
    terminal = out.is_terminal
    with_ns = session.all_namespaces
    rows = []
    for event in found:
        cells = [
            escape(c) for c in event_row(event, moment, with_namespace=with_ns, terminal=terminal)
        ]
        if terminal and event.get("type") == "Warning":
            cells[-4] = f"[yellow]{cells[-4]}[/yellow]"
        rows.append(cells)
    columns = (["NAMESPACE"] if with_ns else []) + list(COLUMNS)
    out.print(common.table(columns, rows, terminal))
    return common.EXIT_OK


def add_parser(commands: Any) -> None:
    parser = commands.add_parser(
        "events",
        help="list the events of Flux objects (as `flux events`)",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument(
        "--for",
        dest="for_",
        metavar="KIND/NAME",
        help="only this object's events (and its source's)",
    )
    common.add_namespace_flags(parser)
    common.add_output_flag(parser)
    common.add_connection_flags(parser)
    parser.set_defaults(func=common.guarded("events", _events))
