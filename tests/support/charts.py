"""The content of the Helm charts the helm controller's tests release.

`wordpress` is the shape GitOps walk-throughs use: a web Deployment and a
database Deployment + Service, with a test hook (a Job: kwok completes Job
pods). Its values can make things go wrong the way they do for users:
`web.nodeSelector` that no node has keeps the web pods Pending, so a `--wait`
never sees them Ready (kwok nodes run no containers, so this is how a readiness
that never comes looks); `tests.nodeSelector` does the same to the test Job.

The chart is published through the one chart repository helper,
`tests.support.helmrepos.ChartRepo` (packaged by helm, indexed by `helm repo index`);
`Charts` is that repository as a test namespace's HelmRepository sees it.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import yaml

from tests.support.builders import helm_chart, helm_repository
from tests.support.cluster import TestCluster, apply
from tests.support.controllers import RunningControllers
from tests.support.helmrepos import ChartRepo, ChartRepoServer
from tests.support.status import request_reconcile, wait_ready

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


def write_wordpress(
    root: Path, version: str, *, broken: bool = False, crds: str | None = None
) -> Path:
    """The wordpress chart source at `root/wordpress`; `broken` adds a template that
    fails to render (a function helm does not have), `crds` a `crds/` file."""
    chart = root / "wordpress"
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


def add_wordpress(
    repo: ChartRepo, version: str, *, broken: bool = False, crds: str | None = None
) -> Path:
    """Publish wordpress `version` in `repo` (packaged, reindexed); returns the archive."""
    source = write_wordpress(repo.workdir("wordpress", version), version, broken=broken, crds=crds)
    return repo.publish(source)


@dataclass
class Charts:
    """A chart repository on loopback and the HelmRepository of it in a test namespace."""

    cluster: TestCluster
    namespace: str
    repository: str  # the HelmRepository's name
    repo: ChartRepo
    server: ChartRepoServer

    @property
    def source(self) -> dict[str, str]:
        return {"kind": "HelmRepository", "name": self.repository}

    def publish(self, version: str, *, broken: bool = False, crds: str | None = None) -> Path:
        """Add wordpress `version` to the repository; the HelmRepository fetches the new index."""
        archive = add_wordpress(self.repo, version, broken=broken, crds=crds)
        # As `flux reconcile source helm` would: the new index, then the HelmCharts.
        request_reconcile(self.cluster, self.namespace, "helmrepository", self.repository)
        return archive

    def helm_chart(self, name: str = "wordpress", **spec: Any) -> dict[str, Any]:
        """A HelmChart of wordpress from the repository (any version unless spec says)."""
        return helm_chart(
            self.namespace, name, "wordpress", **{"version": "*", "sourceRef": self.source, **spec}
        )

    def template(self, **spec: Any) -> dict[str, Any]:
        """A HelmRelease's `spec.chart` for wordpress from the repository."""
        return {"spec": {"chart": "wordpress", "sourceRef": self.source, **spec}}


@pytest.fixture
def charts(
    cluster: TestCluster, controllers: RunningControllers, namespace: str, tmp_path: Path
) -> Iterator[Charts]:
    """The real chain a user builds: a chart repository on loopback (packaged and indexed
    by helm, empty until a test publishes a chart) and a HelmRepository `charts` of it in
    the test's namespace. Import it into a conftest.py to use it."""
    repo = ChartRepo(tmp_path / "charts")
    repo.index()
    with ChartRepoServer(repo) as server:
        apply(cluster, helm_repository(namespace, "charts", server.url))
        wait_ready(cluster, namespace, "HelmRepository", "charts")
        yield Charts(cluster, namespace, "charts", repo, server)
