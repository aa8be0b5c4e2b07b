"""`headwater cluster up | down | status | kubeconfig | build [--tools]`."""

from __future__ import annotations

import argparse
import json
import logging
import os
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from devcluster import build, build_all, provision
from devcluster.cluster import (
    ClusterError,
    ClusterState,
    pid_alive,
    remove_workdir,
    stop_process_group,
)

log = logging.getLogger(__name__)


def state_home() -> Path:
    configured = os.environ.get("HEADWATER_DEVCLUSTER_HOME")
    if configured:
        return Path(configured)
    xdg = os.environ.get("XDG_STATE_HOME")
    return (Path(xdg) if xdg else Path.home() / ".local" / "state") / "headwater" / "devcluster"


def _state_file() -> Path:
    return state_home() / "state.json"


def _load_state() -> ClusterState | None:
    path = _state_file()
    if not path.exists():
        return None
    return ClusterState.load(path)


def _alive(state: ClusterState) -> dict[str, bool]:
    return {component.name: pid_alive(component.pid) for component in state.components}


def cmd_up(args: argparse.Namespace) -> int:
    state = _load_state()
    if state is not None:
        if all(_alive(state).values()):
            print(f"cluster already running; kubeconfig: {state.kubeconfig}")
            return 0
        # A previous cluster died partly (machine restart, killed process): clear it.
        _teardown(state)
    started = time.monotonic()
    workdir = Path(tempfile.mkdtemp(prefix="headwater-devcluster-"))
    try:
        cluster = provision(workdir, nodes=args.nodes)
        built = time.monotonic()
        state = cluster.start(timeout=args.timeout)
    except (ClusterError, build.BuildError) as exc:
        remove_workdir(workdir)
        print(f"headwater cluster up: {exc}", file=sys.stderr)
        return 1
    _state_file().parent.mkdir(parents=True, exist_ok=True)
    state.save(_state_file())
    print(
        f"cluster up: API server https://127.0.0.1:{state.api_port}, {args.nodes} kwok nodes Ready "
        f"(build/check {built - started:.1f}s, start {time.monotonic() - built:.1f}s)"
    )
    print(f"kubeconfig: {state.kubeconfig}")
    return 0


def _teardown(state: ClusterState) -> None:
    for component in reversed(state.components):
        stop_process_group(component.pid)
    remove_workdir(Path(state.workdir))
    _state_file().unlink(missing_ok=True)


def cmd_down(args: argparse.Namespace) -> int:
    state = _load_state()
    if state is None:
        print("no cluster is running")
        return 0
    _teardown(state)
    print("cluster down: every component stopped, data removed")
    return 0


def cmd_status(args: argparse.Namespace) -> int:
    state = _load_state()
    if state is None:
        print("no cluster is running")
        return 1
    alive = _alive(state)
    report: dict[str, Any] = {
        "apiServer": f"https://127.0.0.1:{state.api_port}",
        "kubeconfig": state.kubeconfig,
        "components": {name: ("running" if up else "stopped") for name, up in alive.items()},
    }
    if args.output == "json":
        print(json.dumps(report, indent=2))
    else:
        print(f"API server: {report['apiServer']}")
        print(f"kubeconfig: {state.kubeconfig}")
        for name, status in report["components"].items():
            print(f"  {name:<24} {status}")
    return 0 if all(alive.values()) else 1


def cmd_kubeconfig(args: argparse.Namespace) -> int:
    state = _load_state()
    if state is None:
        print("no cluster is running; start one with 'headwater cluster up'", file=sys.stderr)
        return 1
    print(state.kubeconfig)
    return 0


def cmd_build(args: argparse.Namespace) -> int:
    try:
        results = build_all()
        if args.tools:
            tools_dir = build.install_project_tools()
            versions = f"kustomize {build.KUSTOMIZE_VERSION}, helm {build.HELM_VERSION}"
            print(f"tools: {versions} in {tools_dir}")
            # The tests' own tools, built here so CI's setup step caches them.
            results["flux"] = build.build_flux_cli()
            results["oras"] = build.build_go_tool("oras")
    except build.BuildError as exc:
        print(f"headwater cluster build: {exc}", file=sys.stderr)
        return 1
    for name, result in results.items():
        verb = f"built in {result.seconds:.1f}s" if result.built else "cached"
        print(f"{name}: {verb} ({result.bin_dir})")
    return 0


def cmd_demo(args: argparse.Namespace) -> int:
    # Imported here: the demo pulls in the git server and YAML tooling the
    # cluster commands do not need.
    from devcluster import demo

    up = argparse.Namespace(nodes=3, timeout=180.0)
    if cmd_up(up) != 0:
        return 1
    state = _load_state()
    assert state is not None
    workdir = state_home() / "demo"
    workdir.mkdir(parents=True, exist_ok=True)
    return demo.run(Path(state.kubeconfig), workdir, once=args.once)


def add_parser(commands: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    demo = commands.add_parser(
        "demo", help="sync the example app from a local git server into the local cluster"
    )
    demo.add_argument("--once", action="store_true", help="stop after showing the sync")
    demo.set_defaults(func=cmd_demo)

    parser = commands.add_parser("cluster", help="a local, real Kubernetes control plane")
    actions = parser.add_subparsers(dest="action", required=True, metavar="ACTION")

    up = actions.add_parser(
        "up", help="build if needed and start; returns once the API server is ready"
    )
    up.add_argument("--nodes", type=int, default=3, help="number of kwok nodes (default 3)")
    up.add_argument("--timeout", type=float, default=180.0, help="seconds to wait for readiness")
    up.set_defaults(func=cmd_up)

    down = actions.add_parser("down", help="stop every component and remove the cluster's data")
    down.set_defaults(func=cmd_down)

    status = actions.add_parser("status", help="which components are running")
    status.add_argument("-o", "--output", choices=["text", "json"], default="text")
    status.set_defaults(func=cmd_status)

    kubeconfig = actions.add_parser("kubeconfig", help="print the kubeconfig path")
    kubeconfig.set_defaults(func=cmd_kubeconfig)

    build_cmd = actions.add_parser(
        "build", help="build the control plane binaries (cached by version)"
    )
    build_cmd.add_argument(
        "--tools",
        action="store_true",
        help="also install kustomize and helm into .tools/bin, and build the tests' flux "
        "and oras CLIs",
    )
    build_cmd.set_defaults(func=cmd_build)
