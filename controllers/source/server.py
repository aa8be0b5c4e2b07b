"""The artifact HTTP server: the storage root, read-only, at ``/<path>`` (GET and HEAD).

Refuses anything that could leave the root or reach internal files: ``..`` or ``.``
segments, hidden segments (temporary files, ``.locks``), backslashes, NUL bytes, and
symlinks. Only regular files are served, with their exact Content-Length; ``.tar.gz``
goes out as ``application/gzip`` without a Content-Encoding, so clients do not unpack it
before checking the digest.
"""

from __future__ import annotations

import stat
from pathlib import Path

from aiohttp import web

from controllers.toolkit.runtime.http import HttpServer

ROOT_KEY = web.AppKey("storage_root", Path)
_TYPES = {".gz": "application/gzip", ".tgz": "application/gzip", ".yaml": "text/yaml"}


def _forbidden(path: str) -> bool:
    parts = path.split("/")
    return any(p in ("", ".", "..") or p.startswith(".") or "\\" in p or "\x00" in p for p in parts)


def _regular_file_inside(root: Path, rel: str) -> Path | None:
    """The file for `rel` if it is a regular file reached without any symlink."""
    current = root
    for part in rel.split("/"):
        current = current / part
        try:
            st = current.lstat()
        except OSError:
            return None
        if stat.S_ISLNK(st.st_mode):
            return None
    return current if stat.S_ISREG(st.st_mode) else None


async def _serve(request: web.Request) -> web.StreamResponse:
    rel = request.match_info["path"]
    if _forbidden(rel):
        raise web.HTTPForbidden(text="forbidden path\n")
    root = request.app[ROOT_KEY]
    path = _regular_file_inside(root, rel)
    if path is None:
        raise web.HTTPNotFound(text="not found\n")
    content_type = _TYPES.get(path.suffix, "application/octet-stream")
    # FileResponse streams with sendfile, sets Content-Length and answers HEAD without a body.
    return web.FileResponse(path, headers={"Content-Type": content_type})


def make_app(root: Path) -> web.Application:
    app = web.Application()
    app[ROOT_KEY] = Path(root).resolve()
    app.router.add_get("/{path:.+}", _serve, allow_head=True)
    return app


class ArtifactServer(HttpServer):
    """Serves `make_app(root)` on host:port (port 0 picks a free one) until `stop`."""

    def __init__(self, root: Path, host: str = "0.0.0.0", port: int = 9090) -> None:
        super().__init__(make_app(root), host, port)
        self.root = root
