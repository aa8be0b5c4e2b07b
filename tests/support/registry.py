"""A real OCI registry on loopback: Debian's ``docker-registry`` (CNCF distribution).

One registry process per variant per test session, each on a free port with a generated
config (filesystem storage in its own temp dir, deletes enabled):

- ``oci_registry``: plain HTTP, anonymous.
- ``oci_registry_basic``: basic auth against an htpasswd file (bcrypt, as distribution
  requires), user `HTTP_USER` / `HTTP_PASSWORD` (``.basic``).
- ``oci_registry_tls``: HTTPS with a certificate from the session's ``tls_ca``
  (``.ca_pem`` / ``.ca_file`` is the CA to trust).

`OciRegistry` also pushes content the way a registry client does (blob uploads, then the
manifest under each tag), independently of the code under test: `push_artifact` for any
layers and config, `push_flux_artifact` for a directory as ``flux push artifact`` lays it
out, `push_image` for a tiny image manifest (image automation needs only its tags).
`requests()` reads the registry's access log, so a test can tell a manifest check from a
blob download. `stop()` / `start()` take it down and bring it back on the same port with
the same storage ("registry down" tests).
"""

from __future__ import annotations

import base64
import contextlib
import gzip
import hashlib
import io
import json
import os
import re
import secrets
import shutil
import ssl
import subprocess
import tarfile
import tempfile
import time
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
import yaml

from devcluster.cluster import free_port
from tests.support.fixtures import HTTP_PASSWORD, HTTP_USER
from tests.support.gitservers import TestCA
from tests.support.servers import ServerProcess

__all__ = [
    "FLUX_CONFIG_MEDIA_TYPE",
    "FLUX_LAYER_MEDIA_TYPE",
    "OCI_IMAGE_CONFIG_MEDIA_TYPE",
    "OCI_MANIFEST_MEDIA_TYPE",
    "Blob",
    "OciRegistry",
    "RegistryRequest",
    "oci_registry",
    "oci_registry_basic",
    "oci_registry_tls",
]

DOCKER_REGISTRY = shutil.which("docker-registry") or "/usr/bin/docker-registry"
HTPASSWD = shutil.which("htpasswd") or "/usr/bin/htpasswd"
START_TIMEOUT = 30.0
HTTP_TIMEOUT = 30.0

OCI_MANIFEST_MEDIA_TYPE = "application/vnd.oci.image.manifest.v1+json"
OCI_IMAGE_CONFIG_MEDIA_TYPE = "application/vnd.oci.image.config.v1+json"
OCI_LAYER_MEDIA_TYPE = "application/vnd.oci.image.layer.v1.tar+gzip"
# What `flux push artifact` writes (fluxcd/pkg/oci): an empty JSON config of the Flux
# config type, one tar+gzip layer of the Flux content type, and the source/revision
# annotations on the manifest.
FLUX_CONFIG_MEDIA_TYPE = "application/vnd.cncf.flux.config.v1+json"
FLUX_LAYER_MEDIA_TYPE = "application/vnd.cncf.flux.content.v1.tar+gzip"
SOURCE_ANNOTATION = "org.opencontainers.image.source"
REVISION_ANNOTATION = "org.opencontainers.image.revision"
CREATED_ANNOTATION = "org.opencontainers.image.created"

_ACCESS_LINE = re.compile(r'"(?P<method>[A-Z]+) (?P<path>\S+) HTTP/[\d.]+" (?P<status>\d{3})')


@dataclass(frozen=True)
class Blob:
    """Content to push: bytes with their media type (and optional descriptor annotations)."""

    media_type: str
    data: bytes
    annotations: Mapping[str, str] = field(default_factory=dict)

    @property
    def digest(self) -> str:
        return "sha256:" + hashlib.sha256(self.data).hexdigest()

    def descriptor(self) -> dict[str, Any]:
        desc: dict[str, Any] = {
            "mediaType": self.media_type,
            "digest": self.digest,
            "size": len(self.data),
        }
        if self.annotations:
            desc["annotations"] = dict(self.annotations)
        return desc


@dataclass(frozen=True)
class RegistryRequest:
    method: str
    path: str  # without the query string
    status: int


def directory_tarball(directory: Path) -> bytes:
    """A gzip tarball of `directory`'s files (relative paths, sorted, fixed mtimes)."""
    out = io.BytesIO()
    with (
        gzip.GzipFile(fileobj=out, mode="wb", mtime=0) as gz,
        tarfile.open(fileobj=gz, mode="w") as tar,
    ):
        for path in sorted(directory.rglob("*")):
            rel = path.relative_to(directory).as_posix()
            info = tarfile.TarInfo(rel)
            info.mtime = 0
            if path.is_dir():
                info.type = tarfile.DIRTYPE
                info.mode = 0o755
                tar.addfile(info)
            elif path.is_file():
                data = path.read_bytes()
                info.size = len(data)
                info.mode = 0o644
                tar.addfile(info, io.BytesIO(data))
    return out.getvalue()


class OciRegistry:
    """docker-registry on 127.0.0.1:<free port>, optionally with basic auth and/or TLS."""

    def __init__(
        self,
        *,
        basic: tuple[str, str] | None = None,
        tls: TestCA | None = None,
    ) -> None:
        self.basic = basic
        self.dir = Path(tempfile.mkdtemp(prefix="hw-registry-"))
        self.storage = self.dir / "storage"
        self.storage.mkdir()
        self.port = 0
        self.ca_pem = b""
        self._tls = tls
        self._server = ServerProcess("docker-registry", self.dir / "registry.log")
        self._log_offset = 0

    # -- addresses ----------------------------------------------------------------------

    @property
    def host(self) -> str:
        """``127.0.0.1:<port>``: what goes after ``oci://`` and into a docker config."""
        return f"127.0.0.1:{self.port}"

    @property
    def scheme(self) -> str:
        return "https" if self._tls is not None else "http"

    @property
    def ca_file(self) -> Path:
        return self.dir / "ca.crt"

    def url(self, repository: str) -> str:
        """``oci://127.0.0.1:<port>/<repository>``, as an OCIRepository's ``spec.url``."""
        return f"oci://{self.host}/{repository}"

    def dockerconfigjson(self) -> str:
        """The ``.dockerconfigjson`` value of a kubernetes.io/dockerconfigjson Secret."""
        if self.basic is None:
            return json.dumps({"auths": {}})
        user, password = self.basic
        auth = base64.b64encode(f"{user}:{password}".encode()).decode()
        return json.dumps(
            {"auths": {self.host: {"username": user, "password": password, "auth": auth}}}
        )

    # -- lifecycle ----------------------------------------------------------------------

    def _config(self) -> Path:
        http: dict[str, Any] = {
            "addr": self.host,
            "secret": secrets.token_hex(16),
            "headers": {"X-Content-Type-Options": ["nosniff"]},
        }
        if self._tls is not None:
            pair = self._tls.issue("127.0.0.1", server=True)
            (self.dir / "tls.crt").write_bytes(pair.cert_pem)
            key = self.dir / "tls.key"
            key.write_bytes(pair.key_pem)
            key.chmod(0o600)
            self.ca_pem = self._tls.cert_pem
            self.ca_file.write_bytes(self.ca_pem)
            http["tls"] = {"certificate": str(self.dir / "tls.crt"), "key": str(key)}
        config: dict[str, Any] = {
            "version": 0.1,
            "log": {"level": "warn", "accesslog": {"disabled": False}},
            "storage": {
                "filesystem": {"rootdirectory": str(self.storage)},
                "delete": {"enabled": True},
                "maintenance": {"uploadpurging": {"enabled": False}},
            },
            "http": http,
        }
        if self.basic is not None:
            user, password = self.basic
            done = subprocess.run(
                [HTPASSWD, "-Bbn", user, password],
                check=True,
                capture_output=True,
                text=True,
                timeout=30,
            )
            (self.dir / "htpasswd").write_text(done.stdout)
            config["auth"] = {
                "htpasswd": {"realm": "headwater-test", "path": str(self.dir / "htpasswd")}
            }
        path = self.dir / "config.yml"
        path.write_text(yaml.safe_dump(config))
        return path

    def start(self) -> OciRegistry:
        """Start (or restart, on the same port and storage) the registry process."""
        if not os.path.exists(DOCKER_REGISTRY):
            raise RuntimeError(
                f"{DOCKER_REGISTRY} is missing: apt-get install -y docker-registry apache2-utils"
            )
        keep_port = self.port != 0

        def prepare() -> list[str]:
            if not keep_port:
                self.port = free_port()
            return [DOCKER_REGISTRY, "serve", str(self._config())]

        self._server.start(prepare, self._wait_ready, env={"OTEL_TRACES_EXPORTER": "none"})
        return self

    def _wait_ready(self, proc: subprocess.Popen[bytes]) -> None:
        deadline = time.monotonic() + START_TIMEOUT
        while time.monotonic() < deadline:
            if proc.poll() is not None:
                raise RuntimeError(f"docker-registry exited with {proc.returncode}")
            try:
                self._request("GET", "/v2/")
                return
            except urllib.error.HTTPError:
                return  # it answers (401 without credentials is an answer)
            except OSError:
                time.sleep(0.05)
        raise RuntimeError(f"docker-registry not answering on {self.host} after {START_TIMEOUT}s")

    def log(self) -> str:
        return self._server.log()

    def stop(self) -> None:
        """Take the registry down; `start()` brings it back with the same content."""
        self._server.terminate()

    def close(self) -> None:
        self._server.terminate()
        shutil.rmtree(self.dir, ignore_errors=True)

    def __enter__(self) -> OciRegistry:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.close()

    # -- access log ---------------------------------------------------------------------

    def requests(self) -> list[RegistryRequest]:
        """Requests served since the last `clear_requests()`, from the access log."""
        records = []
        for line in self.log()[self._log_offset :].splitlines():
            match = _ACCESS_LINE.search(line)
            if match:
                path = urllib.parse.urlsplit(match["path"]).path
                records.append(RegistryRequest(match["method"], path, int(match["status"])))
        return records

    def clear_requests(self) -> None:
        self._log_offset = len(self.log())

    def blob_downloads(self, repository: str) -> list[RegistryRequest]:
        """GETs of blobs (layers, configs) in `repository` since the last clear."""
        prefix = f"/v2/{repository}/blobs/sha256:"
        return [r for r in self.requests() if r.method == "GET" and r.path.startswith(prefix)]

    # -- HTTP ---------------------------------------------------------------------------

    def _ssl_context(self) -> ssl.SSLContext | None:
        if self._tls is None:
            return None
        return ssl.create_default_context(cadata=self._tls.cert_pem.decode())

    def _request(
        self,
        method: str,
        path_or_url: str,
        *,
        body: bytes | None = None,
        headers: Mapping[str, str] | None = None,
    ) -> tuple[int, dict[str, str], bytes]:
        url = path_or_url
        if not url.startswith(("http://", "https://")):
            url = f"{self.scheme}://{self.host}{path_or_url}"
        req = urllib.request.Request(url, data=body, method=method, headers=dict(headers or {}))
        if self.basic is not None:
            token = base64.b64encode(f"{self.basic[0]}:{self.basic[1]}".encode()).decode()
            req.add_header("Authorization", f"Basic {token}")
        with urllib.request.urlopen(req, timeout=HTTP_TIMEOUT, context=self._ssl_context()) as r:
            return r.status, {k.lower(): v for k, v in r.headers.items()}, r.read()

    def _upload_blob(self, repository: str, data: bytes) -> str:
        digest = "sha256:" + hashlib.sha256(data).hexdigest()
        with contextlib.suppress(urllib.error.HTTPError):
            self._request("HEAD", f"/v2/{repository}/blobs/{digest}")
            return digest  # already there
        _, headers, _ = self._request("POST", f"/v2/{repository}/blobs/uploads/", body=b"")
        location = urllib.parse.urljoin(f"{self.scheme}://{self.host}/", headers["location"])
        sep = "&" if "?" in location else "?"
        self._request(
            "PUT",
            f"{location}{sep}digest={urllib.parse.quote(digest)}",
            body=data,
            headers={"Content-Type": "application/octet-stream"},
        )
        return digest

    # -- pushing ------------------------------------------------------------------------

    def push_artifact(
        self,
        repository: str,
        tags: Sequence[str],
        *,
        layers: Sequence[Blob],
        config: Blob | None = None,
        annotations: Mapping[str, str] | None = None,
        artifact_type: str | None = None,
    ) -> str:
        """Push `layers` + `config` (default: ``{}`` of the OCI empty type) under each tag.

        Returns the manifest digest (``sha256:<hex>``).
        """
        config = config or Blob("application/vnd.oci.empty.v1+json", b"{}")
        for blob in (config, *layers):
            self._upload_blob(repository, blob.data)
        manifest: dict[str, Any] = {
            "schemaVersion": 2,
            "mediaType": OCI_MANIFEST_MEDIA_TYPE,
            "config": config.descriptor(),
            "layers": [layer.descriptor() for layer in layers],
        }
        if artifact_type:
            manifest["artifactType"] = artifact_type
        if annotations:
            manifest["annotations"] = dict(annotations)
        raw = json.dumps(manifest, separators=(",", ":")).encode()
        for tag in tags:
            self._request(
                "PUT",
                f"/v2/{repository}/manifests/{tag}",
                body=raw,
                headers={"Content-Type": OCI_MANIFEST_MEDIA_TYPE},
            )
        return "sha256:" + hashlib.sha256(raw).hexdigest()

    def push_flux_artifact(
        self,
        repository: str,
        directory: Path,
        tags: Sequence[str],
        *,
        source: str = "https://git.example/headwater.git",
        revision: str = "main@sha1:0000000000000000000000000000000000000000",
    ) -> str:
        """Push `directory` as ``flux push artifact`` lays it out; returns the digest."""
        annotations = {
            SOURCE_ANNOTATION: source,
            REVISION_ANNOTATION: revision,
            CREATED_ANNOTATION: "2026-01-01T00:00:00Z",
        }
        return self.push_artifact(
            repository,
            tags,
            layers=[Blob(FLUX_LAYER_MEDIA_TYPE, directory_tarball(directory))],
            config=Blob(FLUX_CONFIG_MEDIA_TYPE, b"{}"),
            annotations=annotations,
        )

    def push_image(self, repository: str, tags: Sequence[str], *, content: str = "") -> str:
        """A tiny single-layer image (OCI manifest); `content` varies its digest."""
        layer_dir = Path(tempfile.mkdtemp(prefix="hw-image-"))
        try:
            (layer_dir / "content.txt").write_text(content or repository)
            layer = Blob(OCI_LAYER_MEDIA_TYPE, directory_tarball(layer_dir))
        finally:
            shutil.rmtree(layer_dir, ignore_errors=True)
        diff_id = "sha256:" + hashlib.sha256(gzip.decompress(layer.data)).hexdigest()
        config = {
            "architecture": "amd64",
            "os": "linux",
            "config": {},
            "rootfs": {"type": "layers", "diff_ids": [diff_id]},
        }
        return self.push_artifact(
            repository,
            tags,
            layers=[layer],
            config=Blob(OCI_IMAGE_CONFIG_MEDIA_TYPE, json.dumps(config, sort_keys=True).encode()),
        )

    # -- reading ------------------------------------------------------------------------

    def tags(self, repository: str) -> list[str]:
        try:
            _, _, body = self._request("GET", f"/v2/{repository}/tags/list?n=10000")
        except urllib.error.HTTPError as exc:
            if exc.code == 404:
                return []
            raise
        return sorted(json.loads(body).get("tags") or [])

    def manifest_digest(self, repository: str, reference: str) -> str:
        _, headers, _ = self._request(
            "HEAD",
            f"/v2/{repository}/manifests/{reference}",
            headers={"Accept": OCI_MANIFEST_MEDIA_TYPE},
        )
        return headers["docker-content-digest"]

    def manifest(self, repository: str, reference: str) -> dict[str, Any]:
        _, _, body = self._request(
            "GET",
            f"/v2/{repository}/manifests/{reference}",
            headers={"Accept": OCI_MANIFEST_MEDIA_TYPE},
        )
        manifest: dict[str, Any] = json.loads(body)
        return manifest

    def blob(self, repository: str, digest: str) -> bytes:
        return self._request("GET", f"/v2/{repository}/blobs/{digest}")[2]

    def delete(self, repository: str, reference: str) -> None:
        """Delete a manifest (by tag: the digest it points at, which removes all its tags)."""
        digest = (
            reference
            if reference.startswith("sha256:")
            else self.manifest_digest(repository, reference)
        )
        self._request("DELETE", f"/v2/{repository}/manifests/{digest}")


# -- fixtures ------------------------------------------------------------------------------


@pytest.fixture(scope="session")
def oci_registry() -> Iterator[OciRegistry]:
    with OciRegistry() as registry:
        yield registry


@pytest.fixture(scope="session")
def oci_registry_basic() -> Iterator[OciRegistry]:
    with OciRegistry(basic=(HTTP_USER, HTTP_PASSWORD)) as registry:
        yield registry


@pytest.fixture(scope="session")
def oci_registry_tls(tls_ca: TestCA) -> Iterator[OciRegistry]:
    with OciRegistry(tls=tls_ca) as registry:
        yield registry
