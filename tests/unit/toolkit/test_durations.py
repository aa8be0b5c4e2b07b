from __future__ import annotations

import pytest

from controllers.toolkit.runtime.durations import (
    DurationError,
    format_duration,
    jittered,
    parse_duration,
)


@pytest.mark.parametrize(
    ("text", "seconds"),
    [
        ("30s", 30),
        ("5m", 300),
        ("1h30m", 5400),
        ("1.5s", 1.5),
        ("250ms", 0.25),
        ("0", 0),
        ("2h0m0s", 7200),
    ],
)
def test_parses_go_durations(text: str, seconds: float) -> None:
    assert parse_duration(text) == pytest.approx(seconds)


@pytest.mark.parametrize("text", ["", "5", "5 m", "m5", "1d", "-1s", "1m junk"])
def test_rejects_anything_else_naming_the_field(text: str) -> None:
    with pytest.raises(DurationError, match=r"spec\.interval"):
        parse_duration(text, field="spec.interval")


def test_jitter_stays_within_five_percent() -> None:
    values = [jittered(100.0) for _ in range(200)]
    assert all(95.0 <= v <= 105.0 for v in values)
    assert len(set(values)) > 1


def test_format_duration_reads_like_flux() -> None:
    assert format_duration(90) == "1m30s"
    assert format_duration(2.5) == "2.5s"
    assert format_duration(3600) == "1h0m0s"
