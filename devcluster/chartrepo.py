"""A local Helm chart repository for the demo: charts packaged and indexed by helm, served.

Each chart directory under `examples/charts` is packaged with the pinned helm
(`helm package`), the directory indexed with `helm repo index`, and served read-only
over HTTP on loopback, as any chart repository is (GET of `index.yaml` and the
`.tgz` archives, nothing else).
"""

from __future__ import annotations

import functools
import os
import shutil
import subprocess
import tempfile
import threading
from http.server import SimpleHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

REPO_ROOT = Path(__file__).resolve().parent.parent
HELM_TIMEOUT = 120


def helm_binary() -> str:
    """The pinned helm in .tools/bin, else the one on PATH."""
    pinned = REPO_ROOT / ".tools" / "bin" / "helm"
    return str(pinned) if pinned.exists() else shutil.which("helm") or "helm"


def _helm(*args: str) -> None:
    home = tempfile.mkdtemp(prefix="headwater-demo-helm-")
    env = {
        **os.environ,
        "HELM_CONFIG_HOME": f"{home}/config",
        "HELM_CACHE_HOME": f"{home}/cache",
        "HELM_DATA_HOME": f"{home}/data",
    }
    try:
        subprocess.run(
            [helm_binary(), *args], env=env, check=True, capture_output=True, timeout=HELM_TIMEOUT
        )
    finally:
        shutil.rmtree(home, ignore_errors=True)


def package_charts(sources: Path, repository: Path) -> list[str]:
    """Package every chart under `sources` into `repository` and index it; the archives."""
    repository.mkdir(parents=True, exist_ok=True)
    for chart in sorted(p.parent for p in sources.glob("*/Chart.yaml")):
        _helm("package", str(chart), "--destination", str(repository))
    _helm("repo", "index", str(repository))
    return sorted(p.name for p in repository.glob("*.tgz"))


class _Handler(SimpleHTTPRequestHandler):
    def log_message(self, *args: Any) -> None:
        pass

    def list_directory(self, path: Any) -> None:
        self.send_error(404)


class ChartRepoServer:
    """Serves a chart repository directory over HTTP on 127.0.0.1 (a free port)."""

    def __init__(self, directory: Path) -> None:
        handler = functools.partial(_Handler, directory=str(directory))
        self._httpd = ThreadingHTTPServer(("127.0.0.1", 0), handler)
        self._httpd.daemon_threads = True
        self._thread = threading.Thread(target=self._httpd.serve_forever, daemon=True)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self._httpd.server_address[1]}"

    def __enter__(self) -> ChartRepoServer:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._httpd.shutdown()
        self._httpd.server_close()
