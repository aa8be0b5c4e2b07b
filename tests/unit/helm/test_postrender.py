from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from controllers.helm import postrender
from controllers.helm import spec as release_spec

KUSTOMIZE = str(Path(__file__).resolve().parents[3] / ".tools" / "bin" / "kustomize")
DEPLOYMENT = """\
apiVersion: apps/v1
kind: Deployment
metadata:
  name: web
spec:
  replicas: 1
  selector: {matchLabels: {app: web}}
  template:
    metadata: {labels: {app: web}}
    spec:
      containers:
        - name: web
          image: example/web:1
---
apiVersion: v1
kind: ConfigMap
metadata:
  name: settings
data: {a: "1"}
"""
RENDERERS = [
    {
        "kustomize": {
            "patches": [
                {
                    "patch": "- op: replace\n  path: /spec/replicas\n  value: 3\n",
                    "target": {"kind": "Deployment", "name": "web"},
                },
                {
                    "patch": "apiVersion: v1\nkind: ConfigMap\n"
                    "metadata: {name: settings}\ndata: {b: '2'}"
                },
            ],
            "images": [{"name": "example/web", "newName": "mirror/web", "newTag": "2"}],
        }
    }
]


def _release(**spec: object) -> dict[str, object]:
    chart = {"spec": {"chart": "app", "sourceRef": {"kind": "HelmRepository", "name": "c"}}}
    return {"metadata": {"name": "r", "namespace": "n"}, "spec": {"chart": chart, **spec}}


def test_post_renderers_parse_into_kustomizations_and_digest_their_content() -> None:
    spec = release_spec.parse(_release(postRenderers=RENDERERS))
    (renderer,) = spec.post_renderers
    built = postrender.kustomization(renderer, "helm-output.yaml")
    assert built["resources"] == ["helm-output.yaml"]
    assert built["patches"][0]["target"] == {"kind": "Deployment", "name": "web"}
    assert "target" not in built["patches"][1]
    assert built["images"] == [{"name": "example/web", "newName": "mirror/web", "newTag": "2"}]
    assert spec.post_renderers_digest.startswith("sha256:")
    assert release_spec.parse(_release()).post_renderers_digest == ""
    other = json.loads(json.dumps(RENDERERS))
    other[0]["kustomize"]["images"][0]["newTag"] = "3"
    assert release_spec.parse(_release(postRenderers=other)).post_renderers_digest != (
        spec.post_renderers_digest
    )


@pytest.mark.parametrize(
    ("renderers", "field"),
    [
        ([{}], r"spec\.postRenderers\[0\]\.kustomize: required"),
        ([{"kustomize": {"patches": [{"patch": ""}]}}], r"patches\[0\]\.patch: required"),
        ([{"kustomize": {"images": [{"newTag": "1"}]}}], r"images\[0\]\.name: required"),
    ],
)
def test_bad_post_renderers_are_named(renderers: object, field: str) -> None:
    with pytest.raises(release_spec.SpecError, match=field):
        release_spec.parse(_release(postRenderers=renderers))


def test_render_applies_patches_and_images_with_the_pinned_kustomize() -> None:
    renderers = postrender.parse_post_renderers(RENDERERS)
    out = postrender.render(DEPLOYMENT.encode(), renderers, KUSTOMIZE)
    objects = {o["kind"]: o for o in yaml.safe_load_all(out)}
    assert objects["Deployment"]["spec"]["replicas"] == 3
    container = objects["Deployment"]["spec"]["template"]["spec"]["containers"][0]
    assert container["image"] == "mirror/web:2"
    assert objects["ConfigMap"]["data"] == {"a": "1", "b": "2"}


def test_render_is_bounded_and_says_why_it_failed() -> None:
    renderers = postrender.parse_post_renderers(RENDERERS)
    with pytest.raises(postrender.PostRenderError, match="larger than 10 bytes"):
        postrender.render(DEPLOYMENT.encode(), renderers, KUSTOMIZE, max_size=10)
    bad = postrender.parse_post_renderers([{"kustomize": {"patches": [{"patch": "- op: nope"}]}}])
    with pytest.raises(postrender.PostRenderError, match="kustomize post-renderer failed"):
        postrender.render(DEPLOYMENT.encode(), bad, KUSTOMIZE)


def test_the_plugin_script_runs_as_helm_starts_it(tmp_path: Path) -> None:
    plugin = postrender.install_plugin(tmp_path)
    manifest = yaml.safe_load((plugin / "plugin.yaml").read_text())
    assert manifest["type"] == "postrenderer/v1"
    command = manifest["runtimeConfig"]["platformCommand"][0]
    renderers = postrender.encode(postrender.parse_post_renderers(RENDERERS))
    done = subprocess.run(
        [command["command"], *command["args"], KUSTOMIZE, renderers],
        input=DEPLOYMENT.encode(),
        capture_output=True,
        env={"PATH": os.environ.get("PATH", "")},
        check=False,
        timeout=60,
    )
    assert done.returncode == 0, done.stderr
    assert b"image: mirror/web:2" in done.stdout
    assert command["command"] == sys.executable
