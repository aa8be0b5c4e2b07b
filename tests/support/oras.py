"""The real oras CLI, built from its Go module, pushing to the tests' registries.

- ``oras_cli``: path to the `oras` binary (``devcluster.build.GO_TOOLS["oras"]``),
  built on first use (``headwater cluster build --tools`` builds it ahead) and cached
  by version.
- ``OrasCLI(binary).push(registry, reference, files, ...)`` runs ``oras push`` as a CI
  job would: from the directory holding the files (oras records their names relative
  to it), with the registry's credentials and CA (or ``--plain-http``), in a throwaway
  HOME and registry config so nothing on the machine is read or written. It returns
  the manifest digest oras reports.
"""

from __future__ import annotations

import json
import os
import subprocess
import tempfile
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

import pytest

from devcluster import build
from tests.support.registry import OciRegistry

COMMAND_TIMEOUT = 120


@pytest.fixture(scope="session")
def oras_cli() -> Path:
    return build.build_go_tool("oras").bin_dir / "oras"


@dataclass(frozen=True)
class OrasCLI:
    binary: Path

    def push(
        self,
        registry: OciRegistry,
        reference: str,
        files: Sequence[tuple[str, str]],
        *,
        workdir: Path,
        artifact_type: str | None = None,
        config: tuple[str, str] | None = None,
        annotations: Mapping[str, str] | None = None,
    ) -> str:
        """`oras push <host>/<reference> file:mediaType ...`; returns the manifest digest.

        `files` are (name relative to `workdir`, media type); `config` likewise for
        ``--config``.
        """
        args = [f"{registry.host}/{reference}"]
        args += [f"{name}:{media_type}" for name, media_type in files]
        if artifact_type:
            args += ["--artifact-type", artifact_type]
        if config:
            args += ["--config", f"{config[0]}:{config[1]}"]
        for key, value in (annotations or {}).items():
            args += ["--annotation", f"{key}={value}"]
        done = self.run(registry, "push", *args, "--format", "json", cwd=workdir)
        assert done.returncode == 0, f"oras push failed: {done.stderr}"
        digest = str(json.loads(done.stdout)["digest"])
        assert digest.startswith("sha256:"), done.stdout
        return digest

    def run(self, registry: OciRegistry, *args: str, cwd: Path) -> subprocess.CompletedProcess[str]:
        """`oras <args>` against `registry` (its auth and TLS flags added), unchecked."""
        flags: list[str] = []
        if registry.basic:
            flags += ["--username", registry.basic[0], "--password", registry.basic[1]]
        if registry.ca_pem:
            flags += ["--ca-file", str(registry.ca_file)]
        else:
            flags.append("--plain-http")
        with tempfile.TemporaryDirectory(prefix="hw-test-oras-") as home:
            flags += ["--registry-config", str(Path(home) / "config.json")]
            env = {**os.environ, "HOME": home, "NO_COLOR": "1"}
            env.pop("DOCKER_CONFIG", None)
            return subprocess.run(
                [str(self.binary), *args, *flags],
                cwd=cwd,
                env=env,
                capture_output=True,
                text=True,
                timeout=COMMAND_TIMEOUT,
                check=False,
            )


@pytest.fixture
def oras(oras_cli: Path) -> OrasCLI:
    return OrasCLI(oras_cli)
