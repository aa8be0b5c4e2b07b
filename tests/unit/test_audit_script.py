"""scripts/audit.py: what pip-audit could not ask PyPI about is audited through PyPI's
project JSON when the installed version is the latest release, and otherwise named as
not audited, never counted as passed."""

from __future__ import annotations

import importlib.util
import sys
from collections.abc import Mapping
from pathlib import Path
from types import ModuleType
from typing import Any

import pytest

SCRIPT = Path(__file__).resolve().parents[2] / "scripts" / "audit.py"


@pytest.fixture(scope="module")
def audit() -> ModuleType:
    spec = importlib.util.spec_from_file_location("headwater_audit_script", SCRIPT)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # dataclasses look their module up
    spec.loader.exec_module(module)
    return module


def skipped(name: str, version: str) -> dict[str, str]:
    return {
        "name": name,
        "skip_reason": f"Dependency not found on PyPI and could not be audited: {name} ({version})",
    }


# PyPI's project JSON for an abandoned package whose latest release has advisories (the
# shape of https://pypi.org/pypi/pycrypto/json's `vulnerabilities`).
PROJECTS: dict[str, Mapping[str, Any]] = {
    "pycrypto": {
        "info": {"version": "2.6.1"},
        "vulnerabilities": [
            {"id": "PYSEC-2017-94", "aliases": ["CVE-2013-7459"], "fixed_in": []},
            {"id": "PYSEC-0000-1", "aliases": [], "fixed_in": ["9"], "withdrawn": "2024-01-01"},
        ],
    },
    "aiohttp": {"info": {"version": "3.14.5"}, "vulnerabilities": []},
    "pyyaml": {"info": {"version": "6.0.4"}, "vulnerabilities": []},
}


def fetch(name: str) -> Mapping[str, Any]:
    if name not in PROJECTS:
        raise OSError("Name or service not known")
    return PROJECTS[name]


def test_a_vulnerable_latest_release_fails_and_withdrawn_advisories_do_not(
    audit: ModuleType,
) -> None:
    report = {"dependencies": [skipped("pycrypto", "2.6.1"), skipped("aiohttp", "3.14.5")]}
    result = audit.classify(report, fetch)
    assert result.vulnerable == {"pycrypto==2.6.1": ["PYSEC-2017-94"]}
    assert result.complete
    assert audit.summary(result)[-1].startswith("audit FAILED: 2 of 2 audited")


def test_what_neither_endpoint_covers_is_named_and_the_audit_is_not_passed(
    audit: ModuleType,
) -> None:
    report = {
        "dependencies": [
            skipped("aiohttp", "3.14.5"),
            skipped("pyyaml", "6.0.3"),  # not the latest release
            skipped("unreachable", "1.0"),
            {"name": "headwater", "skip_reason": "distribution marked as editable"},
            {"name": "click", "version": "8.5.1", "vulns": []},  # pip-audit answered
        ]
    }
    result = audit.classify(report, fetch)
    assert not result.vulnerable
    assert set(result.not_audited) == {"pyyaml==6.0.3", "unreachable==1.0"}
    assert "latest release only (6.0.4)" in result.not_audited["pyyaml==6.0.3"]
    assert "Name or service not known" in result.not_audited["unreachable==1.0"]
    assert result.own == ["headwater"]
    lines = audit.summary(result)
    assert lines[0].startswith("NOT AUDITED pyyaml==6.0.3: ")
    assert lines[-1].startswith("audit INCOMPLETE (not passed): 2 of 4 audited")
    assert "passed:" not in lines[-1]


def test_vulnerabilities_pip_audit_found_fail_the_audit(audit: ModuleType) -> None:
    report = {
        "dependencies": [
            {
                "name": "urllib3",
                "version": "1.26.0",
                "vulns": [{"id": "PYSEC-2021-108", "fix_versions": ["1.26.5"]}],
            }
        ]
    }
    result = audit.classify(report, fetch)
    assert result.vulnerable == {"urllib3==1.26.0": ["PYSEC-2021-108 (fixed in 1.26.5)"]}
