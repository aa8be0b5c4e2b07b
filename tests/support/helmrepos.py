"""A real Helm chart repository on loopback, for the source and helm controllers' tests.

Charts are written as files (here, or by a content builder in `tests.support.charts`),
packaged with the pinned helm binary, and indexed with ``helm repo index``; a new chart
version is published by adding it and reindexing. `ChartRepoServer` serves the
directory over HTTP, optionally behind basic auth and/or TLS (certificates from
devcluster's CA via `TestCA`), and records every request so tests can tell what the
controller fetched. `helm_history` reads a release back the way a user does.
`push_chart` puts a packaged chart into an OCI registry (`tests.support.registry`) with
``helm push``, for HelmRepositories of type oci.
"""

from __future__ import annotations

import base64
import json
import os
import shutil
import ssl
import subprocess
import tempfile
import threading
from collections.abc import Mapping
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import yaml

from devcluster.gitserver import CertPair
from tests.support.cluster import TestCluster

REPO_ROOT = Path(__file__).resolve().parent.parent.parent
HELM = shutil.which("helm") or str(REPO_ROOT / ".tools" / "bin" / "helm")

CONFIGMAP_TEMPLATE = """apiVersion: v1
kind: ConfigMap
metadata:
  name: {{ .Release.Name }}-config
data:
  replicas: "{{ .Values.replicaCount }}"
"""


def run_helm(
    *args: str, cwd: Path | None = None, kubeconfig: Path | None = None
) -> subprocess.CompletedProcess[str]:
    """The helm binary with a throwaway home (and `kubeconfig`, when it talks to a cluster)."""
    home = tempfile.mkdtemp(prefix="hw-test-helm-")
    env = {
        **os.environ,
        "HELM_CONFIG_HOME": f"{home}/config",
        "HELM_CACHE_HOME": f"{home}/cache",
        "HELM_DATA_HOME": f"{home}/data",
    }
    if kubeconfig is not None:
        env["KUBECONFIG"] = str(kubeconfig)
    try:
        return subprocess.run(
            [HELM, *args], cwd=cwd, env=env, capture_output=True, text=True, timeout=60
        )
    finally:
        shutil.rmtree(home, ignore_errors=True)


def helm(*args: str, cwd: Path | None = None) -> str:
    done = run_helm(*args, cwd=cwd)
    if done.returncode != 0:
        raise RuntimeError(f"helm {' '.join(args)} failed: {done.stderr}")
    return done.stdout


def helm_history(cluster: TestCluster, namespace: str, release: str) -> list[dict[str, Any]]:
    """`helm history` as a user runs it, oldest first; empty when the release does not exist."""
    done = run_helm(
        "history", release, "-n", namespace, "-o", "json", kubeconfig=cluster.kubeconfig
    )
    if done.returncode != 0:
        if "not found" in done.stderr:
            return []
        raise AssertionError(f"helm history failed: {done.stderr}")
    found: list[dict[str, Any]] = json.loads(done.stdout)
    return found


def write_chart(
    directory: Path,
    name: str,
    version: str,
    *,
    values: Mapping[str, Any] | None = None,
    dependencies: list[dict[str, str]] | None = None,
    extra_files: Mapping[str, str] | None = None,
) -> Path:
    """A chart source directory `<directory>/<name>` with a ConfigMap template."""
    chart = directory / name
    (chart / "templates").mkdir(parents=True, exist_ok=True)
    meta: dict[str, Any] = {"apiVersion": "v2", "name": name, "version": version}
    if dependencies:
        meta["dependencies"] = dependencies
    (chart / "Chart.yaml").write_text(yaml.safe_dump(meta))
    (chart / "values.yaml").write_text(yaml.safe_dump(dict(values or {"replicaCount": 1})))
    (chart / "templates" / "configmap.yaml").write_text(CONFIGMAP_TEMPLATE)
    for rel, text in (extra_files or {}).items():
        (chart / rel).parent.mkdir(parents=True, exist_ok=True)
        (chart / rel).write_text(text)
    return chart


@dataclass
class ChartRepo:
    """A directory of packaged charts plus its index.yaml."""

    root: Path
    url: str = ""
    _src: Path = field(init=False)

    def __post_init__(self) -> None:
        self.root.mkdir(parents=True, exist_ok=True)
        self._src = Path(tempfile.mkdtemp(prefix="hw-chart-src-"))

    def add(self, name: str, version: str, **kwargs: Any) -> Path:
        """Write (a ConfigMap chart), package and index one chart version; returns the archive."""
        return self.publish(write_chart(self.workdir(name, version), name, version, **kwargs))

    def workdir(self, name: str, version: str) -> Path:
        """A fresh directory to write the source of chart `name` at `version` in."""
        return self._src / f"{name}-{version}"

    def publish(self, chart: Path) -> Path:
        """Package the chart source directory `chart` into the repository and reindex."""
        helm("package", str(chart), "--destination", str(self.root))
        self.index()
        meta = yaml.safe_load((chart / "Chart.yaml").read_text())
        return self.root / f"{meta['name']}-{meta['version']}.tgz"

    def index(self) -> None:
        args = ["repo", "index", str(self.root)]
        if self.url:
            args += ["--url", self.url]
        helm(*args)

    def write_index(self, data: bytes) -> None:
        (self.root / "index.yaml").write_bytes(data)


def push_chart(registry: Any, archive: Path, path: str = "charts") -> None:
    """`helm push` a packaged chart to `oci://<registry>/<path>` (a `registry.OciRegistry`),
    with its credentials and CA as a user's CI passes them."""
    args = ["push", str(archive), f"oci://{registry.host}/{path}"]
    if registry.basic:
        args += ["--username", registry.basic[0], "--password", registry.basic[1]]
    if registry.ca_pem:
        args += ["--ca-file", str(registry.ca_file)]
    else:
        args.append("--plain-http")
    helm(*args)


def package_chart(directory: Path, name: str, version: str, **kwargs: Any) -> Path:
    """Write (a ConfigMap chart) and package one chart version; returns the archive."""
    source = write_chart(directory / f"src-{name}-{version}", name, version, **kwargs)
    out = directory / f"packaged-{name}-{version}"
    helm("package", str(source), "--destination", str(out))
    return out / f"{name}-{version}.tgz"


@dataclass
class Request:
    path: str
    authorization: str | None


class ChartRepoServer:
    """Serves a ChartRepo's directory: GET only, optional basic auth and TLS."""

    def __init__(
        self,
        repo: ChartRepo,
        *,
        basic: tuple[str, str] | None = None,
        tls: CertPair | None = None,
        client_ca: bytes | None = None,
    ) -> None:
        self.repo = repo
        self.basic = basic
        self.requests: list[Request] = []
        self._tls = tls
        self._client_ca = client_ca
        self._httpd: ThreadingHTTPServer | None = None
        self._thread: threading.Thread | None = None

    @property
    def url(self) -> str:
        assert self._httpd is not None
        scheme = "https" if self._tls else "http"
        return f"{scheme}://127.0.0.1:{self._httpd.server_address[1]}"

    def paths(self) -> list[str]:
        return [r.path for r in self.requests]

    def start(self) -> ChartRepoServer:
        server = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args: Any) -> None:
                pass

            def do_GET(self) -> None:
                auth = self.headers.get("Authorization")
                server.requests.append(Request(self.path, auth))
                if server.basic is not None:
                    token = base64.b64encode(":".join(server.basic).encode()).decode()
                    if auth != f"Basic {token}":
                        self.send_response(401)
                        self.send_header("WWW-Authenticate", 'Basic realm="charts"')
                        self.send_header("Content-Length", "0")
                        self.end_headers()
                        return
                rel = self.path.split("?", 1)[0].lstrip("/")
                target = server.repo.root / rel
                if ".." in rel.split("/") or not rel or not target.is_file():
                    self.send_response(404)
                    self.send_header("Content-Length", "0")
                    self.end_headers()
                    return
                data = target.read_bytes()
                self.send_response(200)
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

        httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        httpd.daemon_threads = True
        if self._tls is not None:
            certs = Path(tempfile.mkdtemp(prefix="hw-chart-tls-"))
            (certs / "tls.crt").write_bytes(self._tls.cert_pem)
            (certs / "tls.key").write_bytes(self._tls.key_pem)
            ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
            ctx.load_cert_chain(str(certs / "tls.crt"), str(certs / "tls.key"))
            if self._client_ca is not None:
                ctx.load_verify_locations(cadata=self._client_ca.decode())
                ctx.verify_mode = ssl.CERT_REQUIRED
            httpd.socket = ctx.wrap_socket(httpd.socket, server_side=True)
        self._httpd = httpd
        self._thread = threading.Thread(target=httpd.serve_forever, daemon=True)
        self._thread.start()
        if not self.repo.url:
            self.repo.url = self.url
        return self

    def stop(self) -> None:
        if self._httpd is not None:
            self._httpd.shutdown()
            self._httpd.server_close()
            self._httpd = None

    def __enter__(self) -> ChartRepoServer:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()
