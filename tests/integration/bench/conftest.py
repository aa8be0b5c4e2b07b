"""Running a benchmark's `--quick` mode, for the tests beside this file.

Each benchmark starts its own control plane (or git server) in a child process, as a
user would run it; the tests check the report it wrote and the table it printed.
"""

from __future__ import annotations

import dataclasses
import json
import subprocess
import sys
from pathlib import Path
from typing import Any

REPO_ROOT = Path(__file__).resolve().parents[3]


@dataclasses.dataclass(frozen=True)
class QuickRun:
    report: dict[str, Any]  # the JSON report
    table: str  # the Markdown table, as written and as printed


def run_quick(module: str, report_name: str, out: Path, timeout: float, *extra: str) -> QuickRun:
    """Run `python -m <module> --quick --out <out> <extra>`; it must succeed, write its
    own `<report_name>` report and print the table it wrote."""
    proc = subprocess.run(
        [sys.executable, "-m", module, "--quick", "--out", str(out), *extra],
        cwd=REPO_ROOT,
        capture_output=True,
        text=True,
        timeout=timeout,
        check=False,
    )
    assert proc.returncode == 0, proc.stderr[-4000:]
    report = json.loads((out / f"{report_name}.json").read_text())
    assert report["benchmark"] == report_name
    assert report["quick"] is True
    table = (out / f"{report_name}.md").read_text()
    assert table in proc.stdout
    return QuickRun(report, table)
