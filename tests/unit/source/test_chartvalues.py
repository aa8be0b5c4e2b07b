"""valuesFiles merging and the chart revision Flux writes."""

from __future__ import annotations

from pathlib import Path

import pytest

from controllers.source.chartbuild import version_with_metadata
from controllers.source.chartvalues import ValuesFileError, merge_maps, merge_values_files
from controllers.source.helmchart import HelmChartSpec, short_source_revision, version_metadata


def test_maps_merge_deeply_and_other_values_are_replaced() -> None:
    base = {"image": {"repo": "nginx", "tag": "1"}, "ports": [80, 443], "debug": True}
    overlay = {"image": {"tag": "2"}, "ports": [8080], "debug": None}
    assert merge_maps(base, overlay) == {
        "image": {"repo": "nginx", "tag": "2"},
        "ports": [8080],
        "debug": None,
    }


def test_files_merge_in_order_last_wins(tmp_path: Path) -> None:
    (tmp_path / "values.yaml").write_text("replicaCount: 1\nimage: {tag: a, repo: r}\n")
    (tmp_path / "prod").mkdir()
    (tmp_path / "prod" / "values.yaml").write_text("replicaCount: 3\nimage: {tag: b}\n")
    merged = merge_values_files(tmp_path, ["values.yaml", "prod/values.yaml"], ignore_missing=False)
    assert merged.values == {"replicaCount": 3, "image": {"tag": "b", "repo": "r"}}
    assert merged.files == ("values.yaml", "prod/values.yaml")


def test_missing_files_fail_unless_ignored(tmp_path: Path) -> None:
    (tmp_path / "values.yaml").write_text("a: 1\n")
    with pytest.raises(ValuesFileError, match=r"no values file found at path 'nope\.yaml'"):
        merge_values_files(tmp_path, ["values.yaml", "nope.yaml"], ignore_missing=False)
    merged = merge_values_files(tmp_path, ["values.yaml", "nope.yaml"], ignore_missing=True)
    assert merged.files == ("values.yaml",)


@pytest.mark.parametrize("path", ["../outside.yaml", "/etc/passwd", "a/../../b.yaml"])
def test_paths_cannot_leave_the_source(tmp_path: Path, path: str) -> None:
    (tmp_path.parent / "outside.yaml").write_text("secret: 1\n")
    with pytest.raises(ValuesFileError, match="must stay inside"):
        merge_values_files(tmp_path, [path], ignore_missing=False)


def test_symlinked_values_file_is_not_followed(tmp_path: Path) -> None:
    (tmp_path.parent / "target.yaml").write_text("secret: 1\n")
    (tmp_path / "link.yaml").symlink_to(tmp_path.parent / "target.yaml")
    with pytest.raises(ValuesFileError, match="no values file found"):
        merge_values_files(tmp_path, ["link.yaml"], ignore_missing=False)


def test_a_values_file_that_is_not_a_mapping_is_refused(tmp_path: Path) -> None:
    (tmp_path / "v.yaml").write_text("- a\n")
    with pytest.raises(ValuesFileError, match="not a YAML mapping"):
        merge_values_files(tmp_path, ["v.yaml"], ignore_missing=False)
    (tmp_path / "bad.yaml").write_text("a: [\n")
    with pytest.raises(ValuesFileError, match=r"failed to parse values file 'bad\.yaml'"):
        merge_values_files(tmp_path, ["bad.yaml"], ignore_missing=False)


def _spec(**spec: object) -> HelmChartSpec:
    return HelmChartSpec.parse(
        {
            "spec": {
                "chart": "app",
                "interval": "1m",
                "sourceRef": {"kind": "GitRepository", "name": "r"},
                **spec,
            }
        }
    )


SHA = "4e5cbb7b97d00a8039b8810b90b922f4256fd3bd"


def test_revision_as_flux_writes_it() -> None:
    assert short_source_revision(f"main@sha1:{SHA}") == "4e5cbb7b97d0"
    assert short_source_revision(f"sha1:{SHA}") == "4e5cbb7b97d0"
    revision = f"main@sha1:{SHA}"
    assert version_with_metadata("6.0.3", version_metadata(_spec(), revision, 2)) == "6.0.3"
    strategy = _spec(reconcileStrategy="Revision")
    assert (
        version_with_metadata("6.0.3", version_metadata(strategy, revision, 2))
        == "6.0.3+4e5cbb7b97d0"
    )
    both = _spec(reconcileStrategy="Revision", valuesFiles=["v.yaml"])
    assert (
        version_with_metadata("6.0.3+old", version_metadata(both, revision, 2))
        == "6.0.3+4e5cbb7b97d0.2"
    )
