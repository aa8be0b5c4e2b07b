"""The two image recipes (Dockerfile, devcluster/image.py) agree with each other and with config/.

Both must install the tool versions devcluster/build.py pins and the Python
dependencies pyproject.toml pins, run as the user config/'s securityContext
names, and keep HOME on a path config/'s Deployments mount writable.
"""

from __future__ import annotations

import re
import tomllib
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import yaml

from devcluster import build, image

REPO = Path(__file__).resolve().parents[2]
DOCKERFILE = (REPO / "Dockerfile").read_text()


def dockerfile_arg(name: str) -> str:
    match = re.search(rf"^ARG {name}=(\S+)$", DOCKERFILE, re.MULTILINE)
    assert match, f"the Dockerfile has no ARG {name}"
    return match.group(1)


def dockerfile_env() -> dict[str, str]:
    match = re.search(r"^ENV (PATH=.*?)(?=^\S)", DOCKERFILE, re.MULTILINE | re.DOTALL)
    assert match, "the Dockerfile's final ENV is missing"
    pairs = match.group(1).replace("\\\n", " ").split()
    return dict(pair.split("=", 1) for pair in pairs)


def deployments() -> Iterator[tuple[str, dict[str, Any]]]:
    for path in sorted((REPO / "config").rglob("*.yaml")):
        for doc in yaml.safe_load_all(path.read_text()):
            if isinstance(doc, dict) and doc.get("kind") == "Deployment":
                yield str(path.relative_to(REPO)), doc


def test_both_recipes_install_the_tools_devcluster_pins() -> None:
    for tool, arg in (("kustomize", "KUSTOMIZE_VERSION"), ("helm", "HELM_VERSION")):
        package, version = build.GO_TOOLS[tool]
        assert dockerfile_arg(arg) == version
        assert f'go install -trimpath -ldflags="-s -w" {package}@${{{arg}}}' in DOCKERFILE
    # The Go image must be able to build what the machine's Go builds.
    assert re.fullmatch(r"golang:1\.\d+-bookworm", dockerfile_arg("GO_IMAGE"))
    # Python from a pinned tag, on the same Debian release devcluster/image.py builds from.
    assert re.fullmatch(rf"python:3\.11\.\d+-slim-{image.SUITE}", dockerfile_arg("PYTHON_IMAGE")), (
        "pin the Python base image by its full version tag"
    )


def test_the_image_lock_pins_what_pyproject_pins() -> None:
    project = tomllib.loads((REPO / "pyproject.toml").read_text())["project"]
    lock = {}
    for line in image.REQUIREMENTS.read_text().splitlines():
        if line and not line.startswith("#"):
            name, _, version = line.partition("==")
            assert version, f"unpinned line in image/requirements.txt: {line!r}"
            lock[re.sub(r"[-_.]+", "-", name).lower()] = version
    for requirement in project["dependencies"]:
        name, _, version = requirement.partition("==")
        assert lock.get(re.sub(r"[-_.]+", "-", name).lower()) == version, requirement
    assert "image/requirements.txt" in DOCKERFILE
    assert "--no-deps" in DOCKERFILE


def test_both_recipes_run_as_the_user_and_with_the_home_config_expects() -> None:
    assert f"USER {image.UID}:{image.UID}" in DOCKERFILE
    assert f'ENTRYPOINT ["{image.ENTRYPOINT}"]' in DOCKERFILE
    assert dockerfile_env() == image.ENV
    found = list(deployments())
    assert len(found) >= 5  # four controllers and the all-in-one overlay
    for where, deployment in found:
        pod = deployment["spec"]["template"]["spec"]
        assert pod["securityContext"]["runAsUser"] == image.UID, where
        assert pod["securityContext"]["runAsGroup"] == image.UID, where
        empty_dirs = {v["name"] for v in pod["volumes"] if "emptyDir" in v}
        for container in pod["containers"]:
            assert container["securityContext"]["readOnlyRootFilesystem"] is True, where
            writable = {
                m["mountPath"] for m in container["volumeMounts"] if m["name"] in empty_dirs
            }
            env = {e["name"]: e.get("value") for e in container.get("env", [])}
            home = env.get("HOME", image.ENV["HOME"])
            assert home == image.ENV["HOME"], where
            assert home in writable, f"{where}: HOME {home} is not on a writable emptyDir"
            assert "/tmp" in writable, where


def test_the_docker_context_holds_what_the_package_needs() -> None:
    ignore = (REPO / ".dockerignore").read_text().splitlines()
    copied = " ".join(re.findall(r"^COPY (?!--from)(.*) /src/", DOCKERFILE, re.MULTILINE))
    for source in image.APP_SOURCES:
        assert f"!{source}" in ignore
        assert source in copied.split(), source
