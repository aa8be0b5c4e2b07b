"""The web dashboard in a real browser (Debian's chromium, driven by Playwright), against
the real control plane, controllers and git server.

Each test syncs one app from git: Kustomization `root` applies two more, `web` (a
Deployment, a ConfigMap and a Secret) and `settings` (a ConfigMap; dependsOn `web`).
The dashboard runs as `headwater dashboard` in its own process, scoped to the test's
namespace. With HEADWATER_DASHBOARD_SCREENSHOTS set to a directory, the tests save
the screenshots docs/images/ shows (scripts/screenshots.py does that).
"""

from __future__ import annotations

import os
import re
import secrets
import urllib.error
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import pytest
import yaml
from playwright.sync_api import Browser, Page, expect

from tests.support import builders
from tests.support.apps import App, sync_app, web_files
from tests.support.builders import kustomization
from tests.support.cluster import TestCluster, apply, kubectl_json, wait_for
from tests.support.controllers import RunningControllers
from tests.support.dashboard import browser, dashboard
from tests.support.gitrepos import RepoFactory
from tests.support.gitservers import GitHttpServer
from tests.support.install import SYSTEM_NAMESPACE, service_account_kubeconfig
from tests.support.status import request_reconcile

pytestmark = pytest.mark.integration

SECRET_VALUE = "dashboard-must-never-show-this"
LIVE_TIMEOUT_MS = 90_000
FLUX_GROUPS = [
    "source.toolkit.fluxcd.io",
    "kustomize.toolkit.fluxcd.io",
    "helm.toolkit.fluxcd.io",
]


def dashboard_web_files(replicas: int) -> dict[str, str | None]:
    return web_files(replicas, creds=builders.secret(None, "creds", {"token": SECRET_VALUE}))


@pytest.fixture
def app(
    cluster: TestCluster,
    namespace: str,
    controllers: RunningControllers,
    git_repos: RepoFactory,
    git_http_server: GitHttpServer,
) -> App:
    """`root` applies `web` (Deployment, ConfigMap, Secret) and `settings`, which waits
    for `web` and applies ConfigMap `flags`."""
    settings = kustomization(
        namespace,
        "settings",
        "app",
        "./settings",
        targetNamespace=namespace,
        dependsOn=[{"name": "web"}],
    )
    files = {
        "settings/flags.yaml": yaml.safe_dump(builders.configmap(None, "flags", {"x": "1"})),
        **dashboard_web_files(2),
    }
    return sync_app(
        cluster, namespace, git_repos, git_http_server, files=files, children={"settings": settings}
    )


@pytest.fixture
def chromium() -> Iterator[Browser]:
    with browser() as launched:
        yield launched


def screenshot(page: Page, name: str) -> None:
    folder = os.environ.get("HEADWATER_DASHBOARD_SCREENSHOTS")
    if folder:
        Path(folder).mkdir(parents=True, exist_ok=True)
        page.screenshot(path=str(Path(folder) / f"{name}.png"), full_page=True)


def test_overview_lists_the_synced_objects_and_shows_a_new_commit_without_a_reload(
    cluster: TestCluster, app: App, chromium: Browser, tmp_path: Path
) -> None:
    ns = app.namespace
    with dashboard(cluster.kubeconfig, ns, tmp_path / "dashboard.log") as server:
        page = chromium.new_page(viewport={"width": 1400, "height": 800})
        page.goto(server.url + "/")
        for name in ("root", "web", "settings"):
            web_row = page.locator(f'tr[data-key="Kustomization/{ns}/{name}"]')
            expect(web_row.locator("td.revision")).to_have_text(f"master@sha1:{app.commit}")
            expect(web_row.locator("[data-state]")).to_have_text("Ready")
        expect(page.locator(f'tr[data-key="GitRepository/{ns}/app"]')).to_be_visible()
        expect(page.locator('[data-count="Kustomization-Ready"] b')).to_have_text("3")
        expect(page.locator("#live-status")).to_have_class("live-dot on")
        screenshot(page, "dashboard-overview")

        # A push lands (the source is asked at once, as a Receiver's webhook would).
        page.evaluate("window.__sameDocument = true")
        new = app.repo.commit(dashboard_web_files(3), "three replicas")
        request_reconcile(cluster, ns, "gitrepository", "app")
        web_row = page.locator(f'tr[data-key="Kustomization/{ns}/web"]')
        expect(web_row.locator("td.revision")).to_have_text(
            f"master@sha1:{new}", timeout=LIVE_TIMEOUT_MS
        )
        assert page.evaluate("window.__sameDocument") is True  # updated in place, not reloaded

        # Search and filters narrow the table; the URL keeps them.
        page.fill("#q", "settings")
        expect(page.locator("tr[data-key]")).to_have_count(1)
        expect(page).to_have_url(re.compile(r"[?&]q=settings"))  # pushed after the swap
        page.fill("#q", "")
        page.select_option('select[name="kind"]', "GitRepository")
        expect(page.locator("tr[data-key]")).to_have_count(1)

        page.goto(server.url + "/graph")
        graph = page.locator("#graph")
        expect(graph.locator('[data-label="Deployment/web"]')).to_have_count(1)
        expect(graph.locator('[data-label="Kustomization/settings"]')).to_have_count(1)
        expect(graph.locator("path.edge.depends")).to_have_count(1)
        screenshot(page, "dashboard-graph")

        page.goto(server.url + f"/object/Kustomization/{ns}/web")
        expect(page.locator("#owned")).to_contain_text(f"Secret/{ns}/creds")
        assert SECRET_VALUE not in page.content()


def test_a_kubectl_scale_drift_shows_with_its_field_and_the_reconcile_button_reconciles(
    cluster: TestCluster, app: App, chromium: Browser, tmp_path: Path
) -> None:
    ns = app.namespace
    with dashboard(cluster.kubeconfig, ns, tmp_path / "dashboard.log") as server:
        page = chromium.new_page(viewport={"width": 1400, "height": 900})
        page.goto(server.url + f"/object/Kustomization/{ns}/web")
        expect(page.locator("#history")).to_contain_text(f"master@sha1:{app.commit}")
        expect(page.locator('tr[data-condition="Ready"]')).to_contain_text("True")

        cluster.kubectl("scale", "deployment", "web", "-n", ns, "--replicas=5")
        drift = page.locator("#drift .drift").first
        expect(drift).to_contain_text(f"Deployment/{ns}/web", timeout=LIVE_TIMEOUT_MS)
        expect(drift).to_contain_text("spec.replicas")
        screenshot(page, "dashboard-object")

        before = kubectl_json(cluster, "get", "kustomization", "web", "-n", ns)
        page.locator('button[data-action="reconcile"]').click()
        expect(page.locator("#flash")).to_contain_text("reconcile requested")

        def handled() -> str | None:
            live = kubectl_json(cluster, "get", "kustomization", "web", "-n", ns)
            token = (live["metadata"].get("annotations") or {}).get(
                "reconcile.fluxcd.io/requestedAt"
            )
            old = (before["metadata"].get("annotations") or {}).get(
                "reconcile.fluxcd.io/requestedAt"
            )
            done = live["status"].get("lastHandledReconcileAt")
            return token if token and token != old and done == token else None

        token = wait_for(handled, timeout=90, what="the button's request handled")
        expect(page.locator("#live")).to_contain_text(token, timeout=LIVE_TIMEOUT_MS)


def _flux_role(cluster: TestCluster, namespace: str, name: str, verbs: list[str]) -> None:
    apply(
        cluster,
        {
            "apiVersion": "rbac.authorization.k8s.io/v1",
            "kind": "Role",
            "metadata": {"name": name, "namespace": namespace},
            "rules": [
                {"apiGroups": FLUX_GROUPS, "resources": ["*"], "verbs": verbs},
                {"apiGroups": [""], "resources": ["events"], "verbs": ["get", "list", "watch"]},
            ],
        },
    )


def _bind(cluster: TestCluster, namespace: str, role: str, subject: dict[str, str]) -> None:
    apply(
        cluster,
        {
            "apiVersion": "rbac.authorization.k8s.io/v1",
            "kind": "RoleBinding",
            "metadata": {"name": f"{role}-{subject['name']}"[:63], "namespace": namespace},
            "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "Role", "name": role},
            "subjects": [subject],
        },
    )


def test_a_read_only_identity_sees_no_buttons(
    cluster: TestCluster, app: App, chromium: Browser, tmp_path: Path
) -> None:
    ns = app.namespace
    view = ["get", "list", "watch"]
    _flux_role(cluster, ns, "flux-view", view)
    _flux_role(cluster, ns, "flux-edit", [*view, "patch"])
    account = f"viewer-{secrets.token_hex(4)}"
    cluster.kubectl("create", "serviceaccount", account, "-n", SYSTEM_NAMESPACE)
    try:
        _bind(
            cluster,
            ns,
            "flux-view",
            {"kind": "ServiceAccount", "name": account, "namespace": SYSTEM_NAMESPACE},
        )
        kubeconfig = service_account_kubeconfig(cluster, account, tmp_path / "viewer.kubeconfig")
        # Locally, with a ServiceAccount token that may only view: the objects, no buttons.
        with dashboard(kubeconfig, ns, tmp_path / "viewer.log") as server:
            page = chromium.new_page()
            page.goto(server.url + "/")
            expect(page.locator(f'tr[data-key="Kustomization/{ns}/web"]')).to_be_visible()
            expect(page.locator("button")).to_have_count(0)
            page.goto(server.url + f"/object/Kustomization/{ns}/web")
            expect(page.locator("#owned")).to_contain_text(f"Deployment/{ns}/web")
            expect(page.locator("button")).to_have_count(0)
            refused = page.request.post(
                server.url + f"/act/reconcile/Kustomization/{ns}/web",
                headers={"HX-Request": "true"},
            )
            assert refused.status == 403
    finally:
        cluster.kubectl("delete", "serviceaccount", account, "-n", SYSTEM_NAMESPACE, check=False)

    # In-cluster mode: the user named by the trusted header is impersonated.
    viewer, editor = f"viewer-{ns}", f"editor-{ns}"
    _bind(
        cluster,
        ns,
        "flux-view",
        {"kind": "User", "name": viewer, "apiGroup": "rbac.authorization.k8s.io"},
    )
    _bind(
        cluster,
        ns,
        "flux-edit",
        {"kind": "User", "name": editor, "apiGroup": "rbac.authorization.k8s.io"},
    )
    with dashboard(
        cluster.kubeconfig, ns, tmp_path / "proxied.log", user_header="X-Forwarded-User"
    ) as server:
        for user, buttons in ((viewer, 0), (editor, 3)):
            context = chromium.new_context(extra_http_headers={"X-Forwarded-User": user})
            page = context.new_page()
            page.goto(server.url + f"/object/Kustomization/{ns}/web")
            expect(page.locator("#who")).to_contain_text(user)
            expect(page.locator("#owned")).to_contain_text(f"Deployment/{ns}/web")
            expect(page.locator("button")).to_have_count(buttons)
            context.close()
        with pytest.raises(urllib.error.HTTPError) as anonymous:
            urllib.request.urlopen(server.url + "/", timeout=10)
        assert anonymous.value.code == 401
