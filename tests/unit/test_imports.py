"""What each controller process imports at start: only what it needs.

Every module a controller imports stays in its RSS for the life of the process
(bench/reports/memory.md has the figures), so what `headwater run <controller>`
loads before its first reconcile is checked here, in a fresh interpreter each
time: the CLI's other commands (the OCI push, sealing, the daily verbs, the
dashboard), other controllers' libraries, and the kubernetes client's
hundreds of model classes stay out.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]

# What `headwater run <controller>` has loaded once its handlers are registered:
# the CLI parser for `run`, then the controller's register hook, as the runner does.
_STARTED = """
import json, sys
from controllers import cli
parser = cli.build_parser(cli.command_word(["run", {controller!r}]))
parser.parse_args(["run", {controller!r}])
from controllers.toolkit.runtime import runner
runner.load_register({controller!r})
print(json.dumps(sorted(sys.modules)))
"""

# Never at start of any controller: other CLI commands, and the kubernetes
# client's models and APIs beyond the few the runtime touches.
NEVER = (
    "controllers.commands",
    "controllers.dashboard",
    "controllers.sealing.cli",
    "controllers.source.push",
    "devcluster.cli",
    "celpy",
    "jinja2",
    "kubernetes.client.models.v1_pod",
    "kubernetes.client.models.v1_deployment",
    "kubernetes.client.api.apps_v1_api",
)
# Libraries only some controllers use, and which those are.
OWNED = {
    "pyhelm3": {"helm"},
    "git": {"source", "image"},
    "pathspec": {"source"},
    "oras": {"source"},
    "cryptography": {"kustomize"},  # its sealing-key manager starts with it
}
CONTROLLERS = ("source", "kustomize", "helm", "notification", "image")


def _modules(code: str) -> set[str]:
    done = subprocess.run(
        [sys.executable, "-c", code],
        cwd=REPO,
        env={"PYTHONPATH": str(REPO), "PATH": "/usr/bin:/bin"},
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    return set(json.loads(done.stdout.splitlines()[-1]))


def _loaded(modules: set[str], name: str) -> bool:
    return any(m == name or m.startswith(name + ".") for m in modules)


@pytest.mark.parametrize("controller", CONTROLLERS)
def test_a_controller_starts_with_only_what_it_needs(controller: str) -> None:
    modules = _modules(_STARTED.format(controller=controller))
    assert f"controllers.{controller}.handlers" in modules
    assert [name for name in NEVER if _loaded(modules, name)] == []
    unexpected = [
        name for name, users in OWNED.items() if controller not in users and _loaded(modules, name)
    ]
    assert unexpected == []
    # No other controller's code either.
    others = [c for c in CONTROLLERS if c != controller and _loaded(modules, f"controllers.{c}")]
    assert others == []


def test_the_kubernetes_client_loads_a_model_when_it_is_first_used() -> None:
    modules = _modules(
        """
import json, sys
import controllers
import kubernetes.client
from kubernetes.client import CoreV1Api, V1Secret
assert kubernetes.client.V1Secret is V1Secret
assert kubernetes.client.models.V1Secret is V1Secret
assert "V1Pod" in dir(kubernetes.client) and "V1Pod" in kubernetes.client.__all__
loaded_pod = "kubernetes.client.models.v1_pod" in sys.modules
api = kubernetes.client.ApiClient()
# The client deserializes by class name through kubernetes.client.models.
class Response:
    data = json.dumps({"kind": "Secret", "metadata": {"name": "a"}, "data": {"k": "dg=="}})
secret = api.deserialize(Response(), "V1Secret")
assert isinstance(secret, V1Secret) and secret.metadata.name == "a"
pods = api.deserialize(
    type("R", (), {"data": json.dumps({"items": [{"metadata": {"name": "p"}}]})})(), "V1PodList"
)
assert pods.items[0].metadata.name == "p"
import kubernetes
assert kubernetes.config.ConfigException is not None and kubernetes.watch.Watch is not None
assert kubernetes.__version__ == kubernetes.client.__version__
print(json.dumps([str(loaded_pod)] + sorted(sys.modules)))
"""
    )
    assert "False" in modules  # V1Pod was not imported before it was used
    assert "kubernetes.client.models.v1_pod" in modules  # ... and was once it was
    assert "kubernetes.client.api.apps_v1_api" not in modules


def test_the_dashboard_starts_without_the_cli_verbs_it_does_not_serve() -> None:
    modules = _modules(
        """
import json, sys
from controllers import cli
cli.build_parser(cli.command_word(["dashboard"]))
from controllers.dashboard import access, app
print(json.dumps(sorted(sys.modules)))
"""
    )
    assert "controllers.dashboard.app" in modules and "jinja2" in modules
    unexpected = ("controllers.commands.diff", "git", "cryptography", "pathspec", "oras", "celpy")
    assert [name for name in unexpected if _loaded(modules, name)] == []
    assert [c for c in CONTROLLERS if _loaded(modules, f"controllers.{c}")] == []
