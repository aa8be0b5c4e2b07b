"""What a Kustomization's spec does to the built objects, checked on the real cluster.

Source in another namespace, a path into the repository, the kustomize overlays
(targetNamespace, namePrefix/nameSuffix, patches, images, components,
commonMetadata) and post-build substitution from inline values, ConfigMaps and
Secrets, each checked on the objects a user would look at.
"""

from __future__ import annotations

import base64

import pytest
import yaml

from tests.support import builders
from tests.support.builders import WEB_CONTAINER, git_repository, kustomization
from tests.support.cluster import (
    TestCluster,
    apply,
    extra_namespace,
    get_json,
    kubectl_json,
    wait_for,
)
from tests.support.controllers import RunningControllers
from tests.support.gitrepos import RepoFactory
from tests.support.gitservers import GitHttpServer
from tests.support.status import applied, condition, request_reconcile, wait_for_kustomization

pytestmark = pytest.mark.integration

DEPLOYMENT = yaml.safe_dump(builders.deployment(None, "web", **WEB_CONTAINER))
# A namespace in git that targetNamespace must override.
SERVICE = yaml.safe_dump(builders.service("somewhere-else", "web"))
SETTINGS = """\
apiVersion: v1
kind: ConfigMap
metadata:
  name: settings
data:
  greeting: "${greeting}"
  tier: "${tier}"
  region: "${region:=eu-west-1}"
  optional: "${maybe:=absent}"
"""
DB_SECRET = """\
apiVersion: v1
kind: Secret
metadata:
  name: db
stringData:
  password: "${db_password}"
"""
LITERAL = """\
apiVersion: v1
kind: ConfigMap
metadata:
  name: literal
  annotations:
    kustomize.toolkit.fluxcd.io/substitute: disabled
data:
  template: "${not_a_variable} stays as written"
"""
COMPONENT = """\
apiVersion: kustomize.config.k8s.io/v1alpha1
kind: Component
resources:
  - extra.yaml
"""
COMPONENT_CONFIGMAP = """\
apiVersion: v1
kind: ConfigMap
metadata:
  name: from-component
data:
  added: "by the component"
"""
STAGING = """\
apiVersion: v1
kind: ConfigMap
metadata:
  name: staging-only
data: {}
"""

PATCHES = [
    {
        # Strategic merge: found by the object's kind and name in the patch.
        "patch": yaml.safe_dump(
            {
                "apiVersion": "apps/v1",
                "kind": "Deployment",
                "metadata": {"name": "web"},
                "spec": {"replicas": 2},
            }
        )
    },
    {
        # JSON 6902: found by the target.
        "patch": "- op: replace\n  path: /spec/ports/0/port\n  value: 8080\n",
        "target": {"kind": "Service", "name": "web"},
    },
]


def test_source_path_overlays_and_substitution(
    cluster: TestCluster,
    namespace: str,
    controllers: RunningControllers,
    git_repos: RepoFactory,
    git_http_server: GitHttpServer,
) -> None:
    repo = git_repos.create()
    commit = repo.commit(
        {
            "clusters/prod/deployment.yaml": DEPLOYMENT,
            "clusters/prod/service.yaml": SERVICE,
            "clusters/prod/config/settings.yaml": SETTINGS,
            "clusters/prod/config/db.yaml": DB_SECRET,
            "clusters/prod/config/literal.yaml": LITERAL,
            "clusters/staging/staging.yaml": STAGING,
            "components/extra/kustomization.yaml": COMPONENT,
            "components/extra/extra.yaml": COMPONENT_CONFIGMAP,
        }
    )
    with extra_namespace(cluster, f"{namespace}-src") as source_namespace:
        apply(
            cluster,
            git_repository(source_namespace, "shared", git_http_server.url(repo.name)),
            {
                "apiVersion": "v1",
                "kind": "ConfigMap",
                "metadata": {"name": "vars", "namespace": namespace},
                "data": {"tier": "gold", "greeting": "overridden by spec.postBuild.substitute"},
            },
            {
                "apiVersion": "v1",
                "kind": "Secret",
                "metadata": {"name": "secret-vars", "namespace": namespace},
                "stringData": {"db_password": "s3cr3t-from-a-secret"},
            },
            kustomization(
                namespace,
                "app",
                "shared",
                "./clusters/prod",
                sourceRef={
                    "kind": "GitRepository",
                    "name": "shared",
                    "namespace": source_namespace,
                },
                targetNamespace=namespace,
                namePrefix="pre-",
                nameSuffix="-suf",
                patches=PATCHES,
                images=[{"name": "example/web", "newTag": "2"}],
                components=["../../components/extra"],
                commonMetadata={"labels": {"team": "platform"}, "annotations": {"owner": "ops"}},
                postBuild={
                    "substitute": {"greeting": "hello"},
                    "substituteFrom": [
                        {"kind": "ConfigMap", "name": "vars"},
                        {"kind": "Secret", "name": "secret-vars"},
                        {"kind": "ConfigMap", "name": "not-there", "optional": True},
                    ],
                },
            ),
            kustomization(
                namespace,
                "lost",
                "shared",
                "./clusters/nope",
                sourceRef={
                    "kind": "GitRepository",
                    "name": "shared",
                    "namespace": source_namespace,
                },
            ),
        )

        ks = wait_for_kustomization(cluster, namespace, "app", applied(commit), what="app synced")
        inventory = {entry["id"] for entry in ks["status"]["inventory"]["entries"]}
        assert inventory == {
            f"{namespace}_pre-web-suf_apps_Deployment",
            f"{namespace}_pre-web-suf__Service",
            f"{namespace}_pre-settings-suf__ConfigMap",
            f"{namespace}_pre-literal-suf__ConfigMap",
            f"{namespace}_pre-from-component-suf__ConfigMap",
            f"{namespace}_pre-db-suf__Secret",
        }, "path, targetNamespace, prefix/suffix and components decide what is applied"

        # Only the subdirectory was applied, and everything went to targetNamespace.
        assert get_json(cluster, "configmap", "staging-only", "-n", namespace) is None
        assert get_json(cluster, "configmap", "pre-staging-only-suf", "-n", namespace) is None
        assert get_json(cluster, "namespace", "somewhere-else") is None

        deployment = kubectl_json(cluster, "get", "deployment", "pre-web-suf", "-n", namespace)
        assert deployment["spec"]["replicas"] == 2, "strategic merge patch"
        containers = deployment["spec"]["template"]["spec"]["containers"]
        assert containers[0]["image"] == "example/web:2", "images"
        # commonMetadata goes on the object's own metadata, not into selectors.
        assert deployment["metadata"]["labels"]["team"] == "platform"
        assert deployment["metadata"]["annotations"]["owner"] == "ops"
        assert deployment["spec"]["selector"]["matchLabels"] == {"app": "web"}

        service = kubectl_json(cluster, "get", "service", "pre-web-suf", "-n", namespace)
        assert [p["port"] for p in service["spec"]["ports"]] == [8080], "JSON6902 patch"
        assert service["metadata"]["labels"]["team"] == "platform"

        component = kubectl_json(
            cluster, "get", "configmap", "pre-from-component-suf", "-n", namespace
        )
        assert component["data"] == {"added": "by the component"}

        settings = kubectl_json(cluster, "get", "configmap", "pre-settings-suf", "-n", namespace)
        assert settings["data"] == {
            "greeting": "hello",  # inline substitute wins over substituteFrom
            "tier": "gold",  # from the ConfigMap
            "region": "eu-west-1",  # ${var:=default}
            "optional": "absent",  # the optional ConfigMap is missing: default used
        }
        db = kubectl_json(cluster, "get", "secret", "pre-db-suf", "-n", namespace)
        assert base64.b64decode(db["data"]["password"]).decode() == "s3cr3t-from-a-secret"
        literal = kubectl_json(cluster, "get", "configmap", "pre-literal-suf", "-n", namespace)
        assert literal["data"] == {"template": "${not_a_variable} stays as written"}

        # The missing path is named, and the Kustomization is not Ready.
        lost = wait_for_kustomization(
            cluster,
            namespace,
            "lost",
            lambda obj: (condition(obj, "Ready") or {}).get("status") == "False",
            what="the missing path reported",
        )
        ready = condition(lost, "Ready")
        assert ready is not None
        assert ready["reason"] == "ArtifactFailed"
        assert "./clusters/nope" in ready["message"]

        # A substitution input changed: a requested reconcile builds with the new value.
        cluster.kubectl(
            "patch", "configmap", "vars", "-n", namespace, "-p", '{"data":{"tier":"platinum"}}'
        )
        request_reconcile(cluster, namespace, "kustomization", "app")
        wait_for(
            lambda: (
                kubectl_json(cluster, "get", "configmap", "pre-settings-suf", "-n", namespace)[
                    "data"
                ]["tier"]
                == "platinum"
            ),
            timeout=30,
            what="the new substituteFrom value applied",
        )
        # The secret value never shows in the Kustomization's events.
        events = kubectl_json(cluster, "get", "events", "-n", namespace)["items"]
        assert events, "the Kustomization records events"
        assert not any("s3cr3t" in str(event.get("message")) for event in events)
