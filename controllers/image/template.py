"""Commit messages from Flux's messageTemplate: the subset of Go's text/template it needs.

Python has no Go templates, so this is a small interpreter for what Flux documents and
its examples use, over Flux's template data:

    .AutomationObject            "namespace/name" (.Name, .Namespace)
    .Values.<key>                spec.git.commit.messageTemplateValues
    .Changed.FileChanges         file -> objects -> changes   (range $file, $objects := ...)
    .Changed.Objects             object -> changes            (range $object, $changes := ...)
    .Changed.Changes             every change                 (range .Changed.Changes)
    object: .Kind .Name .Namespace .APIVersion;   change: .OldValue .NewValue .Setter

Actions: `{{ pipeline }}` printing a field or variable, `{{ print ... }}`,
`{{ println ... }}`, `{{ range [$k[, $v] :=] pipeline }} ... {{ end }}`, comments
`{{/* */}}`, and `{{-`/`-}}` trimming. Maps range in sorted key order, as in Go.
Anything else (`if`, `with`, pipes `|`, Sprig functions, `printf`, ...) is a
`TemplateError` naming the construct, so the automation stalls instead of writing a
message it got wrong. `Updated` (removed from Flux's API) is refused the same way.
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from controllers.image.setters import Change, ObjectId, Result

DEFAULT_TEMPLATE = """Automated image update

Automation name: {{ .AutomationObject }}

Files:
{{ range $filename, $_ := .Changed.FileChanges -}}
- {{ $filename }}
{{ end -}}

Objects:
{{ range $resource, $changes := .Changed.Objects -}}
- {{ $resource.Kind }} {{ $resource.Name }}
  Changes:
{{- range $_, $change := $changes }}
    - {{ $change.OldValue }} -> {{ $change.NewValue }}
{{ end -}}
{{ end -}}
"""

# Template text and data are bounded: a message is not a document.
MAX_TEMPLATE = 64 * 1024
MAX_OUTPUT = 256 * 1024

_ACTION = re.compile(r"\{\{(-\s)?(.*?)(\s-)?\}\}", re.DOTALL)
_RANGE = re.compile(r"^range\s+(?:(\$\w*)\s*(?:,\s*(\$\w*))?\s*:=\s*)?(.+)$", re.DOTALL)
_TERM = re.compile(r'"(?:[^"\\]|\\.)*"|\S+')
_KEYWORDS = ("if", "else", "with", "define", "template", "block", "break", "continue")


class TemplateError(ValueError):
    """The template uses something headwater does not interpret, or is malformed."""


@dataclass(frozen=True)
class AutomationName:
    namespace: str
    name: str

    def __str__(self) -> str:
        return f"{self.namespace}/{self.name}"


@dataclass
class _Node:
    text: str | None = None  # literal text
    action: str | None = None  # an expression to print
    range_vars: tuple[str, ...] = ()
    range_expr: str | None = None
    body: list[_Node] = field(default_factory=list)


def _parse(template: str) -> list[_Node]:
    if len(template) > MAX_TEMPLATE:
        raise TemplateError(f"messageTemplate is longer than {MAX_TEMPLATE} bytes")
    root: list[_Node] = []
    stack: list[list[_Node]] = [root]
    pos = 0
    pending_trim = False
    for m in _ACTION.finditer(template):
        text = template[pos : m.start()]
        if pending_trim:
            text = text.lstrip()
        if m.group(1):
            text = text.rstrip()
        if text:
            stack[-1].append(_Node(text=text))
        pending_trim = bool(m.group(3))
        pos = m.end()
        body = m.group(2).strip()
        if body.startswith("/*") and body.endswith("*/"):
            continue
        word = body.split(None, 1)[0] if body else ""
        if word == "end":
            if len(stack) == 1:
                raise TemplateError("messageTemplate has an {{ end }} without a range")
            stack.pop()
            continue
        if word == "range":
            rm = _RANGE.match(body)
            if rm is None:
                raise TemplateError(f"messageTemplate: cannot read '{{{{ {body} }}}}'")
            variables = tuple(v for v in (rm.group(1), rm.group(2)) if v)
            node = _Node(range_vars=variables, range_expr=rm.group(3).strip())
            _check_expression(node.range_expr or "")
            stack[-1].append(node)
            stack.append(node.body)
            continue
        if word in _KEYWORDS:
            raise TemplateError(
                f"messageTemplate uses '{word}', which headwater does not support; "
                "supported: fields, variables, print, println and range"
            )
        _check_expression(body)
        stack[-1].append(_Node(action=body))
    tail = template[pos:]
    if pending_trim:
        tail = tail.lstrip()
    if tail:
        stack[-1].append(_Node(text=tail))
    if len(stack) != 1:
        raise TemplateError("messageTemplate has a range without {{ end }}")
    return root


def _check_expression(expr: str) -> None:
    if "|" in expr:
        raise TemplateError(
            f"messageTemplate uses a pipe in '{{{{ {expr} }}}}', which headwater does not support"
        )
    terms = _TERM.findall(expr)
    if not terms:
        raise TemplateError("messageTemplate has an empty action")
    head = terms[0]
    if head in ("print", "println"):
        terms = terms[1:]
    elif len(terms) > 1 or not _is_operand(head):
        raise TemplateError(
            f"messageTemplate uses '{head}' in '{{{{ {expr} }}}}', which headwater does not "
            "support; supported: fields, variables, print, println and range"
        )
    for term in terms:
        if not _is_operand(term):
            raise TemplateError(
                f"messageTemplate uses '{term}' in '{{{{ {expr} }}}}', which headwater "
                "does not support"
            )
        if term.startswith(".Updated") or ".Updated" in term:
            raise TemplateError(
                "messageTemplate uses .Updated, which Flux's API has removed; use .Changed"
            )


def _is_operand(term: str) -> bool:
    return bool(re.fullmatch(r'(\$\w*|\.)?(\.\w+)*|"(?:[^"\\]|\\.)*"', term)) and term != ""


def _field(value: Any, name: str, expr: str) -> Any:
    if isinstance(value, Mapping):
        if name in value:
            return value[name]
        raise TemplateError(f"messageTemplate: '{expr}' names a key '{name}' that is not set")
    attribute = _FIELDS.get((type(value), name))
    if attribute is None:
        raise TemplateError(f"messageTemplate: '{expr}' names a field '{name}' the data lacks")
    return (
        getattr(value, attribute)()
        if callable(getattr(value, attribute))
        else getattr(value, attribute)
    )


_FIELDS: dict[tuple[type, str], str] = {
    (AutomationName, "Name"): "name",
    (AutomationName, "Namespace"): "namespace",
    (ObjectId, "Kind"): "kind",
    (ObjectId, "Name"): "name",
    (ObjectId, "Namespace"): "namespace",
    (ObjectId, "APIVersion"): "api_version",
    (Change, "OldValue"): "old_value",
    (Change, "NewValue"): "new_value",
    (Change, "Setter"): "setter",
    (Result, "FileChanges"): "files",
    (Result, "Objects"): "objects",
    (Result, "Changes"): "changes",
}


def _evaluate(term: str, dot: Any, variables: Mapping[str, Any], data: Any) -> Any:
    if term.startswith('"'):
        return bytes(term[1:-1], "utf-8").decode("unicode_escape")
    if term.startswith("$"):
        head, *rest = term.split(".")
        if head not in variables:
            raise TemplateError(f"messageTemplate: undefined variable '{head}'")
        value = variables[head] if head != "$" else data
    else:
        rest = [part for part in term.split(".") if part]
        value = dot
    for name in rest:
        value = _field(value, name, term)
    return value


def _text(value: Any) -> str:
    if isinstance(value, Change):
        return f"{{{value.old_value} {value.new_value} {value.setter}}}"
    if isinstance(value, ObjectId):
        return f"{{{value.name} {value.namespace} {value.api_version} {value.kind}}}"
    return str(value)


def _items(value: Any, expr: str) -> list[tuple[Any, Any]]:
    if isinstance(value, Mapping):
        return sorted(value.items(), key=lambda kv: _text(kv[0]))
    if isinstance(value, Sequence) and not isinstance(value, str):
        return list(enumerate(value))
    raise TemplateError(f"messageTemplate: cannot range over '{expr}'")


def _render(nodes: Sequence[_Node], dot: Any, variables: dict[str, Any], data: Any) -> str:
    out: list[str] = []
    for node in nodes:
        if node.text is not None:
            out.append(node.text)
        elif node.action is not None:
            terms = _TERM.findall(node.action)
            if terms[0] in ("print", "println"):
                values = [_text(_evaluate(t, dot, variables, data)) for t in terms[1:]]
                sep = " " if terms[0] == "println" else ""
                out.append(sep.join(values) + ("\n" if terms[0] == "println" else ""))
            else:
                out.append(_text(_evaluate(terms[0], dot, variables, data)))
        else:
            assert node.range_expr is not None
            for key, item in _items(
                _evaluate(node.range_expr, dot, variables, data), node.range_expr
            ):
                scope = dict(variables)
                if len(node.range_vars) == 2:
                    scope[node.range_vars[0]], scope[node.range_vars[1]] = key, item
                elif len(node.range_vars) == 1:
                    scope[node.range_vars[0]] = item
                out.append(_render(node.body, item, scope, data))
        if sum(len(part) for part in out) > MAX_OUTPUT:
            raise TemplateError(f"the commit message is longer than {MAX_OUTPUT} bytes")
    return "".join(out)


def check_template(template: str | None) -> None:
    """Raise TemplateError now if the template cannot be rendered (checked at parse time)."""
    _parse(template if template is not None else DEFAULT_TEMPLATE)


def render_message(
    template: str | None,
    automation: AutomationName,
    changed: Result,
    values: Mapping[str, str],
) -> str:
    """The commit message for `changed` (Flux's default template when none is given)."""
    nodes = _parse(template if template is not None else DEFAULT_TEMPLATE)
    data = {"AutomationObject": automation, "Changed": changed, "Values": dict(values)}
    return _render(nodes, data, {"$": data}, data)
