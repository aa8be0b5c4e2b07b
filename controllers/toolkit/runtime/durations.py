"""Go duration strings, as Flux's APIs write `interval`, `timeout` and friends.

The CRDs already restrict these fields to `^([0-9]+(\\.[0-9]+)?(ms|s|m|h))+$`;
this parser accepts the same language (plus Go's `us`/`ns`, harmlessly) and
rejects anything else with a message naming the field.
"""

from __future__ import annotations

import random
import re

_UNIT_SECONDS = {"h": 3600.0, "m": 60.0, "s": 1.0, "ms": 1e-3, "us": 1e-6, "µs": 1e-6, "ns": 1e-9}
_PART = re.compile(r"(\d+(?:\.\d+)?)(ms|us|µs|ns|h|m|s)")

# Flux spreads periodic reconciles by up to ±5% so objects created together
# do not poll their sources in lockstep.
JITTER_FRACTION = 0.05


class DurationError(ValueError):
    pass


def parse_duration(text: str, *, field: str = "duration") -> float:
    """Seconds in a Go duration string such as `1m30s`; raises DurationError naming `field`."""
    value = text.strip()
    if value == "0":
        return 0.0
    position, total = 0, 0.0
    for match in _PART.finditer(value):
        if match.start() != position:
            break
        total += float(match.group(1)) * _UNIT_SECONDS[match.group(2)]
        position = match.end()
    if position != len(value) or not value:
        raise DurationError(
            f"{field}: invalid duration {text!r}, expected e.g. '30s', '5m', '1h30m'"
        )
    return total


def jittered(seconds: float, fraction: float = JITTER_FRACTION) -> float:
    """`seconds` moved randomly by up to ±`fraction` of itself."""
    return seconds * (1.0 + random.uniform(-fraction, fraction))


def format_duration(seconds: float) -> str:
    """A short human form, as Flux prints durations in messages (`1m0s`, `2.5s`)."""
    if seconds < 1:
        return f"{seconds * 1000:.0f}ms"
    minutes, rest = divmod(seconds, 60)
    hours, minutes = divmod(int(minutes), 60)
    text = f"{rest:.0f}s" if float(rest).is_integer() else f"{rest:.1f}s"
    if hours:
        return f"{hours}h{minutes}m{text}"
    if minutes:
        return f"{minutes}m{text}"
    return text
