from __future__ import annotations

import io
import json
import logging
import re
from collections.abc import Iterator

import pytest

from controllers.toolkit.runtime.logs import about_object, configure_logging, object_fields

BODY = {
    "apiVersion": "kustomize.toolkit.fluxcd.io/v1",
    "kind": "Kustomization",
    "metadata": {"name": "apps", "namespace": "flux-system"},
}


@pytest.fixture
def stream() -> Iterator[io.StringIO]:
    root = logging.getLogger()
    level = root.level
    out = io.StringIO()
    yield out
    for handler in list(root.handlers):
        if handler.get_name() == "headwater":
            root.removeHandler(handler)
    root.setLevel(level)


def lines(stream: io.StringIO) -> list[str]:
    return stream.getvalue().splitlines()


def test_json_lines_carry_the_fixed_keys_and_object_fields(stream: io.StringIO) -> None:
    configure_logging("json", "info", stream=stream)
    logging.getLogger("headwater.test").info(
        "applied %d objects", 3, extra={**object_fields(BODY, controller="kustomize"), "rev": "x"}
    )
    [line] = lines(stream)
    record = json.loads(line)
    assert list(record)[:4] == ["ts", "level", "logger", "msg"]
    assert re.fullmatch(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z", record["ts"])
    assert record["level"] == "info"
    assert record["logger"] == "headwater.test"
    assert record["msg"] == "applied 3 objects"
    assert record["controller"] == "kustomize"
    assert record["kind"] == "Kustomization"
    assert record["namespace"] == "flux-system"
    assert record["name"] == "apps"
    assert record["rev"] == "x"


def test_json_keeps_one_line_for_multiline_messages_and_tracebacks(stream: io.StringIO) -> None:
    configure_logging("json", "info", stream=stream)
    log = logging.getLogger("headwater.test")
    try:
        raise RuntimeError("boom")
    except RuntimeError:
        log.exception("first line\nsecond line")
    [line] = lines(stream)
    record = json.loads(line)
    assert record["level"] == "error"
    assert record["msg"] == "first line\nsecond line"
    assert "RuntimeError: boom" in record["error"]


def test_json_encodes_any_extra_value(stream: io.StringIO) -> None:
    configure_logging("json", "info", stream=stream)
    logging.getLogger("t").info("m", extra={"thing": object(), "items": [1, 2]})
    record = json.loads(lines(stream)[0])
    assert record["thing"].startswith("<object object")
    assert record["items"] == [1, 2]


def test_extras_cannot_replace_the_fixed_keys(stream: io.StringIO) -> None:
    configure_logging("json", "info", stream=stream)
    # The stdlib already refuses `msg`; these three it would let through.
    logging.getLogger("t").info("real", extra={"ts": "fake", "level": "fake", "logger": "fake"})
    record = json.loads(lines(stream)[0])
    assert record["ts"] != "fake"
    assert record["level"] == "info"
    assert record["logger"] == "t"


def test_kopf_object_references_become_fields(stream: io.StringIO) -> None:
    configure_logging("json", "info", stream=stream)
    ref = {"apiVersion": "v1", "kind": "ConfigMap", "name": "c", "namespace": "n", "uid": "u"}
    # The shape kopf's object loggers attach; any logger name carries it through.
    logging.getLogger("headwater.test").info("handled", extra={"k8s_ref": ref, "k8s_skip": False})
    record = json.loads(lines(stream)[0])
    assert (record["kind"], record["namespace"], record["name"]) == ("ConfigMap", "n", "c")
    assert "k8s_ref" not in record
    assert "k8s_skip" not in record


def test_level_filters_lower_records(stream: io.StringIO) -> None:
    configure_logging("json", "warning", stream=stream)
    log = logging.getLogger("t")
    log.info("hidden")
    log.warning("shown")
    assert [json.loads(line)["msg"] for line in lines(stream)] == ["shown"]


def test_text_format_shows_fields_as_key_value(stream: io.StringIO) -> None:
    configure_logging("text", "info", stream=stream)
    logging.getLogger("t").info("hello", extra={**object_fields(BODY), "note": "two words"})
    [line] = lines(stream)
    assert " info    t: hello " in line
    assert "kind=Kustomization namespace=flux-system name=apps" in line
    assert 'note="two words"' in line


def test_reconfiguring_replaces_the_handler(stream: io.StringIO) -> None:
    configure_logging("text", "info", stream=io.StringIO())
    configure_logging("json", "info", stream=stream)
    logging.getLogger("t").info("once")
    assert len(lines(stream)) == 1
    named = [h for h in logging.getLogger().handlers if h.get_name() == "headwater"]
    assert len(named) == 1


def test_lines_logged_during_a_reconcile_name_its_object(stream: io.StringIO) -> None:
    configure_logging("json", "info", stream=stream)
    log = logging.getLogger("headwater.test")
    with about_object("Kustomization", "apps", "web"):
        log.info("applied")
        # A record naming its own object keeps it.
        log.info(
            "source", extra=object_fields({"kind": "GitRepository", "metadata": {"name": "s"}})
        )
    log.info("after")
    first, second, after = (json.loads(line) for line in lines(stream))
    assert (first["kind"], first["namespace"], first["name"]) == ("Kustomization", "apps", "web")
    assert (second["kind"], second["name"]) == ("GitRepository", "s")
    assert "namespace" not in second
    assert "kind" not in after
