from __future__ import annotations

import inspect

import kopf
import pytest

from controllers.cli import build_parser
from controllers.toolkit.runtime import runner
from controllers.toolkit.runtime.leader import Leadership
from controllers.toolkit.runtime.memory_storage import MemoryDiffBaseStorage, MemoryProgressStorage
from controllers.toolkit.runtime.reconciler import FINALIZER
from controllers.toolkit.runtime.settings import Address, Settings


def test_kopf_is_configured_as_the_design_asks() -> None:
    config = runner.operator_settings(Settings(concurrent=7))
    # Kopf strips "its" finalizer from objects without deletion handlers, so it
    # must never be Flux's: that one belongs to the Reconciler.
    assert config.persistence.finalizer != FINALIZER
    assert isinstance(config.persistence.progress_storage, MemoryProgressStorage)
    assert isinstance(config.persistence.diffbase_storage, MemoryDiffBaseStorage)
    assert config.posting.enabled is False
    assert config.execution.max_workers == 7


def test_registry_has_our_login_handler() -> None:
    # No controllers: their hooks may need a cluster, which unit tests do not have.
    registry = runner.build_registry([], Settings())
    activities = registry._activities.get_all_handlers()
    assert [h.id for h in activities] == ["headwater-login"]


REGISTERED: list[tuple[kopf.OperatorRegistry, Settings]] = []


def register(registry: kopf.OperatorRegistry, settings: Settings, leadership: Leadership) -> None:
    """A controller hook for the test below, looked up by module name like the real ones."""
    assert leadership.leading  # no election in build_registry without leaderships
    REGISTERED.append((registry, settings))

    @kopf.on.startup(registry=registry, id="probe-startup")
    def startup(**_: object) -> None:
        pass


def test_each_selected_controller_registers_on_the_one_registry(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(runner, "CONTROLLERS", {"one": __name__, "two": __name__})
    settings = Settings(concurrent=3)
    REGISTERED.clear()
    registry = runner.build_registry(["one", "two"], settings)
    assert [r for r, _ in REGISTERED] == [registry, registry]
    assert all(s is settings for _, s in REGISTERED)
    ids = [str(h.id) for h in registry._activities.get_all_handlers()]
    assert ids.count("probe-startup") == 2


def test_selection() -> None:
    assert runner.selected_controllers("all") == [
        "source",
        "kustomize",
        "helm",
        "notification",
        "image",
    ]
    assert runner.selected_controllers("helm") == ["helm"]
    with pytest.raises(ValueError, match="unknown controller"):
        runner.selected_controllers("nope")


def test_every_controller_has_a_register_hook() -> None:
    for name in runner.CONTROLLERS:
        hook = runner.load_register(name)
        assert callable(hook)
        assert list(inspect.signature(hook).parameters) == ["registry", "settings", "leadership"]


def test_run_subcommand_parses_flags_into_settings(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("HEADWATER_METRICS_ADDR", ":1111")
    monkeypatch.setenv("HEADWATER_HEALTH_ADDR", ":2222")
    args = build_parser().parse_args(
        ["run", "kustomize", "--metrics-addr", "127.0.0.1:0", "--log-format", "json"]
    )
    assert args.func is not None
    assert args.controller == "kustomize"
    settings = runner.settings_from_args(args)
    assert settings.metrics_addr == Address("127.0.0.1", 0)
    assert settings.health_addr == Address("", 2222)
    assert settings.log_format == "json"


def test_bad_settings_exit_with_usage_error(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setenv("HEADWATER_CONCURRENT", "-1")
    args = build_parser().parse_args(["run", "all"])
    assert args.func(args) == 2
    assert "HEADWATER_CONCURRENT" in capsys.readouterr().err


@pytest.mark.parametrize(
    ("argv", "expected"),
    [
        ([], None),
        (["--enable-leader-election"], True),
        (["--enable-leader-election=false"], False),
        (["--enable-leader-election", "false"], False),
    ],
)
def test_enable_leader_election_is_a_switch_like_flux(
    argv: list[str], expected: bool | None
) -> None:
    args = build_parser().parse_args(["run", "source", *argv])
    assert runner.settings_from_args(args).enable_leader_election is expected


def test_one_lease_per_controller_in_run_all(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(runner.kube, "api_client", lambda: None)
    monkeypatch.setattr(runner, "KubeLeaseStore", lambda api, request_timeout: object())
    settings = Settings(namespace="hw")
    leaderships, electors = runner.leader_electors(runner.CONTROLLERS, settings, enabled=True)
    assert [e.name for e in electors] == [
        "source-controller-leader-election",
        "kustomize-controller-leader-election",
        "helm-controller-leader-election",
        "notification-controller-leader-election",
        "image-controller-leader-election",
    ]
    assert {e.namespace for e in electors} == {"hw"}
    assert not any(ls.leading for ls in leaderships.values())  # until a Lease is won
    off, none = runner.leader_electors(["source"], settings, enabled=False)
    assert none == [] and off["source"].leading
