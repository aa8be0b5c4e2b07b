from __future__ import annotations

from typing import Any

import pytest

from controllers.helm import spec as release_spec
from controllers.helm.dependencies import dependency_not_ready
from controllers.toolkit.dependencies import DependencyRef


def _obj(kind: str, name: str, depends: list[dict[str, str]] = (), **status: Any) -> dict[str, Any]:  # type: ignore[assignment]
    return {
        "kind": kind,
        "metadata": {"name": name, "namespace": "apps", "generation": 3},
        "spec": {
            "chart": {"spec": {"chart": "app", "sourceRef": {"name": "charts"}}},
            "dependsOn": depends,
        },
        "status": status,
    }


def _ready(**extra: Any) -> dict[str, Any]:
    return {
        "observedGeneration": 3,
        "conditions": [{"type": "Ready", "status": "True", "message": "ok"}],
        **extra,
    }


def _lookup(*objects: dict[str, Any]):  # type: ignore[no-untyped-def]
    table = {DependencyRef(o["kind"], "apps", o["metadata"]["name"]): o for o in objects}
    return table.get


def _check(release: dict[str, Any], *others: dict[str, Any]) -> str | None:
    spec = release_spec.parse(release)
    return dependency_not_ready(release, spec.depends_on, _lookup(release, *others))


def test_a_release_waits_for_a_kustomization_until_it_applied_its_revision() -> None:
    app = _obj("HelmRelease", "app", [{"name": "infra", "kind": "Kustomization"}])
    assert _check(app) == "dependency 'Kustomization/apps/infra' is not ready: not found"
    # A HelmRelease of that name is not the Kustomization it waits for.
    assert "not found" in (_check(app, _obj("HelmRelease", "infra", **_ready())) or "")
    half = _ready(lastAttemptedRevision="main@sha1:new", lastAppliedRevision="main@sha1:old")
    assert "has not applied revision 'main@sha1:new'" in (
        _check(app, _obj("Kustomization", "infra", **half)) or ""
    )
    done = _ready(lastAttemptedRevision="main@sha1:new", lastAppliedRevision="main@sha1:new")
    assert _check(app, _obj("Kustomization", "infra", **done)) is None


@pytest.mark.parametrize(
    ("status", "expected"),
    [
        ({}, "latest generation has not been reconciled"),
        ({**_ready(), "observedGeneration": 2}, "latest generation has not been reconciled"),
        (
            {**_ready(), "conditions": [{"type": "Ready", "status": "False", "message": "boom"}]},
            "boom",
        ),
    ],
)
def test_an_unready_release_dependency_says_why(status: dict[str, Any], expected: str) -> None:
    app = _obj("HelmRelease", "app", [{"name": "db"}])
    message = _check(app, _obj("HelmRelease", "db", **status))
    assert message is not None and "'apps/db'" in message and expected in message


def test_ready_expr_decides_when_given() -> None:
    app = _obj("HelmRelease", "app", [{"name": "db", "readyExpr": "dep.status.phase == 'Up'"}])
    assert _check(app, _obj("HelmRelease", "db", phase="Up")) is None
    assert "is false" in (_check(app, _obj("HelmRelease", "db", phase="Down")) or "")


def test_cycles_across_kinds_are_named() -> None:
    app = _obj("HelmRelease", "app", [{"name": "infra", "kind": "Kustomization"}])
    infra = _obj("Kustomization", "infra", [{"name": "app", "kind": "HelmRelease"}])
    assert _check(app, infra) == (
        "dependency cycle: apps/app -> Kustomization/apps/infra -> apps/app"
    )


def test_bad_dependency_fields_are_named() -> None:
    with pytest.raises(release_spec.SpecError, match=r"spec\.dependsOn\[0\]\.kind: 'Bucket'"):
        release_spec.parse(_obj("HelmRelease", "app", [{"name": "x", "kind": "Bucket"}]))
    with pytest.raises(release_spec.SpecError, match=r"spec\.dependsOn\[0\]\.readyExpr"):
        release_spec.parse(_obj("HelmRelease", "app", [{"name": "x", "readyExpr": "dep =="}]))
