"""Run the headwater controllers as a subprocess against a cluster.

The demo and the integration tests both run `headwater run all` this way,
with every server (artifacts, events, receivers, metrics, health) on a free
loopback port so several can coexist on one machine.
"""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path

from devcluster.cluster import free_port


@dataclass
class RunningControllers:
    """Where the controllers under test listen, and their log."""

    process: subprocess.Popen[bytes]
    storage_dir: Path
    storage_url: str
    metrics_url: str
    health_url: str
    events_url: str
    receiver_url: str
    log_path: Path

    def logs(self) -> str:
        return self.log_path.read_text(errors="replace")


def controller_env(
    kubeconfig: Path,
    workdir: Path,
    namespace: str = "headwater-system",
    extra_env: Mapping[str, str] | None = None,
) -> tuple[dict[str, str], dict[str, str]]:
    """Environment for a controller process with every address on a free loopback port."""
    ports = {name: free_port() for name in ("storage", "metrics", "health", "events", "receiver")}
    env = {
        **os.environ,
        "KUBECONFIG": str(kubeconfig),
        "HEADWATER_NAMESPACE": namespace,
        "HEADWATER_STORAGE_PATH": str(workdir / "artifacts"),
        "HEADWATER_STORAGE_ADDR": f"127.0.0.1:{ports['storage']}",
        "HEADWATER_STORAGE_ADV_ADDR": f"127.0.0.1:{ports['storage']}",
        "HEADWATER_METRICS_ADDR": f"127.0.0.1:{ports['metrics']}",
        "HEADWATER_HEALTH_ADDR": f"127.0.0.1:{ports['health']}",
        "HEADWATER_EVENTS_ADDR": f"127.0.0.1:{ports['events']}",
        "HEADWATER_RECEIVER_ADDR": f"127.0.0.1:{ports['receiver']}",
        "HEADWATER_LOG_FORMAT": "json",
        "HEADWATER_LOG_LEVEL": "debug",
        **(extra_env or {}),
    }
    urls = {name: f"http://127.0.0.1:{port}" for name, port in ports.items()}
    return env, urls


def http_ready(url: str) -> bool:
    """Whether `url` answers 200 now (a health endpoint polled until it does)."""
    with (
        contextlib.suppress(OSError, urllib.error.URLError),
        urllib.request.urlopen(url, timeout=2) as response,
    ):
        return bool(response.status == 200)
    return False


def stop_process_group(process: subprocess.Popen[bytes]) -> None:
    """SIGTERM the process's group (it and its children), SIGKILL after 20 s."""
    if process.poll() is None:
        os.killpg(process.pid, signal.SIGTERM)
        try:
            process.wait(timeout=20)
        except subprocess.TimeoutExpired:
            os.killpg(process.pid, signal.SIGKILL)
            process.wait(timeout=10)


@contextlib.contextmanager
def run_controllers(
    kubeconfig: Path,
    workdir: Path,
    which: str = "all",
    timeout: float = 60.0,
    extra_env: Mapping[str, str] | None = None,
) -> Iterator[RunningControllers]:
    """Start `headwater run <which>`, wait until /readyz answers, stop it (SIGTERM) on exit."""
    workdir.mkdir(parents=True, exist_ok=True)
    env, urls = controller_env(kubeconfig, workdir, extra_env=extra_env)
    log_path = workdir / f"headwater-{which}.log"
    with log_path.open("wb") as log_file:
        process = subprocess.Popen(
            [sys.executable, "-m", "controllers.cli", "run", which],
            env=env,
            stdout=log_file,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
    running = RunningControllers(
        process=process,
        storage_dir=workdir / "artifacts",
        storage_url=urls["storage"],
        metrics_url=urls["metrics"],
        health_url=urls["health"],
        events_url=urls["events"],
        receiver_url=urls["receiver"],
        log_path=log_path,
    )
    try:
        deadline = time.monotonic() + timeout
        while not http_ready(f"{running.health_url}/readyz"):
            if process.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError(
                    f"headwater run {which} did not become ready:\n{running.logs()[-4000:]}"
                )
            time.sleep(0.2)
        yield running
    finally:
        stop_process_group(process)
