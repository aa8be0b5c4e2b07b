"""Audit the installed, pinned dependency set against PyPI's advisory data; exit 1 on a
known vulnerability.

The scanner is pip-audit (pinned in pyproject.toml). Its PyPI service asks
``/pypi/<name>/<version>/json`` for each installed distribution; PyPI answers there with
the release's ``vulnerabilities`` (the PyPA advisory database, matched to the version by
PyPI). Where that endpoint is not served (it answers 404 on some networks and mirrors,
and pip-audit then skips the package as "not found"), the project endpoint
``/pypi/<name>/json`` still carries the same ``vulnerabilities`` key for the project's
latest release: for a package whose installed version *is* that release, it is the
same data, and this script uses it. A package neither answer covers (its installed
version is not the latest, or PyPI cannot be reached) is reported as NOT AUDITED, by
name, and the summary says INCOMPLETE, never passed.

Exit status: 1 on any known vulnerability; 0 otherwise, unless HEADWATER_AUDIT_STRICT=1,
where a package that could not be audited fails the run too.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import urllib.error
import urllib.request
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

PROJECT_JSON = "https://pypi.org/pypi/{name}/json"
NOT_FOUND = "Dependency not found on PyPI"


@dataclass
class Audit:
    """What was learnt about each installed distribution."""

    audited: dict[str, str] = field(default_factory=dict)  # name -> version
    by_project_json: list[str] = field(default_factory=list)
    vulnerable: dict[str, list[str]] = field(default_factory=dict)  # "name==v" -> ids
    not_audited: dict[str, str] = field(default_factory=dict)  # "name==v" -> why
    own: list[str] = field(default_factory=list)  # editable: this project itself

    @property
    def complete(self) -> bool:
        return not self.not_audited


def project_json(name: str) -> Mapping[str, Any]:
    """PyPI's project JSON for `name` (raises OSError/ValueError when it cannot be had)."""
    url = PROJECT_JSON.format(name=name)
    with urllib.request.urlopen(url, timeout=30) as response:
        data: Mapping[str, Any] = json.load(response)
    return data


def advisories(vulns: list[Mapping[str, Any]] | None) -> list[str]:
    """The ids (with fix versions) of PyPI `vulnerabilities` entries not withdrawn."""
    found = []
    for vuln in vulns or []:
        if vuln.get("withdrawn"):
            continue
        fixed = vuln.get("fixed_in") or []
        found.append(vuln["id"] + (f" (fixed in {', '.join(fixed)})" if fixed else ""))
    return found


def classify(
    report: Mapping[str, Any], fetch: Callable[[str], Mapping[str, Any]] = project_json
) -> Audit:
    """Merge pip-audit's JSON report with PyPI's project JSON for what pip-audit skipped."""
    audit = Audit()
    for dep in report["dependencies"]:
        name, version = dep["name"], dep.get("version")
        reason = dep.get("skip_reason")
        if reason is None:
            audit.audited[name] = version
            ids = [
                v["id"]
                + (f" (fixed in {', '.join(v['fix_versions'])})" if v.get("fix_versions") else "")
                for v in dep.get("vulns") or []
            ]
            if ids:
                audit.vulnerable[f"{name}=={version}"] = ids
            continue
        if "editable" in reason:
            audit.own.append(name)
            continue
        if version is None:
            # pip-audit's skip entries name the version only in their reason.
            version = reason.rsplit("(", 1)[-1].rstrip(")") if reason.endswith(")") else "?"
        key = f"{name}=={version}"
        if not reason.startswith(NOT_FOUND):
            audit.not_audited[key] = reason
            continue
        try:
            data = fetch(name)
        except (OSError, ValueError) as exc:
            audit.not_audited[key] = f"{reason}; {PROJECT_JSON.format(name=name)}: {exc}"
            continue
        latest = data.get("info", {}).get("version")
        if latest != version:
            audit.not_audited[key] = (
                f"PyPI's per-version JSON is not served here and its project JSON "
                f"carries advisories for the latest release only ({latest})"
            )
            continue
        audit.audited[name] = version
        audit.by_project_json.append(name)
        ids = advisories(data.get("vulnerabilities"))
        if ids:
            audit.vulnerable[key] = ids
    return audit


def summary(audit: Audit) -> list[str]:
    lines = [f"VULNERABLE {key}: {', '.join(ids)}" for key, ids in audit.vulnerable.items()]
    lines += [f"NOT AUDITED {key}: {why}" for key, why in audit.not_audited.items()]
    total = len(audit.audited) + len(audit.not_audited)
    via = (
        f" ({len(audit.by_project_json)} through PyPI's project JSON)"
        if audit.by_project_json
        else ""
    )
    verdict = (
        "FAILED"
        if audit.vulnerable
        else ("passed" if audit.complete else "INCOMPLETE (not passed)")
    )
    lines.append(
        f"audit {verdict}: {len(audit.audited)} of {total} audited{via}, "
        f"{len(audit.vulnerable)} vulnerable, {len(audit.not_audited)} not audited"
        + (f"; {', '.join(audit.own)} (this project, editable) not audited" if audit.own else "")
    )
    return lines


def main() -> int:
    pip_audit = Path(sys.executable).with_name("pip-audit")
    strict = os.environ.get("HEADWATER_AUDIT_STRICT", "") not in ("", "0", "false")
    cmd = [str(pip_audit), "--local", "--skip-editable", "--progress-spinner", "off"]
    cmd += ["--format", "json"]
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=600, check=False)
    try:
        report = json.loads(proc.stdout)
    except ValueError:
        sys.stderr.write(proc.stderr[-4000:])
        print(f"audit FAILED: pip-audit exited {proc.returncode} without a report")
        return 1
    audit = classify(report)
    print("\n".join(summary(audit)))
    if audit.vulnerable:
        return 1
    if strict and not audit.complete:
        return 1
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
