"""HelmRepository and HelmChart end to end: real cluster, controllers, chart repositories, git."""

from __future__ import annotations

import hashlib
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
import yaml

from tests.support.builders import git_repository, helm_chart, helm_repository, secret
from tests.support.cluster import TestCluster, apply
from tests.support.controllers import RunningControllers
from tests.support.fixtures import HTTP_PASSWORD, HTTP_USER
from tests.support.gitrepos import RepoFactory
from tests.support.gitservers import GitHttpServer, TestCA
from tests.support.helmrepos import ChartRepo, ChartRepoServer
from tests.support.sources import download, tar_listing
from tests.support.status import (
    condition,
    events_for,
    get_object,
    request_reconcile,
    wait_for_object,
    wait_ready,
)

pytestmark = pytest.mark.integration

EXAMPLES = Path(__file__).resolve().parent.parent / "data" / "flux-examples"


@pytest.fixture
def chart_repo(tmp_path: Path) -> Iterator[tuple[ChartRepo, ChartRepoServer]]:
    repo = ChartRepo(tmp_path / "charts")
    with ChartRepoServer(repo) as server:
        yield repo, server


def test_repository_index_is_published_and_a_noop_interval_writes_nothing(
    cluster: TestCluster,
    namespace: str,
    controllers: RunningControllers,
    chart_repo: tuple[ChartRepo, ChartRepoServer],
) -> None:
    repo, server = chart_repo
    repo.add("app", "1.0.0")
    repo.add("app", "1.1.0")
    apply(cluster, helm_repository(namespace, "charts", **{"url": server.url, "interval": "2s"}))

    obj = wait_ready(cluster, namespace, "HelmRepository", "charts")
    artifact = obj["status"]["artifact"]
    data = download(artifact["url"])
    digest = "sha256:" + hashlib.sha256(data).hexdigest()
    assert artifact["digest"] == digest
    assert artifact["revision"] == digest
    assert artifact["size"] == len(data)
    assert artifact["path"] == (
        f"helmrepository/{namespace}/charts/index-{digest.removeprefix('sha256:')}.yaml"
    )
    assert obj["status"]["url"] == artifact["url"]
    index = yaml.safe_load(data)
    assert [v["version"] for v in index["entries"]["app"]] == ["1.1.0", "1.0.0"]
    assert condition(obj, "ArtifactInStorage")["status"] == "True"  # type: ignore[index]
    assert obj["status"]["conditions"][0]["reason"] == "Succeeded"

    fetched = server.paths().count("/index.yaml")
    version = obj["metadata"]["resourceVersion"]
    time.sleep(7)  # several 2s intervals
    assert server.paths().count("/index.yaml") > fetched  # it does poll...
    assert (
        get_object(cluster, namespace, "HelmRepository", "charts")["metadata"]["resourceVersion"]
        == version
    )  # ...and writes nothing when nothing changed
    stored = list((controllers.storage_dir / "helmrepository" / namespace / "charts").iterdir())
    assert [p.name for p in stored] == [Path(artifact["path"]).name]


def test_chart_from_repository_follows_the_newest_matching_version(
    cluster: TestCluster,
    namespace: str,
    controllers: RunningControllers,
    chart_repo: tuple[ChartRepo, ChartRepoServer],
) -> None:
    repo, server = chart_repo
    repo.add("app", "1.0.0")
    first = repo.add("app", "1.1.0")
    repo.add("app", "2.0.0")
    apply(cluster, helm_repository(namespace, "charts", **{"url": server.url, "interval": "1h"}))
    apply(
        cluster,
        helm_chart(
            namespace,
            "app",
            **{
                "chart": "app",
                "version": "1.x",
                "interval": "1h",
                "sourceRef": {"kind": "HelmRepository", "name": "charts"},
            },
        ),
    )
    chart = wait_ready(cluster, namespace, "HelmChart", "app")
    artifact = chart["status"]["artifact"]
    assert artifact["revision"] == "1.1.0"
    assert artifact["path"] == f"helmchart/{namespace}/app/app-1.1.0.tgz"
    data = download(artifact["url"])
    assert data == first.read_bytes()  # pulled as published, not repackaged
    assert artifact["digest"] == "sha256:" + hashlib.sha256(data).hexdigest()
    assert chart["status"]["observedChartName"] == "app"
    repo_obj = get_object(cluster, namespace, "HelmRepository", "charts")
    assert (
        chart["status"]["observedSourceArtifactRevision"]
        == repo_obj["status"]["artifact"]["revision"]
    )
    ready = condition(chart, "Ready")
    assert ready is not None and ready["reason"] == "ChartPullSucceeded"
    assert ready["message"] == "pulled 'app' chart with version '1.1.0'"

    # A new version in the repository: the HelmRepository's new index requeues the chart.
    repo.add("app", "1.2.0")
    request_reconcile(cluster, namespace, "helmrepository", "charts")
    moved = wait_for_object(
        cluster,
        namespace,
        "HelmChart",
        "app",
        lambda obj: obj["status"]["artifact"]["revision"] == "1.2.0",
        timeout=90,
        what="the chart to move to 1.2.0",
    )
    assert tar_listing(download(moved["status"]["artifact"]["url"]))["app/Chart.yaml"]
    stored = {p.name for p in (controllers.storage_dir / "helmchart" / namespace / "app").iterdir()}
    assert "app-1.2.0.tgz" in stored and len(stored) <= 2


def test_chart_and_repository_failures_keep_the_last_artifact(
    cluster: TestCluster,
    namespace: str,
    controllers: RunningControllers,
    chart_repo: tuple[ChartRepo, ChartRepoServer],
) -> None:
    repo, server = chart_repo
    repo.add("app", "1.0.0")
    apply(cluster, helm_repository(namespace, "charts", **{"url": server.url, "interval": "1h"}))
    chart_spec = {
        "chart": "app",
        "interval": "1h",
        "sourceRef": {"kind": "HelmRepository", "name": "charts"},
    }
    apply(cluster, helm_chart(namespace, "app", **chart_spec))
    good = wait_ready(cluster, namespace, "HelmChart", "app")["status"]["artifact"]
    good_index = wait_ready(cluster, namespace, "HelmRepository", "charts")["status"]["artifact"]

    # A version range with no match: stalled with Flux's reason, artifact kept and served.
    apply(cluster, helm_chart(namespace, "app", **{**chart_spec, "version": "9.*"}))
    failed = wait_ready(cluster, namespace, "HelmChart", "app", "False", "InvalidChartReference")
    assert (
        "no 'app' chart with version matching '9.*' found" in condition(failed, "Ready")["message"]
    )  # type: ignore[index]
    assert condition(failed, "Stalled")["status"] == "True"  # type: ignore[index]
    assert condition(failed, "FetchFailed")["reason"] == "InvalidChartReference"  # type: ignore[index]
    assert failed["status"]["artifact"] == good
    assert hashlib.sha256(download(good["url"])).hexdigest() == good["digest"].split(":")[1]

    # A chart the index does not hold.
    apply(cluster, helm_chart(namespace, "app", **{**chart_spec, "chart": "nginx"}))
    missing = wait_ready(cluster, namespace, "HelmChart", "app", "False", "InvalidChartReference")
    assert "no chart name 'nginx'" in condition(missing, "Ready")["message"]  # type: ignore[index]

    # Bad index YAML: IndexationFailed, the last index stays.
    repo.write_index(b"apiVersion: v1\nentries: [\n")
    request_reconcile(cluster, namespace, "helmrepository", "charts")
    bad = wait_ready(cluster, namespace, "HelmRepository", "charts", "False", "IndexationFailed")
    assert "failed to load Helm repository from index YAML" in condition(bad, "Ready")["message"]  # type: ignore[index]
    assert bad["status"]["artifact"] == good_index

    # The repository goes away: Failed, the last index is still served.
    server.stop()
    request_reconcile(cluster, namespace, "helmrepository", "charts")
    down = wait_ready(cluster, namespace, "HelmRepository", "charts", "False", "Failed")
    assert "failed to fetch Helm repository index" in condition(down, "Ready")["message"]  # type: ignore[index]
    assert down["status"]["artifact"] == good_index
    assert download(good_index["url"])
    events = events_for(cluster, namespace, "HelmRepository", "charts")
    assert any(e["type"] == "Warning" and e["reason"] == "Failed" for e in events)


def test_basic_auth_and_tls_repository_and_credentials_stay_secret(
    cluster: TestCluster,
    namespace: str,
    controllers: RunningControllers,
    tmp_path: Path,
    tls_ca: TestCA,
) -> None:
    repo = ChartRepo(tmp_path / "private")
    repo.add("app", "0.3.0")
    tls = tls_ca.issue("127.0.0.1", server=True)
    with ChartRepoServer(repo, basic=(HTTP_USER, HTTP_PASSWORD), tls=tls) as server:
        apply(
            cluster, secret(namespace, "creds", {"username": HTTP_USER, "password": HTTP_PASSWORD})
        )
        apply(cluster, secret(namespace, "ca", {"ca.crt": tls_ca.cert_pem}))
        spec = {
            "url": server.url,
            "interval": "1h",
            "secretRef": {"name": "creds"},
            "certSecretRef": {"name": "ca"},
        }
        apply(cluster, helm_repository(namespace, "private", **spec))
        wait_ready(cluster, namespace, "HelmRepository", "private")
        apply(
            cluster,
            helm_chart(
                namespace,
                "app",
                **{
                    "chart": "app",
                    "interval": "1h",
                    "sourceRef": {"kind": "HelmRepository", "name": "private"},
                },
            ),
        )
        chart = wait_ready(cluster, namespace, "HelmChart", "app")
        assert chart["status"]["artifact"]["revision"] == "0.3.0"
        chart_requests = [r for r in server.requests if r.path.endswith(".tgz")]
        assert chart_requests and all(r.authorization for r in chart_requests)

        # Without the CA the server's certificate is refused.
        apply(cluster, helm_repository(namespace, "no-ca", **{**spec, "certSecretRef": None}))
        wait_ready(cluster, namespace, "HelmRepository", "no-ca", "False", "Failed")

        # A wrong password: refused, and the password appears nowhere.
        wrong = "wrong-password-4321"
        apply(cluster, secret(namespace, "bad-creds", {"username": HTTP_USER, "password": wrong}))
        apply(
            cluster,
            helm_repository(namespace, "denied", **{**spec, "secretRef": {"name": "bad-creds"}}),
        )
        denied = wait_ready(cluster, namespace, "HelmRepository", "denied", "False", "Failed")
        assert "401" in condition(denied, "Ready")["message"]  # type: ignore[index]
        seen = yaml.safe_dump(denied["status"]) + yaml.safe_dump(
            events_for(cluster, namespace, "HelmRepository", "denied")
        )
        for value in (wrong, HTTP_PASSWORD):
            assert value not in seen
            assert value not in controllers.logs()


def test_chart_from_git_is_packaged_with_dependencies_and_values(
    cluster: TestCluster,
    namespace: str,
    controllers: RunningControllers,
    git_repos: RepoFactory,
    git_http_server: GitHttpServer,
) -> None:
    git = git_repos.create()
    files = {
        "charts/app/Chart.yaml": yaml.safe_dump(
            {
                "apiVersion": "v2",
                "name": "app",
                "version": "0.4.0",
                "dependencies": [
                    {"name": "lib", "version": "0.1.0", "repository": "file://../lib"}
                ],
            }
        ),
        "charts/app/values.yaml": "replicaCount: 1\nimage: {repository: web, tag: '1'}\n",
        "charts/app/templates/cm.yaml": "apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: x\n",
        "charts/lib/Chart.yaml": "apiVersion: v2\nname: lib\nversion: 0.1.0\n",
        "env/prod.yaml": "replicaCount: 3\nimage: {tag: '2'}\n",
    }
    head = git.commit(files, "chart")
    apply(
        cluster,
        git_repository(
            namespace, "src", **{"interval": "1m", **{"url": git_http_server.url(git.name)}}
        ),
    )
    chart_spec = {
        "chart": "charts/app",
        "interval": "1h",
        "reconcileStrategy": "Revision",
        "valuesFiles": ["charts/app/values.yaml", "env/prod.yaml"],
        "sourceRef": {"kind": "GitRepository", "name": "src"},
    }
    apply(cluster, helm_chart(namespace, "app", **chart_spec))
    chart = wait_ready(cluster, namespace, "HelmChart", "app")
    generation = chart["metadata"]["generation"]
    artifact = chart["status"]["artifact"]
    assert artifact["revision"] == f"0.4.0+{head[:12]}.{generation}"
    assert artifact["path"] == f"helmchart/{namespace}/app/app-0.4.0+{head[:12]}.{generation}.tgz"
    assert chart["status"]["observedValuesFiles"] == chart_spec["valuesFiles"]
    assert chart["status"]["observedSourceArtifactRevision"] == f"master@sha1:{head}"
    assert condition(chart, "Ready")["reason"] == "ChartPackageSucceeded"  # type: ignore[index]
    data = download(artifact["url"])
    assert artifact["digest"] == "sha256:" + hashlib.sha256(data).hexdigest()
    packaged = tar_listing(data)
    assert yaml.safe_load(packaged["app/values.yaml"]) == {
        "replicaCount": 3,
        "image": {"repository": "web", "tag": "2"},
    }
    assert any(name.startswith("app/charts/lib") for name in packaged)

    # A new commit moves the revision (Revision strategy): the source's new artifact requeues.
    second = git.commit({"env/prod.yaml": "replicaCount: 5\n"}, "scale")
    request_reconcile(cluster, namespace, "gitrepository", "src")
    moved = wait_for_object(
        cluster,
        namespace,
        "HelmChart",
        "app",
        lambda obj: second[:12] in obj["status"]["artifact"]["revision"],
        timeout=90,
        what="the chart to follow the new commit",
    )
    last = moved["status"]["artifact"]

    # A values file that does not exist: ValuesFilesError, stalled, the last chart kept.
    apply(cluster, helm_chart(namespace, "app", **{**chart_spec, "valuesFiles": ["env/nope.yaml"]}))
    failed = wait_ready(cluster, namespace, "HelmChart", "app", "False", "ValuesFilesError")
    assert "no values file found at path 'env/nope.yaml'" in condition(failed, "Ready")["message"]  # type: ignore[index]
    assert condition(failed, "BuildFailed")["status"] == "True"  # type: ignore[index]
    assert failed["status"]["artifact"] == last
    assert download(last["url"])

    # A values file path climbing out of the source is refused by name.
    apply(
        cluster, helm_chart(namespace, "app", **{**chart_spec, "valuesFiles": ["../../etc/passwd"]})
    )
    escaped = wait_ready(cluster, namespace, "HelmChart", "app", "False", "ValuesFilesError")
    assert "must stay inside" in condition(escaped, "Ready")["message"]  # type: ignore[index]


def test_flux_examples_reconcile_against_a_local_repository(
    cluster: TestCluster,
    namespace: str,
    controllers: RunningControllers,
    chart_repo: tuple[ChartRepo, ChartRepoServer],
) -> None:
    repo, server = chart_repo
    repo.add("podinfo", "5.2.1")
    repo.add("podinfo", "6.0.3")
    for name, url in (
        ("helmrepositories-00-podinfo.yaml", server.url),
        ("helmcharts-00-podinfo.yaml", None),
        ("helmrepositories-01-podinfo.yaml", None),
    ):
        for doc in yaml.safe_load_all((EXAMPLES / name).read_text()):
            doc["metadata"]["namespace"] = namespace
            if url:
                doc["spec"]["url"] = url  # the documented URL is not reachable from here
            if doc["kind"] == "HelmRepository" and doc["spec"].get("type") == "oci":
                doc["metadata"]["name"] = "podinfo-oci"
            cluster.kubectl("apply", "-f", "-", input=yaml.safe_dump(doc))
    chart = wait_ready(cluster, namespace, "HelmChart", "podinfo")
    assert chart["status"]["artifact"]["revision"] == "5.2.1"  # version '5.*'
    oci = wait_ready(cluster, namespace, "HelmRepository", "podinfo-oci")
    assert "artifact" not in oci["status"]
    assert condition(oci, "Ready")["message"] == "Helm repository is Ready"  # type: ignore[index]


def test_unsupported_fields_are_refused_by_name(
    cluster: TestCluster, namespace: str, controllers: RunningControllers
) -> None:
    apply(
        cluster,
        helm_repository(
            namespace,
            "aws",
            **{"url": "https://charts.invalid", "interval": "1h", "provider": "aws"},
        ),
    )
    refused = wait_ready(cluster, namespace, "HelmRepository", "aws", "False", "UnsupportedField")
    assert "spec.provider: provider 'aws'" in condition(refused, "Ready")["message"]  # type: ignore[index]
    assert condition(refused, "Stalled")["status"] == "True"  # type: ignore[index]
