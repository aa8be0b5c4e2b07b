"""The `kubernetes` client's package `__init__`s, loaded lazily.

`import kubernetes.client` runs `kubernetes/__init__.py`, which imports every
subpackage, and `kubernetes/client/__init__.py`, which imports all of its ~70 API
classes and ~770 model classes: about 1,100 modules and 30 MiB of RSS in every
controller process, of which a controller uses a handful (it reads and writes
through a few typed APIs and plain dicts).

`install` puts a finder first on `sys.meta_path` for the four package
`__init__`s that only re-export (`LAZY_PACKAGES`). Each is executed without its
re-export lines (`from kubernetes.client.models.v1_pod import V1Pod`,
`from . import config`); the module gets a PEP 562 `__getattr__` that imports a
name's module on first access and keeps the value on the module, so
`kubernetes.client.V1Pod`, `from kubernetes.client import CoreV1Api` and the
client's own `getattr(kubernetes.client.models, "V1Secret")` behave as before,
and only what is used is ever imported. Submodules imported by path
(`kubernetes.client.rest`, `kubernetes.watch`) are untouched.

Only lines of the exact forms `from <module> import <name>[ as <alias>]` are made
lazy; a package whose `__init__` has any other import statement (another client
version might) is executed as it is, so at worst nothing is saved. The finder is
installed from `controllers/__init__.py`, before anything imports `kubernetes`;
when `kubernetes` is already imported (a test that imported it first) `install`
changes nothing for it.
"""

from __future__ import annotations

import importlib
import importlib.machinery
import re
import sys
from collections.abc import Callable, Sequence
from types import ModuleType
from typing import Any

LAZY_PACKAGES = frozenset(
    {"kubernetes", "kubernetes.client", "kubernetes.client.api", "kubernetes.client.models"}
)

# `from kubernetes.client.models.v1_pod import V1Pod`, `from . import client`.
_REEXPORT = re.compile(
    r"^from (?P<dots>\.*)(?P<module>[\w.]*) import (?P<name>\w+)(?: as (?P<alias>\w+))?\s*$"
)
_IMPORT = re.compile(r"^\s*(from|import)\s")
_FUTURE = re.compile(r"^from __future__ import ")


def reexports(package: str, source: str) -> tuple[dict[str, tuple[str, str | None]], str] | None:
    """Split a package `__init__` into its re-exports and the rest of its code.

    Returns {exported name: (module, attribute or None for the module itself)} and
    the source with those lines blanked (line numbers kept), or None when some
    import statement is not a plain one-line re-export.
    """
    names: dict[str, tuple[str, str | None]] = {}
    kept: list[str] = []
    for line in source.splitlines():
        match = _REEXPORT.match(line)
        if match is None or _FUTURE.match(line):
            if _IMPORT.match(line) and not _FUTURE.match(line):
                return None
            kept.append(line)
            continue
        dots, module, name = match["dots"], match["module"], match["name"]
        if dots:
            base = package.rsplit(".", len(dots) - 1)[0] if len(dots) > 1 else package
            module = f"{base}.{module}" if module else base
        exported = match["alias"] or name
        if match["module"] == "" and dots:
            names[exported] = (f"{module}.{name}", None)  # `from . import sub`
        else:
            names[exported] = (module, name)
        kept.append("")
    return names, "\n".join(kept) + "\n"


def _module_getattr(
    module: ModuleType, names: dict[str, tuple[str, str | None]]
) -> Callable[[str], Any]:
    package = module.__name__

    def __getattr__(attr: str) -> Any:
        target = names.get(attr)
        if target is None:
            # A submodule the eager `__init__` would have imported on the way.
            if (
                attr.startswith("__")
                or importlib.machinery.PathFinder.find_spec(f"{package}.{attr}", module.__path__)
                is None
            ):
                raise AttributeError(f"module {package!r} has no attribute {attr!r}")
            return importlib.import_module(f"{package}.{attr}")
        module_name, obj = target
        value: Any = importlib.import_module(module_name)
        if obj is not None:
            try:
                value = getattr(value, obj)
            except AttributeError:  # `from package import submodule`
                value = importlib.import_module(f"{module_name}.{obj}")
        setattr(module, attr, value)
        return value

    return __getattr__


class _LazyInitLoader:
    """Executes a package `__init__` without its re-exports (see the module doc)."""

    def __init__(self, real: Any) -> None:
        self.real = real

    def create_module(self, spec: importlib.machinery.ModuleSpec) -> ModuleType | None:
        return None

    def exec_module(self, module: ModuleType) -> None:
        source = self.real.get_source(module.__name__)
        split = reexports(module.__name__, source) if source is not None else None
        if split is None:
            self.real.exec_module(module)
            return
        names, rest = split
        origin = module.__spec__.origin if module.__spec__ else module.__name__
        exec(compile(rest, origin or module.__name__, "exec"), module.__dict__)
        module.__getattr__ = _module_getattr(module, names)  # type: ignore[method-assign]
        exported = sorted(names)
        module.__dir__ = lambda: sorted(set(module.__dict__) | set(exported))  # type: ignore[method-assign]
        # `from kubernetes.client import *` imports every re-export, as before.
        module.__dict__.setdefault("__all__", [n for n in exported if not n.startswith("_")])


class LazyInitFinder:
    """Finds `LAZY_PACKAGES` as the path finder does, with `_LazyInitLoader`."""

    def find_spec(
        self, fullname: str, path: Sequence[str] | None, target: ModuleType | None = None
    ) -> importlib.machinery.ModuleSpec | None:
        if fullname not in LAZY_PACKAGES:
            return None
        spec = importlib.machinery.PathFinder.find_spec(fullname, path)
        if spec is None or spec.loader is None or not hasattr(spec.loader, "get_source"):
            return None
        spec.loader = _LazyInitLoader(spec.loader)  # type: ignore[assignment]
        return spec


def install() -> None:
    """Put the finder first on `sys.meta_path` (once)."""
    if not any(isinstance(finder, LazyInitFinder) for finder in sys.meta_path):
        sys.meta_path.insert(0, LazyInitFinder())
