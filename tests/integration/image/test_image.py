"""headwater's image, built from Debian packages here (devcluster/image.py), starts.

The image is built (or taken from $HEADWATER_CACHE, keyed by its inputs),
then its entrypoint runs `headwater run --help` twice: in a buildah
container (the image's own user, env and entrypoint, as a runtime reads
them), and from the unpacked root filesystem mounted read-only with only
/tmp writable, as config/'s Pods run it.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from devcluster import build, image
from tests.support.images import buildah_container, run_read_only, unpack

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


@pytest.fixture
def rootfs(built: image.ImageResult, tmp_path: Path) -> Iterator[Path]:
    yield unpack(built.layout, image.TAG, tmp_path / "bundle")


def test_the_image_config_runs_headwater_as_the_unprivileged_user(config: dict[str, Any]) -> None:
    settings = config["config"]
    assert settings["Entrypoint"] == [image.ENTRYPOINT]
    assert settings["User"] == f"{image.UID}:{image.UID}"
    env = dict(entry.split("=", 1) for entry in settings["Env"])
    assert env["HOME"] == "/tmp"
    assert env["PATH"].split(":")[0] == f"{image.VENV}/bin"


def test_the_entrypoint_starts_in_a_container_of_the_image(
    built: image.ImageResult, config: dict[str, Any], tmp_path: Path
) -> None:
    entrypoint = config["config"]["Entrypoint"]
    with buildah_container(tmp_path, built.reference) as container:
        started = container.run(*entrypoint, "run", "--help")
        assert started.returncode == 0, started.stderr
        for name in CONTROLLERS:
            assert name in started.stdout
        assert "--enable-leader-election" in started.stdout

        # As the image's user, with the tools headwater runs on its PATH at their pins.
        assert container.run("id", "-u").stdout.strip() == str(image.UID)
        kustomize = container.run("kustomize", "version")
        assert kustomize.stdout.strip() == build.KUSTOMIZE_VERSION, kustomize.stderr
        helm = container.run("helm", "version", "--short")
        assert helm.stdout.startswith(build.HELM_VERSION), helm.stderr
        git = container.run("git", "--version")
        assert git.stdout.startswith("git version 2."), git.stderr


def test_the_entrypoint_starts_from_a_read_only_root_as_the_image_user(
    rootfs: Path, config: dict[str, Any]
) -> None:
    started = run_read_only(rootfs, config, "run", "--help")
    assert started.returncode == 0, started.stderr
    for name in CONTROLLERS:
        assert name in started.stdout
    # Only /tmp (HOME) is writable, as with config/'s emptyDir.
    shell = {"config": {**config["config"], "Entrypoint": ["sh", "-c"]}}
    assert run_read_only(rootfs, shell, "touch $HOME/x").returncode == 0
    written = run_read_only(rootfs, shell, f"touch {image.VENV}/x")
    assert written.returncode != 0
    assert "Read-only file system" in written.stderr
