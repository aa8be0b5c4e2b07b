from __future__ import annotations

import pytest

from controllers.toolkit.cel import ExpressionError, compile_expression

READY = {"status": {"conditions": [{"type": "Ready", "status": "True"}], "replicas": 3}}


def test_evaluates_against_object_maps() -> None:
    expression = compile_expression(
        "self.status.conditions.exists(c, c.type == 'Ready' && c.status == 'True')",
        field="spec.dependsOn[0].readyExpr",
    )
    assert expression.evaluate({"self": READY}) is True
    assert expression.evaluate({"self": {"status": {"conditions": []}}}) is False


def test_compile_errors_name_the_field() -> None:
    with pytest.raises(ExpressionError, match=r"spec\.healthCheckExprs\[1\]\.current"):
        compile_expression("self.status ==", field="spec.healthCheckExprs[1].current")


def test_non_boolean_result_is_an_error() -> None:
    expression = compile_expression("self.status.replicas", field="readyExpr")
    with pytest.raises(ExpressionError, match="true or false"):
        expression.evaluate({"self": READY})


def test_missing_field_is_an_evaluation_error_not_a_crash() -> None:
    expression = compile_expression("self.status.missing == 1", field="readyExpr")
    with pytest.raises(ExpressionError, match="readyExpr"):
        expression.evaluate({"self": READY})
