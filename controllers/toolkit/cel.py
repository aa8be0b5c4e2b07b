"""CEL expressions over Kubernetes objects (dependsOn readyExpr, healthCheckExprs).

Flux evaluates these with objects as plain maps; cel-python does the same
once the object is converted with `json_to_cel`. Compilation errors are
reported with the expression and the field it came from, so a typo in a
manifest is named, not swallowed.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import celpy
from celpy.adapter import json_to_cel
from celpy.celparser import CELParseError
from celpy.celtypes import BoolType
from celpy.evaluation import CELEvalError


class ExpressionError(ValueError):
    """An expression does not compile, or does not evaluate to a boolean."""


@dataclass(frozen=True)
class Expression:
    source: str
    field: str
    _program: Any

    def evaluate(self, variables: Mapping[str, Any]) -> bool:
        try:
            result = self._program.evaluate(json_to_cel(dict(variables)))
        except CELEvalError as exc:
            raise ExpressionError(
                f"{self.field}: evaluating {self.source!r} failed: {exc}"
            ) from None
        if isinstance(result, CELEvalError):
            raise ExpressionError(f"{self.field}: evaluating {self.source!r} failed: {result}")
        # CEL booleans arrive as celpy's BoolType (an int subclass), never as bool.
        if not isinstance(result, BoolType):
            raise ExpressionError(
                f"{self.field}: {self.source!r} must give true or false, got {result!r}"
            )
        return bool(result)


_ENVIRONMENT = celpy.Environment()


def compile_expression(source: str, *, field: str) -> Expression:
    try:
        ast = _ENVIRONMENT.compile(source)
    except CELParseError as exc:
        raise ExpressionError(f"{field}: invalid CEL expression {source!r}: {exc}") from None
    return Expression(source=source, field=field, _program=_ENVIRONMENT.program(ast))
