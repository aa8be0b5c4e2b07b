"""Real Helm charts for the helm controller's tests: written here, packaged by helm, served.

`wordpress_chart` is the shape GitOps walk-throughs use: a web Deployment
and a database Deployment + Service, with a test hook (a Job: kwok
completes Job pods). Its values can make things go wrong the way they do
for users: `web.nodeSelector` that no node has keeps the web pods Pending,
so a `--wait` never sees them Ready (kwok nodes run no containers, so this
is how a readiness that never comes looks); `tests.nodeSelector` does the
same to the test Job.

Until the source controller on this branch reconciles HelmCharts,
`publish_chart` plays its part: it serves the packaged chart over HTTP on
loopback and writes the HelmChart's `status.artifact` (path, url,
revision = chart version, sha256 digest, size) through the status
subresource, exactly as the source controller publishes artifacts.
"""

from __future__ import annotations

import contextlib
import datetime
import hashlib
import http.server
import json
import os
import subprocess
import threading
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

from tests.helpers import TestCluster, get_json, wait_for

REPO_ROOT = Path(__file__).resolve().parents[2]
HELM = REPO_ROOT / ".tools" / "bin" / "helm"

WEB = """\
apiVersion: apps/v1
kind: Deployment
metadata:
  name: {{ .Release.Name }}-web
  labels: {app.kubernetes.io/component: web}
spec:
  replicas: {{ .Values.replicaCount }}
  selector:
    matchLabels: {app.kubernetes.io/instance: {{ .Release.Name }}, app.kubernetes.io/component: web}
  template:
    metadata:
      labels: {app.kubernetes.io/instance: {{ .Release.Name }}, app.kubernetes.io/component: web}
    spec:
      {{- with .Values.web.nodeSelector }}
      nodeSelector: {{ toJson . }}
      {{- end }}
      containers:
        - name: wordpress
          image: {{ .Values.web.image | quote }}
          env:
            - {name: WORDPRESS_DB_HOST, value: {{ printf "%s-db" .Release.Name | quote }}}
"""

DB = """\
apiVersion: apps/v1
kind: Deployment
metadata:
  name: {{ .Release.Name }}-db
  labels: {app.kubernetes.io/component: db}
spec:
  replicas: 1
  selector:
    matchLabels: {app.kubernetes.io/instance: {{ .Release.Name }}, app.kubernetes.io/component: db}
  template:
    metadata:
      labels: {app.kubernetes.io/instance: {{ .Release.Name }}, app.kubernetes.io/component: db}
    spec:
      containers:
        - name: mysql
          image: {{ .Values.db.image | quote }}
---
apiVersion: v1
kind: Service
metadata:
  name: {{ .Release.Name }}-db
spec:
  selector: {app.kubernetes.io/instance: {{ .Release.Name }}, app.kubernetes.io/component: db}
  ports:
    - {port: 3306, targetPort: 3306}
"""

TEST_HOOK = """\
apiVersion: batch/v1
kind: Job
metadata:
  name: {{ .Release.Name }}-test-db
  annotations:
    helm.sh/hook: test
    helm.sh/hook-delete-policy: before-hook-creation
spec:
  backoffLimit: 0
  template:
    spec:
      restartPolicy: Never
      {{- with .Values.tests.nodeSelector }}
      nodeSelector: {{ toJson . }}
      {{- end }}
      containers:
        - name: check
          image: busybox
          command: [sh, -c, {{ printf "nc -z %s-db 3306" .Release.Name | quote }}]
"""

VALUES = {
    "replicaCount": 1,
    "web": {"image": "wordpress:6", "nodeSelector": {}},
    "db": {"image": "mysql:8"},
    "tests": {"nodeSelector": {}},
}

# A node label no kwok node has: pods that ask for it are never scheduled.
NOWHERE = {"headwater.test/no-such-node": "true"}


def widget_crd(group: str, *, with_column: bool = False) -> str:
    """A small CRD for a chart's `crds/`; `with_column` is the changed version of it."""
    version: dict[str, Any] = {
        "name": "v1",
        "served": True,
        "storage": True,
        "schema": {
            "openAPIV3Schema": {"type": "object", "x-kubernetes-preserve-unknown-fields": True}
        },
    }
    if with_column:
        version["additionalPrinterColumns"] = [
            {"name": "Size", "type": "string", "jsonPath": ".spec.size"}
        ]
    return yaml.safe_dump(
        {
            "apiVersion": "apiextensions.k8s.io/v1",
            "kind": "CustomResourceDefinition",
            "metadata": {"name": f"widgets.{group}"},
            "spec": {
                "group": group,
                "names": {"kind": "Widget", "plural": "widgets", "singular": "widget"},
                "scope": "Namespaced",
                "versions": [version],
            },
        }
    )


def write_chart(root: Path, version: str, *, broken: bool = False, crds: str | None = None) -> Path:
    """The wordpress chart source at `root/wordpress`; `broken` adds a template that
    fails to render (a function helm does not have), `crds` a `crds/` file."""
    chart = root / f"wordpress-{version}-src" / "wordpress"
    (chart / "templates" / "tests").mkdir(parents=True, exist_ok=True)
    (chart / "Chart.yaml").write_text(
        yaml.safe_dump(
            {"apiVersion": "v2", "name": "wordpress", "version": version, "appVersion": "6.4"}
        )
    )
    (chart / "values.yaml").write_text(yaml.safe_dump(VALUES))
    (chart / "templates" / "web.yaml").write_text(WEB)
    (chart / "templates" / "db.yaml").write_text(DB)
    (chart / "templates" / "tests" / "test-db.yaml").write_text(TEST_HOOK)
    if crds is not None:
        (chart / "crds").mkdir(exist_ok=True)
        (chart / "crds" / "widgets.yaml").write_text(crds)
    if broken:
        (chart / "templates" / "broken.yaml").write_text(
            "kind: ConfigMap\ndata: {{ .Values.db | noSuchFunction }}\n"
        )
    return chart


def package(chart: Path, dest: Path) -> Path:
    """`helm package`: the `.tgz` a chart repository or the source controller serves."""
    dest.mkdir(parents=True, exist_ok=True)
    subprocess.run(
        [str(HELM), "package", str(chart), "--destination", str(dest)],
        check=True,
        capture_output=True,
        text=True,
    )
    metadata = yaml.safe_load((chart / "Chart.yaml").read_text())
    return dest / f"{metadata['name']}-{metadata['version']}.tgz"


def wordpress_chart(
    root: Path, version: str, *, broken: bool = False, crds: str | None = None
) -> Path:
    return package(write_chart(root, version, broken=broken, crds=crds), root / "packages")


class _QuietHandler(http.server.SimpleHTTPRequestHandler):
    def log_message(self, format: str, *args: Any) -> None:
        pass


@dataclass
class ChartServer:
    """Files of one directory over HTTP on loopback, as the artifact server serves them."""

    root: Path
    url: str

    def url_of(self, path: Path) -> str:
        return f"{self.url}/{path.relative_to(self.root).as_posix()}"


@contextlib.contextmanager
def chart_server(root: Path) -> Iterator[ChartServer]:
    root.mkdir(parents=True, exist_ok=True)

    def handler(*args: Any, **kwargs: Any) -> _QuietHandler:
        return _QuietHandler(*args, directory=str(root), **kwargs)

    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield ChartServer(root, f"http://127.0.0.1:{server.server_address[1]}")
    finally:
        server.shutdown()
        server.server_close()


def helm_chart(namespace: str, name: str, chart: str = "wordpress") -> dict[str, Any]:
    return {
        "apiVersion": "source.toolkit.fluxcd.io/v1",
        "kind": "HelmChart",
        "metadata": {"name": name, "namespace": namespace},
        "spec": {
            "chart": chart,
            "version": "*",
            "sourceRef": {"kind": "HelmRepository", "name": "charts"},
            "interval": "10m",
        },
    }


def publish_chart(
    cluster: TestCluster, server: ChartServer, namespace: str, name: str, package_path: Path
) -> dict[str, Any]:
    """Write HelmChart `name`'s `status.artifact` for `package_path`, as the source
    controller would: the chart version as revision, the file's sha256 as digest."""
    data = package_path.read_bytes()
    version = yaml.safe_load(
        subprocess.run(
            [str(HELM), "show", "chart", str(package_path)],
            check=True,
            capture_output=True,
            text=True,
        ).stdout
    )["version"]
    now = datetime.datetime.now(datetime.UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
    artifact = {
        "path": f"helmchart/{namespace}/{name}/{package_path.name}",
        "url": server.url_of(package_path),
        "revision": str(version),
        "digest": "sha256:" + hashlib.sha256(data).hexdigest(),
        "size": len(data),
        "lastUpdateTime": now,
    }
    status = {
        "observedGeneration": 1,
        "artifact": artifact,
        "conditions": [
            {
                "type": "Ready",
                "status": "True",
                "reason": "Succeeded",
                "message": f"packaged '{package_path.name}'",
                "lastTransitionTime": now,
                "observedGeneration": 1,
            }
        ],
    }
    cluster.kubectl(
        "patch",
        "helmchart",
        name,
        "-n",
        namespace,
        "--subresource=status",
        "--type=merge",
        "-p",
        json.dumps({"status": status}),
    )
    return artifact


def helm_release(namespace: str, name: str, **spec: Any) -> dict[str, Any]:
    return {
        "apiVersion": "helm.toolkit.fluxcd.io/v2",
        "kind": "HelmRelease",
        "metadata": {"name": name, "namespace": namespace},
        "spec": {"interval": "10m", **spec},
    }


def helm_history(cluster: TestCluster, namespace: str, release: str) -> list[dict[str, Any]]:
    """`helm history` as a user runs it; empty when the release does not exist."""
    result = subprocess.run(
        [str(HELM), "history", release, "-n", namespace, "-o", "json"],
        capture_output=True,
        text=True,
        env={**os.environ, "KUBECONFIG": str(cluster.kubeconfig)},
    )
    if result.returncode != 0:
        if "not found" in result.stderr:
            return []
        raise AssertionError(f"helm history failed: {result.stderr}")
    found: list[dict[str, Any]] = json.loads(result.stdout)
    return found


def wait_for_release(
    cluster: TestCluster,
    namespace: str,
    name: str,
    check: Any,
    *,
    timeout: float = 90.0,
    what: str = "",
) -> dict[str, Any]:
    """Poll a HelmRelease until `check(obj)` holds; the error shows the last status."""
    last: dict[str, Any] = {}

    def probe() -> dict[str, Any] | None:
        nonlocal last
        obj = get_json(cluster, "helmrelease", name, "-n", namespace)
        last = obj or {}
        return obj if obj is not None and check(obj) else None

    try:
        return wait_for(probe, timeout=timeout, what=what or f"HelmRelease {namespace}/{name}")
    except AssertionError:
        shown = json.dumps(last.get("status"), indent=1)[:4000]
        raise AssertionError(
            f"timed out after {timeout}s waiting for {what or 'HelmRelease'} "
            f"{namespace}/{name}; last status: {shown}"
        ) from None
