"""The README's Helm releases example is one the helm controller takes as written."""

from __future__ import annotations

import re
from pathlib import Path

import yaml

from controllers.helm.spec import parse

README = Path(__file__).resolve().parents[3] / "README.md"


def test_the_readme_helmrelease_parses_with_nothing_refused() -> None:
    section = README.read_text().split("## Helm releases", 1)[1]
    block = re.search(r"```yaml\n(.*?)```", section, re.S)
    assert block is not None
    documents = list(yaml.safe_load_all(block.group(1)))
    kinds = [d["kind"] for d in documents]
    assert kinds == ["HelmRepository", "HelmRelease"]
    release = documents[1]
    spec = parse(release)  # raises naming any field headwater refuses
    assert spec.chart.template is not None
    assert spec.chart.template.source_name == documents[0]["metadata"]["name"]
    assert spec.chart.name == "apps-podinfo"
    assert spec.drift.active
    # The commented-out lines are fields that work too: uncommented, still nothing refused.
    text = re.sub(r"^  # ", "  ", block.group(1).split("---", 1)[1], flags=re.M)
    text = re.sub(r"^  #   ", "    ", text, flags=re.M)
    uncommented = parse(yaml.safe_load(text))
    assert uncommented.test_enable and uncommented.kubeconfig_secret == ("prod-kubeconfig", "value")
    assert uncommented.service_account_name == "deployer"
