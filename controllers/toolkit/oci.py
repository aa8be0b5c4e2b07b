"""OCI registries: resolve a reference, list tags, read manifests and blobs, push artifacts.

The registry protocol calls (URL layout, blob upload sessions, tag-list pagination) are
oras-py's (`oras.provider.Registry`). Around it, what a controller needs and oras-py does
not give (measured on oras 0.2.43; see docs/architecture.md):

- every request is bounded in time (oras-py sets no timeout) and tried once: oras-py's
  own retry sleeps up to ~2 minutes on a refused connection, and the reconcile queue
  already retries with backoff;
- credentials come only from what the caller passes (a dockerconfigjson Secret): never
  ~/.docker/config.json, credential helpers, ORAS_* variables, netrc or proxy variables;
- both challenge kinds are answered: ``Basic`` (distribution with htpasswd) and
  ``Bearer`` token services (oras-py's token backend asks a Basic realm for a token);
- blobs and manifests are bounded in size and checked against their digest while read.

Used by the source controller (OCIRepository) and `headwater push artifact`; the Flux
media types live here so both agree with Flux's `flux push artifact`.
"""

from __future__ import annotations

import base64
import binascii
import contextlib
import hashlib
import json
import os
import re
import shutil
import tempfile
import urllib.parse
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, BinaryIO

import oras.auth.base
import oras.auth.utils
import oras.container
import oras.provider
import requests

from controllers.toolkit.git.redact import scrub_text

__all__ = [
    "CREATED_ANNOTATION",
    "DEFAULT_TIMEOUT",
    "FLUX_CONFIG_MEDIA_TYPE",
    "FLUX_LAYER_MEDIA_TYPE",
    "HELM_CHART_LAYER_MEDIA_TYPE",
    "MANIFEST_MEDIA_TYPES",
    "OCIURL",
    "OCI_MANIFEST_MEDIA_TYPE",
    "REVISION_ANNOTATION",
    "SOURCE_ANNOTATION",
    "Credentials",
    "Descriptor",
    "Manifest",
    "OCIAuthError",
    "OCIError",
    "OCINotFoundError",
    "OCIURLError",
    "RegistryClient",
    "TLSMaterial",
    "check_digest",
    "check_tag",
    "credentials_from_dockerconfig",
]

DEFAULT_TIMEOUT = 60.0
MAX_MANIFEST_SIZE = 4 << 20  # distribution's own limit for a manifest
MAX_TAGS = 10_000  # a tag list longer than this is refused, not paged forever
_TAG_PAGE = 1000
_CHUNK = 1 << 16

OCI_MANIFEST_MEDIA_TYPE = "application/vnd.oci.image.manifest.v1+json"
DOCKER_MANIFEST_MEDIA_TYPE = "application/vnd.docker.distribution.manifest.v2+json"
OCI_INDEX_MEDIA_TYPE = "application/vnd.oci.image.index.v1+json"
DOCKER_LIST_MEDIA_TYPE = "application/vnd.docker.distribution.manifest.list.v2+json"
MANIFEST_MEDIA_TYPES = (
    OCI_MANIFEST_MEDIA_TYPE,
    DOCKER_MANIFEST_MEDIA_TYPE,
    OCI_INDEX_MEDIA_TYPE,
    DOCKER_LIST_MEDIA_TYPE,
)
INDEX_MEDIA_TYPES = (OCI_INDEX_MEDIA_TYPE, DOCKER_LIST_MEDIA_TYPE)
# What `flux push artifact` writes (Flux RFC-0003): an empty JSON config of the Flux
# config type and one tar+gzip layer of the Flux content type.
FLUX_CONFIG_MEDIA_TYPE = "application/vnd.cncf.flux.config.v1+json"
FLUX_LAYER_MEDIA_TYPE = "application/vnd.cncf.flux.content.v1.tar+gzip"
HELM_CHART_LAYER_MEDIA_TYPE = "application/vnd.cncf.helm.chart.content.v1.tar+gzip"
# OpenContainers annotations Flux puts on the manifest and copies to artifact metadata.
SOURCE_ANNOTATION = "org.opencontainers.image.source"
REVISION_ANNOTATION = "org.opencontainers.image.revision"
CREATED_ANNOTATION = "org.opencontainers.image.created"

_HOST = re.compile(r"^[A-Za-z0-9]([A-Za-z0-9.-]*[A-Za-z0-9])?(:[0-9]{1,5})?$")
_REPO_PART = re.compile(r"^[a-z0-9]+(?:(?:[._]|__|-+)[a-z0-9]+)*$")
_TAG = re.compile(r"^[A-Za-z0-9_][A-Za-z0-9_.-]{0,127}$")
_DIGEST = re.compile(r"^sha256:[a-f0-9]{64}$")


class OCIError(Exception):
    """A registry operation failed; the message names what and where, never a secret."""


class OCIAuthError(OCIError):
    """The registry refused the credentials (or wanted some)."""


class OCINotFoundError(OCIError):
    """The repository, tag, manifest or blob does not exist."""


class OCIURLError(OCIError):
    """The oci:// URL or a reference cannot be used as written."""


@dataclass(frozen=True)
class OCIURL:
    """``oci://<host>[:port]/<repository>``, with no tag or digest (as Flux requires)."""

    host: str
    repository: str

    @classmethod
    def parse(cls, url: str) -> OCIURL:
        if not url.startswith("oci://"):
            raise OCIURLError(f"URL must be in format 'oci://<domain>/<org>/<repo>': '{url}'")
        rest = url.removeprefix("oci://").rstrip("/")
        host, _, repository = rest.partition("/")
        if "@" in host or not _HOST.match(host) or not repository:
            raise OCIURLError(f"URL must be in format 'oci://<domain>/<org>/<repo>': '{url}'")
        parts = repository.split("/")
        last = parts[-1]
        if "@" in last or ":" in last:
            raise OCIURLError(f"URL must not contain a tag or digest: '{url}'")
        if not all(_REPO_PART.match(p) for p in parts):
            raise OCIURLError(f"invalid repository name '{repository}' in '{url}'")
        return cls(host, repository)

    def __str__(self) -> str:
        return f"oci://{self.host}/{self.repository}"


def check_tag(tag: str) -> str:
    if not _TAG.match(tag):
        raise OCIURLError(f"invalid tag '{tag}'")
    return tag


def check_digest(digest: str) -> str:
    if not _DIGEST.match(digest):
        raise OCIURLError(f"invalid digest '{digest}': want sha256:<64 hex>")
    return digest


@dataclass(frozen=True)
class Credentials:
    username: str
    password: str = field(repr=False)


def credentials_from_dockerconfig(data: bytes, host: str, where: str) -> Credentials | None:
    """The entry for `host` in a ``.dockerconfigjson``, or None when it has none.

    Entries may be keyed ``host``, ``https://host``, ``http://host`` (with or without a
    path), and hold ``auth`` (base64 ``user:password``) or ``username``/``password``.
    """
    try:
        config = json.loads(data)
    except (ValueError, UnicodeDecodeError):
        raise OCIAuthError(f"{where}: .dockerconfigjson is not valid JSON") from None
    auths = config.get("auths") if isinstance(config, Mapping) else None
    if not isinstance(auths, Mapping):
        return None
    for key, entry in auths.items():
        name = re.sub(r"^https?://", "", str(key)).split("/", 1)[0]
        if name != host or not isinstance(entry, Mapping):
            continue
        if entry.get("auth"):
            try:
                user, sep, password = base64.b64decode(str(entry["auth"])).decode().partition(":")
            except (binascii.Error, UnicodeDecodeError):
                raise OCIAuthError(f"{where}: the 'auth' of '{key}' is not base64") from None
            if not sep:
                raise OCIAuthError(f"{where}: the 'auth' of '{key}' is not 'user:password'")
            return Credentials(user, password)
        if entry.get("username") is not None:
            return Credentials(str(entry["username"]), str(entry.get("password") or ""))
    return None


@dataclass(frozen=True)
class TLSMaterial:
    """PEM bytes from a certSecretRef: the CA to trust and/or a client pair."""

    ca_pem: bytes | None = None
    cert_pem: bytes | None = None
    key_pem: bytes | None = field(default=None, repr=False)


@dataclass(frozen=True)
class Descriptor:
    media_type: str
    digest: str
    size: int
    annotations: Mapping[str, str] = field(default_factory=dict)

    @classmethod
    def of(cls, raw: Mapping[str, Any]) -> Descriptor:
        try:
            digest = check_digest(str(raw["digest"]))
            size = int(raw["size"])
        except (KeyError, TypeError, ValueError, OCIURLError) as exc:
            raise OCIError(f"invalid descriptor in manifest: {exc}") from None
        annotations = raw.get("annotations") or {}
        return cls(
            media_type=str(raw.get("mediaType") or ""),
            digest=digest,
            size=size,
            annotations={str(k): str(v) for k, v in annotations.items()},
        )

    def to_json(self) -> dict[str, Any]:
        out: dict[str, Any] = {
            "mediaType": self.media_type,
            "digest": self.digest,
            "size": self.size,
        }
        if self.annotations:
            out["annotations"] = dict(self.annotations)
        return out


@dataclass(frozen=True)
class Manifest:
    digest: str
    media_type: str
    config: Descriptor | None
    layers: tuple[Descriptor, ...]
    annotations: Mapping[str, str]

    @classmethod
    def parse(cls, raw: bytes, digest: str, content_type: str) -> Manifest:
        try:
            data = json.loads(raw)
        except (ValueError, UnicodeDecodeError):
            raise OCIError(f"manifest {digest} is not valid JSON") from None
        if not isinstance(data, Mapping):
            raise OCIError(f"manifest {digest} is not a JSON object")
        media_type = str(data.get("mediaType") or content_type.split(";")[0].strip())
        if media_type in INDEX_MEDIA_TYPES or "manifests" in data:
            raise OCIError(
                f"{digest} is an image index (multi-platform image), not an artifact manifest"
            )
        layers = tuple(Descriptor.of(layer) for layer in data.get("layers") or [])
        config = Descriptor.of(data["config"]) if data.get("config") else None
        annotations = data.get("annotations") or {}
        return cls(
            digest=digest,
            media_type=media_type,
            config=config,
            layers=layers,
            annotations={str(k): str(v) for k, v in annotations.items()},
        )


# -- the oras-py adapter -----------------------------------------------------------------


class _Session(requests.Session):
    """Every request bounded in time; nothing from the environment (proxies, netrc)."""

    def __init__(self, timeout: float) -> None:
        super().__init__()
        self.trust_env = False
        self._timeout = timeout

    def request(self, method: Any, url: Any, *args: Any, **kwargs: Any) -> Any:
        kwargs.setdefault("timeout", self._timeout)
        return super().request(method, url, *args, **kwargs)


class _Auth(oras.auth.base.AuthBackend):  # type: ignore[misc]
    """Answers a Basic or Bearer challenge with the given credentials only."""

    def __init__(
        self, session: requests.Session, credentials: Credentials | None, verify: bool | str
    ) -> None:
        super().__init__()
        self.session = session
        self._tls_verify = verify
        self._credentials = credentials
        self._auth_config: dict[str, Any] = {"auths": {}}  # never load ~/.docker/config.json
        self._header: dict[str, str] = {}

    def load_configs(self, container: Any, configs: Any = None) -> None:
        return None

    def get_auth_header(self) -> dict[str, str]:
        return dict(self._header)

    def _basic(self) -> str:
        assert self._credentials is not None
        pair = f"{self._credentials.username}:{self._credentials.password}"
        return "Basic " + base64.b64encode(pair.encode()).decode()

    def authenticate_request(
        self, original: requests.Response, headers: dict[str, str], refresh: bool = False
    ) -> tuple[dict[str, str], bool]:
        challenge = original.headers.get("Www-Authenticate", "")
        scheme = challenge.split(" ", 1)[0].lower()
        headers = dict(headers or {})
        if scheme == "basic":
            if self._credentials is None or "Authorization" in self._header:
                return headers, False
            self._header = {"Authorization": self._basic()}
        elif scheme == "bearer":
            token = self._token(oras.auth.utils.parse_auth_header(challenge))
            if token is None:
                return headers, False
            self._header = {"Authorization": f"Bearer {token}"}
        else:
            return headers, False
        headers.update(self._header)
        return headers, True

    def _token(self, challenge: Any) -> str | None:
        realm = str(challenge.realm or "")
        if not realm.startswith(("http://", "https://")):
            return None
        params = {
            k: v for k, v in (("service", challenge.service), ("scope", challenge.scope)) if v
        }
        headers = {"Accept": "application/json"}
        if self._credentials is not None:
            headers["Authorization"] = self._basic()
        response = self.session.get(realm, params=params, headers=headers, verify=self._tls_verify)
        with contextlib.closing(response):
            if response.status_code != 200:
                return None
            try:
                data = response.json()
            except ValueError:
                return None
        token = data.get("token") or data.get("access_token")
        return str(token) if token else None


class _Registry(oras.provider.Registry):  # type: ignore[misc]
    def __init__(
        self,
        host: str,
        *,
        insecure: bool,
        verify: bool | str,
        session: _Session,
        credentials: Credentials | None,
    ) -> None:
        super().__init__(hostname=host, insecure=insecure, tls_verify=verify, auth_backend="token")
        self.session.close()
        self.session: _Session = session
        self.auth = _Auth(session, credentials, verify)

    def do_request(
        self,
        url: str,
        method: str = "GET",
        data: Any = None,
        headers: dict[str, str] | None = None,
        json: Any = None,
        stream: bool = False,
    ) -> requests.Response:
        """One attempt and at most one authentication round (oras-py's retries sleep)."""
        sent = {**(headers or {}), **self.auth.get_auth_header()}
        response = self._send(method, url, data, json, sent, stream)
        if response.status_code != 401:
            return response
        sent, changed = self.auth.authenticate_request(response, sent)
        if not changed:
            return response
        response.close()
        return self._send(method, url, data, json, sent, stream)

    def _send(
        self, method: str, url: str, data: Any, json: Any, headers: dict[str, str], stream: bool
    ) -> requests.Response:
        response: requests.Response = self.session.request(
            method,
            url,
            data=data,
            json=json,
            headers=headers,
            stream=stream,
            verify=self._tls_verify,
        )
        return response


def _registry_message(response: requests.Response) -> str:
    """The registry's own error text (distribution's JSON errors), else the HTTP reason."""
    try:
        errors = response.json().get("errors") or []
        messages = [str(e.get("message") or e.get("code")) for e in errors if isinstance(e, dict)]
        if messages:
            return "; ".join(messages)[:500]
    except (ValueError, AttributeError):
        pass
    return f"{response.status_code} {response.reason}"


class RegistryClient:
    """One repository of one registry, with its credentials and TLS; close() when done."""

    def __init__(
        self,
        url: OCIURL,
        *,
        credentials: Credentials | None = None,
        tls: TLSMaterial | None = None,
        insecure: bool = False,
        timeout: float = DEFAULT_TIMEOUT,
    ) -> None:
        self.url = url
        self._secrets = [credentials.password] if credentials and credentials.password else []
        self._dir = Path(tempfile.mkdtemp(prefix="headwater-oci-"))
        verify: bool | str = True
        session = _Session(timeout)
        try:
            if tls and tls.ca_pem:
                verify = self._file("ca.crt", tls.ca_pem)
            if tls and tls.cert_pem and tls.key_pem:
                session.cert = (
                    self._file("tls.crt", tls.cert_pem),
                    self._file("tls.key", tls.key_pem),
                )
        except OSError as exc:
            self.close()
            raise OCIError(f"cannot write TLS material: {exc.strerror}") from None
        self._registry = _Registry(
            url.host, insecure=insecure, verify=verify, session=session, credentials=credentials
        )
        self._container = oras.container.Container(f"{url.host}/{url.repository}")
        self._prefix = "http" if insecure else "https"

    def _file(self, name: str, data: bytes) -> str:
        path = self._dir / name
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        with os.fdopen(fd, "wb") as fh:
            fh.write(data)
        return str(path)

    def close(self) -> None:
        with contextlib.suppress(AttributeError):
            self._registry.session.close()
        shutil.rmtree(self._dir, ignore_errors=True)

    def __enter__(self) -> RegistryClient:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # -- requests -----------------------------------------------------------------------

    @contextlib.contextmanager
    def _call(self, what: str, method: str, url: str, **kwargs: Any) -> Iterator[requests.Response]:
        """One request; errors become OCIError subclasses naming `what`, scrubbed."""
        try:
            response = self._registry.do_request(url, method, **kwargs)
        except requests.exceptions.SSLError as exc:
            raise OCIError(self._scrub(f"{what}: TLS error: {_root_cause(exc)}")) from None
        except requests.exceptions.Timeout:
            raise OCIError(f"{what}: timed out talking to {self.url.host}") from None
        except requests.exceptions.ConnectionError as exc:
            raise OCIError(
                self._scrub(f"{what}: cannot connect to {self.url.host}: {_root_cause(exc)}")
            ) from None
        except requests.exceptions.RequestException as exc:
            raise OCIError(self._scrub(f"{what}: {exc}")) from None
        with contextlib.closing(response):
            if response.status_code in (401, 403):
                detail = _registry_message(response) if method != "HEAD" else ""
                raise OCIAuthError(
                    self._scrub(
                        f"{what}: HTTP {response.status_code} unauthorized {detail}"
                    ).rstrip()
                )
            if response.status_code == 404:
                raise OCINotFoundError(self._scrub(f"{what}: not found"))
            if response.status_code >= 400:
                detail = (
                    _registry_message(response) if method != "HEAD" else str(response.status_code)
                )
                raise OCIError(self._scrub(f"{what}: {detail}"))
            yield response

    def _scrub(self, text: str) -> str:
        return scrub_text(text, [s.encode() for s in self._secrets])

    def _manifest_url(self, reference: str) -> str:
        return f"{self._prefix}://{self._container.manifest_url(reference)}"

    # -- reading ------------------------------------------------------------------------

    def resolve(self, reference: str) -> str:
        """The manifest digest `reference` (a tag or digest) points at: one HEAD request."""
        what = f"failed to resolve '{reference}' in '{self.url}'"
        headers = {"Accept": ", ".join(MANIFEST_MEDIA_TYPES)}
        with self._call(what, "HEAD", self._manifest_url(reference), headers=headers) as r:
            digest = r.headers.get("Docker-Content-Digest", "")
        if _DIGEST.match(digest):
            return digest
        return self.manifest(reference).digest  # a registry that does not say: read it

    def manifest(self, reference: str) -> Manifest:
        """The manifest `reference` points at, bounded and checked against its digest."""
        what = f"failed to get the manifest of '{reference}' from '{self.url}'"
        headers = {"Accept": ", ".join(MANIFEST_MEDIA_TYPES)}
        with self._call(
            what, "GET", self._manifest_url(reference), headers=headers, stream=True
        ) as r:
            raw = _read_bounded(r, MAX_MANIFEST_SIZE, what)
            content_type = r.headers.get("Content-Type", "")
        digest = "sha256:" + hashlib.sha256(raw).hexdigest()
        if reference.startswith("sha256:") and digest != reference:
            raise OCIError(f"{what}: content has digest {digest}")
        return Manifest.parse(raw, digest, content_type)

    def tags(self, limit: int = MAX_TAGS) -> list[str]:
        """Every tag of the repository; more than `limit` is an error, not a truncation."""
        what = f"failed to list tags of '{self.url}'"
        tags: list[str] = []
        url = f"{self._prefix}://{self._container.tags_url(N=_TAG_PAGE)}"
        while url:
            with self._call(what, "GET", url, stream=True) as r:
                raw = _read_bounded(r, MAX_MANIFEST_SIZE, what)
                link = r.links.get("next", {}).get("url")
            try:
                page = json.loads(raw).get("tags") or []
            except (ValueError, AttributeError):
                raise OCIError(f"{what}: the tag list is not valid JSON") from None
            tags.extend(str(t) for t in page)
            if len(tags) > limit:
                raise OCIError(f"{what}: more than {limit} tags")
            url = urllib.parse.urljoin(f"{self._prefix}://{self.url.host}", link) if link else ""
        return tags

    def fetch_blob(self, descriptor: Descriptor, out: BinaryIO, max_size: int | None) -> None:
        """Stream a blob into `out`, refusing more than `max_size` or a digest mismatch."""
        what = f"failed to fetch layer {descriptor.digest} from '{self.url}'"
        if max_size is not None and descriptor.size > max_size:
            raise OCIError(f"{what}: size {descriptor.size} exceeds the limit of {max_size}")
        url = f"{self._prefix}://{self._container.get_blob_url(descriptor.digest)}"
        sha = hashlib.sha256()
        size = 0
        with self._call(what, "GET", url, stream=True) as r:
            try:
                for chunk in r.iter_content(_CHUNK):
                    size += len(chunk)
                    if size > descriptor.size or (max_size is not None and size > max_size):
                        raise OCIError(f"{what}: more bytes than the {descriptor.size} announced")
                    sha.update(chunk)
                    out.write(chunk)
            except requests.exceptions.RequestException as exc:
                raise OCIError(self._scrub(f"{what}: {_root_cause(exc)}")) from None
        if "sha256:" + sha.hexdigest() != descriptor.digest or size != descriptor.size:
            raise OCIError(f"{what}: content does not match its digest")

    # -- writing ------------------------------------------------------------------------

    def push_blob(
        self, path: Path, media_type: str, annotations: Mapping[str, str] | None = None
    ) -> Descriptor:
        sha = hashlib.sha256()
        with open(path, "rb") as fh:
            while chunk := fh.read(1 << 20):
                sha.update(chunk)
        descriptor = Descriptor(
            media_type, "sha256:" + sha.hexdigest(), path.stat().st_size, annotations or {}
        )
        what = f"failed to push blob {descriptor.digest} to '{self.url}'"
        url = f"{self._prefix}://{self._container.get_blob_url(descriptor.digest)}"
        try:
            with self._call(what, "HEAD", url):
                return descriptor  # already there (a HEAD also checks the credentials)
        except OCINotFoundError:
            pass
        try:
            response = self._registry.put_upload(str(path), self._container, descriptor.to_json())
        except requests.exceptions.RequestException as exc:
            raise OCIError(self._scrub(f"{what}: {_root_cause(exc)}")) from None
        except ValueError as exc:  # oras-py: no upload session was granted
            if "UNAUTHORIZED" in str(exc) or "DENIED" in str(exc):
                raise OCIAuthError(f"{what}: the registry refused the upload") from None
            raise OCIError(f"{what}: the registry did not start an upload session") from None
        _check_written(response, what, self._scrub)
        return descriptor

    def push_manifest(self, manifest: Mapping[str, Any], tag: str) -> str:
        """PUT `manifest` (an OCI image manifest) under `tag`; returns its digest."""
        raw = json.dumps(manifest, separators=(",", ":"), sort_keys=True).encode()
        what = f"failed to push the manifest to '{self.url}:{tag}'"
        url = self._manifest_url(check_tag(tag))
        headers = {"Content-Type": str(manifest.get("mediaType") or OCI_MANIFEST_MEDIA_TYPE)}
        with self._call(what, "PUT", url, data=raw, headers=headers):
            pass
        return "sha256:" + hashlib.sha256(raw).hexdigest()


def _check_written(response: requests.Response, what: str, scrub: Any) -> None:
    if response.status_code in (401, 403):
        raise OCIAuthError(scrub(f"{what}: {_registry_message(response)}"))
    if response.status_code not in (200, 201, 202, 204):
        raise OCIError(scrub(f"{what}: {_registry_message(response)}"))


def _read_bounded(response: requests.Response, limit: int, what: str) -> bytes:
    data = bytearray()
    try:
        for chunk in response.iter_content(_CHUNK):
            data.extend(chunk)
            if len(data) > limit:
                raise OCIError(f"{what}: response larger than {limit} bytes")
    except requests.exceptions.RequestException as exc:
        raise OCIError(f"{what}: {_root_cause(exc)}") from None
    return bytes(data)


def _root_cause(exc: BaseException) -> str:
    """The innermost reason (e.g. 'Connection refused'), not urllib3's nested repr."""
    seen = exc
    while True:
        inner = seen.__cause__ or seen.__context__
        if inner is None or inner is seen:
            break
        seen = inner
    text = str(seen)
    match = re.search(r"\[Errno -?\d+\] ([^'\")]+)", text)
    if match:
        return match.group(1).strip()
    match = re.search(r"certificate verify failed: ([^(]+)", text)
    if match:
        return "certificate verify failed: " + match.group(1).strip()
    return text[:300]
