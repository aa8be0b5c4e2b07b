"""spec.healthCheckExprs: Flux's CEL status reader, and the hook into kstatus."""

from __future__ import annotations

from typing import Any

from controllers.kustomize.spec import KustomizationSpec, expression_status
from controllers.toolkit.apply.health import Status, compute_status


def spec_with(*exprs: dict[str, str]) -> KustomizationSpec:
    return KustomizationSpec.parse(
        {"interval": "1m", "sourceRef": {"name": "repo"}, "healthCheckExprs": list(exprs)},
        "default",
    )


WIDGET_EXPRS = {
    "apiVersion": "example.com/v1",
    "kind": "Widget",
    "inProgress": "status.phase == 'Pending'",
    "failed": "status.phase == 'Broken'",
    "current": "status.phase == 'Ready'",
}


def widget(
    status: dict[str, Any] | None, *, version: str = "v1", generation: int = 1
) -> dict[str, Any]:
    obj: dict[str, Any] = {
        "apiVersion": f"example.com/{version}",
        "kind": "Widget",
        "metadata": {"name": "w", "namespace": "default", "generation": generation},
    }
    if status is not None:
        obj["status"] = status
    return obj


def status_of(obj: dict[str, Any], *exprs: dict[str, str]) -> Status:
    hook = expression_status(spec_with(*(exprs or (WIDGET_EXPRS,))).health_check_exprs)
    return compute_status(obj, custom_status=hook).status


def test_each_expression_gives_its_status() -> None:
    assert status_of(widget({"phase": "Ready"})) is Status.CURRENT
    assert status_of(widget({"phase": "Broken"})) is Status.FAILED
    assert status_of(widget({"phase": "Pending"})) is Status.IN_PROGRESS
    # None true: still in progress, never Current by default.
    assert status_of(widget({"phase": "Elsewhere"})) is Status.IN_PROGRESS


def test_in_progress_is_asked_first_then_failed_then_current() -> None:
    everything = {
        "apiVersion": "example.com/v1",
        "kind": "Widget",
        "inProgress": "true",
        "failed": "true",
        "current": "true",
    }
    assert status_of(widget({}), everything) is Status.IN_PROGRESS
    assert status_of(widget({}), {**everything, "inProgress": "false"}) is Status.FAILED
    only_current = {"apiVersion": "example.com/v1", "kind": "Widget", "current": "true"}
    assert status_of(widget({}), only_current) is Status.CURRENT


def test_an_old_observed_generation_is_in_progress_whatever_the_expressions_say() -> None:
    obj = widget({"phase": "Ready", "observedGeneration": 1}, generation=2)
    assert status_of(obj) is Status.IN_PROGRESS


def test_the_object_is_seen_as_flux_declares_it_and_as_self() -> None:
    by_self = {"apiVersion": "example.com/v1", "kind": "Widget", "current": "self.spec.size > 2"}
    by_field = {"apiVersion": "example.com/v1", "kind": "Widget", "current": "spec.size > 2"}
    obj = {**widget({}), "spec": {"size": 3}}
    assert status_of(obj, by_self) is Status.CURRENT
    assert status_of(obj, by_field) is Status.CURRENT


def test_a_missing_field_is_unknown_with_a_short_message_naming_the_field() -> None:
    hook = expression_status(spec_with(WIDGET_EXPRS).health_check_exprs)
    assert hook is not None
    result = hook(widget(None))
    assert result is not None
    assert result.status is Status.UNKNOWN
    assert "spec.healthCheckExprs[0].inProgress" in result.message
    assert "'status'" in result.message
    assert len(result.message) <= 300


def test_only_the_same_group_and_kind_are_judged_by_expressions() -> None:
    # Another version of the same kind: Flux matches group and kind.
    assert status_of(widget({"phase": "Broken"}, version="v2")) is Status.FAILED
    # Another kind is left to kstatus: no Ready condition, so Current.
    other = {**widget({"phase": "Broken"}), "kind": "Gadget"}
    assert status_of(other) is Status.CURRENT
    # Another group too.
    elsewhere = {**widget({"phase": "Broken"}), "apiVersion": "other.io/v1"}
    assert status_of(elsewhere) is Status.CURRENT


def test_no_expressions_means_no_hook() -> None:
    assert expression_status(spec_with().health_check_exprs) is None
