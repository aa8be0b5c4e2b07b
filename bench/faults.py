"""The long fault variants CI does not run: a 5-minute Slack outage (CI: 30 s), a
kill -9 in the middle of applying 2,000 objects (CI: 400) and 1,000 objects all failing
health (CI: 200).

It runs the fault tests themselves (tests/integration/faults/) with the longer
setting, on a control plane of their own, collects the ``FIGURE name=value`` lines they
report (through ``HEADWATER_FIGURES``) and writes them as bench/reports/faults.{json,md}:

    .venv/bin/python -m bench.faults [--outage 300] [--objects 2000] [--failing 1000]
        [--health-timeout 120] [--out bench/reports]
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
    "outage or kill_9 or failing_objects",
    "tests/integration/faults/test_notification_faults.py",
    "tests/integration/faults/test_controller_kill.py",
    "tests/integration/faults/test_reconcile_limits.py",
]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--outage", type=float, default=300.0, help="seconds Slack is down")
    parser.add_argument("--objects", type=int, default=2000, help="objects applied when killed")
    parser.add_argument("--failing", type=int, default=1000, help="objects failing health")
    parser.add_argument(
        "--health-timeout", type=int, default=120, help="spec.timeout of the failing objects"
    )
    parser.add_argument("-k", dest="select", help="run only the tests pytest -k selects")
    parser.add_argument("--out", type=Path, default=REPO_ROOT / "bench" / "reports")
    args = parser.parse_args(argv)
    with tempfile.TemporaryDirectory(prefix="hw-faults-bench-") as tmp:
        figures_file = Path(tmp) / "figures.jsonl"
        env = {
            **os.environ,
            "HEADWATER_FAULT_OUTAGE_SECONDS": f"{args.outage:g}",
            "HEADWATER_FAULT_KILL_OBJECTS": str(args.objects),
            "HEADWATER_FAULT_FAILING_OBJECTS": str(args.failing),
            "HEADWATER_FAULT_HEALTH_TIMEOUT": str(args.health_timeout),
            "HEADWATER_FIGURES": str(figures_file),
        }
        select = ["-k", args.select, *SELECT[2:]] if args.select else SELECT
        load_before = os.getloadavg()
        started = time.monotonic()
        proc = subprocess.run(
            [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", *select],
            cwd=REPO_ROOT,
            env=env,
            check=False,
        )
        took = time.monotonic() - started
        load_after = os.getloadavg()
        figures = (
            [json.loads(line) for line in figures_file.read_text().splitlines()]
            if figures_file.exists()
            else []
        )
    report = {
        "benchmark": "faults",
        "outage_seconds": args.outage,
        "kill_objects": args.objects,
        "failing_objects": args.failing,
        "health_timeout_seconds": args.health_timeout,
        "selected": args.select,
        "date": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime()),
        "load_average_1m": [round(load_before[0], 2), round(load_after[0], 2)],
        "cpus": os.cpu_count(),
        "passed": proc.returncode == 0,
        "seconds": round(took, 1),
        "figures": {f["name"]: f["value"] for f in figures},
    }
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "faults.json").write_text(json.dumps(report, indent=2) + "\n")
    lines = [
        f"# Faults, long variants (Slack down {args.outage:g} s, kill -9 of {args.objects}, "
        f"{args.failing} failing health)",
        "",
        f"Tests {'passed' if report['passed'] else 'FAILED'} in {took:.0f} s"
        + (f" (only `-k {args.select}`)" if args.select else "")
        + f", {report['date']}, {os.cpu_count()} cores, load average (1 min) "
        f"{load_before[0]:.1f} at the start and {load_after[0]:.1f} at the end.",
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
