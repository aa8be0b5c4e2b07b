"""Audit the installed, pinned dependency set with pip-audit; exit 1 on a known vulnerability.

pip-audit asks PyPI's JSON API (``/pypi/<name>/<version>/json``) for each installed
distribution. A package it could not ask about is reported as skipped, not as safe: the
summary says how many were skipped and why. With HEADWATER_AUDIT_STRICT=1 a skipped
package fails the run too (pip-audit's ``--strict``), for networks where PyPI's API is
reachable.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path


def main() -> int:
    pip_audit = Path(sys.executable).with_name("pip-audit")
    strict = os.environ.get("HEADWATER_AUDIT_STRICT", "") not in ("", "0", "false")
    cmd = [str(pip_audit), "--local", "--skip-editable", "--progress-spinner", "off"]
    cmd += ["--format", "json"]
    if strict:
        cmd.append("--strict")
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=600, check=False)
    try:
        report = json.loads(proc.stdout)
    except ValueError:
        sys.stderr.write(proc.stderr[-4000:])
        print(f"pip-audit failed (exit {proc.returncode}) without a report")
        return 1
    vulnerable = [d for d in report["dependencies"] if d.get("vulns")]
    skipped = [d for d in report["dependencies"] if d.get("skip_reason")]
    audited = len(report["dependencies"]) - len(skipped)
    for dep in vulnerable:
        ids = ", ".join(
            v["id"]
            + (f" (fixed in {', '.join(v['fix_versions'])})" if v.get("fix_versions") else "")
            for v in dep["vulns"]
        )
        print(f"VULNERABLE {dep['name']}=={dep['version']}: {ids}")
    print(f"pip-audit: {audited} audited, {len(vulnerable)} vulnerable, {len(skipped)} skipped")
    if skipped:
        reasons = sorted({d["skip_reason"].split(":")[0] for d in skipped})
        print(f"pip-audit skipped {len(skipped)} (e.g. {skipped[0]['name']}): {'; '.join(reasons)}")
    if vulnerable:
        return 1
    if strict and (skipped or proc.returncode != 0):
        return 1
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
