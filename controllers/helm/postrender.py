"""`spec.postRenderers`: kustomize patches and images applied to helm's rendered manifests.

helm v4's `--post-renderer` names a plugin (no longer an executable), so the
controller writes one small `postrenderer/v1` plugin at startup
(`install_plugin`) whose command is this file, run by the controller's own
Python: helm pipes the rendered manifests to its stdin, and the release's
post-renderers arrive as JSON in `--post-renderer-args` (with the pinned
kustomize's path). Each post-renderer is one `kustomize build` of a
kustomization that has helm's output as its only resource, in spec order,
as Flux's built-in kustomize post-renderer does.

Every release gets one more, after the user's, as Flux's helm-controller
does: Flux's origin labels (`helm.toolkit.fluxcd.io/name` and `/namespace`)
on every object. They are how `flux trace` finds the HelmRelease of an object
and how drift detection's watch finds a release's objects (helm v4 applying
server-side marks them with neither labels nor annotations).

Bounded: input and output at most MAX_MANIFESTS bytes, each kustomize run at
most BUILD_TIMEOUT seconds; a failure exits non-zero with kustomize's
message, which helm reports as the install/upgrade error.

This file runs as a script (helm starts it), so it imports the standard
library only.
"""

from __future__ import annotations

import hashlib
import json
import os
import subprocess
import sys
import tempfile
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

PLUGIN_NAME = "headwater-kustomize"
MAX_MANIFESTS = 64 * 1024 * 1024
BUILD_TIMEOUT = 60.0
# The post-renderers travel on helm's command line: keep them well under its limits.
MAX_SPEC_BYTES = 96 * 1024
_IMAGE_FIELDS = ("name", "newName", "newTag", "digest")
_TARGET_FIELDS = (
    "group",
    "version",
    "kind",
    "name",
    "namespace",
    "labelSelector",
    "annotationSelector",
)


class PostRenderSpecError(ValueError):
    """A post-renderer cannot work as written; the message names the field."""


def parse_post_renderers(items: Any) -> tuple[dict[str, Any], ...]:
    """`spec.postRenderers` as the kustomize settings each applies, checked."""
    if items in (None, []):
        return ()
    if not isinstance(items, list):
        raise PostRenderSpecError("spec.postRenderers: must be a list")
    result = []
    for index, item in enumerate(items):
        where = f"spec.postRenderers[{index}]"
        kustomize = (item or {}).get("kustomize") if isinstance(item, Mapping) else None
        if not isinstance(kustomize, Mapping):
            raise PostRenderSpecError(f"{where}.kustomize: required (the only post-renderer)")
        patches = []
        for p_index, patch in enumerate(kustomize.get("patches") or []):
            text = patch.get("patch") if isinstance(patch, Mapping) else None
            if not isinstance(text, str) or not text.strip():
                raise PostRenderSpecError(f"{where}.kustomize.patches[{p_index}].patch: required")
            entry: dict[str, Any] = {"patch": text}
            target = patch.get("target") or {}
            selected = {k: str(target[k]) for k in _TARGET_FIELDS if target.get(k)}
            if selected:
                entry["target"] = selected
            patches.append(entry)
        images = []
        for i_index, image in enumerate(kustomize.get("images") or []):
            if not isinstance(image, Mapping) or not image.get("name"):
                raise PostRenderSpecError(f"{where}.kustomize.images[{i_index}].name: required")
            images.append({k: str(image[k]) for k in _IMAGE_FIELDS if image.get(k)})
        result.append({"patches": patches, "images": images})
    if len(encode(tuple(result))) > MAX_SPEC_BYTES:
        raise PostRenderSpecError(f"spec.postRenderers: larger than {MAX_SPEC_BYTES} bytes")
    return tuple(result)


def encode(renderers: Sequence[Mapping[str, Any]]) -> str:
    return json.dumps(list(renderers), sort_keys=True, separators=(",", ":"))


def digest(renderers: Sequence[Mapping[str, Any]]) -> str:
    """Flux's observedPostRenderersDigest: a change of it is an upgrade."""
    return "sha256:" + hashlib.sha256(encode(renderers).encode()).hexdigest()


def kustomization(renderer: Mapping[str, Any], resource: str) -> dict[str, Any]:
    """The kustomization one post-renderer builds: helm's output plus its patches and images."""
    result: dict[str, Any] = {
        "apiVersion": "kustomize.config.k8s.io/v1beta1",
        "kind": "Kustomization",
        "resources": [resource],
    }
    if renderer.get("patches"):
        result["patches"] = list(renderer["patches"])
    if renderer.get("images"):
        result["images"] = list(renderer["images"])
    if renderer.get("labels"):
        # Metadata only: selectors and pod templates stay as the chart made them.
        result["labels"] = [
            {
                "pairs": dict(renderer["labels"]),
                "includeSelectors": False,
                "includeTemplates": False,
            }
        ]
    return result


def origin_labels(labels: Mapping[str, str]) -> dict[str, Any]:
    """A post-renderer that only labels every object (Flux's origin labels)."""
    return {"patches": [], "images": [], "labels": dict(labels)}


class PostRenderError(Exception):
    pass


def render(
    manifests: bytes,
    renderers: Sequence[Mapping[str, Any]],
    kustomize: str,
    *,
    timeout: float = BUILD_TIMEOUT,
    max_size: int = MAX_MANIFESTS,
) -> bytes:
    """`manifests` through each post-renderer in turn (PostRenderError saying why not)."""
    if len(manifests) > max_size:
        raise PostRenderError(f"rendered manifests are larger than {max_size} bytes")
    for renderer in renderers:
        if not manifests.strip():
            return manifests
        with tempfile.TemporaryDirectory(prefix="headwater-postrender-") as work:
            root = Path(work)
            (root / "helm-output.yaml").write_bytes(manifests)
            (root / "kustomization.yaml").write_text(
                json.dumps(kustomization(renderer, "helm-output.yaml"))
            )
            try:
                done = subprocess.run(
                    [kustomize, "build", str(root)],
                    capture_output=True,
                    timeout=timeout,
                    check=False,
                )
            except subprocess.TimeoutExpired:
                raise PostRenderError(f"kustomize took longer than {timeout:g}s") from None
            except OSError as exc:
                raise PostRenderError(f"kustomize could not run: {exc}") from None
        if done.returncode != 0:
            message = done.stderr.decode("utf-8", "replace").strip()[-2000:]
            raise PostRenderError(f"kustomize post-renderer failed: {message}")
        if len(done.stdout) > max_size:
            raise PostRenderError(f"post-rendered manifests are larger than {max_size} bytes")
        manifests = done.stdout
    return manifests


def install_plugin(root: Path, python: str = sys.executable) -> Path:
    """Write the post-renderer plugin under `root` (a HELM_PLUGINS directory)."""
    directory = root / PLUGIN_NAME
    directory.mkdir(parents=True, exist_ok=True)
    manifest = {
        "apiVersion": "v1",
        "type": "postrenderer/v1",
        "name": PLUGIN_NAME,
        "version": "0.1.0",
        "runtime": "subprocess",
        "runtimeConfig": {
            # -I: the script's own directory (controllers/helm) never shadows the stdlib.
            "platformCommand": [{"command": python, "args": ["-I", str(Path(__file__).resolve())]}]
        },
    }
    # JSON is YAML: no YAML library needed here.
    (directory / "plugin.yaml").write_text(json.dumps(manifest, indent=1))
    return directory


def main(argv: Sequence[str]) -> int:
    """helm's plugin call: `postrender.py <kustomize> <post-renderers JSON>`, manifests on stdin."""
    if len(argv) != 2:
        print("usage: postrender.py KUSTOMIZE POST_RENDERERS_JSON", file=sys.stderr)
        return 2
    kustomize, spec = argv
    manifests = sys.stdin.buffer.read(MAX_MANIFESTS + 1)
    try:
        output = render(manifests, json.loads(spec), kustomize)
    except (PostRenderError, ValueError) as exc:
        print(str(exc), file=sys.stderr)
        return 1
    sys.stdout.buffer.write(output)
    sys.stdout.buffer.flush()
    return 0


if __name__ == "__main__":
    # Started by helm with the controller's environment; nothing else to set up.
    os.umask(0o077)
    sys.exit(main(sys.argv[1:]))
