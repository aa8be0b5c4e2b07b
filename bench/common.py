"""Measurement and report helpers every benchmark in bench/ shares.

Figures are summarized as median, min and max of a few repetitions; CPU comes from
getrusage; the machine's size and load go into every report, since other work on a
shared machine stretches wall times; a report is a JSON file plus a Markdown table,
both written atomically.
"""

from __future__ import annotations

import datetime
import json
import os
import platform
import resource
import statistics
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any


def rusage_cpu(who: int) -> float:
    """User plus system CPU seconds of this process (RUSAGE_SELF) or its waited-for children."""
    usage = resource.getrusage(who)
    return usage.ru_utime + usage.ru_stime


def process_cpu() -> float:
    """CPU seconds of this process and every child it has waited for."""
    return rusage_cpu(resource.RUSAGE_SELF) + rusage_cpu(resource.RUSAGE_CHILDREN)


def max_rss_mib(who: int) -> float:
    # ru_maxrss is in KiB on Linux.
    return round(resource.getrusage(who).ru_maxrss / 1024, 1)


def summarize(values: Sequence[float]) -> dict[str, float]:
    """Median, min and max, rounded for the report."""
    return {
        "median": round(statistics.median(values), 4),
        "min": round(min(values), 4),
        "max": round(max(values), 4),
    }


def load_average() -> list[float]:
    return [round(x, 2) for x in os.getloadavg()]


def utc_now() -> str:
    return datetime.datetime.now(datetime.UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def machine_info() -> dict[str, Any]:
    """What every report says about the machine; callers add their tools' versions."""
    return {
        "cores": os.cpu_count(),
        "python": platform.python_version(),
        "implementation": platform.python_implementation(),
        "platform": platform.platform(),
        "machine": platform.machine(),
    }


def stat_range(stat: Mapping[str, float], scale: float = 1.0, digits: int = 2) -> str:
    """`median (min-max)` of a `summarize` result, scaled."""
    return (
        f"{stat['median'] * scale:.{digits}f} "
        f"({stat['min'] * scale:.{digits}f}-{stat['max'] * scale:.{digits}f})"
    )


def write_report(out: Path, name: str, report: Mapping[str, Any], table: str) -> tuple[Path, Path]:
    """Write `<name>.json` and `<name>.md` atomically into `out`."""
    out.mkdir(parents=True, exist_ok=True)
    paths = (out / f"{name}.json", out / f"{name}.md")
    texts = (json.dumps(report, indent=2, sort_keys=False) + "\n", table)
    for path, text in zip(paths, texts, strict=True):
        tmp = path.with_name(path.name + ".tmp")
        tmp.write_text(text)
        tmp.replace(path)
    return paths
