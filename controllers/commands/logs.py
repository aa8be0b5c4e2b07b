"""`headwater logs`: the controllers' JSON log lines, filtered by object, as `flux logs` shows them.

    headwater run all 2>&1 | headwater logs --kind Kustomization --name web
    headwater logs --file controllers.log --level error --since 10m
    headwater logs --kind GitRepository -n apps -f          # from the in-cluster pods

Where the lines come from: `--file PATH` (`-` for stdin); else stdin when it
is piped; else the logs of the controller pods in `--controllers-namespace`
(label app.kubernetes.io/part-of=headwater), read through the API.

The lines are the ones toolkit.runtime.logs writes with HEADWATER_LOG_FORMAT=json:
`ts`, `level`, `logger`, `msg`, then `controller`, `kind`, `namespace`, `name`
and the rest. Lines that are not JSON (a text-format log, a traceback) are
skipped. `--level` keeps that level and the ones above it (error keeps
critical too). `-o json` prints the matching lines as they were.
"""

from __future__ import annotations

import argparse
import dataclasses
import datetime
import json
import queue
import sys
import threading
import time
from collections.abc import Iterable, Iterator, Mapping, Sequence
from typing import IO, Any

from kubernetes.client.exceptions import ApiException
from rich.markup import escape

from controllers.commands import common
from controllers.commands.common import CliError, Session

CONTROLLERS_NAMESPACE = "headwater-system"
POD_SELECTOR = "app.kubernetes.io/part-of=headwater"
LEVELS = ("debug", "info", "warning", "error", "critical")
CHOSEN_LEVELS = ("debug", "info", "error")
FOLLOW_POLL_SECONDS = 0.5
_FIXED = ("ts", "level", "logger", "msg", "controller", "kind", "namespace", "name")


# --- filtering (pure) -------------------------------------------------------------------


@dataclasses.dataclass(frozen=True)
class LogFilter:
    """Which lines to keep: by object (any part), at or above a level, since a moment."""

    kind: str | None = None
    name: str | None = None
    namespace: str | None = None
    level: str | None = None
    since: datetime.datetime | None = None

    def matches(self, line: Mapping[str, Any]) -> bool:
        if self.kind and str(line.get("kind") or "").lower() != self.kind.lower():
            return False
        if self.name and str(line.get("name") or "") != self.name:
            return False
        if self.namespace and str(line.get("namespace") or "") != self.namespace:
            return False
        if self.level and _rank(line.get("level")) < _rank(self.level):
            return False
        if self.since is not None:
            moment = common.parse_time(str(line.get("ts") or ""))
            if moment is None or moment < self.since:
                return False
        return True


def _rank(level: Any) -> int:
    text = str(level or "").lower()
    return LEVELS.index(text) if text in LEVELS else LEVELS.index("info")


def parse_line(text: str) -> dict[str, Any] | None:
    """One JSON log line as a mapping; None for anything else."""
    text = text.strip()
    if not text.startswith("{"):
        return None
    try:
        parsed = json.loads(text)
    except ValueError:
        return None
    return parsed if isinstance(parsed, dict) and "msg" in parsed else None


def select(lines: Iterable[str], chosen: LogFilter) -> Iterator[tuple[str, dict[str, Any]]]:
    """(raw line, parsed) for every JSON line `chosen` keeps, in order."""
    for raw in lines:
        parsed = parse_line(raw)
        if parsed is not None and chosen.matches(parsed):
            yield raw.rstrip("\n"), parsed


def _value(value: Any) -> str:
    text = value if isinstance(value, str) else json.dumps(value, ensure_ascii=False)
    if not text or any(ch.isspace() or ch in '"=' for ch in text):
        text = json.dumps(text, ensure_ascii=False)
    return text


def format_line(line: Mapping[str, Any]) -> str:
    """`ts level Kind/namespace/name msg key=value ...` (the object as flux logs shows it)."""
    subject = "/".join(str(line[key]) for key in ("kind", "namespace", "name") if line.get(key))
    parts = [str(line.get("ts") or ""), f"{line.get('level') or ''!s:<7}"]
    if line.get("controller"):
        parts.append(f"[{line['controller']}]")
    if subject:
        parts.append(subject)
    parts.append(str(line.get("msg") or ""))
    parts += [f"{key}={_value(value)}" for key, value in line.items() if key not in _FIXED]
    return " ".join(parts)


# --- sources ----------------------------------------------------------------------------


def follow_file(stream: IO[str], stop: threading.Event | None = None) -> Iterator[str]:
    """The lines of `stream`, then the ones appended to it, until `stop` (as `tail -f`)."""
    while stop is None or not stop.is_set():
        line = stream.readline()
        if line:
            yield line
            continue
        time.sleep(FOLLOW_POLL_SECONDS)


@dataclasses.dataclass(frozen=True)
class PodLogRequest:
    """One container's log read: the arguments of CoreV1Api.read_namespaced_pod_log."""

    pod: str
    namespace: str
    container: str
    follow: bool
    since_seconds: int | None

    def kwargs(self) -> dict[str, Any]:
        args: dict[str, Any] = {"container": self.container, "follow": self.follow}
        if self.since_seconds is not None:
            args["since_seconds"] = self.since_seconds
        return args


def pod_log_requests(
    pods: Sequence[Mapping[str, Any]], *, follow: bool, since: float | None
) -> list[PodLogRequest]:
    """A request per container of every running controller pod (init containers left out)."""
    requests = []
    for pod in pods:
        meta = pod.get("metadata") or {}
        if (pod.get("status") or {}).get("phase") not in (None, "Running"):
            continue
        for container in (pod.get("spec") or {}).get("containers") or []:
            requests.append(
                PodLogRequest(
                    pod=str(meta.get("name")),
                    namespace=str(meta.get("namespace")),
                    container=str(container.get("name")),
                    follow=follow,
                    # The API takes whole seconds; round up so nothing asked for is lost.
                    since_seconds=max(1, int(since + 0.999)) if since else None,
                )
            )
    return sorted(requests, key=lambda r: (r.pod, r.container))


def controller_pods(session: Session, namespace: str) -> list[dict[str, Any]]:
    try:
        listing = session.core.list_namespaced_pod(namespace, label_selector=POD_SELECTOR)
    except ApiException as exc:
        raise common.api_error(exc, f"listing the controller pods in {namespace}") from None
    pods = [session.api.sanitize_for_serialization(p) for p in listing.items]
    if not pods:
        raise CliError(
            f"no headwater controller pods ({POD_SELECTOR}) in namespace {namespace}; "
            "out of a cluster, pipe the controllers' output in or give --file"
        )
    return pods


def _pod_lines(session: Session, request: PodLogRequest) -> Iterator[str]:
    try:
        response = session.core.read_namespaced_pod_log(
            request.pod, request.namespace, _preload_content=False, **request.kwargs()
        )
    except ApiException as exc:
        raise common.api_error(
            exc, f"reading the logs of {request.namespace}/{request.pod} ({request.container})"
        ) from None
    pending = b""
    for chunk in response.stream(4096):
        pending += chunk
        *complete, pending = pending.split(b"\n")
        for line in complete:
            yield line.decode("utf-8", "replace")
    if pending:
        yield pending.decode("utf-8", "replace")


def pod_lines(session: Session, requests: Sequence[PodLogRequest]) -> Iterator[str]:
    """Every request's lines: read in turn, or, when following, interleaved as they come."""
    if not any(r.follow for r in requests):
        collected = [line for request in requests for line in _pod_lines(session, request)]
        # Several pods: in time order, as one log.
        yield from sorted(collected, key=lambda line: str((parse_line(line) or {}).get("ts", "")))
        return
    lines: queue.Queue[str | BaseException] = queue.Queue()

    def pump(request: PodLogRequest) -> None:
        try:
            for line in _pod_lines(session, request):
                lines.put(line)
        except BaseException as exc:  # reported by the reader, not lost in a thread
            lines.put(exc)

    for request in requests:
        threading.Thread(target=pump, args=(request,), daemon=True).start()
    while True:
        item = lines.get()
        if isinstance(item, BaseException):
            raise item
        yield item


# --- the verb ---------------------------------------------------------------------------


def _since(text: str | None) -> float | None:
    if not text:
        return None
    try:
        return common.parse_timeout(text)
    except argparse.ArgumentTypeError:
        raise CliError(f"--since: {text!r} is not a duration (e.g. 90s, 5m, 1h)", 2) from None


def _source(args: argparse.Namespace, since: float | None) -> tuple[Iterable[str], Session | None]:
    if args.file == "-" or (args.file is None and not sys.stdin.isatty()):
        # A pipe is read as it is written until it closes: following it adds nothing.
        return sys.stdin, None
    if args.file:
        try:
            stream = open(args.file, encoding="utf-8", errors="replace")  # noqa: SIM115
        except OSError as exc:
            raise CliError(f"--file: cannot read {args.file}: {exc.strerror or exc}", 2) from None
        return (follow_file(stream) if args.follow else stream), None
    session = common.connect(args)
    pods = controller_pods(session, args.controllers_namespace)
    return pod_lines(session, pod_log_requests(pods, follow=args.follow, since=since)), session


def _logs(args: argparse.Namespace) -> int:
    since = _since(args.since)
    chosen = LogFilter(
        kind=args.kind,
        name=args.name,
        namespace=args.namespace,
        level=args.level,
        since=common.now() - datetime.timedelta(seconds=since) if since else None,
    )
    lines, session = _source(args, since)
    out = common.console()
    try:
        for raw, parsed in select(lines, chosen):
            if args.output == "json":
                out.file.write(raw + "\n")
                out.file.flush()
            else:
                text = escape(format_line(parsed))
                if out.is_terminal and _rank(parsed.get("level")) >= _rank("error"):
                    text = f"[red]{text}[/red]"
                out.print(text, soft_wrap=True)
    finally:
        if session is not None:
            session.close()
    return common.EXIT_OK


def add_parser(commands: Any) -> None:
    parser = commands.add_parser(
        "logs",
        help="show the controllers' log lines for an object (as `flux logs`)",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--kind", help="only lines about objects of this kind, e.g. Kustomization")
    parser.add_argument("--name", help="only lines about objects of this name")
    parser.add_argument("-n", "--namespace", help="only lines about objects in this namespace")
    parser.add_argument("--level", choices=CHOSEN_LEVELS, help="only lines of this level or above")
    parser.add_argument("-f", "--follow", action="store_true", help="keep printing new lines")
    parser.add_argument("--since", help="only lines newer than this, e.g. 10m, 1h")
    parser.add_argument("--file", help="read the log from this file (- for stdin)")
    parser.add_argument(
        "--controllers-namespace",
        default=CONTROLLERS_NAMESPACE,
        help="where the controller pods run (default: %(default)s)",
    )
    parser.add_argument(
        "-o", "--output", choices=("text", "json"), default="text", help="output format"
    )
    common.add_connection_flags(parser)
    parser.set_defaults(func=common.guarded("logs", _logs))
