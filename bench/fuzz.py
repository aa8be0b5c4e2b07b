"""The fuzz targets of tests/unit/fuzz, run long: ``make fuzz`` (or ``python -m bench.fuzz``).

CI runs each target with the `ci` profile (200 examples); this runs them with the `long`
profile (``--examples`` each, 5,000 by default) and writes bench/reports/fuzz.md with the
examples run per target, from hypothesis' own statistics. A failing example fails the run.
"""

from __future__ import annotations

import argparse
import os
import re
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
REPORT = ROOT / "bench" / "reports" / "fuzz.md"
_TARGET = re.compile(r"^(tests/unit/fuzz/\S+::\S+):\s*$", re.MULTILINE)
_PASSING = re.compile(
    r"- during generate phase \(([\d.]+) seconds\):.*?- (\d+) passing, (\d+) failing", re.DOTALL
)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--examples", type=int, default=5000, help="examples per target")
    parser.add_argument("-k", default="", help="only targets matching this pytest expression")
    args = parser.parse_args()
    env = {
        **os.environ,
        "HYPOTHESIS_PROFILE": "long",
        "HEADWATER_FUZZ_EXAMPLES": str(args.examples),
    }
    cmd = [
        sys.executable,
        "-m",
        "pytest",
        "tests/unit/fuzz",
        "-q",
        "-p",
        "no:cacheprovider",
        "--hypothesis-show-statistics",
    ]
    if args.k:
        cmd += ["-k", args.k]
    started = time.monotonic()
    proc = subprocess.run(cmd, cwd=ROOT, env=env, capture_output=True, text=True, check=False)
    elapsed = time.monotonic() - started
    out = proc.stdout
    rows = []
    blocks = _TARGET.split(out)
    for name, block in zip(blocks[1::2], blocks[2::2], strict=False):
        found = _PASSING.search(block)
        if found:
            rows.append((name, int(found.group(2)), int(found.group(3)), float(found.group(1))))
    lines = [
        "# Fuzzing, long run",
        "",
        f"`python -m bench.fuzz --examples {args.examples}"
        + (f" -k '{args.k}'" if args.k else "")
        + f"`: {len(rows)} targets, "
        f"{sum(r[1] for r in rows)} examples, {elapsed:.0f} s, pytest exit {proc.returncode}.",
        "",
        "| target | passing examples | failing | seconds |",
        "| --- | ---: | ---: | ---: |",
        *(f"| `{n}` | {p} | {f} | {s:.1f} |" for n, p, f, s in rows),
        "",
    ]
    REPORT.write_text("\n".join(lines))
    print("\n".join(lines))
    if proc.returncode != 0:
        print(out[-6000:])
    return proc.returncode


if __name__ == "__main__":
    raise SystemExit(main())
