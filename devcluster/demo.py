"""`headwater demo`: git → cluster on one machine, with real parts end to end.

It brings up the local control plane (or reuses the running one), installs
the CRDs, serves the example application from a real git server, runs every
headwater controller, and declares the GitOps objects a platform team would:
a GitRepository for the app's repository and a Kustomization syncing its
`deploy/` directory; and, from a local chart repository (`examples/charts`,
packaged and indexed by helm), a HelmRepository and a HelmRelease installing the
`hello` chart. Then it waits for each to be Ready, prints what
happened, and keeps running until interrupted (or stops at once with --once).
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Callable
from contextlib import ExitStack
from pathlib import Path
from typing import Any

import yaml

from devcluster import build
from devcluster.chartrepo import ChartRepoServer, package_charts
from devcluster.cluster import ClusterError, run_kubectl
from devcluster.controllers import run_controllers
from devcluster.gitserver import GitHttpServer

REPO_ROOT = Path(__file__).resolve().parent.parent
EXAMPLE_APP = REPO_ROOT / "examples" / "webapp"
EXAMPLE_CHARTS = REPO_ROOT / "examples" / "charts"
CRDS_DIR = REPO_ROOT / "crds"
FLUX_NAMESPACE = "headwater-system"
APP_NAMESPACE = "webapp"
READY_TIMEOUT = 180.0


class DemoError(RuntimeError):
    pass


class Demo:
    def __init__(self, kubeconfig: Path, workdir: Path, say: Callable[[str], None] = print) -> None:
        self.kubeconfig = kubeconfig
        self.workdir = workdir
        self.say = say
        self.kubectl_bin = build.control_plane_dir() / "kubectl"

    def kubectl(self, *args: str, input: str | None = None) -> str:
        return run_kubectl(self.kubectl_bin, self.kubeconfig, args, input=input).stdout

    # -- steps ---------------------------------------------------------------------------

    def install_crds(self) -> None:
        self.kubectl("apply", "--server-side", "--force-conflicts", "-f", str(CRDS_DIR))
        self.kubectl("wait", "--for=condition=Established", "--timeout=60s", "crd", "--all")
        count = len(list(CRDS_DIR.glob("*.yaml")))
        self.say(f"==> installed {count} CRDs (Flux's APIs: GitRepository, Kustomization, ...)")

    def publish_example(self, project_root: Path) -> str:
        """Commit examples/webapp into a bare repository the git server serves."""
        work = self.workdir / "webapp-work"
        shutil.rmtree(work, ignore_errors=True)
        shutil.copytree(EXAMPLE_APP, work)
        env = {
            **os.environ,
            "GIT_AUTHOR_NAME": "headwater demo",
            "GIT_AUTHOR_EMAIL": "demo@headwater.invalid",
            "GIT_COMMITTER_NAME": "headwater demo",
            "GIT_COMMITTER_EMAIL": "demo@headwater.invalid",
            "GIT_CONFIG_GLOBAL": os.devnull,
            "GIT_CONFIG_SYSTEM": os.devnull,
        }
        bare = project_root / "webapp.git"
        shutil.rmtree(bare, ignore_errors=True)
        for args in (
            ["init", "-q", "--bare", "-b", "main", str(bare)],
            ["-C", str(work), "init", "-q", "-b", "main"],
            ["-C", str(work), "add", "-A"],
            ["-C", str(work), "commit", "-q", "-m", "webapp: first version"],
            ["-C", str(work), "push", "-q", str(bare), "main"],
        ):
            subprocess.run(["git", *args], env=env, check=True, capture_output=True, timeout=60)
        return subprocess.run(
            ["git", "-C", str(work), "rev-parse", "HEAD"],
            env=env,
            check=True,
            capture_output=True,
            text=True,
            timeout=30,
        ).stdout.strip()

    def declare(self, repo_url: str, charts_url: str) -> None:
        documents: list[dict[str, Any]] = [
            {"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": FLUX_NAMESPACE}},
            {
                "apiVersion": "source.toolkit.fluxcd.io/v1",
                "kind": "GitRepository",
                "metadata": {"name": "webapp", "namespace": FLUX_NAMESPACE},
                "spec": {"interval": "1m", "url": repo_url, "ref": {"branch": "main"}},
            },
            {
                "apiVersion": "kustomize.toolkit.fluxcd.io/v1",
                "kind": "Kustomization",
                "metadata": {"name": "webapp", "namespace": FLUX_NAMESPACE},
                "spec": {
                    "interval": "5m",
                    "sourceRef": {"kind": "GitRepository", "name": "webapp"},
                    "path": "./deploy",
                    "prune": True,
                    "wait": True,
                    "targetNamespace": APP_NAMESPACE,
                    "timeout": "2m",
                    "postBuild": {"substitute": {"greeting": "hello from headwater"}},
                },
            },
            {"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": APP_NAMESPACE}},
            {
                "apiVersion": "source.toolkit.fluxcd.io/v1",
                "kind": "HelmRepository",
                "metadata": {"name": "charts", "namespace": FLUX_NAMESPACE},
                "spec": {"interval": "10m", "url": charts_url},
            },
            {
                "apiVersion": "helm.toolkit.fluxcd.io/v2",
                "kind": "HelmRelease",
                "metadata": {"name": "hello", "namespace": FLUX_NAMESPACE},
                "spec": {
                    "interval": "10m",
                    "timeout": "2m",
                    "targetNamespace": APP_NAMESPACE,
                    "releaseName": "hello",
                    "chart": {
                        "spec": {
                            "chart": "hello",
                            "version": "0.1.x",
                            "sourceRef": {"kind": "HelmRepository", "name": "charts"},
                        }
                    },
                    "values": {"message": "hello from headwater's helm controller"},
                },
            },
        ]
        self.kubectl("apply", "-f", "-", input=yaml.safe_dump_all(documents))
        self.say(f"==> declared GitRepository and Kustomization '{FLUX_NAMESPACE}/webapp'")
        self.say(f"==> declared HelmRepository '{FLUX_NAMESPACE}/charts' and HelmRelease 'hello'")

    def wait_ready(self, kind: str, name: str) -> dict[str, Any]:
        deadline = time.monotonic() + READY_TIMEOUT
        last = ""
        while time.monotonic() < deadline:
            obj = json.loads(self.kubectl("get", kind, name, "-n", FLUX_NAMESPACE, "-o", "json"))
            for condition in (obj.get("status") or {}).get("conditions") or []:
                if condition["type"] == "Ready":
                    last = f"{condition['reason']}: {condition['message']}"
                    if condition["status"] == "True":
                        return dict(obj)
            time.sleep(1)
        raise DemoError(
            f"{kind} {FLUX_NAMESPACE}/{name} did not become Ready: {last or 'no status'}"
        )

    def report(self, commit: str) -> None:
        repo = self.wait_ready("gitrepository", "webapp")
        artifact = repo["status"]["artifact"]
        self.say(f"==> GitRepository Ready: artifact {artifact['revision']}")
        self.say(
            f"    served at {artifact['url']} ({artifact['size']} bytes, {artifact['digest']})"
        )
        ks = self.wait_ready("kustomization", "webapp")
        status = ks["status"]
        self.say(f"==> Kustomization Ready: applied {status.get('lastAppliedRevision')}")
        for entry in (status.get("inventory") or {}).get("entries") or []:
            self.say(f"    {entry['id']}")
        deployment = json.loads(
            self.kubectl("get", "deployment", "webapp", "-n", APP_NAMESPACE, "-o", "json")
        )
        available = deployment.get("status", {}).get("availableReplicas", 0)
        self.say(f"==> Deployment {APP_NAMESPACE}/webapp: {available}/3 replicas available")
        env = deployment["spec"]["template"]["spec"]["containers"][0].get("env") or []
        for var in env:
            self.say(f"    {var['name']}={var.get('value')!r} (postBuild substitution)")
        self.say(f"    (git commit {commit[:12]} → cluster)")
        release = self.wait_ready("helmrelease", "hello")
        snapshot = (release["status"].get("history") or [{}])[0]
        self.say(
            f"==> HelmRelease Ready: {snapshot.get('chartName')} {snapshot.get('chartVersion')} "
            f"{snapshot.get('status')} (helm revision {snapshot.get('version')})"
        )
        hello = json.loads(
            self.kubectl("get", "deployment", "hello", "-n", APP_NAMESPACE, "-o", "json")
        )
        ready = hello.get("status", {}).get("availableReplicas", 0)
        wanted = hello["spec"]["replicas"]
        self.say(f"==> Deployment {APP_NAMESPACE}/hello: {ready}/{wanted} replicas available")


def run(kubeconfig: Path, workdir: Path, *, once: bool) -> int:
    demo = Demo(kubeconfig, workdir)
    stop = threading.Event()
    for sig in (signal.SIGINT, signal.SIGTERM):
        signal.signal(sig, lambda *_: stop.set())
    try:
        with ExitStack() as stack:
            demo.install_crds()
            project_root = workdir / "git"
            project_root.mkdir(parents=True, exist_ok=True)
            server = stack.enter_context(GitHttpServer(project_root))
            commit = demo.publish_example(project_root)
            url = server.url("webapp")
            demo.say(f"==> serving the example app at {url} (commit {commit[:12]})")
            charts_dir = workdir / "charts"
            shutil.rmtree(charts_dir, ignore_errors=True)
            archives = package_charts(EXAMPLE_CHARTS, charts_dir)
            charts = stack.enter_context(ChartRepoServer(charts_dir))
            demo.say(f"==> serving a chart repository at {charts.url} ({', '.join(archives)})")
            running = stack.enter_context(
                run_controllers(
                    kubeconfig, workdir / "controllers", extra_env={"HEADWATER_LOG_LEVEL": "info"}
                )
            )
            demo.say(f"==> controllers running (log: {running.log_path})")
            demo.declare(url, charts.url)
            demo.report(commit)
            if once:
                return 0
            demo.say(
                f"==> running; try: kubectl --kubeconfig {kubeconfig} -n {APP_NAMESPACE} get all"
            )
            demo.say("    Ctrl-C stops the controllers and the git server (the cluster stays up)")
            stop.wait()
            return 0
    except (DemoError, ClusterError, subprocess.CalledProcessError, RuntimeError, OSError) as exc:
        print(f"headwater demo: {exc}", file=sys.stderr)
        return 1
