"""headwater's image, built from Debian packages here (devcluster/image.py), starts.

The image is built (or taken from $HEADWATER_CACHE, keyed by its inputs),
then its entrypoint runs `headwater run --help` twice: in a buildah
container (the image's own user, env and entrypoint, as a runtime reads
them), and from the same root filesystem mounted read-only with only /tmp
writable, as config/'s Pods run it.
"""

from __future__ import annotations

import hashlib
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from devcluster import build, image
from tests.support.images import Buildah, buildah_container, run_read_only

pytestmark = pytest.mark.integration

CONTROLLERS = ("source", "kustomize", "helm", "notification", "all")


@pytest.fixture(scope="module")
def built() -> image.ImageResult:
    started = time.monotonic()
    result = image.build_image()
    print(
        f"image {'built' if result.built_app else 'cached'} "
        f"(base {'built' if result.built_base else 'cached'}) "
        f"in {time.monotonic() - started:.0f}s"
    )
    return result


@pytest.fixture(scope="module")
def config(built: image.ImageResult) -> dict[str, Any]:
    return image.image_config(built.layout)


@pytest.fixture(scope="module")
def container(
    built: image.ImageResult, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Buildah]:
    with buildah_container(tmp_path_factory.mktemp("buildah"), built.layout, image.TAG) as made:
        yield made


def sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def test_the_image_config_runs_headwater_as_the_unprivileged_user(config: dict[str, Any]) -> None:
    settings = config["config"]
    assert settings["Entrypoint"] == [image.ENTRYPOINT]
    assert settings["User"] == f"{image.UID}:{image.UID}"
    env = dict(entry.split("=", 1) for entry in settings["Env"])
    assert env["HOME"] == "/tmp"
    assert env["PATH"].split(":")[0] == f"{image.VENV}/bin"


def test_the_entrypoint_starts_in_a_container_of_the_image(
    container: Buildah, config: dict[str, Any]
) -> None:
    started = container.run(*config["config"]["Entrypoint"], "run", "--help")
    assert started.returncode == 0, started.stderr
    for name in CONTROLLERS:
        assert name in started.stdout
    assert "--enable-leader-election" in started.stdout

    # As the image's user, with the tools headwater runs on its PATH.
    assert container.run("id", "-u").stdout.strip() == str(image.UID)
    kustomize = container.run("kustomize", "version")
    assert kustomize.stdout.strip() == build.KUSTOMIZE_VERSION, kustomize.stderr
    helm = container.run("helm", "version", "--short")
    assert helm.returncode == 0, helm.stderr
    assert build.HELM_VERSION.startswith(helm.stdout.strip().split("+")[0]), helm.stdout
    git = container.run("git", "--version")
    assert git.stdout.startswith("git version 2."), git.stderr


def test_the_tools_are_the_pinned_builds(container: Buildah) -> None:
    rootfs = container.mount()
    for tool in ("kustomize", "helm"):
        shipped = rootfs / image.TOOLS_DIR.lstrip("/") / tool
        assert sha256(shipped) == sha256(build.go_tool_path(tool)), tool


def test_the_entrypoint_starts_from_a_read_only_root_as_the_image_user(
    container: Buildah, config: dict[str, Any]
) -> None:
    rootfs = container.mount()
    started = run_read_only(rootfs, config, "run", "--help")
    assert started.returncode == 0, started.stderr
    for name in CONTROLLERS:
        assert name in started.stdout
    # Only /tmp (HOME) is writable, as with config/'s emptyDir.
    shell = {"config": {**config["config"], "Entrypoint": ["sh", "-c"]}}
    home = run_read_only(rootfs, shell, "touch $HOME/x && id -u")
    assert home.returncode == 0, home.stderr
    assert home.stdout.strip() == str(image.UID)
    written = run_read_only(rootfs, shell, f"touch {image.VENV}/x")
    assert written.returncode != 0
    assert "Read-only file system" in written.stderr
