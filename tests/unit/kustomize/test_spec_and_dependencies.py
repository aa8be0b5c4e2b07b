from __future__ import annotations

from typing import Any

import pytest

from controllers.kustomize.dependencies import dependency_not_ready, find_cycle
from controllers.kustomize.spec import KustomizationSpec, SpecError
from controllers.toolkit.dependencies import DependencyRef


def _ref(name: str, kind: str = "Kustomization") -> DependencyRef:
    return DependencyRef(kind, "apps", name)


BASE: dict[str, Any] = {
    "interval": "10m",
    "prune": True,
    "sourceRef": {"kind": "GitRepository", "name": "repo"},
}


def _ks(name: str, depends: list[str] = (), **status: Any) -> dict[str, Any]:  # type: ignore[assignment]
    return {
        "metadata": {"name": name, "namespace": "apps", "generation": 2},
        "spec": {**BASE, "dependsOn": [{"name": d} for d in depends]},
        "status": status,
    }


READY = {
    "observedGeneration": 2,
    "conditions": [{"type": "Ready", "status": "True", "reason": "ReconciliationSucceeded"}],
    "lastAppliedRevision": "main@sha1:abc",
}


def test_defaults_follow_flux() -> None:
    spec = KustomizationSpec.parse(BASE, "apps")
    assert spec.source.namespace == "apps"
    assert spec.retry_interval == spec.interval == 600
    assert spec.timeout == 570  # interval less 30s
    assert KustomizationSpec.parse({**BASE, "interval": "40s"}, "apps").timeout == 30
    assert spec.deletion_policy == "MirrorPrune"


def test_bad_fields_are_named() -> None:
    with pytest.raises(SpecError, match=r"spec\.retryInterval"):
        KustomizationSpec.parse({**BASE, "retryInterval": "soon"}, "apps")
    with pytest.raises(SpecError, match=r"spec\.dependsOn\[0\]\.readyExpr"):
        KustomizationSpec.parse(
            {**BASE, "dependsOn": [{"name": "a", "readyExpr": "dep.status =="}]}, "apps"
        )
    with pytest.raises(SpecError, match=r"spec\.healthCheckExprs\[0\]\.current"):
        KustomizationSpec.parse(
            {**BASE, "healthCheckExprs": [{"kind": "X", "apiVersion": "v1"}]}, "apps"
        )


def _lookup(*objects: dict[str, Any]):  # type: ignore[no-untyped-def]
    table = {
        DependencyRef(o.get("kind", "Kustomization"), "apps", o["metadata"]["name"]): o
        for o in objects
    }
    return table.get


def test_ready_dependency_with_the_same_revision_passes() -> None:
    dep = _ks("infra", **READY)
    app = _ks("app", ["infra"])
    spec = KustomizationSpec.parse(app["spec"], "apps")
    assert dependency_not_ready(app, spec, "main@sha1:abc", _lookup(dep, app)) is None


@pytest.mark.parametrize(
    ("dep_status", "expected"),
    [
        ({}, "not been reconciled"),
        ({**READY, "observedGeneration": 1}, "not been reconciled"),
        (
            {**READY, "conditions": [{"type": "Ready", "status": "False", "message": "boom"}]},
            "boom",
        ),
        ({**READY, "lastAppliedRevision": "main@sha1:old"}, "has not applied revision"),
    ],
)
def test_unready_dependencies_say_why(dep_status: dict[str, Any], expected: str) -> None:
    dep = _ks("infra", **dep_status)
    app = _ks("app", ["infra"])
    spec = KustomizationSpec.parse(app["spec"], "apps")
    message = dependency_not_ready(app, spec, "main@sha1:abc", _lookup(dep, app))
    assert message is not None and "apps/infra" in message and expected in message


def test_missing_dependency_and_ready_expr() -> None:
    app = _ks("app", ["ghost"])
    spec = KustomizationSpec.parse(app["spec"], "apps")
    assert "not found" in (dependency_not_ready(app, spec, "r", _lookup(app)) or "")

    app["spec"]["dependsOn"] = [{"name": "infra", "readyExpr": "dep.status.phase == 'Done'"}]
    spec = KustomizationSpec.parse(app["spec"], "apps")
    done = _ks("infra", phase="Done")
    assert dependency_not_ready(app, spec, "r", _lookup(app, done)) is None
    running = _ks("infra", phase="Running")
    assert "is false" in (dependency_not_ready(app, spec, "r", _lookup(app, running)) or "")
    # A field the expression needs but the dependency lacks: not ready, and said so.
    missing = dependency_not_ready(app, spec, "r", _lookup(app, _ks("infra")))
    assert missing is not None and "readyExpr" in missing


def test_cycles_are_named() -> None:
    a, b, c = _ks("a", ["b"]), _ks("b", ["c"]), _ks("c", ["a"])
    lookup = _lookup(a, b, c)
    assert find_cycle(_ref("a"), lookup) == [_ref("a"), _ref("b"), _ref("c"), _ref("a")]
    spec = KustomizationSpec.parse(a["spec"], "apps")
    assert "apps/a -> apps/b -> apps/c -> apps/a" in (
        dependency_not_ready(a, spec, "r", lookup) or ""
    )
    assert find_cycle(_ref("x"), _lookup(_ks("x", ["y"]), _ks("y"))) is None


def _hr(name: str, depends: list[dict[str, str]] = (), **status: Any) -> dict[str, Any]:  # type: ignore[assignment]
    return {
        "kind": "HelmRelease",
        "metadata": {"name": name, "namespace": "apps", "generation": 1},
        "spec": {"dependsOn": depends},
        "status": status,
    }


def test_a_helm_release_dependency_is_looked_up_as_one() -> None:
    app = _ks("app")
    app["spec"]["dependsOn"] = [{"name": "db", "kind": "HelmRelease"}]
    spec = KustomizationSpec.parse(app["spec"], "apps")
    assert spec.depends_on[0].ref == _ref("db", "HelmRelease")
    # A Kustomization of the same name is not the HelmRelease it waits for.
    message = dependency_not_ready(app, spec, "r", _lookup(app, _ks("db", **READY)))
    assert message == "dependency 'HelmRelease/apps/db' is not ready: not found"
    ready = {**READY, "observedGeneration": 1}
    assert dependency_not_ready(app, spec, "r", _lookup(app, _hr("db", **ready))) is None


def test_a_cycle_through_a_helm_release_is_named_with_its_kind() -> None:
    app = _ks("app")
    app["spec"]["dependsOn"] = [{"name": "db", "kind": "HelmRelease"}]
    db = _hr("db", [{"name": "app", "kind": "Kustomization"}])
    spec = KustomizationSpec.parse(app["spec"], "apps")
    assert dependency_not_ready(app, spec, "r", _lookup(app, db)) == (
        "dependency cycle: apps/app -> HelmRelease/apps/db -> apps/app"
    )


def test_an_unknown_dependency_kind_is_named() -> None:
    with pytest.raises(SpecError, match=r"spec\.dependsOn\[0\]\.kind: 'GitRepository'"):
        KustomizationSpec.parse(
            {**BASE, "dependsOn": [{"name": "a", "kind": "GitRepository"}]}, "apps"
        )
