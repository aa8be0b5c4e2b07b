from __future__ import annotations

import itertools
import socket
import time
import urllib.error
import urllib.request
from collections.abc import Iterator

import prometheus_client
import pytest

from controllers.toolkit.runtime.observability import (
    HealthState,
    ObservabilityServer,
    exponential_buckets_range,
    record_condition,
)
from controllers.toolkit.runtime.settings import Address

LOOPBACK = Address("127.0.0.1", 0)


def get(port: int, path: str) -> tuple[int, str, str]:
    url = f"http://127.0.0.1:{port}{path}"
    try:
        with urllib.request.urlopen(url, timeout=5) as response:
            return response.status, response.headers["Content-Type"], response.read().decode()
    except urllib.error.HTTPError as exc:
        return exc.code, exc.headers["Content-Type"], exc.read().decode()


def refused(port: int) -> bool:
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=2):
            return False
    except ConnectionRefusedError:
        return True


@pytest.fixture
def served() -> Iterator[tuple[ObservabilityServer, HealthState]]:
    state = HealthState()
    server = ObservabilityServer(metrics_addr=LOOPBACK, health_addr=LOOPBACK, state=state)
    server.start()
    yield server, state
    server.stop()


def ports(server: ObservabilityServer) -> tuple[int, int]:
    return server.metrics_port, server.health_port


def test_buckets_match_flux_layout() -> None:
    buckets = exponential_buckets_range(10e-3, 1800, 10)
    assert len(buckets) == 10
    assert buckets[0] == pytest.approx(0.01)
    assert buckets[-1] == pytest.approx(1800)
    ratios = {round(b / a, 9) for a, b in itertools.pairwise(buckets)}
    assert len(ratios) == 1


def test_record_condition_sets_one_status() -> None:
    labels = {"kind": "Kustomization", "name": "cond", "namespace": "unit", "type": "Ready"}

    def value(status: str) -> float | None:
        return prometheus_client.REGISTRY.get_sample_value(
            "gotk_reconcile_condition", {**labels, "status": status}
        )

    record_condition("Kustomization", "cond", "unit", "Ready", "False")
    assert [value(s) for s in ("True", "False", "Unknown", "Deleted")] == [0, 1, 0, 0]
    record_condition("Kustomization", "cond", "unit", "Ready", None, deleted=True)
    assert [value(s) for s in ("True", "False", "Unknown", "Deleted")] == [0, 0, 0, 1]


def test_metrics_are_served_in_text_format(
    served: tuple[ObservabilityServer, HealthState],
) -> None:
    server, _ = served
    metrics_port, health_port = ports(server)
    status, content_type, body = get(metrics_port, "/metrics")
    assert status == 200
    assert content_type.startswith("text/plain")
    assert "# TYPE gotk_reconcile_duration_seconds histogram" in body
    assert "# TYPE gotk_reconcile_condition gauge" in body
    # Each endpoint lives on its own address only.
    assert get(health_port, "/metrics")[0] == 404
    assert get(metrics_port, "/healthz")[0] == 404


def test_readiness_follows_startup_and_stopping(
    served: tuple[ObservabilityServer, HealthState],
) -> None:
    server, state = served
    _, health_port = ports(server)
    assert get(health_port, "/healthz")[0] == 200
    assert get(health_port, "/readyz")[:1] == (503,)
    state.started.set()
    assert get(health_port, "/readyz")[0] == 200
    state.stopping.set()
    status, _, body = get(health_port, "/readyz")
    assert (status, body) == (503, "stopping\n")


def test_liveness_fails_when_the_loop_stops_beating(
    served: tuple[ObservabilityServer, HealthState],
) -> None:
    server, state = served
    _, health_port = ports(server)
    state.started.set()
    state.last_beat = time.monotonic() - state.stale_after - 1
    assert get(health_port, "/healthz")[0] == 503
    assert get(health_port, "/readyz")[0] == 503
    state.beat()
    assert get(health_port, "/healthz")[0] == 200


def test_one_address_serves_everything() -> None:
    state = HealthState()
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    address = Address("127.0.0.1", port)
    server = ObservabilityServer(metrics_addr=address, health_addr=address, state=state)
    server.start()
    try:
        assert get(port, "/metrics")[0] == 200
        assert get(port, "/healthz")[0] == 200
    finally:
        server.stop()


def test_stop_closes_the_ports() -> None:
    state = HealthState()
    server = ObservabilityServer(metrics_addr=LOOPBACK, health_addr=LOOPBACK, state=state)
    server.start()
    metrics_port, health_port = ports(server)
    assert get(health_port, "/healthz")[0] == 200
    server.stop()
    assert refused(metrics_port)
    assert refused(health_port)


def test_a_taken_port_fails_start() -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        address = Address("127.0.0.1", taken.getsockname()[1])
        server = ObservabilityServer(
            metrics_addr=address, health_addr=LOOPBACK, state=HealthState()
        )
        with pytest.raises(OSError, match="cannot serve"):
            server.start()
