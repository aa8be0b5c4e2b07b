"""OCIRepository's steps against a real registry on loopback (no cluster): parse, resolve, pull.

The registry is Debian's docker-registry (`tests/support/registry.py`); artifacts are
pushed with its independent helper and with `headwater push artifact`'s code, then
pulled by the source controller's step into a real Storage.
"""

from __future__ import annotations

import io
import json
import tarfile
from pathlib import Path
from typing import Any

import pytest

from controllers.source import ocirepository as ocirepo
from controllers.source.push import PushError, push_artifact, split_target
from controllers.source.storage import ObjectKey, Storage
from controllers.toolkit import oci
from controllers.toolkit.runtime.fields import UNSUPPORTED_FIELD
from controllers.toolkit.runtime.frame import ReconcileError
from tests.support.registry import Blob, OciRegistry

KEY = ObjectKey("ocirepository", "default", "app")


def _obj(url: str, **spec: Any) -> dict[str, Any]:
    return {"spec": {"url": url, "interval": "5m", "insecure": True, **spec}}


def _tree(tmp_path: Path, name: str, files: dict[str, str]) -> Path:
    root = tmp_path / name
    for rel, text in files.items():
        (root / rel).parent.mkdir(parents=True, exist_ok=True)
        (root / rel).write_text(text)
    return root


def _pull(
    storage: Storage,
    spec: ocirepo.OCIRepositorySpec,
    current: dict[str, Any] | None = None,
    *,
    credentials: oci.Credentials | None = None,
) -> ocirepo.PullOutcome:
    inputs = ocirepo.PullInputs(KEY, spec, credentials, None, current, True)
    return ocirepo.pull_artifact(storage, inputs)


def _names(storage: Storage, artifact: dict[str, Any]) -> dict[str, bytes]:
    with tarfile.open(storage.local_path(artifact["path"]), "r:gz") as tar:
        return {
            m.name: tar.extractfile(m).read()  # type: ignore[union-attr]
            for m in tar.getmembers()
            if m.isreg()
        }


# -- spec ----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("spec", "named"),
    [
        ({"provider": "aws"}, "spec.provider"),
        ({"verify": {"provider": "cosign"}}, "spec.verify"),
        ({"serviceAccountName": "puller"}, "spec.serviceAccountName"),
        ({"proxySecretRef": {"name": "proxy"}}, "spec.proxySecretRef"),
    ],
)
def test_unimplemented_fields_stall_naming_the_field(spec: dict[str, Any], named: str) -> None:
    with pytest.raises(ReconcileError) as caught:
        ocirepo.OCIRepositorySpec.parse(_obj("oci://r.example/app", **spec))
    assert caught.value.reason == UNSUPPORTED_FIELD
    assert caught.value.stalled
    assert named in caught.value.message


@pytest.mark.parametrize(
    "url",
    [
        "https://r.example/app",
        "oci://r.example",
        "oci://r.example/app:v1",
        "oci://r.example/app@sha256:" + "0" * 64,
        "oci://r.example/App",
    ],
)
def test_an_unusable_url_stalls_as_url_invalid(url: str) -> None:
    with pytest.raises(ReconcileError) as caught:
        ocirepo.OCIRepositorySpec.parse(_obj(url))
    assert (caught.value.reason, caught.value.stalled) == (ocirepo.URL_INVALID, True)


def test_ref_defaults_to_latest_and_selector_to_extract() -> None:
    spec = ocirepo.OCIRepositorySpec.parse(_obj("oci://127.0.0.1:5000/team/app"))
    assert (spec.tag, spec.semver, spec.digest, spec.operation) == (None, None, None, "extract")
    assert spec.url == oci.OCIURL("127.0.0.1:5000", "team/app")
    assert spec.observed() == {}


def test_dockerconfigjson_entries_are_found_by_host_in_every_spelling() -> None:
    host = "127.0.0.1:5000"
    for key in (host, f"https://{host}", f"http://{host}/v2/"):
        config = {"auths": {"other:1": {"auth": "eDp5"}, key: {"username": "u", "password": "p"}}}
        found = oci.credentials_from_dockerconfig(json.dumps(config).encode(), host, "s")
        assert found == oci.Credentials("u", "p")
    auth = json.dumps({"auths": {host: {"auth": "dTpwOnE="}}}).encode()  # u:p:q
    assert oci.credentials_from_dockerconfig(auth, host, "s") == oci.Credentials("u", "p:q")
    assert oci.credentials_from_dockerconfig(b'{"auths": {}}', host, "s") is None
    with pytest.raises(oci.OCIAuthError, match="not valid JSON"):
        oci.credentials_from_dockerconfig(b"{", host, "s")


# -- pulling --------------------------------------------------------------------------------


def test_a_flux_artifact_is_pulled_archived_and_not_downloaded_again(
    tmp_path: Path, oci_registry: OciRegistry
) -> None:
    tree = _tree(tmp_path, "src", {"deploy/cm.yaml": "kind: ConfigMap\n", ".github/ci.yml": "x"})
    digest = oci_registry.push_flux_artifact("unit/pull", tree, ["v1"], revision="main@sha1:1")
    storage = Storage(tmp_path / "storage", "localhost:9090")
    spec = ocirepo.OCIRepositorySpec.parse(_obj(oci_registry.url("unit/pull"), ref={"tag": "v1"}))

    first = _pull(storage, spec)
    assert not first.unchanged
    assert first.artifact["revision"] == f"v1@{digest}"
    assert first.artifact["path"] == f"ocirepository/default/app/{digest[7:]}.tar.gz"
    assert first.artifact["metadata"][oci.REVISION_ANNOTATION] == "main@sha1:1"
    # Flux's default exclusions apply to what the layer holds, as to a git tree.
    assert _names(storage, dict(first.artifact)) == {"deploy/cm.yaml": b"kind: ConfigMap\n"}

    oci_registry.clear_requests()
    again = _pull(storage, spec, dict(first.artifact))
    assert again.unchanged
    assert oci_registry.blob_downloads("unit/pull") == []
    assert [r.method for r in oci_registry.requests()] == ["HEAD"]


def test_copy_stores_the_layer_byte_for_byte_and_media_type_picks_the_layer(
    tmp_path: Path, oci_registry: OciRegistry
) -> None:
    chart = Blob(oci.HELM_CHART_LAYER_MEDIA_TYPE, b"not really a chart, but bytes")
    other = Blob("application/vnd.example.readme", b"readme")
    oci_registry.push_artifact("unit/copy", ["1.0.0"], layers=[other, chart])
    storage = Storage(tmp_path / "storage", "localhost:9090")
    selector = {"mediaType": oci.HELM_CHART_LAYER_MEDIA_TYPE, "operation": "copy"}
    obj = _obj(oci_registry.url("unit/copy"), ref={"tag": "1.0.0"}, layerSelector=selector)
    spec = ocirepo.OCIRepositorySpec.parse(obj)
    outcome = _pull(storage, spec)
    assert storage.local_path(outcome.artifact["path"]).read_bytes() == chart.data
    assert spec.observed() == {"observedLayerSelector": selector}

    wrong = {"mediaType": "x/y"}
    missing = ocirepo.OCIRepositorySpec.parse(
        _obj(oci_registry.url("unit/copy"), ref={"tag": "1.0.0"}, layerSelector=wrong)
    )
    with pytest.raises(ocirepo.PullError) as caught:
        _pull(storage, missing)
    assert caught.value.reason == ocirepo.OCI_LAYER_FAILED
    assert "x/y" in caught.value.message


def test_semver_picks_the_highest_matching_tag_after_the_filter(
    tmp_path: Path, oci_registry: OciRegistry
) -> None:
    tree = _tree(tmp_path, "src", {"a.yaml": "a: 1\n"})
    for tag in ("1.0.0", "1.2.0", "1.10.0-rc.1", "2.0.0", "latest"):
        oci_registry.push_flux_artifact("unit/semver", tree, [tag], revision=tag)
    storage = Storage(tmp_path / "storage", "localhost:9090")

    def revision(ref: dict[str, str]) -> str:
        obj = _obj(oci_registry.url("unit/semver"), ref=ref)
        outcome = _pull(storage, ocirepo.OCIRepositorySpec.parse(obj))
        return str(outcome.artifact["revision"]).split("@")[0]

    assert revision({"semver": "1.x"}) == "1.2.0"
    assert revision({"semver": ">=1.0.0-0", "semverFilter": ".*-rc.*"}) == "1.10.0-rc.1"
    assert revision({"semver": "*", "semverFilter": "^1\\."}) == "1.2.0"
    assert revision({"semver": "*", "tag": "latest"}) == "2.0.0"  # semver wins over tag
    with pytest.raises(ocirepo.PullError) as caught:
        revision({"semver": ">=3"})
    assert caught.value.reason == ocirepo.OCI_PULL_FAILED
    assert "no match found for semver: >=3" in caught.value.message


def test_a_digest_ref_is_the_revision_itself(tmp_path: Path, oci_registry: OciRegistry) -> None:
    tree = _tree(tmp_path, "src", {"a.yaml": "a: 1\n"})
    digest = oci_registry.push_flux_artifact("unit/digest", tree, ["v1"])
    oci_registry.push_flux_artifact("unit/digest", _tree(tmp_path, "n", {"b": "b"}), ["v1"])
    storage = Storage(tmp_path / "storage", "localhost:9090")
    obj = _obj(oci_registry.url("unit/digest"), ref={"digest": digest, "tag": "v1"})
    outcome = _pull(storage, ocirepo.OCIRepositorySpec.parse(obj))
    assert outcome.artifact["revision"] == digest
    assert _names(storage, dict(outcome.artifact)) == {"a.yaml": b"a: 1\n"}


def test_a_registry_that_is_down_or_refuses_is_a_pull_failure(
    tmp_path: Path, oci_registry_basic: OciRegistry
) -> None:
    storage = Storage(tmp_path / "storage", "localhost:9090")
    spec = ocirepo.OCIRepositorySpec.parse(_obj(oci_registry_basic.url("unit/auth")))
    with pytest.raises(ocirepo.PullError) as caught:
        _pull(storage, spec, credentials=oci.Credentials("headwater", "wrong"))
    assert caught.value.reason == ocirepo.OCI_PULL_FAILED
    assert "401 unauthorized" in caught.value.message
    assert "wrong" not in caught.value.message

    down = ocirepo.OCIRepositorySpec.parse(_obj("oci://127.0.0.1:1/unit/down"))
    with pytest.raises(ocirepo.PullError) as caught:
        _pull(storage, down)
    assert caught.value.reason == ocirepo.OCI_PULL_FAILED
    assert "cannot connect to 127.0.0.1:1" in caught.value.message


# -- pushing --------------------------------------------------------------------------------


def test_push_writes_flux_media_types_and_annotations_reproducibly(
    tmp_path: Path, oci_registry: OciRegistry
) -> None:
    tree = _tree(tmp_path, "src", {"app/deploy.yaml": "kind: Deployment\n", "skip.md": "x"})
    target = oci_registry.url("unit/push") + ":v1"
    kwargs: dict[str, Any] = {
        "source": "https://git.example/app.git",
        "revision": "main@sha1:abc",
        "insecure": True,
        "ignore": "*.md",
        "reproducible": True,
    }
    first = push_artifact(target, tree, **kwargs)
    assert push_artifact(target, tree, **kwargs) == first
    manifest = oci_registry.manifest("unit/push", "v1")
    assert manifest["config"]["mediaType"] == oci.FLUX_CONFIG_MEDIA_TYPE
    assert [layer["mediaType"] for layer in manifest["layers"]] == [oci.FLUX_LAYER_MEDIA_TYPE]
    assert manifest["annotations"] == {
        oci.SOURCE_ANNOTATION: "https://git.example/app.git",
        oci.REVISION_ANNOTATION: "main@sha1:abc",
        oci.CREATED_ANNOTATION: "1970-01-01T00:00:00Z",
    }
    layer = oci_registry.blob("unit/push", manifest["layers"][0]["digest"])
    with tarfile.open(fileobj=io.BytesIO(layer), mode="r:gz") as tar:
        assert [m.name for m in tar.getmembers() if m.isreg()] == ["app/deploy.yaml"]
    with pytest.raises(PushError, match="want oci://"):
        split_target(oci_registry.url("unit/push"))
