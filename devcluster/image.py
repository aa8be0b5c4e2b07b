"""Build headwater's container image from Debian packages, without a registry or Docker.

The repository's `Dockerfile` builds the image anywhere a base-image registry
is reachable. This module builds the same image where none is (this machine,
CI): the root filesystem comes from Debian's own archive with `mmdebstrap`,
and `umoci` turns it into an OCI image layout, in two layers:

1. base: Debian bookworm with the packages below, the unprivileged user and
   a virtualenv at /opt/headwater holding the pinned dependencies of
   image/requirements.txt. Slow (minutes), and cached in `$HEADWATER_CACHE`
   under a hash of everything that goes into it.
2. app: the headwater package built from this checkout, and the pinned
   kustomize and helm from devcluster/build.py's cache. Seconds, and cached
   under a hash of the sources.

Run `.venv/bin/python -m devcluster.image [--output headwater.tar]` (as root: mmdebstrap
and umoci unpack need to create device nodes and set file owners). The result
is an OCI image layout (tag `dev`, as config/ names it) and, with --output, an
oci-archive that `podman load`, `skopeo copy` or `ctr import` accept.

It needs the machine's mmdebstrap and umoci (scripts/setup.sh installs them),
Debian's archive and PyPI (through the host's pip and its settings), and the
Go toolchain only when kustomize and helm are not yet in build.py's cache.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import logging
import os
import shutil
import subprocess
import sys
import tarfile
import tempfile
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from devcluster import build

log = logging.getLogger(__name__)

REPO_ROOT = Path(__file__).resolve().parent.parent
REQUIREMENTS = REPO_ROOT / "image" / "requirements.txt"

SUITE = "bookworm"
# Override with a snapshot.debian.org URL to rebuild bit-for-bit what a past build got.
MIRROR = os.environ.get("HEADWATER_DEBIAN_MIRROR", "http://deb.debian.org/debian")
SECURITY_MIRROR = os.environ.get(
    "HEADWATER_DEBIAN_SECURITY_MIRROR", "http://deb.debian.org/debian-security"
)
# What the controllers run besides Python: git (and ssh for ssh:// remotes, gpg
# for spec.verify), CA certificates for https remotes and registries.
# libstdc++6: google-re2's extension (pathspec's fast backend, imported by the CLI) links it.
PACKAGES = (
    "python3",
    "python3-venv",
    "libstdc++6",
    "git",
    "openssh-client",
    "gpg",
    "ca-certificates",
)
# Documentation nobody reads in a container (the licenses stay).
EXCLUDED_PATHS = (
    "/usr/share/doc/*",
    "/usr/share/man/*",
    "/usr/share/info/*",
    "/usr/share/locale/*",
)
# Files in the image carry this time (2026-01-01), so unchanged inputs give unchanged layers.
SOURCE_DATE_EPOCH = 1767225600

UID = 65532  # config/'s securityContext runs as this user and group
USER = "headwater"
VENV = "/opt/headwater"
TOOLS_DIR = "/usr/local/bin"
TAG = "dev"  # config/kustomization.yaml's `images: headwater -> headwater:dev`
ENTRYPOINT = f"{VENV}/bin/headwater"
ENV = {
    "PATH": f"{VENV}/bin:{TOOLS_DIR}:/usr/sbin:/usr/bin:/sbin:/bin",
    # The root filesystem is read-only in config/; only /tmp (an emptyDir) is writable.
    "HOME": "/tmp",
    "PYTHONDONTWRITEBYTECODE": "1",
    "PYTHONUNBUFFERED": "1",
    "LANG": "C.UTF-8",
}
# The sources that make up the installed package (pyproject's packages and data).
APP_SOURCES = ("pyproject.toml", "README.md", "controllers", "devcluster")

# A cold base build downloads ~70 MB of .debs and the wheels; a hung mirror must not hang CI.
STEP_TIMEOUT_SECONDS = 30 * 60
# Bump when the recipe changes in a way its inputs below do not show.
RECIPE_REVISION = 1


class ImageError(RuntimeError):
    pass


@dataclass(frozen=True)
class ImageResult:
    layout: Path  # an OCI image layout directory; the image is tagged TAG
    built_base: bool
    built_app: bool
    seconds: float

    @property
    def reference(self) -> str:
        return f"oci:{self.layout}:{TAG}"


def _run(args: Sequence[str], *, env: dict[str, str] | None = None, cwd: Path | None = None) -> str:
    log.info("running: %s", " ".join(args))
    try:
        done = subprocess.run(
            list(args),
            cwd=cwd,
            capture_output=True,
            text=True,
            env=env,
            timeout=STEP_TIMEOUT_SECONDS,
        )
    except FileNotFoundError as exc:
        raise ImageError(f"{args[0]} is needed to build the image and is not installed") from exc
    except subprocess.TimeoutExpired as exc:
        raise ImageError(f"{args[0]} did not finish within {STEP_TIMEOUT_SECONDS}s") from exc
    if done.returncode != 0:
        output = (done.stderr or done.stdout)[-4000:]
        raise ImageError(f"{' '.join(args[:3])} ... failed:\n{output}")
    return done.stdout


def _chroot_env() -> list[str]:
    # The host's pip settings (find-links, caches) mean nothing inside the image.
    return ["env", "-i", "PATH=/usr/bin:/bin", "HOME=/root", "LANG=C.UTF-8"]


# --- the base layer -------------------------------------------------------------------


def _passwd_hook() -> str:
    return (
        f'echo "{USER}:x:{UID}:{UID}:{USER}:/tmp:/usr/sbin/nologin" >> "$1/etc/passwd" && '
        f'echo "{USER}:x:{UID}:" >> "$1/etc/group"'
    )


def _base_hooks() -> list[str]:
    """mmdebstrap customize hooks, run in the finished Debian tree ("$1")."""
    env = " ".join(_chroot_env())
    pip = f"{VENV}/bin/pip"
    return [
        _passwd_hook(),
        f'chroot "$1" {env} python3 -m venv {VENV}',
        "copy-in requirements.txt wheels /tmp",
        # Offline, from the wheels downloaded outside (the host's pip has the host's
        # network and CA settings; the image has none). --no-deps: the lock lists
        # every package, so pip resolves nothing on its own.
        f'chroot "$1" {env} {pip} install --no-cache-dir --no-deps --no-index '
        f"--find-links /tmp/wheels --disable-pip-version-check --require-virtualenv -q "
        f"-r /tmp/requirements.txt",
        'rm -rf "$1/tmp/requirements.txt" "$1/tmp/wheels"',
        # mmdebstrap leaves these behind; an image has no use for them.
        'rm -rf "$1/var/cache/apt"/*.bin "$1/var/lib/apt/lists"/* "$1/var/log"/*',
    ]


def _download_wheels(target: Path) -> None:
    """Every pinned requirement as a wheel for CPython 3.11 on this machine's platform."""
    _run(
        [
            sys.executable,
            "-m",
            "pip",
            "download",
            "-q",
            "--no-deps",
            "--only-binary=:all:",
            "--python-version",
            "3.11",
            "--implementation",
            "cp",
            "--dest",
            str(target),
            "-r",
            str(REQUIREMENTS),
        ]
    )


def _sources() -> list[str]:
    return [
        f"deb {MIRROR} {SUITE} main",
        f"deb {MIRROR} {SUITE}-updates main",
        f"deb {SECURITY_MIRROR} {SUITE}-security main",
    ]


def base_key() -> str:
    recipe = {
        "revision": RECIPE_REVISION,
        "suite": SUITE,
        "sources": _sources(),
        "mmdebstrap": _mmdebstrap_args("OUTPUT"),
        "requirements": REQUIREMENTS.read_text(),
        "epoch": SOURCE_DATE_EPOCH,
    }
    digest = hashlib.sha256(json.dumps(recipe, sort_keys=True).encode()).hexdigest()
    return f"base-{SUITE}-{digest[:16]}"


def _mmdebstrap_args(output: str) -> list[str]:
    return [
        "mmdebstrap",
        "--mode=root",
        "--variant=essential",
        "--format=tar",
        f"--include={','.join(PACKAGES)}",
        "--aptopt=Acquire::Retries=3",
        # dpkg without an fsync per file: the tree is thrown away on failure anyway.
        "--dpkgopt=force-unsafe-io",
        *(f"--dpkgopt=path-exclude={path}" for path in EXCLUDED_PATHS),
        "--dpkgopt=path-include=/usr/share/doc/*/copyright",
        *(f"--customize-hook={hook}" for hook in _base_hooks()),
        SUITE,
        output,
        *_sources(),
    ]


def _build_base_tar(work: Path) -> Path:
    """Debian + venv as one uncompressed tar, from mmdebstrap."""
    shutil.copy(REQUIREMENTS, work / "requirements.txt")
    _download_wheels(work / "wheels")
    out = work / "base.tar"
    env = {**os.environ, "SOURCE_DATE_EPOCH": str(SOURCE_DATE_EPOCH)}
    # The copy-in hook reads relative paths from the working directory.
    args = _mmdebstrap_args(str(out))
    _run(args, env=env, cwd=work)
    return out


def base_layout() -> Path:
    return build.cache_root() / "image" / base_key()


def build_base() -> tuple[Path, bool]:
    """The cached base image layout (tag `base`), built first if missing."""
    final = base_layout()
    if (final / "index.json").is_file():
        return final, False
    final.parent.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=".build-", dir=final.parent))
    try:
        layer = _build_base_tar(staging)
        layout = staging / "layout"
        _run(["umoci", "init", "--layout", str(layout)])
        _run(["umoci", "new", "--image", f"{layout}:base"])
        _run(
            [
                "umoci",
                "raw",
                "add-layer",
                "--history.created_by",
                f"mmdebstrap {SUITE} {' '.join(PACKAGES)} + {VENV} from image/requirements.txt",
                "--image",
                f"{layout}:base",
                str(layer),
            ]
        )
        layer.unlink()
        build._publish(layout, final)
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    return final, True


# --- the app layer --------------------------------------------------------------------


def _source_files() -> list[Path]:
    files: list[Path] = []
    for name in APP_SOURCES:
        path = REPO_ROOT / name
        if path.is_file():
            files.append(path)
            continue
        for found in sorted(path.rglob("*")):
            if found.is_file() and "__pycache__" not in found.parts and found.suffix != ".pyc":
                files.append(found)
    return files


def app_key(base: str) -> str:
    digest = hashlib.sha256()
    digest.update(f"{base}\n{RECIPE_REVISION}\n".encode())
    digest.update(json.dumps([ENV, ENTRYPOINT, UID]).encode())
    for tool in ("kustomize", "helm"):
        digest.update(f"{tool} {build.GO_TOOLS[tool][1]}\n".encode())
    for path in _source_files():
        digest.update(str(path.relative_to(REPO_ROOT)).encode() + b"\0")
        digest.update(path.read_bytes())
    return f"headwater-{digest.hexdigest()[:16]}"


def _build_wheel(work: Path) -> Path:
    """headwater's wheel, built from a copy of the sources (the checkout stays clean)."""
    src = work / "src"
    for path in _source_files():
        target = src / path.relative_to(REPO_ROOT)
        target.parent.mkdir(parents=True, exist_ok=True)
        shutil.copy2(path, target)
    dist = work / "dist"
    _run([sys.executable, "-m", "pip", "wheel", "-q", "--no-deps", "-w", str(dist), str(src)])
    wheels = list(dist.glob("headwater-*.whl"))
    if len(wheels) != 1:
        raise ImageError(f"pip wheel gave {wheels}, expected one headwater wheel")
    return wheels[0]


def _config_args(image: str) -> list[str]:
    args = ["umoci", "config", "--image", image, "--tag", TAG]
    args += ["--config.user", f"{UID}:{UID}", "--config.entrypoint", ENTRYPOINT]
    args += ["--config.workingdir", "/tmp"]
    for key, value in ENV.items():
        args += ["--config.env", f"{key}={value}"]
    for port in ("8080/tcp", "9440/tcp", "9090/tcp"):
        args += ["--config.exposedports", port]
    args += ["--config.label", "org.opencontainers.image.title=headwater"]
    args += ["--history.created_by", "devcluster/image.py: image config"]
    return args


def _add_app(layout: Path, work: Path) -> None:
    """Unpack the base, install headwater and the tools into it, repack as a new layer."""
    wheel = _build_wheel(work)
    bundle = work / "bundle"
    _run(["umoci", "unpack", "--image", f"{layout}:base", str(bundle)])
    rootfs = bundle / "rootfs"
    shutil.copy(wheel, rootfs / "tmp" / wheel.name)
    _run(
        [
            "chroot",
            str(rootfs),
            *_chroot_env(),
            f"{VENV}/bin/pip",
            "install",
            "-q",
            "--no-cache-dir",
            "--no-deps",
            "--no-index",
            "--disable-pip-version-check",
            f"/tmp/{wheel.name}",
        ]
    )
    (rootfs / "tmp" / wheel.name).unlink()
    for tool in ("kustomize", "helm"):
        built = build.build_go_tool(tool)
        target = rootfs / TOOLS_DIR.lstrip("/") / tool
        shutil.copy2(built.bin_dir / tool, target)
        target.chmod(0o755)
    _run(
        [
            "umoci",
            "repack",
            "--history.created_by",
            "devcluster/image.py: headwater, kustomize, helm",
            "--image",
            f"{layout}:base",
            str(bundle),
        ]
    )
    _run(_config_args(f"{layout}:base"))
    _run(["umoci", "rm", "--image", f"{layout}:base"])
    _run(["umoci", "gc", "--layout", str(layout)])


def build_image() -> ImageResult:
    """The image layout for this checkout (tag `dev`), from the cache when it is there."""
    started = time.monotonic()
    base, built_base = build_base()
    final = build.cache_root() / "image" / app_key(base.name)
    if (final / "index.json").is_file():
        return ImageResult(final, built_base, False, time.monotonic() - started)
    final.parent.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=".build-", dir=final.parent))
    try:
        layout = staging / "layout"
        shutil.copytree(base, layout)
        _add_app(layout, staging)
        build._publish(layout, final)
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    return ImageResult(final, built_base, True, time.monotonic() - started)


def image_config(layout: Path, tag: str = TAG) -> dict[str, object]:
    """The OCI image config of `layout:tag` (entrypoint, user, env ...)."""
    index = json.loads((layout / "index.json").read_text())
    for entry in index["manifests"]:
        if entry.get("annotations", {}).get("org.opencontainers.image.ref.name") == tag:
            manifest = json.loads(_blob(layout, entry["digest"]).read_text())
            config: dict[str, object] = json.loads(
                _blob(layout, manifest["config"]["digest"]).read_text()
            )
            return config
    raise ImageError(f"{layout} has no image tagged {tag!r}")


def _blob(layout: Path, digest: str) -> Path:
    algorithm, _, value = digest.partition(":")
    return layout / "blobs" / algorithm / value


def write_archive(layout: Path, output: Path) -> None:
    """An oci-archive: the layout as one tar, which `podman load -i` accepts."""
    output.parent.mkdir(parents=True, exist_ok=True)
    partial = output.with_name(f".{output.name}.partial")
    with tarfile.open(partial, "w") as archive:
        for path in sorted(layout.rglob("*")):
            archive.add(path, arcname=str(path.relative_to(layout)), recursive=False)
    partial.replace(output)


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m devcluster.image",
        description="Build headwater's image from Debian packages (mmdebstrap + umoci).",
    )
    parser.add_argument("--output", type=Path, help="also write an oci-archive tarball here")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    try:
        result = build_image()
        if args.output:
            write_archive(result.layout, args.output)
    except (ImageError, build.BuildError) as exc:
        print(f"image build failed: {exc}", file=sys.stderr)
        return 1
    what = "built" if result.built_app else "cached"
    print(f"image {what} in {result.seconds:.0f}s: {result.reference}")
    if args.output:
        print(f"oci-archive: {args.output} (podman load -i {args.output})")
    return 0


if __name__ == "__main__":
    sys.exit(main())
