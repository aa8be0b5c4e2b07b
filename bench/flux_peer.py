"""The real Flux controllers as the benchmarks' side-by-side peer.

- `build_controller` / `build_all`: kustomize-controller, source-controller and
  notification-controller compiled from their Go modules (facts in
  ``shared/reference/flux-binaries.md``) with devcluster's build helpers, cached by
  version outside the repository (``<cache>/flux-peer/<name>-<version>/<name>``), so a
  second run builds nothing. Cold, the three take about 10 minutes of CPU.
- `FluxPeer`: the three run out of the cluster against a devcluster (KUBECONFIG in the
  environment, their own metrics/health/storage/events ports, no leader election,
  ``--concurrent`` as given), kustomize- and source-controller sending their events to
  the notification-controller as headwater's controllers do to theirs. Their CRDs
  (each module's ``config/crd/bases``) are installed first: they share names with
  headwater's, so a cluster holds one system's or the other's, never both.

Run ``python -m bench.flux_peer build`` to fill the cache ahead of a benchmark.
"""

from __future__ import annotations

import argparse
import contextlib
import dataclasses
import logging
import os
import shutil
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator, Mapping, Sequence
from pathlib import Path

from devcluster import build
from devcluster.cluster import free_port
from devcluster.controllers import http_ready, stop_process_group

log = logging.getLogger(__name__)

NAMESPACE = "flux-system"


@dataclasses.dataclass(frozen=True)
class FluxController:
    name: str
    module: str
    version: str
    # Module path -> served version it is replaced with (an unserved requirement).
    replaces: Mapping[str, str] = dataclasses.field(default_factory=dict)

    @property
    def api_module(self) -> str:
        return f"{self.module}/api"


CONTROLLERS: dict[str, FluxController] = {
    c.name: c
    for c in (
        FluxController(
            "source-controller",
            "github.com/fluxcd/source-controller",
            "v1.9.5",
            # v0.18.3, which v1.9.5 requires, is not served (nor v0.18.2); v0.18.1 ->
            # v0.18.2 changed only go.mod.
            replaces={"github.com/fluxcd/pkg/artifact": "v0.18.1"},
        ),
        FluxController("kustomize-controller", "github.com/fluxcd/kustomize-controller", "v1.9.5"),
        # v1.9.4 (flux v2.9.5's pin) is not served; v1.9.3's CRDs are the same.
        FluxController(
            "notification-controller", "github.com/fluxcd/notification-controller", "v1.9.3"
        ),
    )
}

LDFLAGS = "-s -w"


def peer_dir(controller: FluxController) -> Path:
    return build.cache_root() / "flux-peer" / f"{controller.name}-{controller.version}"


def binary_path(controller: FluxController) -> Path:
    return peer_dir(controller) / controller.name


def crds_dir(controller: FluxController) -> Path:
    return peer_dir(controller) / "crd"


def replace_args(controller: FluxController) -> list[str]:
    """`go mod edit` arguments that swap each unserved requirement for a served one."""
    return [
        f"-replace={module}={module}@{version}"
        for module, version in sorted(controller.replaces.items())
    ]


def go_sum_lines(module: str, version: str, sums: tuple[str, str]) -> list[str]:
    """The two go.sum lines (module zip, go.mod) a replacement needs under -mod=readonly."""
    zip_sum, mod_sum = sums
    return [f"{module} {version} {zip_sum}", f"{module} {version}/go.mod {mod_sum}"]


def build_controller(controller: FluxController) -> build.BuildResult:
    """Compile one controller (and keep its CRDs beside it) unless the cache has it."""
    final = binary_path(controller)
    if final.is_file() and crds_dir(controller).is_dir():
        return build.BuildResult(final.parent, built=False, seconds=0.0)
    started = time.monotonic()
    final.parent.parent.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=".build-", dir=final.parent.parent))
    try:
        source = build.copy_module_source(
            controller.module, controller.version, staging / "src", cwd=staging
        )
        # go.mod says `replace <module>/api => ./api`; the module zip lacks that
        # nested module, so its published twin at the same version goes there.
        api = source / "api"
        if api.exists():
            shutil.rmtree(api)
        build.copy_module_source(controller.api_module, controller.version, api, cwd=staging)
        edits = replace_args(controller)
        if edits:
            build.edit_go_mod(source, edits)
            lines = []
            for module, version in sorted(controller.replaces.items()):
                sums = build.module_sum(module, version, cwd=staging)
                lines += go_sum_lines(module, version, sums)
            with (source / "go.sum").open("a") as go_sum:
                go_sum.write("".join(f"{line}\n" for line in lines))
        out = staging / "out"
        out.mkdir()
        build.build_main_module(source, ".", out / controller.name, ldflags=LDFLAGS)
        shutil.copytree(source / "config" / "crd" / "bases", out / "crd")
        build.publish(out, final.parent)
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    return build.BuildResult(final.parent, built=True, seconds=time.monotonic() - started)


def build_all(names: Sequence[str] = tuple(CONTROLLERS)) -> dict[str, build.BuildResult]:
    # One after another: the shared Kubernetes packages land in Go's build cache
    # with the first, and this machine has few cores to spare.
    return {name: build_controller(CONTROLLERS[name]) for name in names}


# -- running them out of the cluster ---------------------------------------------------

# The order they start in: the events receiver first, so no event is lost.
START_ORDER = ("notification-controller", "source-controller", "kustomize-controller")
READY_TIMEOUT = 60.0


@dataclasses.dataclass(frozen=True)
class Ports:
    metrics: int
    health: int
    events: int = 0  # notification-controller: where it listens for events
    receiver: int = 0  # notification-controller: webhook receivers
    storage: int = 0  # source-controller: the artifact server


def controller_args(
    name: str,
    ports: Ports,
    *,
    events_port: int,
    storage_path: Path | None = None,
    concurrent: int = 4,
    log_level: str = "info",
) -> list[str]:
    """The command-line flags for one Flux controller running beside a devcluster.

    Every address on loopback and its own port (the defaults collide), no leader
    election (one replica), JSON logs; emitters send events to the
    notification-controller's `events_port`.
    """
    args = [
        f"--metrics-addr=127.0.0.1:{ports.metrics}",
        f"--health-addr=127.0.0.1:{ports.health}",
        "--enable-leader-election=false",
        f"--concurrent={concurrent}",
        "--log-encoding=json",
        f"--log-level={log_level}",
    ]
    if name == "notification-controller":
        return [
            *args,
            f"--events-addr=127.0.0.1:{ports.events}",
            f"--receiverAddr=127.0.0.1:{ports.receiver}",
        ]
    args.append(f"--events-addr=http://127.0.0.1:{events_port}/")
    if name == "source-controller":
        if storage_path is None:
            raise ValueError("source-controller needs a storage path")
        args += [
            f"--storage-path={storage_path}",
            f"--storage-addr=127.0.0.1:{ports.storage}",
            f"--storage-adv-addr=127.0.0.1:{ports.storage}",
        ]
    return args


def controller_environment(kubeconfig: Path, home: Path) -> dict[str, str]:
    """What they read from the environment out of the cluster (no --kubeconfig flag)."""
    return {
        "PATH": os.environ.get("PATH", "/usr/bin:/bin"),
        "HOME": str(home),
        "TMPDIR": str(home),
        "KUBECONFIG": str(kubeconfig),
        "RUNTIME_NAMESPACE": NAMESPACE,
    }


@dataclasses.dataclass
class RunningFlux:
    """The three controllers' processes, where they listen, and their logs."""

    processes: dict[str, subprocess.Popen[bytes]]
    ports: dict[str, Ports]
    log_paths: dict[str, Path]

    def pid(self, name: str) -> int:
        return self.processes[name].pid

    def logs(self) -> str:
        return "".join(path.read_text(errors="replace") for path in self.log_paths.values())


@contextlib.contextmanager
def run_flux(
    kubeconfig: Path, workdir: Path, *, concurrent: int = 4, log_level: str = "info"
) -> Iterator[RunningFlux]:
    """Start the three (built beforehand), wait for each one's /readyz, stop them on exit.

    The cluster must hold Flux's CRDs (`crds_dir` of each) and the flux-system namespace.
    """
    workdir.mkdir(parents=True, exist_ok=True)
    home = workdir / "home"
    home.mkdir(exist_ok=True)
    # source-controller refuses a storage path that does not exist yet.
    (workdir / "artifacts").mkdir(exist_ok=True)
    events_port = free_port()
    ports = {
        "notification-controller": Ports(
            free_port(), free_port(), events=events_port, receiver=free_port()
        ),
        "source-controller": Ports(free_port(), free_port(), storage=free_port()),
        "kustomize-controller": Ports(free_port(), free_port()),
    }
    running = RunningFlux({}, ports, {})
    env = controller_environment(kubeconfig, home)
    try:
        for name in START_ORDER:
            binary = binary_path(CONTROLLERS[name])
            if not binary.is_file():
                raise FileNotFoundError(f"{binary} is missing: run python -m bench.flux_peer build")
            argv = [
                str(binary),
                *controller_args(
                    name,
                    ports[name],
                    events_port=events_port,
                    storage_path=workdir / "artifacts",
                    concurrent=concurrent,
                    log_level=log_level,
                ),
            ]
            log_path = workdir / f"{name}.log"
            with log_path.open("wb") as log_file:
                running.processes[name] = subprocess.Popen(
                    argv,
                    env=env,
                    cwd=home,
                    stdout=log_file,
                    stderr=subprocess.STDOUT,
                    start_new_session=True,
                )
            running.log_paths[name] = log_path
            deadline = time.monotonic() + READY_TIMEOUT
            while not http_ready(f"http://127.0.0.1:{ports[name].health}/readyz"):
                if running.processes[name].poll() is not None or time.monotonic() > deadline:
                    raise RuntimeError(
                        f"{name} did not become ready:\n{log_path.read_text()[-4000:]}"
                    )
                time.sleep(0.2)
        yield running
    finally:
        for name in reversed(list(running.processes)):
            stop_process_group(running.processes[name])


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    sub = parser.add_subparsers(dest="command", required=True)
    sub.add_parser("build", help="build (or find cached) the three Flux controllers")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(message)s")
    if args.command == "build":
        for name, result in build_all().items():
            state = f"built in {result.seconds:.0f}s" if result.built else "cached"
            print(f"{name}: {result.bin_dir} ({state})")
    return 0


if __name__ == "__main__":
    sys.exit(main())
