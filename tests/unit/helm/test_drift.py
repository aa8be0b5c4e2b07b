from __future__ import annotations

from typing import Any

import pytest

from controllers.helm import drift, postrender
from controllers.helm import spec as release_spec

MANIFEST = """\
---
# Source: app/templates/configmap.yaml
apiVersion: v1
kind: ConfigMap
metadata:
  name: web-config
---
apiVersion: apps/v1
kind: Deployment
metadata:
  name: web
  annotations:
    helm.toolkit.fluxcd.io/driftDetection: disabled
---
# an empty document helm leaves for a template that rendered nothing
"""


def _release(**spec: Any) -> dict[str, Any]:
    chart = {"spec": {"chart": "app", "sourceRef": {"kind": "HelmRepository", "name": "c"}}}
    return {"metadata": {"name": "web", "namespace": "apps"}, "spec": {"chart": chart, **spec}}


def test_drift_settings_parse_with_ignore_rules_and_name_bad_fields() -> None:
    assert not release_spec.parse(_release()).drift.active
    ignore = [{"paths": ["/spec/replicas"], "target": {"kind": "Deployment"}}]
    settings = release_spec.parse(_release(driftDetection={"mode": "warn", "ignore": ignore})).drift
    assert settings.mode == "warn" and settings.ignore[0].paths == (("spec", "replicas"),)
    assert settings.ignore[0].matches({"kind": "Deployment", "metadata": {"name": "x"}})
    with pytest.raises(release_spec.SpecError, match=r"spec\.driftDetection\.mode: 'on'"):
        release_spec.parse(_release(driftDetection={"mode": "on"}))
    with pytest.raises(release_spec.SpecError, match=r"spec\.driftDetection\.ignore\[0\]\.paths"):
        release_spec.parse(_release(driftDetection={"mode": "enabled", "ignore": [{"paths": []}]}))


def test_every_release_labels_its_objects_with_flux_origin_labels() -> None:
    plain = release_spec.parse(_release())
    watched = release_spec.parse(_release(driftDetection={"mode": "enabled"}))
    # As Flux's helm-controller: the origin labels always, after the user's post-renderers.
    assert plain.post_renderers == ()
    assert plain.renderers == watched.renderers
    (labels,) = plain.renderers
    built = postrender.kustomization(labels, "helm-output.yaml")
    assert built["labels"] == [
        {
            "pairs": {
                "helm.toolkit.fluxcd.io/name": "web",
                "helm.toolkit.fluxcd.io/namespace": "apps",
            },
            "includeSelectors": False,
            "includeTemplates": False,
        }
    ]
    # The digest is of spec.postRenderers alone (Flux's): turning drift detection on
    # changes no post-renderer, so it upgrades nothing.
    assert watched.post_renderers_digest == plain.post_renderers_digest == ""
    patched = release_spec.parse(
        _release(postRenderers=[{"kustomize": {"images": [{"name": "a", "newTag": "2"}]}}])
    )
    assert len(patched.renderers) == 2 and patched.renderers[-1] == labels
    assert patched.post_renderers_digest == postrender.digest(patched.post_renderers)
    assert drift.release_of({"metadata": {"labels": built["labels"][0]["pairs"]}}) == (
        "apps",
        "web",
    )
    assert drift.release_of({"metadata": {}}) is None


def test_manifest_objects_skip_empty_documents_and_opted_out_objects() -> None:
    objects = drift.manifest_objects(MANIFEST)
    assert [o["kind"] for o in objects] == ["ConfigMap"]


def test_only_spec_or_metadata_changes_are_worth_a_look() -> None:
    changes = drift.SpecChanges(limit=2)
    obj: dict[str, Any] = {"metadata": {"uid": "u1", "generation": 1, "labels": {"a": "b"}}}
    assert changes.worth_a_look("MODIFIED", obj)
    assert not changes.worth_a_look("MODIFIED", obj)  # a status update: same spec, same metadata
    obj["metadata"]["generation"] = 2  # kubectl scale
    assert changes.worth_a_look("MODIFIED", obj)
    obj["metadata"]["labels"] = {"a": "c"}  # kubectl label
    assert changes.worth_a_look("MODIFIED", obj)
    assert changes.worth_a_look("DELETED", obj)
    assert changes.worth_a_look("MODIFIED", obj)  # recreated after the delete: look again
    for uid in ("u2", "u3", "u4"):
        changes.worth_a_look("MODIFIED", {"metadata": {"uid": uid, "generation": 1}})
    assert len(changes._seen) <= 2
