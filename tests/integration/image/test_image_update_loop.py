"""A new image tag in the registry ends up running in the cluster, through git."""

from __future__ import annotations

import json
import os
import time
from pathlib import Path
from typing import Any

import pytest

from tests.integration.image.conftest import Scenario, marked_deployment
from tests.support.builders import (
    alert,
    image_policy,
    image_repository,
    image_update_automation,
    provider,
    secret,
)
from tests.support.chatservers import Received, SlackServer
from tests.support.cluster import TestCluster, apply, get_json, wait_for
from tests.support.controllers import RunningControllers
from tests.support.gitrepos import RepoFactory
from tests.support.gitservers import GitHttpServer
from tests.support.registry import OciRegistry
from tests.support.status import get_object, wait_ready

pytestmark = pytest.mark.integration

# Where the stage timings go when asked (bench/reports/image-automation.md is written so).
REPORT_ENV = "HEADWATER_IMAGE_AUTOMATION_REPORT"


def from_automation(namespace: str) -> Any:
    def check(request: Received) -> bool:
        if request.method != "POST" or not request.body.startswith(b"{"):
            return False
        attachment = (request.json().get("attachments") or [{}])[0]
        return bool(
            attachment.get("author_name") == f"imageupdateautomation/web.{namespace}"
            and "pushed commit" in attachment.get("text", "")
        )

    return check


def running_image(cluster: TestCluster, namespace: str) -> str | None:
    """The image the Deployment runs once its rollout is complete, else None."""
    live = get_json(cluster, "deployment", "web", "-n", namespace)
    if not live:
        return None
    status = live.get("status") or {}
    want = live["spec"].get("replicas", 1)
    done = (
        status.get("observedGeneration", 0) >= live["metadata"]["generation"]
        and status.get("updatedReplicas") == want
        and status.get("availableReplicas") == want
    )
    image: str = live["spec"]["template"]["spec"]["containers"][0]["image"]
    return image if done else None


def test_a_new_tag_is_committed_synced_run_and_announced(
    cluster: TestCluster,
    namespace: str,
    controllers: RunningControllers,
    slack_server: SlackServer,
    git_repos: RepoFactory,
    git_http_basic_server: GitHttpServer,
    oci_registry: OciRegistry,
) -> None:
    scenario = Scenario(namespace, git_repos.create(), oci_registry, f"{namespace}/web")
    image = scenario.image
    first = scenario.repo.commit(
        {"deploy/web.yaml": marked_deployment(f"{image}:0.9.0", f"{namespace}:web")}, "first"
    )
    # Polling intervals as short as a demo would set them; nothing else is nudged.
    apply(cluster, *scenario.git_objects(git_http_basic_server, interval="5s"))
    wait_for(lambda: running_image(cluster, namespace) == f"{image}:0.9.0", what="0.9.0 running")
    apply(
        cluster,
        secret(namespace, "slack-url", {"address": slack_server.webhook_url}),
        provider(namespace, "slack", type="slack", channel="#ops", secretRef={"name": "slack-url"}),
        alert(namespace, "images", "slack", {"kind": "ImageUpdateAutomation", "name": "*"}),
        image_repository(namespace, "web", image, interval="5s", insecure=True),
        image_policy(namespace, "web", "web", {"semver": {"range": ">=1.0.0"}}),
        image_update_automation(
            namespace,
            "web",
            "app",
            interval="1m",
            git={
                "checkout": {"ref": {"branch": "master"}},
                "commit": {"author": {"name": "headwater", "email": "bot@headwater.invalid"}},
                "push": {"branch": "master"},
            },
            update={"path": "./deploy", "strategy": "Setters"},
        ),
    )

    # CI's part: three tags, one of them a pre-release the policy must leave alone.
    pushed_at = time.monotonic()
    oci_registry.push_image(scenario.repository, ["1.0.0", "1.0.1", "1.1.0-rc1"])
    stages: dict[str, float] = {}
    new_image = f"{image}:1.0.1"

    def scanned() -> bool:
        result = get_object(cluster, namespace, "imagerepository", "web").get("status") or {}
        return "1.0.1" in (result.get("lastScanResult") or {}).get("latestTags", [])

    def chosen() -> bool:
        status = get_object(cluster, namespace, "imagepolicy", "web").get("status") or {}
        return (status.get("latestRef") or {}).get("tag") == "1.0.1"

    def committed() -> bool:
        return scenario.repo.head() != first

    def fetched() -> bool:
        status = get_object(cluster, namespace, "gitrepository", "app").get("status") or {}
        revision = (status.get("artifact") or {}).get("revision")
        return committed() and revision == f"master@sha1:{scenario.repo.head()}"

    def applied() -> bool:
        status = get_object(cluster, namespace, "kustomization", "app").get("status") or {}
        return committed() and status.get("lastAppliedRevision") == (
            f"master@sha1:{scenario.repo.head()}"
        )

    def running() -> bool:
        return running_image(cluster, namespace) == new_image

    def told() -> bool:
        return bool([r for r in slack_server.requests() if from_automation(namespace)(r)])

    checks = {
        "tag scanned (ImageRepository)": scanned,
        "latest tag chosen (ImagePolicy)": chosen,
        "commit pushed to git (ImageUpdateAutomation)": committed,
        "commit fetched (GitRepository artifact)": fetched,
        "commit applied (Kustomization)": applied,
        "new image rolled out (Deployment)": running,
        "Slack told": told,
    }

    def all_done() -> bool:
        for name, check in checks.items():
            if name not in stages and check():
                stages[name] = time.monotonic() - pushed_at
        return len(stages) == len(checks)

    wait_for(all_done, timeout=180, interval=0.2, what=f"every stage (so far: {stages})")

    # What landed in git: exactly the marked field, the pre-release left alone.
    text = scenario.file()
    assert f'image: {new_image} # {{"$imagepolicy": "{namespace}:web"}}' in text
    assert text == marked_deployment(f"{image}:0.9.0", f"{namespace}:web").replace(
        ":0.9.0 #", ":1.0.1 #"
    )
    log = scenario.repo.git(
        "--git-dir", str(scenario.repo.bare), "log", "-1", "--format=%an <%ae>%n%B"
    )
    assert log.startswith("headwater <bot@headwater.invalid>\nAutomated image update")
    assert f"- {image}:0.9.0 -> {new_image}" in log
    automation = wait_ready(cluster, namespace, "imageupdateautomation", "web")["status"]
    assert automation["lastPushCommit"] == scenario.repo.head()
    assert automation["observedPolicies"] == {"web": {"name": image, "tag": "1.0.1"}}
    assert automation["lastPushTime"]
    repository = get_object(cluster, namespace, "imagerepository", "web")["status"]
    assert repository["lastScanResult"]["tagCount"] == 3
    assert repository["canonicalImageName"] == image
    assert repository["observedExclusionList"] == ["^.*\\.sig$"]

    # A second run finds nothing to do: no new commit.
    head = scenario.repo.head()
    cluster.kubectl(
        "annotate",
        "imageupdateautomation",
        "web",
        "-n",
        namespace,
        "--overwrite",
        "reconcile.fluxcd.io/requestedAt=again",
    )
    wait_for(
        lambda: (
            (
                get_object(cluster, namespace, "imageupdateautomation", "web").get("status") or {}
            ).get("lastHandledReconcileAt")
            == "again"
        ),
        what="the requested run",
    )
    assert scenario.repo.head() == head
    _report(stages)


def _report(stages: dict[str, float]) -> None:
    print(json.dumps(stages, indent=2))
    target = os.environ.get(REPORT_ENV)
    if not target:
        return
    rows = "\n".join(f"| {name} | {seconds:.1f} |" for name, seconds in stages.items())
    Path(target).write_text(
        "# Image automation: from a tag push to a running Deployment\n\n"
        "Measured by `tests/integration/image/test_image_update_loop.py` (run with\n"
        f"`{REPORT_ENV}=bench/reports/image-automation.md`): seconds from pushing the tags\n"
        "`1.0.0`, `1.0.1`, `1.1.0-rc1` to the registry until each stage was first seen.\n"
        "ImageRepository and GitRepository poll every 5 s (the intervals the test sets);\n"
        "every other step is triggered by the one before it. One run, on the shared\n"
        "2-core machine, with `headwater run all` and the devcluster control plane.\n\n"
        "| stage | seconds after the tag push |\n|---|---|\n"
        f"{rows}\n"
    )
