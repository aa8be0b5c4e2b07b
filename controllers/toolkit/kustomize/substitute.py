"""Post-build variable substitution: Flux's ``spec.postBuild``.

Variables come from ``substituteFrom`` (ConfigMaps and Secrets, read by the caller, later
entries winning) and then the inline ``substitute`` map, which wins over them all; newlines
are removed from every value. Each built object's YAML text is expanded and parsed again,
unless it carries ``kustomize.toolkit.fluxcd.io/substitute: disabled`` as a label or an
annotation. As in Flux, nothing is expanded when there are no variables, unless
``substituteStrategy`` is ``Always``.

The syntax is Flux's envsubst (a fork of drone/envsubst), with its quirks:

- only ``${...}`` is expanded, never ``$var``; ``$$`` stands for a literal ``$``;
- ``${var:=default}``, ``${var:-default}`` and ``${var=default}`` use the default when the
  value is empty or unset (the default may hold further ``${...}``);
- ``${var:pos}``, ``${var:pos:len}``, ``${#var}``, ``${var^}``, ``${var^^}``, ``${var,}``,
  ``${var,,}``, ``${var#glob}``, ``${var##glob}``, ``${var%glob}``, ``${var%%glob}``,
  ``${var/a/b}``, ``${var//a/b}``, ``${var/#a/b}``, ``${var/%a/b}``;
- in strict mode (Flux's default) a variable that is not set is an error unless a default
  operator supplies one.

Offsets and lengths count characters, where Flux counts UTF-8 bytes; the two agree on
ASCII. Error messages name the variable and the object, never a value.
"""

from __future__ import annotations

import base64
import re
from collections.abc import Awaitable, Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import yaml

from controllers.toolkit.apply.resources import ResourceClient, ResourceInfo
from controllers.toolkit.kustomize.build import BuildError, Manifest
from controllers.toolkit.kustomize.generate import YamlLoader, yaml_problem

SUBSTITUTE_ANNOTATION = "kustomize.toolkit.fluxcd.io/substitute"
DISABLED = "disabled"
VARIABLE_NAME = re.compile(r"^[_A-Za-z][_A-Za-z0-9]*$")
VARIABLE_NAME_RULE = "^[_[:alpha:]][_[:alpha:][:digit:]]*$"
_SOURCE_KINDS = ("ConfigMap", "Secret")
# Operators that supply their own value for an unset variable, so strict mode allows them.
_DEFAULT_OPS = frozenset({"-", "+", "=", "?", ":-", ":+", ":=", ":?"})

Reader = Callable[[str, str], Awaitable[Mapping[str, str] | None]]
"""Reads ``(kind, name)`` in the Kustomization's namespace: the data (Secret values
decoded), or None when the object does not exist."""


# The kinds substituteFrom reads, both core/v1.
_SOURCE_INFO = {
    "ConfigMap": ResourceInfo("", "v1", "ConfigMap", "configmaps", True),
    "Secret": ResourceInfo("", "v1", "Secret", "secrets", True),
}


async def read_as(
    client: ResourceClient, namespace: str, kind: str, name: str
) -> Mapping[str, str] | None:
    """A substituteFrom source's data as text, read with `client`, None when it does not exist.

    `client` is the Kustomization's identity (its service account or remote
    kubeconfig), as in Flux: a tenant substitutes only what its account may
    read. A refused read raises the API error, naming the object and verb.
    """
    info = _SOURCE_INFO.get(kind)
    if info is None:
        raise SubstitutionError(f"substituteFrom kind {kind!r} is not one of ConfigMap, Secret")
    obj = await client.get(info, namespace, name)
    if obj is None:
        return None
    data = obj.get("data") or {}
    if kind == "Secret":
        return {
            str(key): base64.b64decode(value).decode("utf-8", "replace")
            for key, value in data.items()
        }
    return {str(key): str(value) for key, value in data.items()}


class SubstitutionError(BuildError):
    """Post-build substitution failed (Flux reports it as BuildFailed)."""


# --- variables ----------------------------------------------------------------------------


@dataclass
class Variables:
    """The values to substitute, and where each came from (for messages)."""

    values: dict[str, str] = field(default_factory=dict)
    origins: dict[str, str] = field(default_factory=dict)
    secret: set[str] = field(default_factory=set)  # names whose value came from a Secret

    def secret_values(self) -> list[str]:
        return [self.values[k] for k in self.secret if self.values.get(k)]


@dataclass(frozen=True)
class SubstituteSource:
    """One `spec.postBuild.substituteFrom[]` entry."""

    kind: str  # ConfigMap | Secret
    name: str
    optional: bool = False


@dataclass(frozen=True)
class PostBuild:
    """``spec.postBuild``, checked: inline values, sources in order, and the strategy."""

    substitute: Mapping[str, str] = field(default_factory=dict)
    substitute_from: tuple[SubstituteSource, ...] = ()
    always: bool = False  # substituteStrategy: Always

    @classmethod
    def parse(cls, post_build: Mapping[str, Any] | None) -> PostBuild | None:
        """None when the spec has no postBuild; SubstitutionError names a malformed field."""
        if post_build is None:
            return None
        sources = post_build.get("substituteFrom") or []
        if not isinstance(sources, list):
            raise SubstitutionError("spec.postBuild.substituteFrom must be a list")
        refs = []
        for index, ref in enumerate(sources):
            where = f"spec.postBuild.substituteFrom[{index}]"
            if not isinstance(ref, Mapping):
                raise SubstitutionError(f"{where} must be a mapping")
            kind, name = ref.get("kind"), ref.get("name")
            if kind not in _SOURCE_KINDS:
                raise SubstitutionError(f"{where}: kind must be ConfigMap or Secret, not '{kind}'")
            if not isinstance(name, str) or not name:
                raise SubstitutionError(f"{where}: name is required")
            refs.append(SubstituteSource(str(kind), name, optional=ref.get("optional") is True))
        inline = post_build.get("substitute") or {}
        if not isinstance(inline, Mapping):
            raise SubstitutionError("spec.postBuild.substitute must be a map of strings")
        return cls(
            substitute={str(key): str(value) for key, value in inline.items()},
            substitute_from=tuple(refs),
            always=post_build.get("substituteStrategy") == "Always",
        )


async def load_variables(post_build: PostBuild, read: Reader) -> Variables:
    """Variables from ``substituteFrom`` in order, then ``substitute``, which wins."""
    variables = Variables()
    for ref in post_build.substitute_from:
        data = await read(ref.kind, ref.name)
        if data is None:
            if ref.optional:
                continue
            raise SubstitutionError(
                f"substituteFrom {ref.kind}/{ref.name} not found "
                "(set optional: true if it may be absent)"
            )
        for key, value in data.items():
            variables.values[key] = str(value).replace("\n", "")
            variables.origins[key] = f"{ref.kind}/{ref.name}"
            if ref.kind == "Secret":
                variables.secret.add(key)
            else:
                variables.secret.discard(key)
    for key, value in post_build.substitute.items():
        variables.values[key] = value.replace("\n", "")
        variables.origins[key] = "spec.postBuild.substitute"
        variables.secret.discard(key)
    return variables


def check_names(variables: Variables) -> None:
    for key in variables.values:
        if not VARIABLE_NAME.match(key):
            raise SubstitutionError(
                f"variable name '{key}' from {variables.origins.get(key, 'postBuild')} is "
                f"invalid: it must match '{VARIABLE_NAME_RULE}'"
            )


# --- the envsubst language ----------------------------------------------------------------


class ExpansionError(Exception):
    """A parse or lookup failure; `position` is where its ``${`` starts in the text."""

    def __init__(self, message: str, position: int, variable: str = "") -> None:
        self.message = message
        self.position = position
        self.variable = variable
        super().__init__(message)


_BAD_SUBSTITUTION = "bad substitution"
_MISSING_BRACE = "missing closing brace"
_BAD_NAME = "unable to parse variable name"
_BAD_PARAM = "unable to parse substitution within function"


@dataclass
class _Text:
    value: str


@dataclass
class _Func:
    param: str
    op: str
    args: list[_Text | _Func]
    start: int


_Node = _Text | _Func


def _is_ident(ch: str) -> bool:
    # Go's unicode.IsLetter / IsDigit: letters of any script, decimal digits.
    return ch == "_" or ch.isalpha() or ch.isdecimal()


class _Parser:
    def __init__(self, text: str) -> None:
        self.s = text
        self.i = 0
        self.n = len(text)
        self.start = 0

    def peek(self, offset: int = 0) -> str:
        j = self.i + offset
        return self.s[j] if j < self.n else ""

    def fail(self, message: str) -> ExpansionError:
        return ExpansionError(message, self.start)

    def parse(self) -> list[_Node]:
        nodes: list[_Node] = []
        text: list[str] = []
        s = self.s
        while self.i < self.n:
            j = s.find("$", self.i)
            if j < 0:
                text.append(s[self.i :])
                break
            text.append(s[self.i : j])
            self.i = j
            if s.startswith("${", j):
                if text:
                    nodes.append(_Text("".join(text)))
                    text = []
                nodes.append(self.func())
            elif s.startswith("$$", j):
                text.append("$")  # "$$" escapes a dollar outside expressions
                self.i = j + 2
            else:
                text.append("$")
                self.i = j + 1
        if text:
            nodes.append(_Text("".join(text)))
        return nodes

    def func(self) -> _Func:
        outer = self.start
        self.start = self.i
        self.i += 2  # "${"
        try:
            return self._func_body()
        finally:
            self.start = outer

    def _ident(self) -> str:
        begin = self.i
        while self.i < self.n and _is_ident(self.s[self.i]):
            self.i += 1
        return self.s[begin : self.i]

    def _close(self) -> None:
        if self.peek() != "}":
            raise self.fail(_BAD_SUBSTITUTION)
        self.i += 1

    def _func_body(self) -> _Func:
        start = self.start
        if self.peek() == "#":
            self.i += 1
            name = self._ident()
            if not name:
                raise self.fail(_BAD_SUBSTITUTION)
            self._close()
            return _Func(name, "#", [], start)
        name = self._ident()
        if not name:
            raise self.fail(_BAD_NAME)
        ch = self.peek()
        if ch == ":":
            after = self.peek(1)
            if after and after in "=-?+":
                self.i += 2
                return self._default(name, ":" + after)
            self.i += 1
            return self._substr(name)
        if ch == "=":
            self.i += 1
            return self._default(name, "=")
        if ch and ch in ",^":
            op = ch
            self.i += 1
            if self.peek() and self.peek() in ",^":
                op += self.peek()
                self.i += 1
            self._close()
            return _Func(name, op, [], start)
        if ch == "/":
            op = "/"
            self.i += 1
            if self.peek() and self.peek() in "/#%":
                op += self.peek()
                self.i += 1
            return self._replace(name, op)
        if ch in ("#", "%"):
            op = ch
            self.i += 1
            if self.peek() == ch:
                op += ch
                self.i += 1
            arg = self._param(lambda c: c != "}", escapes=False)
            self._close()
            return _Func(name, op, [arg], start)
        if ch == "}":
            self.i += 1
            return _Func(name, "", [], start)
        raise self.fail(_MISSING_BRACE)

    def _param(self, accept: Callable[[str], bool], *, escapes: bool) -> _Node:
        """One argument: a nested ``${...}`` or a run of accepted characters."""
        s = self.s
        if self.i >= self.n:
            raise self.fail(_BAD_PARAM)
        if s.startswith("${", self.i):
            return self.func()
        out: list[str] = []
        consumed = False
        while self.i < self.n:
            if s.startswith("${", self.i):
                break
            ch = s[self.i]
            nxt = self.peek(1)
            if escapes and ch == "$" and nxt == "$":
                out.append("$")
                self.i += 2
                consumed = True
                continue
            if escapes and ch == "\\" and nxt in ("/", "\\") and nxt:
                out.append(nxt)
                self.i += 2
                consumed = True
                continue
            if not accept(ch):
                break
            out.append(ch)
            self.i += 1
            consumed = True
        if not consumed:
            raise self.fail(_BAD_PARAM)
        return _Text("".join(out))

    def _default(self, name: str, op: str) -> _Func:
        start = self.start
        args: list[_Node] = []
        while True:
            if self.i >= self.n:
                raise self.fail(_BAD_PARAM)
            if self.s[self.i] == "}":
                self.i += 1
                return _Func(name, op, args, start)
            args.append(self._param(lambda c: c != "}", escapes=False))

    def _substr(self, name: str) -> _Func:
        start = self.start
        first = self._param(lambda c: c not in ":}", escapes=False)
        if self.peek() == "}":
            self.i += 1
            return _Func(name, ":", [first], start)
        if self.peek() != ":":
            raise self.fail(_BAD_SUBSTITUTION)
        while self.peek() == ":":
            self.i += 1
        second = self._param(lambda c: c != "}", escapes=False)
        self._close()
        return _Func(name, ":", [first, second], start)

    def _replace(self, name: str, op: str) -> _Func:
        start = self.start
        pattern = self._param(lambda c: c != "/", escapes=True)
        if self.peek() != "/":
            raise self.fail(_BAD_SUBSTITUTION)
        while self.peek() == "/":
            self.i += 1
        if self.peek() == "}":
            self.i += 1
            return _Func(name, op, [pattern], start)
        replacement = self._param(lambda c: c != "}", escapes=True)
        self._close()
        return _Func(name, op, [pattern, replacement], start)


Lookup = Callable[[str], tuple[str, bool]]


# What one manifest may expand to: variables are up to 1 MiB each (a ConfigMap's limit),
# so a few thousand references to a large one would otherwise make gigabytes of text.
MAX_EXPANDED = 32 * 1024 * 1024


def _evaluate(node: _Node, lookup: Lookup, budget: list[int]) -> str:
    if isinstance(node, _Text):
        return node.value
    args = [_evaluate(arg, lookup, budget) for arg in node.args]
    value, exists = lookup(node.param)
    if not exists and node.op not in _DEFAULT_OPS:
        raise ExpansionError(
            f"variable '{node.param}' is not set (strict mode) and has no default",
            node.start,
            node.param,
        )
    result = _apply(node.op, value, args)
    budget[0] -= len(result)
    if budget[0] < 0:
        raise ExpansionError(
            f"the expansion is larger than {MAX_EXPANDED} characters", node.start, node.param
        )
    return result


def expand(text: str, lookup: Lookup, *, limit: int = MAX_EXPANDED) -> str:
    """Expand every ``${...}`` of `text`; `lookup(name)` gives (value, is set).

    Raises ExpansionError when the variables expand to more than `limit` characters.
    """
    if "$" not in text:
        return text
    budget = [limit]
    return "".join(_evaluate(node, lookup, budget) for node in _Parser(text).parse())


def strict_lookup(values: Mapping[str, str]) -> Lookup:
    return lambda name: (values.get(name, ""), name in values)


def lenient_lookup(values: Mapping[str, str]) -> Lookup:
    return lambda name: (values.get(name, ""), True)


# --- the string functions -----------------------------------------------------------------


def _to_int(text: str) -> int | None:
    # Go's strconv.Atoi: an optional sign and decimal digits, nothing else, within int64.
    if not re.fullmatch(r"[+-]?[0-9]+", text):
        return None
    number = int(text)
    return number if -(2**63) <= number < 2**63 else None


def _substr(value: str, args: Sequence[str]) -> str:
    if not args:
        return value
    pos = _to_int(args[0])
    if pos is None:
        return value  # bash returns the value when the offset does not parse
    size = len(value)
    if pos < 0:
        pos = max(size + pos, 0)
    if len(args) == 1:
        return value[pos:] if pos < size else ""
    length = _to_int(args[1])
    if length is None:
        return value
    if pos + length >= size:
        return value[pos:] if pos < size else ""
    if length < 0 or pos + length < 0:
        return ""  # Flux's Go code panics here; an empty value is the safe reading
    return value[pos : pos + length]


_Token = re.Pattern[str] | None  # one character's pattern; None is "*"


def _glob_tokens(pattern: str) -> list[_Token] | None:
    """Flux's glob, one token per element: ``*`` and ``?`` also match "/"; None if bad."""
    out: list[_Token] = []
    i, n = 0, len(pattern)
    while i < n:
        ch = pattern[i]
        piece: str
        if ch == "*":
            if not out or out[-1] is not None:  # "**" matches what "*" does
                out.append(None)
            i += 1
            continue
        if ch == "?":
            piece = "."
        elif ch == "\\":
            if i + 1 >= n:
                return None
            i += 1
            piece = re.escape(pattern[i])
        elif ch == "[":
            i += 1
            negate = i < n and pattern[i] == "^"
            if negate:
                i += 1
            ranges: list[str] = []
            while True:
                if i >= n:
                    return None
                if pattern[i] == "]" and ranges:
                    break
                lo, i = _class_char(pattern, i)
                if lo is None:
                    return None
                hi: str | None = lo
                if i < n and pattern[i] == "-":
                    hi, i = _class_char(pattern, i + 1)
                if hi is None:
                    return None
                if lo > hi:
                    ranges.append("")  # an empty range matches nothing, like Go's
                else:
                    ranges.append(f"{re.escape(lo)}-{re.escape(hi)}")
            body = "".join(r for r in ranges if r)
            empty = "." if negate else "(?!)"  # like Go: [^] is any character, [] none
            piece = (f"[^{body}]" if negate else f"[{body}]") if body else empty
        else:
            piece = re.escape(ch)
        out.append(re.compile(piece, re.DOTALL))
        i += 1
    return out


def _matching_prefixes(value: str, tokens: Sequence[_Token]) -> Iterator[int]:
    """Lengths (ascending, from 1) of the prefixes of `value` the glob matches whole.

    One pass of the glob's automaton over `value`: linear in its length, where matching
    each prefix with a regex is quadratic, or worse with several stars (a hostile pattern
    and a 1 MiB value would stall the controller).
    """
    final = len(tokens)

    def closure(states: set[int]) -> set[int]:
        for state in sorted(states):
            while state < final and tokens[state] is None:
                state += 1
                states.add(state)
        return states

    states = closure({0})
    for position, ch in enumerate(value, start=1):
        following: set[int] = set()
        for state in states:
            if state == final:
                continue
            token = tokens[state]
            if token is None:
                following.add(state)
            elif token.fullmatch(ch):
                following.add(state + 1)
        states = closure(following)
        if not states:
            return
        if final in states:
            yield position


def _class_char(pattern: str, i: int) -> tuple[str | None, int]:
    n = len(pattern)
    if i >= n or pattern[i] in "-]":
        return None, i
    if pattern[i] == "\\":
        i += 1
        if i >= n:
            return None, i
    # Go requires something after the character (at least the closing "]").
    if i + 1 >= n:
        return None, i + 1
    return pattern[i], i + 1


def _trim_prefix(value: str, pattern: str, *, longest: bool) -> str:
    tokens = _glob_tokens(pattern)
    if tokens is None:
        return value
    end = 0
    for matched in _matching_prefixes(value, tokens):
        end = matched
        if not longest:
            break
    return value[end:]


def _trim_suffix(value: str, pattern: str, *, longest: bool) -> str:
    # Flux reverses both the value and the pattern and trims a prefix.
    return _trim_prefix(value[::-1], pattern[::-1], longest=longest)[::-1]


def _apply(op: str, value: str, args: Sequence[str]) -> str:
    if op == ",":
        return value[:1].lower() + value[1:]
    if op == ",,":
        return value.lower()
    if op == "^":
        return value[:1].upper() + value[1:]
    if op == "^^":
        return value.upper()
    if op == "#":
        return str(len(value)) if not args else _trim_prefix(value, args[0], longest=False)
    if op == "##":
        return _trim_prefix(value, args[0], longest=True) if args else value
    if op == "%":
        return _trim_suffix(value, args[0], longest=False) if args else value
    if op == "%%":
        return _trim_suffix(value, args[0], longest=True) if args else value
    if op == ":":
        return _substr(value, args)
    if op in ("/", "//"):
        if not args:
            return value
        new = args[1] if len(args) > 1 else ""
        return value.replace(args[0], new, 1 if op == "/" else -1)
    if op == "/#":
        if len(args) != 2:
            return value
        return args[1] + value[len(args[0]) :] if value.startswith(args[0]) else value
    if op == "/%":
        if len(args) != 2:
            return value
        if value.endswith(args[0]):
            return value[: len(value) - len(args[0])] + args[1]
        return value
    # Plain ${var} and every default operator: the value, or the default when empty.
    if not value and args:
        return "".join(args)
    return value


# --- objects ------------------------------------------------------------------------------


def is_disabled(obj: Mapping[str, Any]) -> bool:
    metadata = obj.get("metadata") or {}
    for key in ("labels", "annotations"):
        values = metadata.get(key) or {}
        if isinstance(values, Mapping) and values.get(SUBSTITUTE_ANNOTATION) == DISABLED:
            return True
    return False


_QUOTED = re.compile(r"'[^']*'|\"[^\"]*\"")


def _masked(message: str, secrets: Sequence[str]) -> str:
    # PyYAML quotes what it found; after substitution that may be part of a secret value.
    message = _QUOTED.sub("'…'", message)
    for secret in sorted(secrets, key=len, reverse=True):
        if len(secret) >= 3:
            message = message.replace(secret, "***")
    return message


def substitute_manifest(
    manifest: Manifest, variables: Variables, *, strict: bool = True
) -> Manifest:
    """`manifest` with its YAML text expanded and parsed again."""
    values = variables.values
    lookup = strict_lookup(values) if strict else lenient_lookup(values)
    try:
        text = expand(manifest.text, lookup)
    except ExpansionError as exc:
        line = manifest.text.count("\n", 0, exc.position) + 1
        raise SubstitutionError(
            f"substitution in {manifest.ref} failed at line {line}: {exc.message}"
        ) from None
    if text == manifest.text:
        return manifest
    try:
        document = yaml.load(text, Loader=YamlLoader)
    except UnicodeError:
        raise SubstitutionError(
            f"substitution in {manifest.ref} gave text that is not valid Unicode"
        ) from None
    except yaml.YAMLError as exc:
        problem = _masked(yaml_problem(exc), variables.secret_values())
        raise SubstitutionError(
            f"substitution in {manifest.ref} gave invalid YAML: {problem}"
        ) from None
    if not isinstance(document, dict):
        raise SubstitutionError(f"substitution in {manifest.ref} did not give a Kubernetes object")
    return Manifest(text=text, object=document)


async def substitute(
    manifests: Sequence[Manifest],
    post_build: PostBuild | None,
    read: Reader,
    *,
    strict: bool = True,
) -> list[Manifest]:
    """Apply ``spec.postBuild`` to the built objects; `read` fetches substituteFrom data.

    Sources are read once, and only if some object takes part in substitution.
    """
    if post_build is None:
        return list(manifests)
    always = post_build.always
    variables: Variables | None = None
    result: list[Manifest] = []
    for manifest in manifests:
        if is_disabled(manifest.object):
            result.append(manifest)
            continue
        if variables is None:
            variables = await load_variables(post_build, read)
            if variables.values or always:
                check_names(variables)
        if not variables.values and not always:
            result.append(manifest)
            continue
        result.append(substitute_manifest(manifest, variables, strict=strict))
    return result
