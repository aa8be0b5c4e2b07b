"""`headwater get <kind> [NAME]`: Flux objects as tables, JSON or YAML, or followed live.

    headwater get ks -A
    headwater get all -n apps --status-selector ready=false
    headwater get gitrepo webapp -o json
    headwater get ks --watch --timeout 5m

`--watch` prints the table, then one line per change (a live table on a
terminal) until Ctrl-C or `--timeout`; with `-o json` each change is one
compact JSON object per line.
"""

from __future__ import annotations

import argparse
import json
import time
from collections.abc import Iterator, Mapping
from typing import Any

from kubernetes import watch
from kubernetes.client.exceptions import ApiException
from rich.live import Live
from rich.markup import escape

from controllers.commands import common, kinds
from controllers.commands.common import CliError, Session
from controllers.commands.kinds import FluxKind

# The server ends a watch after this long; it is then restarted where it left off.
WATCH_WINDOW_SECONDS = 300


def list_objects(session: Session, kind: FluxKind, name: str | None = None) -> list[dict[str, Any]]:
    """The objects of `kind` in the session's scope (one, when `name` is given)."""
    custom = session.custom
    where = "every namespace" if session.all_namespaces else f"namespace {session.namespace}"
    try:
        if name is not None and not session.all_namespaces:
            try:
                one: dict[str, Any] = custom.get_namespaced_custom_object(
                    kind.group, kind.version, session.namespace, kind.plural, name
                )
            except ApiException as exc:
                if exc.status == 404:
                    raise CliError(f"{kind.kind} {session.namespace}/{name} not found") from None
                raise
            return [one]
        selector = f"metadata.name={name}" if name else ""
        if session.all_namespaces:
            listing = custom.list_cluster_custom_object(
                kind.group, kind.version, kind.plural, field_selector=selector
            )
        else:
            listing = custom.list_namespaced_custom_object(
                kind.group, kind.version, session.namespace, kind.plural, field_selector=selector
            )
    except ApiException as exc:
        raise common.api_error(exc, f"listing {kind.plural} in {where}") from None
    items: list[dict[str, Any]] = listing.get("items") or []
    for item in items:
        # Lists omit each item's apiVersion and kind; -o yaml must show them.
        item.setdefault("apiVersion", kind.api_version)
        item.setdefault("kind", kind.kind)
    return kinds.sort_rows(items)  # type: ignore[return-value]


def _selected(
    kind: FluxKind, objects: list[dict[str, Any]], selector: Mapping[str, str]
) -> list[dict[str, Any]]:
    return [obj for obj in objects if kinds.matches(kind, obj, selector)]


def _get(args: argparse.Namespace) -> int:
    wanted = kinds.resolve_many(args.kind)
    selector = kinds.parse_selector(args.status_selector)
    if args.name and len(wanted) > 1:
        raise CliError(f"a NAME needs one kind, not {args.kind!r}", common.EXIT_USAGE)
    if args.watch and len(wanted) > 1:
        raise CliError(f"--watch follows one kind, not {args.kind!r}", common.EXIT_USAGE)
    session = common.connect(args)
    try:
        found = [
            (kind, _selected(kind, list_objects(session, kind, args.name), selector))
            for kind in wanted
        ]
        if args.watch:
            kind, objects = found[0]
            return _watch(session, args, kind, objects, selector)
        return _print(session, args, found)
    finally:
        session.close()


def _print(
    session: Session, args: argparse.Namespace, found: list[tuple[FluxKind, list[dict[str, Any]]]]
) -> int:
    out = common.console()
    if args.output != "table":
        items = [obj for _, objects in found for obj in objects]
        data: Any = items[0] if args.name and len(items) == 1 else common.as_list(items)
        out.file.write(common.dump(data, args.output))
        return common.EXIT_OK
    if not any(objects for _, objects in found):
        where = "any namespace" if session.all_namespaces else f"namespace {session.namespace}"
        what = " or ".join(kind.kind for kind, _ in found)
        common.console(stderr=True).print(f"no {what} objects found in {where}")
        return common.EXIT_OK
    moment = common.now()
    for index, (kind, objects) in enumerate(found):
        if not objects:
            continue
        if len(found) > 1:
            if index:
                out.print()
            out.print(f"[bold]{kind.kind}[/bold]" if out.is_terminal else kind.kind)
        out.print(_table(kind, objects, session.all_namespaces, out.is_terminal, moment))
    return common.EXIT_OK


def _table(
    kind: FluxKind, objects: list[dict[str, Any]], with_ns: bool, terminal: bool, moment: Any
) -> Any:
    rows = [kinds.row(kind, obj, moment, with_namespace=with_ns) for obj in objects]
    styled = [_styled(row, terminal) for row in rows]
    return common.table(kinds.columns(kind, with_namespace=with_ns), styled, terminal)


def _styled(row: list[str], terminal: bool) -> list[str]:
    """READY in colour on a terminal; rich markup in messages is escaped either way."""
    cells = [escape(cell) for cell in row]
    if terminal:
        colour = {"True": "green", "False": "red", "Unknown": "yellow"}
        # READY is the third cell from the end (before MESSAGE and AGE).
        ready = row[-3]
        if ready in colour:
            cells[-3] = f"[{colour[ready]}]{ready}[/{colour[ready]}]"
    return cells


# --- --watch ----------------------------------------------------------------------------


def _events(
    session: Session, kind: FluxKind, name: str | None, deadline: float | None
) -> Iterator[tuple[str, dict[str, Any]]]:
    """(type, object) for each change until the deadline, across server-side watch ends."""
    custom = session.custom
    resource_version = ""
    selector = f"metadata.name={name}" if name else ""
    while deadline is None or time.monotonic() < deadline:
        window = WATCH_WINDOW_SECONDS
        if deadline is not None:
            window = max(1, min(window, int(deadline - time.monotonic()) + 1))
        call_args: tuple[str, ...]
        if session.all_namespaces:
            call, call_args = custom.list_cluster_custom_object, (kind.group, kind.version)
        else:
            call = custom.list_namespaced_custom_object
            call_args = (kind.group, kind.version, session.namespace)
        stream = watch.Watch()
        try:
            for event in stream.stream(
                call,
                *call_args,
                kind.plural,
                field_selector=selector,
                resource_version=resource_version or None,
                timeout_seconds=window,
            ):
                obj = event["object"]
                resource_version = str((obj.get("metadata") or {}).get("resourceVersion") or "")
                if event["type"] in ("ADDED", "MODIFIED", "DELETED"):
                    obj.setdefault("apiVersion", kind.api_version)
                    obj.setdefault("kind", kind.kind)
                    yield event["type"], obj
                if deadline is not None and time.monotonic() >= deadline:
                    return
        except ApiException as exc:
            if exc.status == 410:  # the resourceVersion expired: start over from now
                resource_version = ""
                continue
            raise common.api_error(exc, f"watching {kind.plural}") from None
        finally:
            stream.stop()


def _watch(
    session: Session,
    args: argparse.Namespace,
    kind: FluxKind,
    objects: list[dict[str, Any]],
    selector: Mapping[str, str],
) -> int:
    out = common.console()
    deadline = time.monotonic() + args.timeout if args.timeout else None
    shown: dict[tuple[str, str], dict[str, Any]] = {_key(obj): obj for obj in objects}
    with_ns = session.all_namespaces
    # The watch starts with an ADDED per existing object; those were listed already.
    seen = {_key(obj): _version(obj) for obj in objects}
    try:
        if args.output != "table":
            for obj in objects:
                _write_document(out.file, obj, args.output)
            for _, obj in _events(session, kind, args.name, deadline):
                if seen.get(_key(obj)) == _version(obj) or not kinds.matches(kind, obj, selector):
                    continue
                seen[_key(obj)] = _version(obj)
                _write_document(out.file, obj, args.output)
            return common.EXIT_OK
        if out.is_terminal:
            with Live(
                _table(kind, list(shown.values()), with_ns, True, common.now()),
                console=out,
                auto_refresh=False,
            ) as live:
                for type_, obj in _events(session, kind, args.name, deadline):
                    if type_ == "DELETED":
                        shown.pop(_key(obj), None)
                    elif kinds.matches(kind, obj, selector):
                        shown[_key(obj)] = obj
                    else:
                        shown.pop(_key(obj), None)
                    rows = kinds.sort_rows(list(shown.values()))
                    live.update(
                        _table(kind, rows, with_ns, True, common.now()),  # type: ignore[arg-type]
                        refresh=True,
                    )
            return common.EXIT_OK
        # Piped: the table once, then one line per change, as `kubectl get -w` does.
        out.print(_table(kind, objects, with_ns, False, common.now()))
        out.file.flush()
        for type_, obj in _events(session, kind, args.name, deadline):
            if seen.get(_key(obj)) == _version(obj) or not kinds.matches(kind, obj, selector):
                continue
            seen[_key(obj)] = _version(obj)
            if type_ == "DELETED":
                row = kinds.row(kind, obj, common.now(), with_namespace=with_ns)
                row[-3:-1] = ["Deleted", "object deleted"]
                line = common.table(kinds.columns(kind, with_namespace=with_ns), [row], False)
            else:
                line = _table(kind, [obj], with_ns, False, common.now())
            line.show_header = False
            out.print(line)
            out.file.flush()
    except KeyboardInterrupt:
        pass
    return common.EXIT_OK


def _write_document(stream: Any, obj: Mapping[str, Any], output: str) -> None:
    """One watched object: a JSON line, or a YAML document."""
    stream.write(json.dumps(obj) + "\n" if output == "json" else "---\n" + common.dump(obj, output))
    stream.flush()


def _key(obj: Mapping[str, Any]) -> tuple[str, str]:
    meta = obj.get("metadata") or {}
    return str(meta.get("namespace") or ""), str(meta.get("name") or "")


def _version(obj: Mapping[str, Any]) -> str:
    return str((obj.get("metadata") or {}).get("resourceVersion") or "")


def add_parser(commands: Any) -> None:
    parser = commands.add_parser(
        "get",
        help="show Flux objects: status, revision, suspension (as `flux get`)",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument(
        "kind",
        metavar="KIND",
        help="gitrepositories, helmrepositories, helmcharts, kustomizations, receivers, "
        "alerts, providers (short names accepted), sources or all",
    )
    parser.add_argument("name", nargs="?", metavar="NAME", help="one object by name")
    common.add_namespace_flags(parser)
    common.add_output_flag(parser)
    parser.add_argument(
        "--status-selector",
        metavar="SELECTOR",
        help="only objects whose status matches, e.g. ready=false or suspended=true",
    )
    parser.add_argument(
        "-w", "--watch", action="store_true", help="follow changes until Ctrl-C or --timeout"
    )
    common.add_timeout_flag(parser, None)
    common.add_connection_flags(parser)
    parser.set_defaults(func=common.guarded("get", _get))
