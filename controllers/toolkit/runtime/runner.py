"""`headwater run`: run one controller, or all of them in one process, with kopf.

Each controller package has a `handlers.py` with a `register` function
(`RegisterFn`) that adds its handlers to the registry given to it. The
runner builds one explicit `kopf.OperatorRegistry` (never kopf's global
one, so the controllers selected are exactly the ones that run), lets every
selected controller register on it, and runs one kopf operator with one
metrics/health server. `headwater run all` is therefore the same code path
as a single controller, with more handlers.
"""

from __future__ import annotations

import argparse
import asyncio
import concurrent.futures
import importlib
import logging
import signal
import sys
from collections.abc import Mapping, Sequence
from typing import Any, Protocol, cast

import kopf

# Insights are not re-exported by kopf; they are the only way to know that
# the initial resource scan is done and the watch-streams are starting.
# Pinned kopf (1.45.2) keeps them here.
from kopf._cogs.structs.references import Insights

from controllers.toolkit.runtime import kube
from controllers.toolkit.runtime.leader import (
    KubeLeaseStore,
    LeaderElector,
    Leadership,
    LeaseTiming,
    election_enabled,
    lease_name,
    new_identity,
)
from controllers.toolkit.runtime.logs import configure_logging
from controllers.toolkit.runtime.memory_storage import MemoryDiffBaseStorage, MemoryProgressStorage
from controllers.toolkit.runtime.observability import HealthState, ObservabilityServer, heartbeat
from controllers.toolkit.runtime.settings import Settings, SettingsError, flag_help

log = logging.getLogger(__name__)

# Kopf removes "its" finalizer from objects that have no deletion handlers,
# and headwater registers none (deletion is part of the level-based
# reconcile), so kopf must never be told that Flux's finalizer is its own.
# Kopf keeps a marker of its own that it never needs and so never adds;
# `finalizers.fluxcd.io` belongs to the Reconciler alone.
KOPF_FINALIZER = "headwater.kopf/unused"

# Controller name -> module with its `register` hook. Imported by name, so
# the toolkit has no static import of any controller.
CONTROLLERS: Mapping[str, str] = {
    "source": "controllers.source.handlers",
    "kustomize": "controllers.kustomize.handlers",
    "helm": "controllers.helm.handlers",
    "notification": "controllers.notification.handlers",
    "image": "controllers.image.handlers",
}
ALL = "all"

# Exit codes: 0 after a requested stop, 1 when the operator failed, 2 for bad usage.
EXIT_OK = 0
EXIT_FAILED = 1
EXIT_USAGE = 2


class RegisterFn(Protocol):
    """What each controller's `handlers.register` looks like.

    It adds the controller's handlers (and any startup/cleanup activities)
    to `registry` with `@kopf.on.*(..., registry=registry)`, and must not
    touch kopf's global registry. Its queues reconcile only while
    `leadership` leads (always, when leader election is off).
    """

    def __call__(
        self, registry: kopf.OperatorRegistry, settings: Settings, leadership: Leadership
    ) -> None: ...


def selected_controllers(name: str) -> list[str]:
    """The controllers `headwater run <name>` runs."""
    if name == ALL:
        return list(CONTROLLERS)
    if name not in CONTROLLERS:
        raise ValueError(f"unknown controller {name!r}: choose from {', '.join(choices())}")
    return [name]


def choices() -> list[str]:
    return [*CONTROLLERS, ALL]


def load_register(controller: str) -> RegisterFn:
    module = importlib.import_module(CONTROLLERS[controller])
    return cast(RegisterFn, module.register)


def build_registry(
    controllers: Sequence[str],
    settings: Settings,
    leaderships: Mapping[str, Leadership] | None = None,
) -> kopf.OperatorRegistry:
    """One registry with our login handler and every selected controller's handlers."""
    registry = kopf.OperatorRegistry()
    kube.register_login(registry)
    for controller in controllers:
        leadership = (leaderships or {}).get(controller) or Leadership.always()
        load_register(controller)(registry, settings, leadership)
    return registry


def leader_electors(
    controllers: Sequence[str], settings: Settings, enabled: bool
) -> tuple[dict[str, Leadership], list[LeaderElector]]:
    """One Leadership per controller, and one elector (Lease) each when election is on.

    A Lease per controller, not one per process, as Flux has it: `run all`
    and a separately deployed controller then contend for the same Lease,
    so one kind is never reconciled by two processes.
    """
    if not enabled:
        return {name: Leadership.always() for name in controllers}, []
    timing = LeaseTiming.of(settings)
    identity = new_identity()
    store = KubeLeaseStore(kube.api_client(), request_timeout=timing.retry_period)
    leaderships: dict[str, Leadership] = {}
    electors: list[LeaderElector] = []
    for name in controllers:
        leadership = leaderships[name] = Leadership(name=name)
        electors.append(
            LeaderElector(
                store,
                namespace=settings.namespace,
                name=lease_name(name, settings.watch_label_selector),
                identity=identity,
                timing=timing,
                leadership=leadership,
            )
        )
    return leaderships, electors


def operator_settings(settings: Settings) -> kopf.OperatorSettings:
    """Kopf configured for level-based reconciles that keep no state on objects."""
    config = kopf.OperatorSettings()
    config.persistence.finalizer = KOPF_FINALIZER
    # Nothing of kopf's on users' objects: no progress or last-handled-
    # configuration annotations, no status.kopf. Both are held in memory
    # (see memory_storage for what that trades away).
    config.persistence.progress_storage = MemoryProgressStorage()
    config.persistence.diffbase_storage = MemoryDiffBaseStorage()
    # Kopf would otherwise post its own handler logs as k8s Events; our
    # EventRecorder writes the Flux-style events instead.
    config.posting.enabled = False
    config.posting.loggers = False
    # Sync handlers run on this many threads. The reconcile bound itself is
    # per controller (concurrency.ReconcileSlots), not kopf's per-kind queue limit.
    config.execution.max_workers = settings.concurrent
    return config


async def _report_started(state: HealthState, started: asyncio.Event, insights: Insights) -> None:
    """Mark the process ready once kopf's startup is done and its watches are starting."""
    await started.wait()
    await insights.ready_namespaces.wait()
    await insights.ready_resources.wait()
    state.started.set()
    log.info("controllers started")


def blocking_workers(settings: Settings, controllers: int) -> int:
    """Threads for blocking calls: a few per reconcile each controller may run at once."""
    return max(32, 4 * settings.concurrent * controllers)


async def run_operator(controllers: Sequence[str], settings: Settings) -> int:
    """Run the controllers until SIGTERM/SIGINT; returns the process exit code."""
    # Fail fast, as Flux's controllers do, when there are no credentials at
    # all: a crash-looping pod says more than one that retries forever.
    try:
        kube.load_configuration()
    except kube.KubeConfigError as exc:
        log.error("%s", exc)
        return EXIT_FAILED
    leaderships, electors = leader_electors(
        controllers, settings, election_enabled(settings, kube.in_cluster())
    )
    registry = build_registry(controllers, settings, leaderships)
    # Blocking work (git, artifact packing, status and event writes) runs on
    # the loop's default executor, whose default size (CPUs + 4) let a few slow
    # git clones starve every other controller's API writes in `run all`.
    asyncio.get_running_loop().set_default_executor(
        concurrent.futures.ThreadPoolExecutor(
            max_workers=blocking_workers(settings, len(controllers)),
            thread_name_prefix="headwater-blocking",
        )
    )
    state = HealthState()
    server = ObservabilityServer(
        metrics_addr=settings.metrics_addr, health_addr=settings.health_addr, state=state
    )
    try:
        server.start()
    except OSError as exc:
        log.error("%s", exc)
        return EXIT_FAILED

    # Created before kopf starts, so kopf's shutdown (which cancels every task
    # created while it runs) leaves them to us.
    started = asyncio.Event()
    insights = Insights()
    helpers = [
        asyncio.create_task(heartbeat(state), name="headwater heartbeat"),
        asyncio.create_task(_report_started(state, started, insights), name="headwater readiness"),
    ]
    # Elections run beside kopf: a standby keeps its watches and servers up.
    elections = [
        asyncio.create_task(elector.run(), name=f"leader election {elector.name}")
        for elector in electors
    ]
    log.info(
        "starting controllers",
        extra={
            "controllers": list(controllers),
            "concurrent": settings.concurrent,
            "leader_election": bool(electors),
            "watch_label_selector": settings.watch_label_selector,
        },
    )
    code = EXIT_OK
    try:
        # standalone: no kopf peering objects; clusterwide: Flux controllers
        # watch every namespace. Kopf handles SIGTERM/SIGINT and returns.
        await kopf.operator(
            registry=registry,
            settings=operator_settings(settings),
            standalone=True,
            clusterwide=not settings.watch_namespace,
            namespaces=[settings.watch_namespace] if settings.watch_namespace else [],
            ready_flag=started,
            insights=insights,
        )
    except Exception:
        log.exception("controllers failed")
        code = EXIT_FAILED
    finally:
        state.stopping.set()
        for task in elections:
            task.cancel()
        await asyncio.gather(*elections, return_exceptions=True)
        # Kopf's cleanup has stopped every queue by now, so the Leases can go.
        if settings.leader_election_release_on_cancel:
            await asyncio.gather(*(elector.release() for elector in electors))
        for task in helpers:
            task.cancel()
        await asyncio.gather(*helpers, return_exceptions=True)
        await asyncio.to_thread(server.stop)
    log.info("controllers stopped", extra={"exit_code": code})
    return code


def run(controllers: Sequence[str], settings: Settings) -> int:
    configure_logging(settings.log_format, settings.log_level)
    # Until kopf installs its own handlers, treat SIGTERM like SIGINT, so a
    # stop requested during startup still ends with exit code 0.
    signal.signal(signal.SIGTERM, signal.default_int_handler)
    try:
        return asyncio.run(run_operator(controllers, settings))
    except KeyboardInterrupt:
        # A SIGINT before kopf installed its own handler is still a requested stop.
        return EXIT_OK


def add_settings_flags(parser: argparse.ArgumentParser) -> None:
    """One flag per setting; unset flags stay None so the environment applies."""
    group = parser.add_argument_group("settings (flags override HEADWATER_* variables)")
    for item in flag_help():
        if item.boolean:
            # Like Go's bool flags: `--enable-leader-election` alone means true,
            # `--enable-leader-election=false` turns it off.
            group.add_argument(
                item.flag,
                dest=item.field,
                default=None,
                nargs="?",
                const="true",
                metavar="true|false",
                help=f"${item.env}; default {item.default}",
            )
            continue
        group.add_argument(
            item.flag,
            dest=item.field,
            default=None,
            metavar=item.field.upper() if item.choices is None else None,
            choices=item.choices,
            help=f"${item.env}; default {item.default}",
        )


def settings_from_args(args: argparse.Namespace) -> Settings:
    values: dict[str, Any] = vars(args)
    return Settings.load(flags={item.field: values.get(item.field) for item in flag_help()})


def _run_command(args: argparse.Namespace) -> int:
    try:
        settings = settings_from_args(args)
        controllers = selected_controllers(args.controller)
    except (SettingsError, ValueError) as exc:
        print(f"headwater run: {exc}", file=sys.stderr)
        return EXIT_USAGE
    return run(controllers, settings)


def add_parser(commands: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    """Register `headwater run` on the CLI's subcommands."""
    parser = commands.add_parser(
        "run",
        help="run controllers against the current kubeconfig",
        description="Run one controller, or all of them in one process.",
    )
    parser.add_argument("controller", choices=choices(), help="which controller to run")
    add_settings_flags(parser)
    parser.set_defaults(func=_run_command)


def main_for(controller: str, argv: Sequence[str] | None = None) -> int:
    """Entry point of `python -m controllers.<controller>`."""
    parser = argparse.ArgumentParser(
        prog=f"python -m controllers.{controller}",
        description=f"Run the {controller} controller.",
    )
    add_settings_flags(parser)
    args = parser.parse_args(argv)
    args.controller = controller
    return _run_command(args)
