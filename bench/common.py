"""Measurement and report helpers every benchmark in bench/ shares.

Figures are summarized as median, min and max of a few repetitions; CPU comes from
getrusage; the machine's size and load go into every report, since other work on a
shared machine stretches wall times; a report is a JSON file plus a Markdown table,
both written atomically. The command line every benchmark takes starts here too.
"""

from __future__ import annotations

import argparse
import datetime
import json
import math
import os
import platform
import resource
import statistics
import sys
import time
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any

REPORTS_DIR = Path(__file__).resolve().parent / "reports"
# One seed for every benchmark, so their generated content stays put between runs.
DEFAULT_SEED = 20240611


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


def percentile(values: Sequence[float], share: float) -> float:
    """The nearest-rank percentile (`share` in (0, 1]): a value that was measured."""
    ordered = sorted(values)
    rank = max(1, math.ceil(share * len(ordered)))
    return ordered[rank - 1]


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


def report_head(name: str, *, quick: bool, seed: int) -> dict[str, Any]:
    """The fields every report starts with; `created` is when this is called."""
    return {"benchmark": name, "format": 1, "created": utc_now(), "quick": quick, "seed": seed}


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


def publish_report(out: Path, name: str, report: Mapping[str, Any], table: str) -> None:
    """Write the report, print its table on stdout and where it went on stderr."""
    json_path, table_path = write_report(out, name, report, table)
    print(table)
    print(f"wrote {json_path} and {table_path}", file=sys.stderr)


def progress(message: str) -> None:
    """A timestamped progress line on stderr (stdout is for the table)."""
    print(f"[{time.strftime('%H:%M:%S')}] {message}", file=sys.stderr, flush=True)


def argument_parser(module: str, doc: str, quick_help: str) -> argparse.ArgumentParser:
    """`--quick`, `--out` and `--seed`, which every benchmark takes; the first paragraph
    of the module's docstring `doc` is the description."""
    parser = argparse.ArgumentParser(prog=f"python -m {module}", description=doc.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help=quick_help)
    parser.add_argument("--out", type=Path, default=REPORTS_DIR, help="report directory")
    parser.add_argument("--seed", type=int, default=DEFAULT_SEED)
    return parser


def whole_numbers(what: str, example: str, low: int, high: int) -> Callable[[str], tuple[int, ...]]:
    """An argparse type: comma-separated whole numbers in [low, high], e.g. `100,500`."""

    def parse(value: str) -> tuple[int, ...]:
        try:
            numbers = tuple(int(part) for part in value.split(",") if part.strip())
        except ValueError:
            raise argparse.ArgumentTypeError(
                f"expected {what} like {example}, got {value!r}"
            ) from None
        if not numbers or any(not low <= number <= high for number in numbers):
            raise argparse.ArgumentTypeError(f"{what} must be in [{low}, {high}], got {value!r}")
        return numbers

    return parse
