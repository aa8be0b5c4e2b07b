"""The layout's import rules, checked on the code itself (AST, no imports run).

- `toolkit/apply/` never imports `toolkit/runtime/`: the apply engine knows
  nothing of queues, frames or settings, and stays usable by any caller;
- no controller package imports another controller's code: they talk only
  through the API and the two HTTP contracts (artifacts, events);
- `toolkit/` imports no controller package.
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

CONTROLLERS = Path(__file__).resolve().parents[2] / "controllers"
CONTROLLER_PACKAGES = ("source", "kustomize", "helm", "notification", "image")


def _imports(path: Path) -> set[str]:
    tree = ast.parse(path.read_text(), filename=str(path))
    found: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.ImportFrom) and node.module:
            found.add(node.module)
            found.update(f"{node.module}.{alias.name}" for alias in node.names)
        elif isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names)
    return found


def _violations(folder: Path, forbidden: tuple[str, ...]) -> list[str]:
    return [
        f"{path.relative_to(CONTROLLERS.parent)} imports {module}"
        for path in sorted(folder.rglob("*.py"))
        for module in sorted(_imports(path))
        if any(module == f or module.startswith(f + ".") for f in forbidden)
    ]


def test_the_apply_wing_never_imports_the_runtime_wing() -> None:
    assert _violations(CONTROLLERS / "toolkit" / "apply", ("controllers.toolkit.runtime",)) == []


def test_the_toolkit_imports_no_controller() -> None:
    forbidden = tuple(f"controllers.{name}" for name in (*CONTROLLER_PACKAGES, "sealing"))
    assert _violations(CONTROLLERS / "toolkit", forbidden) == []


@pytest.mark.parametrize("package", CONTROLLER_PACKAGES)
def test_no_controller_imports_another(package: str) -> None:
    others = tuple(f"controllers.{name}" for name in CONTROLLER_PACKAGES if name != package)
    assert _violations(CONTROLLERS / package, others) == []


def test_the_cli_verbs_import_no_controller() -> None:
    # The CLI talks to the API like any user; it may use the toolkit, not a controller.
    forbidden = tuple(f"controllers.{name}" for name in CONTROLLER_PACKAGES)
    assert _violations(CONTROLLERS / "commands", forbidden) == []


def test_the_dashboard_imports_no_controller_and_no_kopf() -> None:
    # The dashboard is a read-mostly web app: the CLI's verbs and the toolkit, no controller.
    forbidden = (*(f"controllers.{name}" for name in (*CONTROLLER_PACKAGES, "sealing")), "kopf")
    assert _violations(CONTROLLERS / "dashboard", forbidden) == []
