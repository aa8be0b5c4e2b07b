"""The long fault variants CI does not run: a 5-minute Slack outage (CI: 30 s) and a
kill -9 in the middle of applying 2,000 objects (CI: 400).

It runs the fault tests themselves (tests/integration/faults/) with the longer
setting, on a control plane of their own, collects the ``FIGURE name=value`` lines they
report (through ``HEADWATER_FIGURES``) and writes them as bench/reports/faults.{json,md}:

    .venv/bin/python -m bench.faults [--outage 300] [--objects 2000] [--out bench/reports]
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parent.parent
SELECT = [
    "-k",
    "outage or kill_9",
    "tests/integration/faults/test_notification_faults.py",
    "tests/integration/faults/test_controller_kill.py",
]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--outage", type=float, default=300.0, help="seconds Slack is down")
    parser.add_argument("--objects", type=int, default=2000, help="objects applied when killed")
    parser.add_argument("--out", type=Path, default=REPO_ROOT / "bench" / "reports")
    args = parser.parse_args(argv)
    with tempfile.TemporaryDirectory(prefix="hw-faults-bench-") as tmp:
        figures_file = Path(tmp) / "figures.jsonl"
        env = {
            **os.environ,
            "HEADWATER_FAULT_OUTAGE_SECONDS": f"{args.outage:g}",
            "HEADWATER_FAULT_KILL_OBJECTS": str(args.objects),
            "HEADWATER_FIGURES": str(figures_file),
        }
        started = time.monotonic()
        proc = subprocess.run(
            [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", *SELECT],
            cwd=REPO_ROOT,
            env=env,
            check=False,
        )
        took = time.monotonic() - started
        figures = (
            [json.loads(line) for line in figures_file.read_text().splitlines()]
            if figures_file.exists()
            else []
        )
    report = {
        "benchmark": "faults",
        "outage_seconds": args.outage,
        "kill_objects": args.objects,
        "passed": proc.returncode == 0,
        "seconds": round(took, 1),
        "figures": {f["name"]: f["value"] for f in figures},
    }
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "faults.json").write_text(json.dumps(report, indent=2) + "\n")
    lines = [
        f"# Faults, long variants (Slack down {args.outage:g} s, kill -9 of {args.objects})",
        "",
        f"Tests {'passed' if report['passed'] else 'FAILED'} in {took:.0f} s.",
        "",
        "| Figure | Value |",
        "|---|---|",
        *(f"| {f['name']} | {_shown(f['value'])}{f['unit']} |" for f in figures),
        "",
    ]
    table = "\n".join(lines)
    (args.out / "faults.md").write_text(table)
    print(table)
    return proc.returncode


def _shown(value: object) -> str:
    return f"{value:.2f}" if isinstance(value, float) else str(value)


if __name__ == "__main__":
    raise SystemExit(main())
