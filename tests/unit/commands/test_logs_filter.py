"""`headwater logs`: which JSON lines it keeps, how it prints them, what it asks the API for."""

from __future__ import annotations

import datetime
import io
import json
import threading
from typing import Any

from controllers.commands import logs
from controllers.commands.logs import LogFilter


def _line(**fields: Any) -> str:
    base = {"ts": "2026-01-02T10:00:00.000Z", "level": "info", "logger": "x", "msg": "m"}
    return json.dumps({**base, **fields})


LINES = [
    _line(kind="Kustomization", namespace="apps", name="web", msg="applied"),
    _line(kind="Kustomization", namespace="apps", name="api", msg="other name"),
    _line(kind="Kustomization", namespace="dev", name="web", msg="other namespace"),
    _line(kind="GitRepository", namespace="apps", name="web", msg="other kind"),
    _line(kind="Kustomization", namespace="apps", name="web", level="error", msg="failed"),
    _line(kind="Kustomization", namespace="apps", name="web", level="debug", msg="detail"),
    "Traceback (most recent call last):",
    "2026-01-02T10:00:00Z info  text format line",
    '{"not": "a log line"}',
]


def _messages(chosen: LogFilter, lines: list[str] = LINES) -> list[str]:
    return [parsed["msg"] for _, parsed in logs.select(lines, chosen)]


def test_the_object_filter_needs_every_given_part_and_ignores_kind_case() -> None:
    assert _messages(LogFilter(kind="kustomization", name="web", namespace="apps")) == [
        "applied",
        "failed",
        "detail",
    ]
    assert _messages(LogFilter(name="web")) == [
        "applied",
        "other namespace",
        "other kind",
        "failed",
        "detail",
    ]


def test_no_filter_keeps_every_json_log_line_and_skips_the_rest() -> None:
    assert len(_messages(LogFilter())) == 6


def test_level_keeps_that_level_and_above() -> None:
    assert _messages(
        LogFilter(name="web", namespace="apps", kind="Kustomization", level="error")
    ) == ["failed"]
    kept = _messages(LogFilter(namespace="apps", kind="Kustomization", name="web", level="info"))
    assert kept == ["applied", "failed"]
    warning = [_line(level="warning", msg="w"), _line(level="critical", msg="c")]
    assert _messages(LogFilter(level="error"), warning) == ["c"]
    assert _messages(LogFilter(level="info"), warning) == ["w", "c"]


def test_since_drops_older_lines_and_lines_without_a_time() -> None:
    since = datetime.datetime(2026, 1, 2, 10, 0, 30, tzinfo=datetime.UTC)
    lines = [
        _line(msg="old"),
        _line(ts="2026-01-02T10:01:00.000Z", msg="new"),
        json.dumps({"level": "info", "msg": "no time"}),
    ]
    assert _messages(LogFilter(since=since), lines) == ["new"]


def test_the_raw_line_is_kept_for_json_output() -> None:
    (raw, _), *_ = logs.select([LINES[0] + "\n"], LogFilter())
    assert raw == LINES[0]


def test_a_line_prints_with_its_object_and_extra_fields() -> None:
    parsed = json.loads(
        _line(
            controller="kustomize",
            kind="Kustomization",
            namespace="apps",
            name="web",
            revision="main@sha1:abc",
            note="two words",
        )
    )
    assert logs.format_line(parsed) == (
        "2026-01-02T10:00:00.000Z info    [kustomize] Kustomization/apps/web m "
        'revision=main@sha1:abc note="two words"'
    )


def test_follow_reads_what_is_appended() -> None:
    stream = io.StringIO("one\n")
    stop = threading.Event()
    lines = logs.follow_file(stream, stop)
    assert next(lines) == "one\n"
    stream.write("two\n")
    stream.seek(4)
    assert next(lines) == "two\n"
    stop.set()
    assert list(lines) == []


def _pod(name: str, phase: str, *containers: str) -> dict[str, Any]:
    return {
        "metadata": {"name": name, "namespace": "headwater-system"},
        "spec": {
            "containers": [{"name": c} for c in containers],
            "initContainers": [{"name": "i"}],
        },
        "status": {"phase": phase},
    }


def test_pod_log_requests_ask_each_running_container() -> None:
    pods = [
        _pod("source-b", "Running", "manager"),
        _pod("kustomize-a", "Running", "manager", "sidecar"),
        _pod("old", "Succeeded", "manager"),
    ]
    requests = logs.pod_log_requests(pods, follow=True, since=90.2)
    assert [(r.pod, r.container) for r in requests] == [
        ("kustomize-a", "manager"),
        ("kustomize-a", "sidecar"),
        ("source-b", "manager"),
    ]
    assert requests[0].namespace == "headwater-system"
    assert requests[0].kwargs() == {"container": "manager", "follow": True, "since_seconds": 91}
    once = logs.pod_log_requests(pods[:1], follow=False, since=None)
    assert once[0].kwargs() == {"container": "manager", "follow": False}
