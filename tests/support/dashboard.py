"""The web dashboard as a user meets it: `headwater dashboard` in its own process, and a
real browser (Debian's chromium, driven by Playwright; never a downloaded browser).

`DashboardServer` starts the dashboard on a free loopback port with a kubeconfig (the
admin's, or a ServiceAccount's token) and, optionally, `--user-header` (the in-cluster
impersonation mode); `browser` yields a Playwright Browser on /usr/bin/chromium.
"""

from __future__ import annotations

import contextlib
import os
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from pathlib import Path

from playwright.sync_api import Browser, sync_playwright

from devcluster.cluster import free_port
from tests.support.cli import REPO_ROOT

CHROMIUM = "/usr/bin/chromium"
CHROMIUM_ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
]
START_TIMEOUT = 60.0


class DashboardServer:
    def __init__(
        self,
        kubeconfig: Path,
        namespace: str | None,
        log_path: Path,
        *,
        user_header: str | None = None,
    ) -> None:
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        args = [sys.executable, "-m", "controllers.cli", "dashboard", "--port", str(self.port)]
        args += ["--kubeconfig", str(kubeconfig)]
        if namespace:
            args += ["-n", namespace]
        if user_header:
            args += ["--user-header", user_header]
        self._log = log_path.open("wb")
        self.log_path = log_path
        self.process = subprocess.Popen(
            args, cwd=REPO_ROOT, stdout=self._log, stderr=subprocess.STDOUT, env=dict(os.environ)
        )
        self._wait_healthy()

    def _wait_healthy(self) -> None:
        deadline = time.monotonic() + START_TIMEOUT
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise AssertionError(f"the dashboard exited: {self.log_path.read_text()[-3000:]}")
            try:
                with urllib.request.urlopen(self.url + "/healthz", timeout=2) as response:
                    if response.status == 200:
                        return
            except (urllib.error.URLError, OSError):
                pass
            time.sleep(0.2)
        self.stop()
        raise AssertionError(f"the dashboard did not start: {self.log_path.read_text()[-3000:]}")

    def stop(self) -> None:
        if self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(10)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait(10)
        self._log.close()

    def __enter__(self) -> DashboardServer:
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()


@contextlib.contextmanager
def dashboard(
    kubeconfig: Path, namespace: str | None, log_path: Path, *, user_header: str | None = None
) -> Iterator[DashboardServer]:
    server = DashboardServer(kubeconfig, namespace, log_path, user_header=user_header)
    try:
        yield server
    finally:
        server.stop()


@contextlib.contextmanager
def browser() -> Iterator[Browser]:
    """A headless chromium, driven by Playwright's sync API."""
    with sync_playwright() as playwright:
        launched = playwright.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        try:
            yield launched
        finally:
            launched.close()
