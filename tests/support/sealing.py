"""Fixtures and helpers for sealed-secrets tests: the real kubeseal, and the headwater CLI.

- ``kubeseal``: path to the real kubeseal binary, built from its Go module
  (``devcluster.build.GO_TOOLS["kubeseal"]``) on first use and cached by version.
- ``run_kubeseal(binary, *args, input=...)`` and ``run_headwater(*args, ...)``
  run them as subprocesses and return the CompletedProcess (bytes), unchecked.
- ``sealed_secret(name, namespace, encrypted, scope)`` wraps raw sealed values.
"""

from __future__ import annotations

import os
import subprocess
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import pytest

from controllers.sealing import format as sealing
from devcluster import build

REPO_ROOT = Path(__file__).resolve().parent.parent.parent
COMMAND_TIMEOUT = 120


@pytest.fixture(scope="session")
def kubeseal() -> Path:
    result = build.build_go_tool("kubeseal")
    return result.bin_dir / "kubeseal"


def run_kubeseal(
    binary: Path, *args: str, input: bytes = b"", kubeconfig: Path | None = None
) -> subprocess.CompletedProcess[bytes]:
    env = dict(os.environ)
    if kubeconfig is not None:
        env["KUBECONFIG"] = str(kubeconfig)
    return subprocess.run(
        [str(binary), *args],
        input=input,
        capture_output=True,
        env=env,
        timeout=COMMAND_TIMEOUT,
        check=False,
    )


def sealed_secret(
    name: str, namespace: str, encrypted: Mapping[str, str], scope: sealing.Scope
) -> dict[str, Any]:
    """A SealedSecret holding values sealed one by one (e.g. by `kubeseal --raw`)."""
    annotations = sealing.with_scope_annotations({}, scope)
    metadata: dict[str, Any] = {"name": name, "namespace": namespace}
    if annotations:
        metadata["annotations"] = annotations
    return {
        "apiVersion": sealing.API_VERSION,
        "kind": sealing.KIND,
        "metadata": metadata,
        "spec": {
            "encryptedData": dict(encrypted),
            "template": {"metadata": {"name": name, "namespace": namespace}},
        },
    }
