"""Registries with auth and TLS, exclusions, a pull-request branch and signed commits."""

from __future__ import annotations

import subprocess

import pytest

from tests.integration.image.conftest import Scenario, marked_deployment
from tests.support.builders import (
    image_policy,
    image_repository,
    image_update_automation,
    secret,
)
from tests.support.cluster import TestCluster, apply, extra_namespace, wait_for
from tests.support.controllers import RunningControllers
from tests.support.gitrepos import GpgKey, RepoFactory
from tests.support.gitservers import GitHttpServer
from tests.support.registry import OciRegistry
from tests.support.status import get_object, ready_message, wait_ready

pytestmark = pytest.mark.integration


def docker_secret(namespace: str, name: str, config: str) -> dict[str, object]:
    obj = secret(namespace, name, {".dockerconfigjson": config})
    obj["type"] = "kubernetes.io/dockerconfigjson"
    return obj


def test_a_basic_auth_registry_is_scanned_with_a_docker_registry_secret(
    cluster: TestCluster,
    namespace: str,
    controllers: RunningControllers,
    oci_registry_basic: OciRegistry,
) -> None:
    registry = oci_registry_basic
    repository = f"{namespace}/private"
    registry.push_image(repository, ["1.0.0", "1.1.0", "sha256-1234.sig"])
    image = f"{registry.host}/{repository}"
    apply(
        cluster,
        docker_secret(namespace, "regcred", registry.dockerconfigjson()),
        image_repository(
            namespace, "private", image, interval="1m", insecure=True, secretRef={"name": "regcred"}
        ),
        image_repository(namespace, "anonymous", image, interval="1m", insecure=True),
    )
    obj = wait_ready(cluster, namespace, "imagerepository", "private")
    # The cosign signature tag is left out by Flux's default exclusion list.
    assert obj["status"]["lastScanResult"]["tagCount"] == 2
    assert obj["status"]["lastScanResult"]["latestTags"] == ["1.1.0", "1.0.0"]
    assert ready_message(obj) == "successful scan, found 2 tags"
    refused = wait_ready(
        cluster, namespace, "imagerepository", "anonymous", "False", "AuthenticationFailed"
    )
    assert "401" in ready_message(refused)


def test_a_tls_registry_is_trusted_through_cert_secret_ref(
    cluster: TestCluster,
    namespace: str,
    controllers: RunningControllers,
    oci_registry_tls: OciRegistry,
) -> None:
    registry = oci_registry_tls
    repository = f"{namespace}/tls"
    registry.push_image(repository, ["3.0.0"])
    image = f"{registry.host}/{repository}"
    apply(
        cluster,
        secret(namespace, "registry-ca", {"ca.crt": registry.ca_pem}),
        image_repository(
            namespace, "trusted", image, interval="1m", certSecretRef={"name": "registry-ca"}
        ),
        image_repository(namespace, "untrusted", image, interval="1m"),
    )
    obj = wait_ready(cluster, namespace, "imagerepository", "trusted")
    assert obj["status"]["lastScanResult"]["tagCount"] == 1
    refused = wait_ready(cluster, namespace, "imagerepository", "untrusted", "False", "Failure")
    assert "certificate" in ready_message(refused).lower()


def test_updates_go_to_a_push_branch_signed_leaving_the_checkout_branch_alone(
    cluster: TestCluster,
    namespace: str,
    controllers: RunningControllers,
    git_repos: RepoFactory,
    git_http_basic_server: GitHttpServer,
    oci_registry: OciRegistry,
    gpg_key: GpgKey,
) -> None:
    scenario = Scenario(namespace, git_repos.create(), oci_registry, f"{namespace}/web")
    oci_registry.push_image(scenario.repository, ["2.0.0", "2.1.0"])
    head = scenario.repo.commit(
        {
            "deploy/web.yaml": marked_deployment(f"{scenario.image}:1.0.0", f"{namespace}:web"),
            "deploy/values.yaml": (
                f'repository: example/old # {{"$imagepolicy": "{namespace}:web:name"}}\n'
                f'tag: "1.0.0" # {{"$imagepolicy": "{namespace}:web:tag"}}\n'
            ),
        }
    )
    # The server takes push options and records what it was sent (a pre-receive hook).
    scenario.repo.git(
        "--git-dir", str(scenario.repo.bare), "config", "receive.advertisePushOptions", "true"
    )
    hook = scenario.repo.bare / "hooks" / "pre-receive"
    hook.write_text(
        "#!/bin/sh\n"
        'i=0; : > "$GIT_DIR/push-options"\n'
        'while [ "$i" -lt "${GIT_PUSH_OPTION_COUNT:-0}" ]; do\n'
        '  eval "echo \\"\\$GIT_PUSH_OPTION_$i\\"" >> "$GIT_DIR/push-options"; i=$((i+1))\n'
        "done\n"
    )
    hook.chmod(0o755)
    apply(
        cluster,
        *scenario.git_objects(git_http_basic_server),
        secret(namespace, "signing", {"git.asc": gpg_key.private_armored()}),
        image_repository(namespace, "web", scenario.image, interval="1m", insecure=True),
        image_policy(
            namespace,
            "web",
            "web",
            {
                "numerical": {"order": "asc"},
            },
            filterTags={"pattern": r"^2\.(?P<minor>\d+)\.0$", "extract": "$minor"},
        ),
        image_update_automation(
            namespace,
            "web",
            "app",
            interval="1m",
            git={
                "checkout": {"ref": {"branch": "master"}},
                "commit": {
                    "author": {"name": "headwater", "email": "bot@headwater.invalid"},
                    "signingKey": {"secretRef": {"name": "signing"}},
                    "messageTemplate": (
                        "Update {{ .Values.app }}\n\n"
                        "{{ range .Changed.Changes }}{{ print .OldValue }} -> "
                        "{{ println .NewValue }}{{ end }}"
                    ),
                    "messageTemplateValues": {"app": "web"},
                },
                "push": {
                    "branch": "image-updates",
                    # GitLab's, as Flux's docs show them: sent as `git push -o`.
                    "options": {"merge_request.create": "", "merge_request.target": "master"},
                },
            },
            update={"path": "./deploy"},
        ),
    )
    wait_for(
        lambda: scenario.repo.git(
            "--git-dir", str(scenario.repo.bare), "branch", "--list", "image-updates"
        ),
        what="the push branch",
    )
    assert (scenario.repo.bare / "push-options").read_text().split("\n")[:2] == [
        "merge_request.create",
        "merge_request.target=master",
    ]
    assert scenario.repo.head() == head  # the checkout branch is untouched
    values = scenario.file("deploy/values.yaml", branch="image-updates")
    assert values == (
        f'repository: {scenario.image} # {{"$imagepolicy": "{namespace}:web:name"}}\n'
        f'tag: "2.1.0" # {{"$imagepolicy": "{namespace}:web:tag"}}\n'
    )
    bare = ["git", "--git-dir", str(scenario.repo.bare)]
    message = subprocess.run(
        [*bare, "log", "-1", "--format=%B", "refs/heads/image-updates"],
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    assert message.startswith("Update web\n\n")
    assert "1.0.0 -> 2.1.0\n" in message
    # Signed with the Secret's key: git verifies it against the public key.
    verify = subprocess.run(
        [*bare, "verify-commit", "refs/heads/image-updates"],
        capture_output=True,
        text=True,
        env={"GNUPGHOME": str(gpg_key.home), "PATH": "/usr/bin:/bin"},
        check=False,
    )
    assert verify.returncode == 0, verify.stderr
    status = wait_ready(cluster, namespace, "imageupdateautomation", "web")["status"]
    assert status["observedSourceRevision"] == f"master@sha1:{head}"
    assert status["lastPushCommit"] == scenario.repo.head("image-updates")
    policy = get_object(cluster, namespace, "imagepolicy", "web")["status"]
    assert policy["latestRef"] == {"name": scenario.image, "tag": "2.1.0"}


def test_a_policy_in_another_namespace_needs_the_repositorys_access_from(
    cluster: TestCluster,
    namespace: str,
    controllers: RunningControllers,
    oci_registry: OciRegistry,
) -> None:
    repository = f"{namespace}/shared"
    oci_registry.push_image(repository, ["1.0.0", "1.1.0", "dev-1.2.0"])
    image = f"{oci_registry.host}/{repository}"
    with extra_namespace(cluster, f"{namespace[:50]}-team") as team:
        cluster.kubectl("label", "namespace", team, "tier=apps")
        apply(
            cluster,
            image_repository(
                namespace,
                "open",
                image,
                interval="1m",
                insecure=True,
                # A list of the user's own replaces the default (Flux's ^.*\.sig$).
                exclusionList=["^dev-"],
                accessFrom={"namespaceSelectors": [{"matchLabels": {"tier": "apps"}}]},
            ),
            image_repository(namespace, "closed", image, interval="1m", insecure=True),
        )
        scanned = wait_ready(cluster, namespace, "imagerepository", "open")
        assert scanned["status"]["lastScanResult"]["latestTags"] == ["1.1.0", "1.0.0"]
        assert scanned["status"]["observedExclusionList"] == ["^dev-"]
        wait_ready(cluster, namespace, "imagerepository", "closed")
        apply(
            cluster,
            image_policy(
                team,
                "allowed",
                "open",
                {"semver": {"range": ">=1.0.0"}},
                imageRepositoryRef={"name": "open", "namespace": namespace},
            ),
            image_policy(
                team,
                "denied",
                "closed",
                {"semver": {"range": ">=1.0.0"}},
                imageRepositoryRef={"name": "closed", "namespace": namespace},
            ),
        )
        allowed = wait_ready(cluster, team, "imagepolicy", "allowed")
        assert allowed["status"]["latestRef"] == {"name": image, "tag": "1.1.0"}
        denied = wait_ready(cluster, team, "imagepolicy", "denied", "False", "AccessDenied")
        assert "spec.accessFrom does not allow namespace" in ready_message(denied)
