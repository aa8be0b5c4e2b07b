"""The multi-tenancy lockdown settings and decisions (no cluster)."""

from __future__ import annotations

import argparse

import pytest

from controllers.helm.spec import parse as parse_release
from controllers.kustomize.kustomization import references
from controllers.kustomize.spec import KustomizationSpec
from controllers.toolkit.runtime.frame import ReconcileError
from controllers.toolkit.runtime.runner import add_settings_flags, settings_from_args
from controllers.toolkit.runtime.settings import Settings, SettingsError
from controllers.toolkit.runtime.tenancy import ACCESS_DENIED, Lockdown, Reference


def test_the_lockdown_is_off_by_default() -> None:
    settings = Settings.load(environ={})
    assert settings.default_service_account == ""
    assert settings.no_cross_namespace_refs is False
    assert Lockdown.of(settings) == Lockdown()


def test_the_lockdown_reads_flux_named_variables() -> None:
    settings = Settings.load(
        environ={
            "HEADWATER_DEFAULT_SERVICE_ACCOUNT": "default",
            "HEADWATER_NO_CROSS_NAMESPACE_REFS": "true",
        }
    )
    assert Lockdown.of(settings) == Lockdown("default", no_cross_namespace_refs=True)


def test_the_lockdown_flags_are_flux_names_and_win_over_the_environment() -> None:
    parser = argparse.ArgumentParser()
    add_settings_flags(parser)
    args = parser.parse_args(["--default-service-account", "tenant", "--no-cross-namespace-refs"])
    settings = settings_from_args(args)
    assert settings.default_service_account == "tenant"
    assert settings.no_cross_namespace_refs is True
    args = parser.parse_args(["--no-cross-namespace-refs=false"])
    assert settings_from_args(args).no_cross_namespace_refs is False


@pytest.mark.parametrize(
    ("environ", "complaint"),
    [
        ({"HEADWATER_DEFAULT_SERVICE_ACCOUNT": "Tenant"}, "HEADWATER_DEFAULT_SERVICE_ACCOUNT"),
        ({"HEADWATER_DEFAULT_SERVICE_ACCOUNT": "a b"}, "not a valid ServiceAccount name"),
        ({"HEADWATER_DEFAULT_SERVICE_ACCOUNT": "-x"}, "not a valid ServiceAccount name"),
        ({"HEADWATER_NO_CROSS_NAMESPACE_REFS": "sometimes"}, "HEADWATER_NO_CROSS_NAMESPACE_REFS"),
    ],
)
def test_bad_lockdown_settings_name_their_variable(environ: dict[str, str], complaint: str) -> None:
    with pytest.raises(SettingsError, match=complaint):
        Settings.load(environ=environ)


def test_a_dotted_service_account_name_is_valid() -> None:
    settings = Settings.load(environ={"HEADWATER_DEFAULT_SERVICE_ACCOUNT": "apps.deployer"})
    assert settings.default_service_account == "apps.deployer"


def test_the_default_account_applies_only_when_the_object_names_none() -> None:
    assert Lockdown().service_account(None) is None
    assert Lockdown().service_account("deployer") == "deployer"
    locked = Lockdown(default_service_account="default")
    assert locked.service_account(None) == "default"
    assert locked.service_account("") == "default"
    assert locked.service_account("deployer") == "deployer"


def _kustomization(**spec: object) -> KustomizationSpec:
    return KustomizationSpec.parse(
        {"interval": "5m", "sourceRef": {"kind": "GitRepository", "name": "repo"}, **spec}, "apps"
    )


def test_a_cross_namespace_source_is_refused_naming_the_field_and_both_namespaces() -> None:
    spec = _kustomization(sourceRef={"kind": "GitRepository", "name": "repo", "namespace": "infra"})
    with pytest.raises(ReconcileError) as caught:
        Lockdown(no_cross_namespace_refs=True).check_references("apps", references(spec))
    error = caught.value
    assert error.reason == ACCESS_DENIED
    assert error.stalled
    assert "spec.sourceRef" in error.message
    assert "GitRepository 'infra/repo'" in error.message
    assert "namespace 'apps'" in error.message


def test_a_cross_namespace_dependency_is_refused() -> None:
    spec = _kustomization(dependsOn=[{"name": "base"}, {"name": "crds", "namespace": "infra"}])
    with pytest.raises(ReconcileError, match=r"spec\.dependsOn\[1\]: .*'infra/crds'"):
        Lockdown(no_cross_namespace_refs=True).check_references("apps", references(spec))


def test_same_namespace_references_pass_and_nothing_is_checked_when_off() -> None:
    Lockdown(no_cross_namespace_refs=True).check_references(
        "apps", references(_kustomization(dependsOn=[{"name": "base"}]))
    )
    Lockdown().check_references("apps", [Reference("spec.sourceRef", "GitRepository", "r", "x")])


def _release(**spec: object) -> dict[str, object]:
    return {
        "apiVersion": "helm.toolkit.fluxcd.io/v2",
        "kind": "HelmRelease",
        "metadata": {"name": "web", "namespace": "apps"},
        "spec": {"interval": "5m", **spec},
    }


def test_a_helm_release_chart_source_in_another_namespace_is_refused() -> None:
    release = parse_release(
        _release(
            chart={
                "spec": {
                    "chart": "web",
                    "sourceRef": {"kind": "HelmRepository", "name": "charts", "namespace": "infra"},
                }
            }
        )
    )
    with pytest.raises(ReconcileError, match=r"spec\.chart\.spec\.sourceRef: .*'infra/charts'"):
        Lockdown(no_cross_namespace_refs=True).check_references("apps", release.references())
    by_ref = parse_release(_release(chartRef={"kind": "HelmChart", "name": "c", "namespace": "x"}))
    with pytest.raises(ReconcileError, match=r"spec\.chartRef: cannot use HelmChart 'x/c'"):
        Lockdown(no_cross_namespace_refs=True).check_references("apps", by_ref.references())


def test_a_dependency_in_another_namespace_is_refused_with_its_kind() -> None:
    across = [{"kind": "HelmRelease", "name": "db", "namespace": "data"}]
    with pytest.raises(
        ReconcileError, match=r"spec\.dependsOn\[0\]: cannot use HelmRelease 'data/db'"
    ):
        Lockdown(no_cross_namespace_refs=True).check_references(
            "apps", references(_kustomization(dependsOn=across))
        )
    release = parse_release(_release(chartRef={"kind": "HelmChart", "name": "c"}, dependsOn=across))
    with pytest.raises(
        ReconcileError, match=r"spec\.dependsOn\[0\]: cannot use HelmRelease 'data/db'"
    ):
        Lockdown(no_cross_namespace_refs=True).check_references("apps", release.references())


def test_a_helm_release_is_impersonated_as_the_default_account() -> None:
    release = parse_release(_release(chartRef={"kind": "HelmChart", "name": "c"}))
    assert release.impersonate("apps") is None
    assert release.impersonate("apps", "default") == "system:serviceaccount:apps:default"
    named = parse_release(
        _release(chartRef={"kind": "HelmChart", "name": "c"}, serviceAccountName="deployer")
    )
    assert named.impersonate("apps", "default") == "system:serviceaccount:apps:deployer"


def test_no_remote_bases_is_on_unless_turned_off() -> None:
    assert Settings.load(environ={}).no_remote_bases is True
    assert Lockdown.of(Settings.load(environ={})).no_remote_bases is True
    off = Settings.load(environ={"HEADWATER_NO_REMOTE_BASES": "false"})
    assert Lockdown.of(off).no_remote_bases is False
    parser = argparse.ArgumentParser()
    add_settings_flags(parser)
    assert (
        settings_from_args(parser.parse_args(["--no-remote-bases=false"])).no_remote_bases is False
    )
