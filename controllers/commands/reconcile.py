"""`headwater reconcile`, `suspend` and `resume`: steer Flux objects as `flux` does.

    headwater reconcile ks webapp --with-source      # fetch the new commit, then apply it
    headwater reconcile gitrepo webapp --timeout 2m
    headwater suspend ks webapp
    headwater resume ks webapp                        # waits for Ready, as flux does

`reconcile` sets `reconcile.fluxcd.io/requestedAt` (on the source first with
`--with-source`, waiting until the source handled it and has its artifact),
then shows each step as the object's conditions move, with elapsed time, and
ends with the result. Exit codes: 0 Ready, 1 failed, 3 timed out.
"""

from __future__ import annotations

import argparse
import time
from collections.abc import Callable, Mapping
from typing import Any

from rich import progress
from rich.console import Console
from rich.markup import escape

from controllers.commands import common, health_progress, kinds, live, waiting
from controllers.commands.common import CliError, Session
from controllers.commands.kinds import FluxKind

DEFAULT_TIMEOUT = 300.0
# How often the objects of a Kustomization's health wait are read while waiting.
HEALTH_POLL_SECONDS = 2.0


class Progress:
    """Step lines on stdout (none with -o json); on a terminal also a spinner with elapsed time."""

    def __init__(self, out: Console, quiet: bool) -> None:
        self.out = out
        self.quiet = quiet
        self.started = time.monotonic()
        self._live: progress.Progress | None = None
        self._task: progress.TaskID | None = None

    def elapsed(self) -> str:
        return f"{time.monotonic() - self.started:.1f}s"

    def line(self, symbol: str, text: str, style: str = "") -> None:
        if self.quiet:
            return
        body = f"{symbol} {escape(text)}"
        prefix = (
            f"[dim]{self.elapsed():>7}[/dim] " if self.out.is_terminal else f"{self.elapsed()} "
        )
        self.out.print(prefix + (f"[{style}]{body}[/{style}]" if style else body))

    def waiting(self, text: str) -> None:
        self.line("◎", text)
        if self.quiet or not self.out.is_terminal:
            return
        if self._live is None:
            self._live = progress.Progress(
                progress.SpinnerColumn(),
                progress.TextColumn("{task.description}"),
                progress.TimeElapsedColumn(),
                console=self.out,
                transient=True,
            )
            self._live.start()
            self._task = self._live.add_task(escape(text), total=None)
        else:
            self._update(text)

    def _update(self, text: str) -> None:
        if self._live is not None and self._task is not None:
            self._live.update(self._task, description=escape(text))

    def condition(self, type_: str, found: Mapping[str, Any]) -> None:
        message = str(found.get("message") or found.get("reason") or "")
        status = found.get("status")
        style = "green" if type_ == "Ready" and status == "True" else ""
        if type_ in ("Ready", "Healthy") and status == "False":
            style = "red"
        self.line("•", f"{type_}={status}: {message}", style)
        self._update(f"{type_}: {message}")

    def stop(self) -> None:
        if self._live is not None:
            self._live.stop()
            self._live = None
            self._task = None


def source_of(kind: FluxKind, obj: Mapping[str, Any]) -> tuple[FluxKind, str, str]:
    """The (kind, namespace, name) of the object's source.

    A Kustomization's is its `spec.sourceRef`. A HelmRelease's is the HelmChart
    it pulls its chart from: `spec.chartRef`, or for `spec.chart` the HelmChart
    `<namespace>-<name>` the helm controller creates beside the chart's source
    (what `flux reconcile hr --with-source` reconciles).
    """
    spec = obj.get("spec") or {}
    meta = obj.get("metadata") or {}
    where = f"{kind.kind} {meta.get('namespace')}/{meta.get('name')}"
    if kind is kinds.HELM_RELEASE and not spec.get("chartRef"):
        template = ((spec.get("chart") or {}).get("spec") or {}).get("sourceRef") or {}
        if not template.get("name"):
            raise CliError(f"{where} has neither spec.chart nor spec.chartRef")
        namespace = str(template.get("namespace") or meta.get("namespace"))
        return kinds.HELM_CHART, namespace, f"{meta.get('namespace')}-{meta.get('name')}"
    field = "chartRef" if kind is kinds.HELM_RELEASE else "sourceRef"
    ref = spec.get(field) or {}
    if not ref.get("kind") or not ref.get("name"):
        raise CliError(f"{where} has no spec.{field}")
    try:
        source = kinds.resolve(str(ref["kind"]))
    except CliError:
        raise CliError(
            f"{where}: spec.{field}.kind {ref['kind']} is not a kind headwater serves"
        ) from None
    return source, str(ref.get("namespace") or meta.get("namespace")), str(ref["name"])


def _describe(kind: FluxKind, obj: Mapping[str, Any]) -> str:
    meta = obj.get("metadata") or {}
    return f"{kind.kind} {meta.get('namespace')}/{meta.get('name')}"


def _done_line(kind: FluxKind, obj: Mapping[str, Any]) -> str:
    revision = kinds.revision(kind, obj) if kind.has_revision else ""
    if kind is kinds.KUSTOMIZATION:
        return f"applied revision {revision}"
    if kind is kinds.HELM_RELEASE:
        return f"released chart version {revision}"
    if kind.source:
        return f"fetched revision {revision}" if revision else "reconciled"
    return f"{kind.kind} reconciled"


def _reconcile_one(
    session: Session,
    kind: FluxKind,
    namespace: str,
    name: str,
    deadline: float,
    progress: Progress,
    extra_spec: Mapping[str, Any] = {},
) -> tuple[waiting.Outcome | None, dict[str, Any]]:
    before = waiting.fetch(session, kind, namespace, name)
    if kinds.suspended(before) and not extra_spec:
        raise CliError(
            f"{_describe(kind, before)} is suspended; resume it first (headwater resume)"
        )
    progress.line("►", f"annotating {_describe(kind, before)}")
    token = waiting.request_reconcile(session, kind, namespace, name, extra_spec)
    if not kind.has_status:
        return None, before
    progress.waiting(f"waiting for {_describe(kind, before)} to reconcile")
    on_poll = _health_lines(session, progress) if kind is kinds.KUSTOMIZATION else None
    outcome = waiting.wait_for_reconcile(
        session,
        kind,
        namespace,
        name,
        token,
        max(0.0, deadline - time.monotonic()),
        on_change=progress.condition,
        before=before,
        on_poll=on_poll,
    )
    return outcome, before


def _health_lines(session: Session, progress: Progress) -> Callable[[Mapping[str, Any]], None]:
    """Every HEALTH_POLL_SECONDS, a line per waited-on object whose health moved."""

    def read(api_version: str, kind: str, namespace: str, name: str) -> dict[str, Any] | None:
        resource = live.resource_for(session, api_version, kind)
        return live.get_object(session, resource, namespace, name) if resource else None

    watcher = health_progress.HealthProgress(read)
    last = 0.0

    def poll(obj: Mapping[str, Any]) -> None:
        nonlocal last
        if progress.quiet or time.monotonic() - last < HEALTH_POLL_SECONDS:
            return
        last = time.monotonic()
        for object_id, status in watcher.look(obj):
            progress.line("•", f"health: {object_id.subject} {status}")

    return poll


def _report(
    progress: Progress, kind: FluxKind, outcome: waiting.Outcome | None, obj: Mapping[str, Any]
) -> int:
    progress.stop()
    if outcome is None:
        progress.line("✔", f"{_describe(kind, obj)} annotated; it has no status to wait for")
        return common.EXIT_OK
    if outcome.ok:
        progress.line("✔", _done_line(kind, outcome.obj), "green")
        return common.EXIT_OK
    progress.line("✗", f"{_describe(kind, outcome.obj)}: {outcome.message}", "red")
    return common.EXIT_TIMEOUT if outcome.timed_out else common.EXIT_FAILED


def _result(
    kind: FluxKind, outcome: waiting.Outcome | None, obj: Mapping[str, Any]
) -> dict[str, Any]:
    """The -o json report of one object's reconcile."""
    final = outcome.obj if outcome is not None else obj
    summary = kinds.summary(kind, final)
    if outcome is None:
        return summary | {"result": "annotated"}
    result = "ready" if outcome.ok else ("timeout" if outcome.timed_out else "failed")
    return summary | {
        "result": result,
        "message": outcome.message,
        "elapsedSeconds": round(outcome.elapsed, 3),
    }


def _reconcile(args: argparse.Namespace) -> int:
    kind = kinds.resolve(args.kind)
    quiet = args.output != "table"
    out = common.console()
    progress = Progress(out, quiet)
    deadline = time.monotonic() + args.timeout
    session = common.connect(args)
    report: dict[str, Any] = {}
    try:
        if args.with_source:
            obj = waiting.fetch(session, kind, session.namespace, args.name)
            if kind.source:
                raise CliError(f"{kind.kind} is a source; --with-source needs a kind that has one")
            if kinds.suspended(obj):
                raise CliError(f"{_describe(kind, obj)} is suspended; resume it first")
            source, namespace, name = source_of(kind, obj)
            outcome, before = _reconcile_one(session, source, namespace, name, deadline, progress)
            report["source"] = _result(source, outcome, before)
            code = _report(progress, source, outcome, before)
            if code != common.EXIT_OK:
                report.update(kinds.summary(kind, obj), result="skipped")
                return _finish(out, args, report, code)
        outcome, before = _reconcile_one(
            session, kind, session.namespace, args.name, deadline, progress
        )
        report.update(_result(kind, outcome, before))
        return _finish(out, args, report, _report(progress, kind, outcome, before))
    finally:
        progress.stop()
        session.close()


def _finish(out: Console, args: argparse.Namespace, report: dict[str, Any], code: int) -> int:
    if args.output != "table":
        out.file.write(common.dump(report, args.output))
    return code


# --- suspend / resume -------------------------------------------------------------------


def _suspend(args: argparse.Namespace) -> int:
    kind = kinds.resolve(args.kind)
    out = common.console()
    session = common.connect(args)
    results = []
    try:
        for name in args.names:
            obj = waiting.patch(session, kind, session.namespace, name, {"spec": {"suspend": True}})
            results.append(kinds.summary(kind, obj) | {"result": "suspended"})
            if args.output == "table":
                out.print(f"✔ {escape(_describe(kind, obj))} suspended")
    finally:
        session.close()
    if args.output != "table":
        out.file.write(common.dump(results, args.output))
    return common.EXIT_OK


def _resume(args: argparse.Namespace) -> int:
    kind = kinds.resolve(args.kind)
    out = common.console()
    progress = Progress(out, args.output != "table")
    deadline = time.monotonic() + args.timeout
    session = common.connect(args)
    results = []
    code = common.EXIT_OK
    try:
        for name in args.names:
            # Flux's resume: unsuspend and ask for a reconcile in the same write.
            outcome, before = _reconcile_one(
                session,
                kind,
                session.namespace,
                name,
                deadline,
                progress,
                extra_spec={"suspend": False},
            )
            results.append(_result(kind, outcome, before))
            code = max(code, _report(progress, kind, outcome, before))
    finally:
        progress.stop()
        session.close()
    if args.output != "table":
        out.file.write(common.dump(results, args.output))
    return code


# --- wiring -----------------------------------------------------------------------------


def _common(parser: argparse.ArgumentParser) -> None:
    common.add_namespace_flags(parser, all_namespaces=False)
    common.add_output_flag(parser)
    common.add_connection_flags(parser)


def add_parsers(commands: Any) -> None:
    reconcile = commands.add_parser(
        "reconcile",
        help="reconcile a Flux object now and wait for the result",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    reconcile.add_argument("kind", metavar="KIND", help="e.g. kustomization (ks), gitrepository")
    reconcile.add_argument("name", metavar="NAME")
    reconcile.add_argument(
        "--with-source", action="store_true", help="reconcile its source first, then it"
    )
    common.add_timeout_flag(reconcile, DEFAULT_TIMEOUT)
    _common(reconcile)
    reconcile.set_defaults(func=common.guarded("reconcile", _reconcile))

    suspend = commands.add_parser("suspend", help="stop reconciling Flux objects (spec.suspend)")
    suspend.add_argument("kind", metavar="KIND")
    suspend.add_argument("names", nargs="+", metavar="NAME")
    _common(suspend)
    suspend.set_defaults(func=common.guarded("suspend", _suspend))

    resume = commands.add_parser(
        "resume", help="reconcile suspended Flux objects again and wait for Ready"
    )
    resume.add_argument("kind", metavar="KIND")
    resume.add_argument("names", nargs="+", metavar="NAME")
    common.add_timeout_flag(resume, DEFAULT_TIMEOUT)
    _common(resume)
    resume.set_defaults(func=common.guarded("resume", _resume))
