"""CEL expressions over Kubernetes objects (dependsOn readyExpr, healthCheckExprs).

Flux evaluates these with objects as plain maps; cel-python does the same
once the object is converted with `json_to_cel`. Compilation errors are
reported with the expression and the field it came from, so a typo in a
manifest is named, not swallowed.

cel-python (and its parser, lark) is imported on the first compile: a
controller whose objects carry no expression never loads it (4 MiB of RSS).
"""

from __future__ import annotations

import functools
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any


class ExpressionError(ValueError):
    """An expression does not compile, or does not evaluate to a boolean."""


@dataclass(frozen=True)
class Expression:
    source: str
    field: str
    _program: Any

    def evaluate(self, variables: Mapping[str, Any]) -> bool:
        from celpy.adapter import json_to_cel
        from celpy.celtypes import BoolType
        from celpy.evaluation import CELEvalError

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


@functools.cache
def _environment() -> Any:
    import celpy

    return celpy.Environment()


def compile_expression(source: str, *, field: str) -> Expression:
    from celpy.celparser import CELParseError

    environment = _environment()
    try:
        ast = environment.compile(source)
    except CELParseError as exc:
        raise ExpressionError(f"{field}: invalid CEL expression {source!r}: {exc}") from None
    return Expression(source=source, field=field, _program=environment.program(ast))
