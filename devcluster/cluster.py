"""Run a real Kubernetes control plane on loopback.

etcd, kube-apiserver (RBAC on), kube-controller-manager and kube-scheduler run
as child processes, and kwok stands in for kubelets: it registers nodes and
moves pods through their lifecycle, so Deployments really roll out, Namespaces
really finish deleting and the garbage collector really removes owned objects.

All state (certificates, etcd data, logs, kubeconfig) lives in one directory.
Each component runs in its own process group so stopping can reach any child
it spawned, and `stop()` waits for every one to exit.
"""

from __future__ import annotations

import base64
import contextlib
import json
import logging
import os
import shutil
import signal
import socket
import ssl
import subprocess
import time
import urllib.error
import urllib.request
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path

import yaml

from devcluster import pki

log = logging.getLogger(__name__)

# Room for thousands of Services (benchmarks apply many); a /24 fills at ~250.
SERVICE_CIDR = "10.0.0.0/16"
# The API server's in-cluster Service address is the first of the service range.
KUBERNETES_SERVICE_IP = "10.0.0.1"
KWOK_NODE_ANNOTATION = "kwok.x-k8s.io/node"
KWOK_STAGES = Path(__file__).resolve().parent / "kwok-stages.yaml"
# What a kubelet sets; kwok renews each node's Lease every quarter of it.
NODE_LEASE_SECONDS = 40
STOP_GRACE_SECONDS = 10.0


class ClusterError(RuntimeError):
    pass


@dataclass
class ComponentState:
    name: str
    pid: int
    log: str


@dataclass
class ClusterState:
    """What `headwater cluster` needs to find a running cluster again."""

    workdir: str
    kubeconfig: str
    api_port: int
    components: list[ComponentState] = field(default_factory=list)

    def save(self, path: Path) -> None:
        path.write_text(json.dumps(asdict(self), indent=2))

    @classmethod
    def load(cls, path: Path) -> ClusterState:
        raw = json.loads(path.read_text())
        components = [ComponentState(**c) for c in raw.pop("components", [])]
        return cls(components=components, **raw)


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


def pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    # A zombie still answers kill(0): reap it if it is our child, and treat it
    # as gone if it is not (after `cluster up` exits, init owns the components).
    with contextlib.suppress(ChildProcessError):
        done, _ = os.waitpid(pid, os.WNOHANG)
        if done == pid:
            return False
    return not _is_zombie(pid)


def _is_zombie(pid: int) -> bool:
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return False
    # The state field follows the parenthesised command name, which may hold spaces.
    return stat.rsplit(")", 1)[-1].split()[0] == "Z"


def stop_process_group(pid: int, grace: float = STOP_GRACE_SECONDS) -> None:
    """SIGTERM the component's process group, then SIGKILL what is left."""
    for sig, wait in ((signal.SIGTERM, grace), (signal.SIGKILL, 5.0)):
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(pid, sig)
        deadline = time.monotonic() + wait
        while time.monotonic() < deadline:
            if not pid_alive(pid) and not _group_alive(pid):
                return
            time.sleep(0.05)
    if pid_alive(pid):
        raise ClusterError(f"process {pid} survived SIGKILL")


def _group_alive(pgid: int) -> bool:
    try:
        os.killpg(pgid, 0)
    except (ProcessLookupError, PermissionError):
        return False
    # killpg(0) succeeds while only zombies remain in the group.
    return any(
        not _is_zombie(int(entry.name))
        for entry in Path("/proc").iterdir()
        if entry.name.isdigit() and _pgid(int(entry.name)) == pgid
    )


def _pgid(pid: int) -> int | None:
    try:
        return os.getpgid(pid)
    except OSError:
        return None


@dataclass(frozen=True)
class Node:
    name: str
    cpu: str = "32"
    memory: str = "256Gi"
    pods: str = "110"

    def manifest(self) -> dict[str, object]:
        capacity = {"cpu": self.cpu, "memory": self.memory, "pods": self.pods}
        return {
            "apiVersion": "v1",
            "kind": "Node",
            "metadata": {
                "name": self.name,
                # kwok manages only nodes carrying this annotation.
                "annotations": {KWOK_NODE_ANNOTATION: "fake", "node.alpha.kubernetes.io/ttl": "0"},
                "labels": {
                    "kubernetes.io/hostname": self.name,
                    "kubernetes.io/os": "linux",
                    "kubernetes.io/arch": "amd64",
                    "type": "kwok",
                },
            },
            "status": {"allocatable": capacity, "capacity": capacity},
        }


class DevCluster:
    """A control plane living in `workdir`, built from the binaries in `bin_dir`."""

    def __init__(self, workdir: Path, bin_dir: Path, kwok_bin: Path, nodes: int = 3) -> None:
        self.workdir = workdir
        self.bin_dir = bin_dir
        self.kwok_bin = kwok_bin
        self.node_count = nodes
        self.pki_dir = workdir / "pki"
        self.logs_dir = workdir / "logs"
        self.kubeconfig = workdir / "kubeconfig"
        self.api_port = 0
        self.etcd_port = 0
        self._processes: list[tuple[str, subprocess.Popen[bytes]]] = []
        # How each component was started, so one can be stopped and started again.
        self._argv: dict[str, list[str]] = {}

    # -- lifecycle ---------------------------------------------------------------

    def start(self, timeout: float = 180.0) -> ClusterState:
        """Start every component; returns once the API server is ready and nodes are Ready."""
        deadline = time.monotonic() + timeout
        for directory in (self.pki_dir, self.logs_dir):
            directory.mkdir(parents=True, exist_ok=True)
        try:
            self._write_pki()
            etcd_port = self._start_etcd()
            self._wait_for_tcp(etcd_port, deadline, "etcd")
            self._start_apiserver(etcd_port)
            self._wait_for_apiserver(deadline)
            self._start_controller_manager()
            self._start_scheduler()
            self._start_kwok()
            self._register_nodes()
            self._wait_for_nodes_ready(deadline)
            self._wait_for_default_service_account(deadline)
        except BaseException:
            self.stop()
            raise
        return self.state()

    def stop(self) -> None:
        # Reverse order: stop what writes to the API server before the API server.
        for _, process in reversed(self._processes):
            stop_process_group(process.pid)
            with contextlib.suppress(subprocess.TimeoutExpired):
                process.wait(timeout=1)
        self._processes.clear()

    def state(self) -> ClusterState:
        return ClusterState(
            workdir=str(self.workdir),
            kubeconfig=str(self.kubeconfig),
            api_port=self.api_port,
            components=[
                ComponentState(name, process.pid, str(self._log_path(name)))
                for name, process in self._processes
            ],
        )

    # -- faults ------------------------------------------------------------------

    def stop_component(self, name: str) -> None:
        """Stop one component (e.g. "kube-apiserver" or "etcd"), as a crash or an upgrade would.

        Its state (etcd's data, the certificates) stays, so `start_component` brings it
        back on the same ports.
        """
        index = self._index(name)
        _, process = self._processes.pop(index)
        stop_process_group(process.pid)
        with contextlib.suppress(subprocess.TimeoutExpired):
            process.wait(timeout=1)

    def start_component(self, name: str, timeout: float = 120.0) -> None:
        """Start a component `stop_component` stopped, with the arguments it had; wait for it."""
        if any(running == name for running, _ in self._processes):
            raise ClusterError(f"{name} is already running")
        argv = self._argv.get(name)
        if argv is None:
            raise ClusterError(f"{name} was never started")
        self._spawn(name, argv)
        # Back in start order, so stop() still stops writers before the API server.
        order = list(self._argv)
        self._processes.sort(key=lambda entry: order.index(entry[0]))
        deadline = time.monotonic() + timeout
        if name == "etcd":
            self._wait_for_tcp(self.etcd_port, deadline, "etcd")
        elif name == "kube-apiserver":
            self._wait_for_apiserver(deadline)

    def restart_component(self, name: str, downtime: float = 0.0) -> None:
        """Stop a component, leave it down `downtime` seconds, start it again."""
        self.stop_component(name)
        time.sleep(downtime)
        self.start_component(name)

    def _index(self, name: str) -> int:
        for index, (running, _) in enumerate(self._processes):
            if running == name:
                return index
        raise ClusterError(f"{name} is not running")

    # -- helpers for callers -----------------------------------------------------

    def kubectl(
        self, *args: str, input: str | None = None, check: bool = True
    ) -> subprocess.CompletedProcess[str]:
        return run_kubectl(
            self.bin_dir / "kubectl", self.kubeconfig, args, input=input, check=check
        )

    # -- components --------------------------------------------------------------

    def _log_path(self, name: str) -> Path:
        return self.logs_dir / f"{name}.log"

    def _spawn(self, name: str, argv: Sequence[str]) -> subprocess.Popen[bytes]:
        self._argv[name] = list(argv)
        log_file = self._log_path(name).open("ab")
        try:
            process = subprocess.Popen(
                list(argv),
                stdout=log_file,
                stderr=subprocess.STDOUT,
                stdin=subprocess.DEVNULL,
                cwd=self.workdir,
                # Own session and process group: survives the CLI that started it,
                # and stop() can signal the whole group.
                start_new_session=True,
            )
        finally:
            log_file.close()
        self._processes.append((name, process))
        return process

    def _write_pki(self) -> None:
        ca = pki.CertificateAuthority()
        (self.pki_dir / "ca.crt").write_bytes(ca.cert_pem)
        ca.issue(
            "kube-apiserver",
            dns_names=(
                "localhost",
                "kubernetes",
                "kubernetes.default",
                "kubernetes.default.svc",
                "kubernetes.default.svc.cluster.local",
            ),
            ip_addresses=("127.0.0.1", KUBERNETES_SERVICE_IP),
            server=True,
        ).write(self.pki_dir, "apiserver")
        # Identities RBAC's bootstrap policy already grants the right roles to.
        clients = {
            "admin": ("headwater-admin", ("system:masters",)),
            "controller-manager": ("system:kube-controller-manager", ()),
            "scheduler": ("system:kube-scheduler", ()),
            "kwok": ("headwater-kwok", ("system:masters",)),
        }
        for stem, (user, groups) in clients.items():
            ca.issue(user, organizations=groups, client=True).write(self.pki_dir, stem)
        private, public = pki.service_account_key_pair()
        (self.pki_dir / "sa.key").write_bytes(private)
        (self.pki_dir / "sa.key").chmod(0o600)
        (self.pki_dir / "sa.pub").write_bytes(public)

    def _client_kubeconfig(self, stem: str, path: Path) -> Path:
        server = f"https://127.0.0.1:{self.api_port}"
        config = {
            "apiVersion": "v1",
            "kind": "Config",
            "clusters": [
                {
                    "name": "headwater-dev",
                    "cluster": {
                        "server": server,
                        "certificate-authority-data": _b64(self.pki_dir / "ca.crt"),
                    },
                }
            ],
            "users": [
                {
                    "name": stem,
                    "user": {
                        "client-certificate-data": _b64(self.pki_dir / f"{stem}.crt"),
                        "client-key-data": _b64(self.pki_dir / f"{stem}.key"),
                    },
                }
            ],
            "contexts": [
                {"name": "headwater-dev", "context": {"cluster": "headwater-dev", "user": stem}}
            ],
            "current-context": "headwater-dev",
        }
        path.write_text(yaml.safe_dump(config))
        path.chmod(0o600)
        return path

    def _start_etcd(self) -> int:
        client_port, peer_port = free_port(), free_port()
        self.etcd_port = client_port
        client_url = f"http://127.0.0.1:{client_port}"
        peer_url = f"http://127.0.0.1:{peer_port}"
        self._spawn(
            "etcd",
            [
                str(self.bin_dir / "etcd"),
                "--name=devcluster",
                f"--data-dir={self.workdir / 'etcd'}",
                f"--listen-client-urls={client_url}",
                f"--advertise-client-urls={client_url}",
                f"--listen-peer-urls={peer_url}",
                f"--initial-advertise-peer-urls={peer_url}",
                f"--initial-cluster=devcluster={peer_url}",
                "--listen-metrics-urls=",
                # Throwaway data: durability costs time and buys nothing here.
                "--unsafe-no-fsync",
                "--log-level=warn",
            ],
        )
        return client_port

    def _start_apiserver(self, etcd_port: int) -> None:
        self.api_port = free_port()
        pki_dir = self.pki_dir
        self._spawn(
            "kube-apiserver",
            [
                str(self.bin_dir / "kube-apiserver"),
                f"--etcd-servers=http://127.0.0.1:{etcd_port}",
                "--bind-address=127.0.0.1",
                "--advertise-address=127.0.0.1",
                f"--secure-port={self.api_port}",
                f"--cert-dir={self.workdir / 'apiserver-certs'}",
                f"--tls-cert-file={pki_dir / 'apiserver.crt'}",
                f"--tls-private-key-file={pki_dir / 'apiserver.key'}",
                f"--client-ca-file={pki_dir / 'ca.crt'}",
                f"--service-account-key-file={pki_dir / 'sa.pub'}",
                f"--service-account-signing-key-file={pki_dir / 'sa.key'}",
                "--service-account-issuer=https://kubernetes.default.svc.cluster.local",
                f"--service-cluster-ip-range={SERVICE_CIDR}",
                "--authorization-mode=RBAC",
                "--allow-privileged=true",
                "--profiling=false",
                "--v=1",
            ],
        )
        self._client_kubeconfig("admin", self.kubeconfig)

    def _start_controller_manager(self) -> None:
        kubeconfig = self._client_kubeconfig(
            "controller-manager", self.workdir / "controller-manager.kubeconfig"
        )
        self._spawn(
            "kube-controller-manager",
            [
                str(self.bin_dir / "kube-controller-manager"),
                f"--kubeconfig={kubeconfig}",
                # No serving endpoint needed; avoids clashing with other clusters' ports.
                "--secure-port=0",
                "--leader-elect=false",
                "--use-service-account-credentials=true",
                f"--service-account-private-key-file={self.pki_dir / 'sa.key'}",
                f"--root-ca-file={self.pki_dir / 'ca.crt'}",
                f"--service-cluster-ip-range={SERVICE_CIDR}",
                # No real network, so no node IPAM or cloud routes.
                "--controllers=*,-nodeipam,-cloud-node-lifecycle,-service-lb-controller,-node-route-controller",
                "--v=1",
            ],
        )

    def _start_scheduler(self) -> None:
        kubeconfig = self._client_kubeconfig("scheduler", self.workdir / "scheduler.kubeconfig")
        self._spawn(
            "kube-scheduler",
            [
                str(self.bin_dir / "kube-scheduler"),
                f"--kubeconfig={kubeconfig}",
                "--secure-port=0",
                "--leader-elect=false",
                "--v=1",
            ],
        )

    def _start_kwok(self) -> None:
        kubeconfig = self._client_kubeconfig("kwok", self.workdir / "kwok.kubeconfig")
        self._spawn(
            "kwok",
            [
                str(self.kwok_bin),
                f"--config={KWOK_STAGES}",
                f"--kubeconfig={kubeconfig}",
                "--manage-all-nodes=false",
                f"--manage-nodes-with-annotation-selector={KWOK_NODE_ANNOTATION}=fake",
                "--node-ip=127.0.0.1",
                f"--node-port={free_port()}",
                f"--server-address=127.0.0.1:{free_port()}",
                "--cidr=10.244.0.0/16",
                # kwok renews no node Lease unless given a duration (its default
                # is 0). Without one the node lifecycle controller sees no
                # heartbeat after 50s, marks the nodes Unknown and every pod on
                # them NotReady: Deployments lost their availability mid-test.
                f"--node-lease-duration-seconds={NODE_LEASE_SECONDS}",
            ],
        )

    def _register_nodes(self) -> None:
        documents = [Node(f"kwok-node-{index}").manifest() for index in range(self.node_count)]
        self.kubectl("apply", "-f", "-", input=yaml.safe_dump_all(documents))

    # -- waiting -----------------------------------------------------------------

    def _check_alive(self) -> None:
        for name, process in self._processes:
            if process.poll() is not None:
                tail = _tail(self._log_path(name))
                raise ClusterError(f"{name} exited with code {process.returncode}:\n{tail}")

    def _wait_for_tcp(self, port: int, deadline: float, what: str) -> None:
        while True:
            self._check_alive()
            with (
                contextlib.suppress(OSError),
                socket.create_connection(("127.0.0.1", port), timeout=1),
            ):
                return
            _sleep_or_fail(deadline, f"{what} to listen on port {port}")

    def _wait_for_apiserver(self, deadline: float) -> None:
        context = ssl.create_default_context(cafile=str(self.pki_dir / "ca.crt"))
        context.load_cert_chain(self.pki_dir / "admin.crt", self.pki_dir / "admin.key")
        url = f"https://127.0.0.1:{self.api_port}/readyz"
        while True:
            self._check_alive()
            with (
                contextlib.suppress(OSError, urllib.error.URLError),
                urllib.request.urlopen(url, context=context, timeout=5) as response,
            ):
                if response.status == 200:
                    return
            _sleep_or_fail(deadline, "kube-apiserver /readyz")

    def _wait_for_nodes_ready(self, deadline: float) -> None:
        while True:
            self._check_alive()
            listing = self.kubectl("get", "nodes", "-o", "json", check=False)
            if listing.returncode == 0:
                nodes = json.loads(listing.stdout)["items"]
                ready = [n for n in nodes if _condition(n, "Ready") == "True"]
                if len(ready) >= self.node_count:
                    return
            _sleep_or_fail(deadline, f"{self.node_count} kwok nodes to become Ready")

    def _wait_for_default_service_account(self, deadline: float) -> None:
        # Pods cannot be admitted until the controller manager made the SA.
        while True:
            self._check_alive()
            if (
                self.kubectl(
                    "get", "serviceaccount", "default", "-n", "default", check=False
                ).returncode
                == 0
            ):
                return
            _sleep_or_fail(deadline, "the default ServiceAccount")


def run_kubectl(
    kubectl: Path,
    kubeconfig: Path,
    args: Sequence[str],
    *,
    input: str | None = None,
    check: bool = True,
) -> subprocess.CompletedProcess[str]:
    completed = subprocess.run(
        [str(kubectl), f"--kubeconfig={kubeconfig}", *args],
        input=input,
        capture_output=True,
        text=True,
        timeout=120,
    )
    if check and completed.returncode != 0:
        raise ClusterError(f"kubectl {' '.join(args)} failed: {completed.stderr.strip()}")
    return completed


def _condition(obj: dict[str, object], condition_type: str) -> str | None:
    status = obj.get("status")
    if not isinstance(status, dict):
        return None
    for condition in status.get("conditions") or []:
        if condition.get("type") == condition_type:
            value: str = condition.get("status")
            return value
    return None


def _sleep_or_fail(deadline: float, what: str) -> None:
    if time.monotonic() > deadline:
        raise ClusterError(f"timed out waiting for {what}")
    time.sleep(0.25)


def _tail(path: Path, lines: int = 30) -> str:
    try:
        return "\n".join(path.read_text(errors="replace").splitlines()[-lines:])
    except OSError:
        return "(no log)"


def _b64(path: Path) -> str:
    return base64.b64encode(path.read_bytes()).decode()


def remove_workdir(workdir: Path) -> None:
    shutil.rmtree(workdir, ignore_errors=True)
