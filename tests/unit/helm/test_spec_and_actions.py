"""HelmRelease spec defaults, release naming, and the next-action decision."""

from __future__ import annotations

from typing import Any

import pytest

from controllers.helm.actions import Action, Desired, Snapshot, next_action
from controllers.helm.engine import history_snapshots
from controllers.helm.helmchart import ChartRevisionError, oci_chart_digest
from controllers.helm.release import ReleaseRef, Revision
from controllers.helm.spec import SpecError, parse, release_name
from controllers.helm.storage import StoredRevision
from controllers.toolkit.runtime.frame import ReconcileError


def release(**spec: Any) -> dict[str, Any]:
    return {
        "metadata": {"name": "blog", "namespace": "apps"},
        "spec": {"interval": "5m", "chartRef": {"kind": "HelmChart", "name": "wp"}, **spec},
    }


def test_release_name_is_fluxs() -> None:
    assert release_name("blog") == "blog"
    assert release_name("blog", "web") == "web-blog"
    assert release_name("blog", "web", "custom") == "custom"
    long = release_name("b" * 30, "n" * 30)
    assert len(long) == 53
    assert long.startswith("n" * 30 + "-" + "b" * 9 + "-")
    assert long == release_name("b" * 30, "n" * 30)


def test_defaults_are_fluxs() -> None:
    spec = parse(release())
    assert spec.release_name == "blog" and spec.namespace == "apps"
    assert spec.timeout == 300 and spec.max_history == 5 and spec.interval == 300
    assert (spec.install_crds, spec.upgrade_crds) == ("Create", "Skip")
    assert spec.upgrade_remediation.retries == 0
    assert not spec.upgrade_remediation.remediate_last_failure
    assert spec.upgrade_remediation.strategy == "rollback"
    assert (spec.chart.namespace, spec.chart.name, spec.chart.template) == ("apps", "wp", None)
    assert spec.impersonate("apps") is None
    assert parse(release(serviceAccountName="deployer")).impersonate("apps") == (
        "system:serviceaccount:apps:deployer"
    )
    retried = parse(release(upgrade={"remediation": {"retries": 2}}))
    assert retried.upgrade_remediation.remediate_last_failure
    assert not retried.upgrade_remediation.exhausted(2)
    assert retried.upgrade_remediation.exhausted(3)


def test_spec_chart_owns_a_helmchart_named_like_fluxs() -> None:
    spec = parse(
        {
            "metadata": {"name": "blog", "namespace": "apps"},
            "spec": {
                "chart": {
                    "spec": {
                        "chart": "wordpress",
                        "sourceRef": {"kind": "HelmRepository", "name": "r", "namespace": "src"},
                    }
                },
                "targetNamespace": "web",
            },
        }
    )
    assert (spec.chart.namespace, spec.chart.name) == ("src", "apps-blog")
    assert spec.chart.template is not None
    assert spec.chart.template.helm_chart_spec()["version"] == "*"
    assert spec.release_name == "web-blog" and spec.namespace == "web"


def test_chart_ref_may_name_an_oci_repository_and_nothing_else() -> None:
    spec = parse(release(chartRef={"kind": "OCIRepository", "name": "web", "namespace": "src"}))
    assert (spec.chart.kind, spec.chart.namespace, spec.chart.name) == (
        "OCIRepository",
        "src",
        "web",
    )
    assert spec.chart.key == "OCIRepository/src/web"
    first = spec.references()[0]
    assert (first.kind, first.name) == ("OCIRepository", "web")
    assert parse(release()).chart.key == "HelmChart/apps/wp"
    with pytest.raises(SpecError, match=r"spec.chartRef.kind: 'ExternalArtifact'"):
        parse(release(chartRef={"kind": "ExternalArtifact", "name": "x"}))
    source_v1 = {"apiVersion": "source.toolkit.fluxcd.io/v1", "kind": "OCIRepository"}
    assert parse(release(chartRef={**source_v1, "name": "web"})).chart.kind == "OCIRepository"
    with pytest.raises(SpecError, match=r"spec.chartRef.apiVersion: 'example.com/v1'"):
        parse(release(chartRef={"apiVersion": "example.com/v1", "kind": "HelmChart", "name": "x"}))


def test_bad_and_refused_fields_name_the_field() -> None:
    with pytest.raises(SpecError, match=r"spec.chart, spec.chartRef"):
        parse({"metadata": {"name": "a", "namespace": "b"}, "spec": {}})
    with pytest.raises(SpecError, match=r"spec.install.crds"):
        parse(release(install={"crds": "Sometimes"}))
    with pytest.raises(SpecError, match=r"spec.timeout"):
        parse(release(timeout="soon"))
    with pytest.raises(ReconcileError, match=r"spec.commonMetadata") as refused:
        parse(release(commonMetadata={"labels": {"a": "b"}}))
    assert refused.value.stalled
    with pytest.raises(ReconcileError, match=r"spec.storageNamespace"):
        parse(release(storageNamespace="elsewhere"))
    assert parse(release(storageNamespace="apps")).namespace == "apps"


DESIRED = Desired("wordpress", "1.0.0", "sha256:aa")


def snapshot(version: int = 1, digest: str = "sha256:aa", tested: bool = False) -> Snapshot:
    return Snapshot(version, "deployed", "wordpress", "1.0.0", digest, tested)


@pytest.mark.parametrize(
    ("snap", "stored", "test_enable", "expected"),
    [
        (None, None, False, Action.INSTALL),
        (snapshot(), StoredRevision(1, "uninstalled"), False, Action.INSTALL),
        (snapshot(), StoredRevision(2, "pending-upgrade"), False, Action.UNLOCK),
        (None, StoredRevision(1, "pending-install"), False, Action.UNLOCK),
        (snapshot(), StoredRevision(2, "failed"), False, Action.UPGRADE),
        (snapshot(), StoredRevision(2, "deployed"), False, Action.UPGRADE),
        (snapshot(digest="sha256:bb"), StoredRevision(1, "deployed"), False, Action.UPGRADE),
        (snapshot(), StoredRevision(1, "deployed"), True, Action.TEST),
        (snapshot(tested=True), StoredRevision(1, "deployed"), True, Action.NONE),
        (snapshot(), StoredRevision(1, "deployed"), False, Action.NONE),
    ],
)
def test_next_action(
    snap: Snapshot | None, stored: StoredRevision | None, test_enable: bool, expected: Action
) -> None:
    action, _ = next_action(DESIRED, snap, stored, test_enable=test_enable)
    assert action is expected


def test_a_new_oci_digest_for_the_same_chart_version_upgrades() -> None:
    """A tag pushed again (same chart version, new manifest): Flux upgrades, so must we."""
    oci = Desired("wordpress", "1.0.0", "sha256:aa", "sha256:" + "1" * 64)
    deployed = Snapshot(1, "deployed", "wordpress", "1.0.0", "sha256:aa", False, oci.oci_digest)
    assert next_action(oci, deployed, StoredRevision(1, "deployed"), test_enable=False)[0] is (
        Action.NONE
    )
    moved = Desired("wordpress", "1.0.0", "sha256:aa", "sha256:" + "2" * 64)
    action, why = next_action(moved, deployed, StoredRevision(1, "deployed"), test_enable=False)
    assert action is Action.UPGRADE and "chart" in why
    entry = {"version": 1, "status": "deployed", "ociDigest": oci.oci_digest}
    assert Snapshot.latest_of({"history": [entry]}).oci_digest == oci.oci_digest  # type: ignore[union-attr]


def test_oci_chart_digest_reads_the_revision_as_flux_does() -> None:
    digest = "sha256:" + "ab" * 32
    assert oci_chart_digest(f"2.0.0@{digest}", "2.0.0") == digest
    assert oci_chart_digest(digest, "2.0.0") == digest  # a digest reference
    assert oci_chart_digest(f"1.0.0_build.1@{digest}", "1.0.0+build.1") == digest
    with pytest.raises(ChartRevisionError, match=r"does not match chart version 2\.0\.0"):
        oci_chart_digest(f"2.1.0@{digest}", "2.0.0")
    with pytest.raises(ChartRevisionError, match="failed parsing artifact revision latest"):
        oci_chart_digest(f"latest@{digest}", "2.0.0")
    with pytest.raises(ChartRevisionError, match="invalid artifact revision"):
        oci_chart_digest("2.0.0@sha256", "2.0.0")


def test_history_snapshots_are_newest_first_and_keep_what_helm_does_not_say() -> None:
    ref = ReleaseRef("blog", "apps")
    revisions = [
        Revision(v, s, "wordpress-1.0.0", "6.4", f"2026-01-0{v}T00:00:00Z", "")
        for v, s in ((1, "superseded"), (2, "failed"), (3, "deployed"))
    ]
    previous = [
        {"version": 1, "configDigest": "sha256:one", "testHooks": {"t": {}}, "ociDigest": "d1"},
        {"version": 2, "testHooks": {}},
    ]
    made = {3: {"configDigest": "sha256:three"}}
    snapshots = history_snapshots(ref, revisions, previous, made, "wordpress")
    assert [s["version"] for s in snapshots] == [3, 2, 1]
    assert snapshots[0]["configDigest"] == "sha256:three"
    assert snapshots[1]["configDigest"] == ""
    assert snapshots[2]["configDigest"] == "sha256:one"
    assert snapshots[2]["testHooks"] == {"t": {}}
    assert snapshots[2]["ociDigest"] == "d1"  # kept as Flux keeps an older revision's
    assert "ociDigest" not in snapshots[0]
    # Tests ran for revision 2 even though its chart has no test hooks.
    assert snapshots[1]["testHooks"] == {}
    assert "testHooks" not in snapshots[0]
    assert all(s["chartName"] == "wordpress" and s["chartVersion"] == "1.0.0" for s in snapshots)
    assert all(s["firstDeployed"] == "2026-01-01T00:00:00Z" for s in snapshots)
    assert len({s["digest"] for s in snapshots}) == 3


def test_test_filters_and_preserve_values_become_helm_flags() -> None:
    spec = parse(
        release(
            test={"enable": True, "filters": [{"name": "a"}, {"name": "b", "exclude": True}]},
            upgrade={"preserveValues": True},
        )
    )
    assert spec.test_filters == ("name=a", "!name=b")
    checked = parse(release(install={"disableSchemaValidation": True}))
    assert checked.install_validation_args == ("--skip-schema-validation",)
    assert checked.upgrade_validation_args == ()
    assert spec.upgrade_preserve_values
    assert parse(release()).test_filters == ()
    assert not parse(release()).upgrade_preserve_values
    with pytest.raises(SpecError, match=r"spec.test.filters\[0\].name"):
        parse(release(test={"filters": [{"exclude": True}]}))
