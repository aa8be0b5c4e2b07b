"""`headwater run` as a real process against the test cluster: it starts, serves
health and metrics, and stops with exit code 0 on SIGTERM and SIGINT."""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import urllib.error
import urllib.request
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from tests.support.cluster import TestCluster, wait_for

pytestmark = pytest.mark.integration

REPO_ROOT = Path(__file__).resolve().parents[2]


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port: int = probe.getsockname()[1]
        return port


def status_of(port: int, path: str) -> int | None:
    """The HTTP status of GET path, or None while nothing answers."""
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}{path}", timeout=5) as response:
            status: int = response.status
            return status
    except urllib.error.HTTPError as exc:
        return exc.code
    except (urllib.error.URLError, ConnectionError, TimeoutError):
        return None


def body_of(port: int, path: str) -> str:
    with urllib.request.urlopen(f"http://127.0.0.1:{port}{path}", timeout=5) as response:
        text: str = response.read().decode()
        return text


def port_closed(port: int) -> bool:
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=2):
            return False
    except ConnectionRefusedError:
        return True


@dataclass
class Running:
    process: subprocess.Popen[bytes]
    metrics_port: int
    health_port: int
    log_path: Path

    def logs(self) -> str:
        return self.log_path.read_text(errors="replace")

    def answering(self, port: int, path: str, expected: int = 200) -> bool:
        if self.process.poll() is not None:
            raise AssertionError(f"exited early with {self.process.returncode}:\n{self.logs()}")
        return status_of(port, path) == expected

    def stop(self, signum: signal.Signals) -> int:
        self.process.send_signal(signum)
        try:
            return self.process.wait(timeout=30)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait()
            raise AssertionError(f"did not stop after {signum.name}:\n{self.logs()}") from None


@pytest.fixture
def start(cluster: TestCluster, tmp_path: Path, namespace: str) -> Iterator[Callable[..., Running]]:
    started: list[Running] = []

    def launch(*command: str, metrics_port: int | None = None) -> Running:
        metrics = metrics_port or free_port()
        health = free_port()
        log_path = tmp_path / f"run-{len(started)}.log"
        env = {key: value for key, value in os.environ.items() if not key.startswith("HEADWATER_")}
        env["KUBECONFIG"] = str(cluster.kubeconfig)
        with log_path.open("wb") as log:
            process = subprocess.Popen(
                [
                    sys.executable,
                    "-m",
                    *command,
                    f"--metrics-addr=127.0.0.1:{metrics}",
                    f"--health-addr=127.0.0.1:{health}",
                    # The controllers' own servers must not collide with other tests.
                    f"--storage-addr=127.0.0.1:{free_port()}",
                    f"--storage-path={tmp_path / f'storage-{len(started)}'}",
                    f"--events-addr=127.0.0.1:{free_port()}",
                    f"--receiver-addr=127.0.0.1:{free_port()}",
                    "--log-format=json",
                    # Only this test's namespace: the session's controllers own the rest.
                    f"--watch-namespace={namespace}",
                ],
                cwd=REPO_ROOT,
                env=env,
                stdout=log,
                stderr=subprocess.STDOUT,
            )
        running = Running(process, metrics, health, log_path)
        started.append(running)
        return running

    yield launch
    for running in started:
        if running.process.poll() is None:
            running.process.kill()
            running.process.wait()


def check_serves_then_stops(running: Running, signum: signal.Signals) -> None:
    wait_for(
        lambda: running.answering(running.health_port, "/healthz"), timeout=90, what="/healthz"
    )
    wait_for(lambda: running.answering(running.health_port, "/readyz"), timeout=90, what="/readyz")
    wait_for(
        lambda: running.answering(running.metrics_port, "/metrics"), timeout=30, what="/metrics"
    )
    metrics = body_of(running.metrics_port, "/metrics")
    assert "# TYPE gotk_reconcile_duration_seconds histogram" in metrics
    assert "# TYPE gotk_reconcile_condition gauge" in metrics

    code = running.stop(signum)
    assert code == 0, running.logs()
    assert port_closed(running.health_port)
    assert port_closed(running.metrics_port)

    # Every line is one JSON object, and the lifecycle was logged.
    records = [json.loads(line) for line in running.logs().splitlines() if line.strip()]
    messages = [record["msg"] for record in records]
    assert "controllers started" in messages
    assert "controllers stopped" in messages
    # Kopf logs its retries against a just-started API server as errors; our
    # own code must not have logged any.
    ours = [r for r in records if r["logger"].startswith("controllers.")]
    assert not [r for r in ours if r["level"] in ("error", "critical")], running.logs()


def test_run_all_serves_health_and_metrics_and_stops_on_sigterm(
    start: Callable[..., Running],
) -> None:
    running = start("controllers.cli", "run", "all")
    check_serves_then_stops(running, signal.SIGTERM)


def test_one_controller_runs_alone_and_stops_on_sigint(start: Callable[..., Running]) -> None:
    running = start("controllers.source")
    check_serves_then_stops(running, signal.SIGINT)


def test_a_taken_port_fails_the_start(start: Callable[..., Running]) -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        running = start("controllers.kustomize", metrics_port=taken.getsockname()[1])
        code = running.process.wait(timeout=60)
    assert code == 1
    assert "cannot serve metrics/health" in running.logs()
