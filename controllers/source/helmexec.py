"""The pinned helm binary, for what pyhelm3 does not offer: package, dependency build, and
pulling a chart from an OCI registry.

Each run is hermetic (its own HELM_CONFIG_HOME, HELM_CACHE_HOME and HELM_DATA_HOME in a
temporary directory, no kubeconfig, no plugins) and bounded by a timeout; on timeout
the whole process group is killed. Registry credentials go into that run's own
registry config (what `helm registry login` writes), never the user's and never on
the command line. Errors carry helm's own stderr, scrubbed of those credentials.
"""

from __future__ import annotations

import base64
import json
import os
import shutil
import signal
import subprocess
import tempfile
from pathlib import Path

from controllers.toolkit.git.redact import scrub_text

_REPO_ROOT = Path(__file__).resolve().parent.parent.parent
DEFAULT_TIMEOUT = 120.0
_MAX_ERROR = 2000


class HelmError(RuntimeError):
    """helm failed or could not be run; the message is helm's stderr, scrubbed."""


def find_helm() -> str:
    """The helm binary: on PATH, else the pinned one in the repository's .tools/bin."""
    found = shutil.which("helm")
    if found:
        return found
    pinned = _REPO_ROOT / ".tools" / "bin" / "helm"
    if pinned.is_file() and os.access(pinned, os.X_OK):
        return str(pinned)
    raise HelmError("helm binary not found on PATH or in .tools/bin")


def run_helm(
    args: list[str],
    *,
    cwd: Path,
    timeout: float = DEFAULT_TIMEOUT,
    registry_auth: tuple[str, str, str] | None = None,
) -> str:
    """Run `helm <args>` in `cwd`; return stdout, raise HelmError with stderr on failure.

    `registry_auth` is (registry host, username, password) for OCI registries.
    """
    helm = find_helm()
    secrets = [registry_auth[2].encode()] if registry_auth and registry_auth[2] else []
    with tempfile.TemporaryDirectory(prefix="headwater-helm-") as home:
        if registry_auth is not None:
            _write_registry_config(
                Path(home) / "config" / "registry" / "config.json", registry_auth
            )
        env = {
            "PATH": os.environ.get("PATH", "/usr/bin:/bin"),
            "HOME": home,
            "HELM_CONFIG_HOME": os.path.join(home, "config"),
            "HELM_CACHE_HOME": os.path.join(home, "cache"),
            "HELM_DATA_HOME": os.path.join(home, "data"),
            "HELM_PLUGINS": os.path.join(home, "plugins"),
            "KUBECONFIG": os.devnull,
        }
        try:
            proc = subprocess.Popen(
                [helm, *args],
                cwd=cwd,
                env=env,
                stdin=subprocess.DEVNULL,
                stdout=subprocess.PIPE,
                stderr=subprocess.PIPE,
                start_new_session=True,
            )
        except OSError as exc:
            raise HelmError(f"cannot run helm: {exc.strerror or exc}") from None
        try:
            out, err = proc.communicate(timeout=timeout)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.communicate()
            raise HelmError(f"helm {args[0]} did not finish within {timeout:g}s") from None
    if proc.returncode != 0:
        text = scrub_text(err.decode("utf-8", "replace").strip(), secrets)
        text = text or f"exit {proc.returncode}"
        text = text.removeprefix("Error: ")
        raise HelmError(text[:_MAX_ERROR])
    return out.decode("utf-8", "replace")


def _write_registry_config(path: Path, auth: tuple[str, str, str]) -> None:
    host, username, password = auth
    token = base64.b64encode(f"{username}:{password}".encode()).decode()
    path.parent.mkdir(parents=True, mode=0o700)
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "w") as fh:
        json.dump({"auths": {host: {"auth": token}}}, fh)


def pull_oci(
    ref: str,
    version: str,
    dest_dir: Path,
    *,
    registry_auth: tuple[str, str, str] | None = None,
    plain_http: bool = False,
    ca_file: Path | None = None,
    cert_file: Path | None = None,
    key_file: Path | None = None,
    timeout: float = DEFAULT_TIMEOUT,
) -> Path:
    """`helm pull oci://... --version` into `dest_dir`; returns the one archive it wrote."""
    dest_dir.mkdir(parents=True, exist_ok=True)
    args = ["pull", ref, "--version", version, "--destination", str(dest_dir)]
    if plain_http:
        args.append("--plain-http")
    if ca_file is not None:
        args += ["--ca-file", str(ca_file)]
    if cert_file is not None and key_file is not None:
        args += ["--cert-file", str(cert_file), "--key-file", str(key_file)]
    run_helm(args, cwd=dest_dir, timeout=timeout, registry_auth=registry_auth)
    written = sorted(dest_dir.glob("*.tgz"))
    if len(written) != 1:
        raise HelmError(f"helm pull wrote {len(written)} archives, expected one")
    return written[0]


def dependency_build(chart_dir: Path, *, timeout: float = DEFAULT_TIMEOUT) -> None:
    """`helm dependency build`: fill charts/ from Chart.yaml's dependencies."""
    run_helm(["dependency", "build", str(chart_dir)], cwd=chart_dir.parent, timeout=timeout)


def package(
    chart_dir: Path, dest_dir: Path, *, version: str | None, timeout: float = DEFAULT_TIMEOUT
) -> Path:
    """`helm package` into `dest_dir`; returns the one archive it wrote."""
    dest_dir.mkdir(parents=True, exist_ok=True)
    args = ["package", str(chart_dir), "--destination", str(dest_dir)]
    if version:
        args += ["--version", version]
    run_helm(args, cwd=chart_dir.parent, timeout=timeout)
    written = sorted(dest_dir.glob("*.tgz"))
    if len(written) != 1:
        raise HelmError(f"helm package wrote {len(written)} archives, expected one")
    return written[0]
