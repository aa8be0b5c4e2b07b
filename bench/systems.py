"""The two systems a side-by-side benchmark compares, each started out of the cluster.

- headwater in the process layout ``config/`` defaults to: ``headwater run notification``,
  ``headwater run source`` and ``headwater run kustomize`` as three processes (the
  emitters' events go to the notification process, as in the cluster), every feature
  on (health waits, events, drift watches), ``--concurrent`` as given;
- flux: kustomize-, source- and notification-controller built from their Go modules
  (`bench.flux_peer`).

`start_system` yields a `RunningSystem`: the processes by role (``source``,
``kustomize``, ``notification``), a probe over any of them, and their logs. The cluster
must be a `ControlPlane` made with `crd_dirs(system)` and `namespace(system)`: the two
systems' CRDs share names.
"""

from __future__ import annotations

import contextlib
import dataclasses
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path

from bench import flux_peer
from bench.harness import CRDS_DIR, ProcessesProbe, controller_env
from devcluster.controllers import run_controllers

SYSTEMS = ("headwater", "flux")
ROLES = ("source", "kustomize", "notification")
# What the memory and CPU figures sum: the controllers both systems run for a sync.
MEASURED_ROLES = ("source", "kustomize")


def crd_dirs(system: str) -> tuple[Path, ...]:
    if system == "headwater":
        return (CRDS_DIR,)
    return tuple(flux_peer.crds_dir(c) for c in flux_peer.CONTROLLERS.values())


def namespace(system: str) -> str:
    return "headwater-system" if system == "headwater" else flux_peer.NAMESPACE


@dataclasses.dataclass
class RunningSystem:
    system: str
    pids: dict[str, int]  # role -> pid
    logs: Callable[[], str]
    kustomize_metrics_url: str  # where the kustomize controller serves /metrics

    def probe(self, roles: Sequence[str] = MEASURED_ROLES) -> ProcessesProbe:
        return ProcessesProbe([self.pids[role] for role in roles])


@contextlib.contextmanager
def start_system(
    system: str,
    kubeconfig: Path,
    workdir: Path,
    *,
    concurrent: int = 4,
    log_level: str = "info",
) -> Iterator[RunningSystem]:
    if system == "flux":
        with flux_peer.run_flux(
            kubeconfig, workdir, concurrent=concurrent, log_level=log_level
        ) as flux:
            pids = {role: flux.pid(f"{role}-controller") for role in ROLES}
            metrics = f"http://127.0.0.1:{flux.ports['kustomize-controller'].metrics}"
            yield RunningSystem(system, pids, flux.logs, metrics)
        return
    if system != "headwater":
        raise ValueError(f"unknown system {system!r}: expected one of {', '.join(SYSTEMS)}")
    env = {**controller_env(log_level), "HEADWATER_CONCURRENT": str(concurrent)}
    with contextlib.ExitStack() as stack:
        notification = stack.enter_context(
            run_controllers(kubeconfig, workdir / "notification", "notification", extra_env=env)
        )
        emitter_env = {**env, "HEADWATER_EVENTS_ADDR": f"{notification.events_url}/"}
        running = {"notification": notification}
        for role in ("source", "kustomize"):
            running[role] = stack.enter_context(
                run_controllers(kubeconfig, workdir / role, role, extra_env=emitter_env)
            )
        yield RunningSystem(
            system,
            {role: r.process.pid for role, r in running.items()},
            lambda: "".join(r.logs() for r in running.values()),
            running["kustomize"].metrics_url,
        )
