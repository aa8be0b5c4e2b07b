"""A HelmRelease's objects, from helm's stored release (no cluster)."""

from __future__ import annotations

import base64
import gzip
import json

import pytest

from controllers.commands import helm_inventory, kinds

MANIFEST = """\
---
# Source: wordpress/templates/web.yaml
apiVersion: apps/v1
kind: Deployment
metadata:
  name: blog-web
---
apiVersion: v1
kind: Secret
metadata:
  name: blog-db
stringData:
  password: hunter2
---
apiVersion: rbac.authorization.k8s.io/v1
kind: ClusterRole
metadata:
  name: blog-reader
"""


def stored(body: dict[str, object]) -> str:
    """As the Secret's `data.release` arrives: base64 of helm's base64 of gzipped JSON."""
    helm = base64.b64encode(gzip.compress(json.dumps(body).encode()))
    return base64.b64encode(helm).decode()


def test_the_manifest_gives_identities_only_namespaced_ones_in_the_release_namespace() -> None:
    body = helm_inventory.decode_release(stored({"manifest": MANIFEST, "namespace": "apps"}))
    entries = helm_inventory.manifest_entries(
        str(body["manifest"]), "apps", lambda _v, kind: kind != "ClusterRole"
    )
    assert [e.id.subject for e in entries] == [
        "ClusterRole/blog-reader",
        "Secret/apps/blog-db",
        "Deployment/apps/blog-web",
    ]
    assert "hunter2" not in repr(entries)


def test_broken_storage_is_an_error_naming_no_content() -> None:
    with pytest.raises(helm_inventory.HelmInventoryError, match="not JSON"):
        helm_inventory.decode_release(base64.b64encode(base64.b64encode(b"{nope")).decode())


def test_the_deployed_revision_is_read_from_the_status() -> None:
    release = {
        "metadata": {"name": "blog", "namespace": "flux"},
        "status": {
            "storageNamespace": "apps",
            "history": [
                {"name": "blog", "version": 3, "status": "failed", "chartVersion": "1.2.0"},
                {"name": "blog", "version": 2, "status": "deployed", "chartVersion": "1.1.0"},
            ],
        },
    }
    assert helm_inventory.release_of(release) == ("apps", "blog", 2)
    assert helm_inventory.release_of({"status": {}}) is None
    assert kinds.revision(kinds.HELM_RELEASE, release) == "1.2.0"
    assert kinds.resolve("hr") is kinds.HELM_RELEASE
