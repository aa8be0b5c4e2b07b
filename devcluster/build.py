"""Build the real control plane and the Go tools from their own modules.

Everything is compiled with the machine's Go from the module proxy and cached
by version outside the repository (``$HEADWATER_CACHE``, default
``~/.cache/headwater``), so a second run builds nothing. Each build goes to a
temporary directory that is renamed into place only when complete, so an
interrupted build never leaves a half-filled cache entry behind.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import shutil
import subprocess
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

log = logging.getLogger(__name__)

KUBERNETES_VERSION = "v1.36.3"
KWOK_VERSION = "v0.8.0"
KUSTOMIZE_VERSION = "v5.8.2"  # v5.8.3 needs Go 1.27; the machine has 1.26
HELM_VERSION = "v4.3.1"  # pyhelm3 0.5.8 speaks Helm 4 (and translates for 3)
# Tests only. v0.36.6 is the newest release under this module path; v0.40.0
# renamed it to github.com/bitnami/sealed-secrets, which the checksum database lacks.
KUBESEAL_VERSION = "v0.36.6"
# Tests only: Flux's own CLI, to prove it reads and drives headwater's objects.
FLUX_MODULE = "github.com/fluxcd/flux2/v2"
FLUX_VERSION = "v2.9.5"
# Tests only: the oras CLI, to prove artifacts it pushes sync like Flux's own.
ORAS_VERSION = "v1.3.6"

GOMOD_DIR = Path(__file__).resolve().parent / "gomod"
REPO_ROOT = Path(__file__).resolve().parent.parent

CONTROL_PLANE_PACKAGES = {
    "kube-apiserver": "k8s.io/kubernetes/cmd/kube-apiserver",
    "kube-controller-manager": "k8s.io/kubernetes/cmd/kube-controller-manager",
    "kube-scheduler": "k8s.io/kubernetes/cmd/kube-scheduler",
    "kubectl": "k8s.io/kubernetes/cmd/kubectl",
    "etcd": "go.etcd.io/etcd/server/v3",
}

# Go packages installed with `go install pkg@version`; their modules carry no
# replace directives, so they build exactly as their authors pinned them.
GO_TOOLS = {
    "kwok": ("sigs.k8s.io/kwok/cmd/kwok", KWOK_VERSION),
    "kustomize": ("sigs.k8s.io/kustomize/kustomize/v5", KUSTOMIZE_VERSION),
    "helm": ("helm.sh/helm/v4/cmd/helm", HELM_VERSION),
    "kubeseal": ("github.com/bitnami-labs/sealed-secrets/cmd/kubeseal", KUBESEAL_VERSION),
    "oras": ("oras.land/oras/cmd/oras", ORAS_VERSION),
}

# A whole build of everything cold takes minutes; a hung proxy must not hang CI.
BUILD_TIMEOUT_SECONDS = 60 * 60


class BuildError(RuntimeError):
    pass


@dataclass(frozen=True)
class BuildResult:
    bin_dir: Path
    built: bool
    seconds: float


def cache_root() -> Path:
    configured = os.environ.get("HEADWATER_CACHE")
    if configured:
        return Path(configured)
    xdg = os.environ.get("XDG_CACHE_HOME")
    return (Path(xdg) if xdg else Path.home() / ".cache") / "headwater"


def _control_plane_key() -> str:
    # The go.mod/go.sum pair fully determines what gets compiled.
    digest = hashlib.sha256()
    for name in ("go.mod", "go.sum"):
        digest.update((GOMOD_DIR / name).read_bytes())
    return f"kubernetes-{KUBERNETES_VERSION}-{digest.hexdigest()[:12]}"


def control_plane_dir() -> Path:
    return cache_root() / "devcluster" / _control_plane_key() / "bin"


def _go() -> str:
    go = shutil.which("go") or (
        "/usr/local/go/bin/go" if Path("/usr/local/go/bin/go").exists() else None
    )
    if go is None:
        raise BuildError(
            "the Go toolchain is needed to build the control plane: 'go' is not on PATH"
        )
    return go


def _run_go(args: list[str], *, cwd: Path, env_extra: dict[str, str]) -> str:
    env = {**os.environ, **env_extra, "CGO_ENABLED": "0", "GOFLAGS": "-buildvcs=false"}
    log.info("running: go %s", " ".join(args))
    try:
        completed = subprocess.run(
            [_go(), *args],
            cwd=cwd,
            env=env,
            capture_output=True,
            text=True,
            timeout=BUILD_TIMEOUT_SECONDS,
        )
    except subprocess.TimeoutExpired as exc:
        raise BuildError(f"go {args[0]} did not finish within {BUILD_TIMEOUT_SECONDS}s") from exc
    if completed.returncode != 0:
        raise BuildError(f"go {' '.join(args)} failed:\n{completed.stderr[-4000:]}")
    return completed.stdout


def _version_ldflags() -> str:
    # Without these the binaries report v0.0.0-master, which confuses clients
    # that compare server versions (kubectl warns, kwok picks behaviours by it).
    major, minor = KUBERNETES_VERSION.lstrip("v").split(".")[:2]
    values = {
        "k8s.io/component-base/version.gitVersion": KUBERNETES_VERSION,
        "k8s.io/component-base/version.gitMajor": major,
        "k8s.io/component-base/version.gitMinor": minor,
        "k8s.io/component-base/version.gitTreeState": "clean",
        "k8s.io/client-go/pkg/version.gitVersion": KUBERNETES_VERSION,
        "k8s.io/client-go/pkg/version.gitMajor": major,
        "k8s.io/client-go/pkg/version.gitMinor": minor,
    }
    return " ".join(["-s", "-w", *(f"-X {key}={value}" for key, value in values.items())])


def _publish(staging: Path, final: Path) -> None:
    final.parent.mkdir(parents=True, exist_ok=True)
    try:
        staging.rename(final)
    except OSError:
        # Another build finished first; its result is as good as ours.
        shutil.rmtree(staging, ignore_errors=True)


def build_control_plane() -> BuildResult:
    """Compile etcd, kube-apiserver, controller manager, scheduler and kubectl."""
    final = control_plane_dir()
    if all((final / name).is_file() for name in CONTROL_PLANE_PACKAGES):
        return BuildResult(final, built=False, seconds=0.0)
    started = time.monotonic()
    final.parent.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=".build-", dir=final.parent.parent))
    try:
        out = staging / "bin"
        out.mkdir()
        # One invocation, so Go compiles shared packages once and links in parallel.
        _run_go(
            [
                "build",
                "-trimpath",
                "-ldflags",
                _version_ldflags(),
                "-o",
                f"{out}/",
                *CONTROL_PLANE_PACKAGES.values(),
            ],
            cwd=GOMOD_DIR,
            env_extra={},
        )
        # `go build -o dir/` names a binary after its package's last element,
        # dropping a major-version suffix: etcd's main package gives "server".
        for name, package in CONTROL_PLANE_PACKAGES.items():
            built = out / _binary_name(package)
            if built != out / name:
                built.rename(out / name)
        _publish(out, final)
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    return BuildResult(final, built=True, seconds=time.monotonic() - started)


def _binary_name(package: str) -> str:
    parts = package.split("/")
    last = parts[-1]
    if len(parts) > 1 and last.startswith("v") and last[1:].isdigit():
        return parts[-2]
    return last


def go_tool_path(name: str) -> Path:
    version = GO_TOOLS[name][1]
    return cache_root() / "tools" / f"{name}-{version}" / name


def build_go_tool(name: str) -> BuildResult:
    """`go install` one pinned tool into the cache; returns the directory holding it."""
    package, version = GO_TOOLS[name]
    final = go_tool_path(name)
    if final.is_file():
        return BuildResult(final.parent, built=False, seconds=0.0)
    started = time.monotonic()
    final.parent.parent.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=".build-", dir=final.parent.parent))
    try:
        # GOFLAGS=-mod=mod would be wrong here: `go install pkg@version` must
        # honour the tool's own go.sum, which it does outside any main module.
        _run_go(["install", f"{package}@{version}"], cwd=staging, env_extra={"GOBIN": str(staging)})
        _publish(staging, final.parent)
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    return BuildResult(final.parent, built=True, seconds=time.monotonic() - started)


def install_project_tools(tools_dir: Path | None = None) -> Path:
    """Put the pinned kustomize and helm into the project-local tools directory.

    The binaries live in the version-keyed cache; the project's `.tools/bin`
    holds links to them, so a fresh checkout on a warm machine builds nothing.
    """
    target = tools_dir or REPO_ROOT / ".tools" / "bin"
    target.mkdir(parents=True, exist_ok=True)
    for name in ("kustomize", "helm"):
        build_go_tool(name)
        link = target / name
        if link.is_symlink() or link.exists():
            link.unlink()
        link.symlink_to(go_tool_path(name))
    return target


def flux_cli_path() -> Path:
    return cache_root() / "tools" / f"flux-{FLUX_VERSION}" / "flux"


# `flux install` and `flux bootstrap` embed the controllers' manifests, which
# upstream generates from release assets and the module zip does not carry.
# headwater never runs those commands, so the embed gets a stand-in that says so.
_FLUX_PLACEHOLDER_MANIFEST = """\
# Placeholder: this flux binary was built for headwater's tests from the Go
# module, without the release manifests; `flux install` and `flux bootstrap`
# cannot work with it.
"""


def copy_module_source(module: str, version: str, dest: Path, *, cwd: Path) -> Path:
    """Download `module@version` and copy it to the writable directory `dest`.

    The module cache is read-only; a module built as the main module (because its
    go.mod has replace directives `go install` refuses) needs a copy it may edit.
    Returns `dest`.
    """
    listing = _run_go(
        ["mod", "download", "-json", f"{module}@{version}"], cwd=cwd, env_extra={"GOWORK": "off"}
    )
    module_dir = Path(json.loads(listing)["Dir"])
    shutil.copytree(module_dir, dest, copy_function=shutil.copyfile)
    for directory in [dest, *(p for p in dest.rglob("*") if p.is_dir())]:
        directory.chmod(0o755)
    return dest


def module_sum(module: str, version: str, *, cwd: Path) -> tuple[str, str]:
    """The go.sum hashes (`h1:` of the zip, of the go.mod) of one served module version."""
    listing = json.loads(
        _run_go(
            ["mod", "download", "-json", f"{module}@{version}"],
            cwd=cwd,
            env_extra={"GOWORK": "off"},
        )
    )
    return listing["Sum"], listing["GoModSum"]


def edit_go_mod(source: Path, edits: list[str]) -> None:
    """`go mod edit` with the given flags (such as ``-replace=a=b@v``) in `source`."""
    _run_go(["mod", "edit", *edits], cwd=source, env_extra={"GOWORK": "off"})


def build_main_module(source: Path, package: str, output: Path, *, ldflags: str) -> None:
    """`go build` one package of a copied module as the main module, with its own go.sum.

    As upstream's release builds: read-only module graph, no cgo, trimmed paths,
    stripped binary; GOTOOLCHAIN=local, so a go.mod never fetches another Go.
    """
    _run_go(
        go_build_args(package, output, ldflags=ldflags),
        cwd=source,
        env_extra={"GOWORK": "off", "GOTOOLCHAIN": "local"},
    )


def go_build_args(package: str, output: Path, *, ldflags: str) -> list[str]:
    """The `go` arguments `build_main_module` runs (CGO_ENABLED=0 comes from `_run_go`)."""
    return ["build", "-mod=readonly", "-trimpath", "-ldflags", ldflags, "-o", str(output), package]


def publish(staging: Path, final: Path) -> None:
    """Rename a finished build into its cache place (a concurrent twin may win)."""
    _publish(staging, final)


def build_flux_cli() -> BuildResult:
    """Build Flux's CLI (``cmd/flux``) from its Go module into the cache.

    `go install module@version` refuses flux2 (its go.mod has replace
    directives), so the module is downloaded, copied out of the read-only
    module cache and built there as the main module with its own go.sum.
    """
    final = flux_cli_path()
    if final.is_file():
        return BuildResult(final.parent, built=False, seconds=0.0)
    started = time.monotonic()
    final.parent.parent.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=".build-", dir=final.parent.parent))
    try:
        source = copy_module_source(FLUX_MODULE, FLUX_VERSION, staging / "src", cwd=staging)
        manifests = source / "cmd" / "flux" / "manifests"
        manifests.mkdir(exist_ok=True)
        (manifests / "placeholder.yaml").write_text(_FLUX_PLACEHOLDER_MANIFEST)
        out = staging / "bin"
        out.mkdir()
        build_main_module(
            source,
            "./cmd/flux",
            out / "flux",
            ldflags=f"-s -w -X main.VERSION={FLUX_VERSION.lstrip('v')}",
        )
        _publish(out, final.parent)
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    return BuildResult(final.parent, built=True, seconds=time.monotonic() - started)
