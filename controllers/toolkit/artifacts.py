"""Source artifacts for consumers: download, verify the digest, extract safely, share.

The artifact contract (docs/architecture.md): a consumer downloads
``status.artifact.url``, checks the tarball against ``status.artifact.digest``
before unpacking anything, and unpacks only regular files and directories that
stay inside the target directory.

`ArtifactCache` keeps one extraction per digest and hands it to every consumer that asks
for that digest, so a GitRepository feeding many Kustomizations is downloaded and unpacked
once (Flux's reconcile storms came from every consumer untarring on its own). The trees
it hands out are shared: consumers read them and copy what they need to change.

Every failure is an `ArtifactError` carrying Flux's reason ``ArtifactFailed``; messages
name the URL with any credentials removed and say what failed.
"""

from __future__ import annotations

import asyncio
import contextlib
import gzip
import hashlib
import os
import posixpath
import re
import secrets
import shutil
import stat
import tarfile
import time
import zlib
from collections.abc import AsyncIterator, Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, Any, ClassVar, cast
from urllib.parse import urlsplit, urlunsplit

import aiohttp

from controllers.toolkit.runtime.conditions import ARTIFACT_FAILED
from controllers.toolkit.runtime.frame import ReconcileError

_CHUNK = 1 << 16

# What an extraction may add up to when the caller sets no limits of its own.
DEFAULT_MAX_ENTRIES = 100_000
# Tar headers (with pax and GNU long-name records) allowed per entry beyond the file bytes.
_HEADER_ALLOWANCE = 2048
# No legitimate header record is this large; tarfile reads one whole into memory.
_MAX_READ = 1 << 20
EXTRACTED_SIZE_FACTOR = 10  # YAML compresses well; allow this much growth over the tarball

_DIGEST_ALGORITHMS = {"sha256": 64, "sha384": 96, "sha512": 128}
_HEX = re.compile(r"^[0-9a-f]+$")
# What the cache creates under its root: trees by digest and its temporary names.
_OWN_NAME = re.compile(r"^(sha256|sha384|sha512)-[0-9a-f]+$|^\.(download|extract|trash)-")


# --- errors -------------------------------------------------------------------------------


class ArtifactError(ReconcileError):
    """An artifact could not be fetched, verified or unpacked; `reason` is Flux's."""

    REASON: ClassVar[str] = ARTIFACT_FAILED

    def __init__(self, message: str) -> None:
        super().__init__(self.REASON, message)


class ArtifactNotFoundError(ArtifactError):
    """The server answered 404: the source has moved on; requeue and read its status again."""


class ArtifactDownloadError(ArtifactError):
    """The download failed: connection errors or 5xx after retries, or another bad status."""


class ArtifactTooLargeError(ArtifactError):
    """The artifact (or what it unpacks to) is larger than the configured limit."""


class DigestMismatchError(ArtifactError):
    """The downloaded bytes do not match the digest in the source's status."""


class UnsafeArchiveError(ArtifactError):
    """The tarball is broken or tries something unsafe; nothing of it is used."""


class PathError(ValueError):
    """A relative path that is malformed or would leave its root."""


# --- paths --------------------------------------------------------------------------------


def clean_relative(path: str, what: str) -> str:
    """`path` normalised to a relative "/"-separated path inside a tree ("" for the root).

    Raises PathError naming `what` for NUL bytes, backslashes, absolute paths and paths
    that climb out with "..".
    """
    if "\x00" in path or "\\" in path:
        raise PathError(f"invalid {what} '{path}'")
    text = path.strip()
    norm = posixpath.normpath(text) if text else ""
    if norm in ("", "."):
        return ""
    if norm.startswith("/") or norm == ".." or norm.startswith("../"):
        raise PathError(f"invalid {what} '{path}': it must stay inside the repository")
    return norm


def ensure_dirs(root: Path, path: Path) -> None:
    """mkdir -p `path` below `root`, refusing any existing component that is not a directory.

    Each component is checked with lstat, so a symlink in the way is refused rather than
    followed out of `root`.
    """
    rel = path.relative_to(root)
    current = root
    for part in rel.parts:
        current = current / part
        try:
            st = current.lstat()
        except FileNotFoundError:
            current.mkdir(mode=0o755)
            continue
        if not stat.S_ISDIR(st.st_mode):
            raise PathError(f"'{current.relative_to(root)}' is in the way of a directory")


def redact_url(url: str) -> str:
    """`url` without user info, query or fragment: what may appear in messages."""
    try:
        parts = urlsplit(url)
        host = parts.hostname or ""
        port = parts.port
    except ValueError:
        return "<invalid URL>"
    if ":" in host:
        host = f"[{host}]"
    netloc = f"{host}:{port}" if port is not None else host
    return urlunsplit((parts.scheme, netloc, parts.path, "", ""))


# --- artifacts and digests ----------------------------------------------------------------


def parse_digest(digest: str) -> tuple[str, str]:
    """Split ``<algorithm>:<hex>`` (a bare hex string means sha256, as in Flux)."""
    text = digest.strip()
    if not text:
        raise ArtifactError("the artifact has no digest")
    algorithm, sep, hexpart = text.partition(":")
    if not sep:
        algorithm, hexpart = "sha256", text
    algorithm = algorithm.lower()
    length = _DIGEST_ALGORITHMS.get(algorithm)
    if length is None:
        raise ArtifactError(f"unsupported digest algorithm '{algorithm}' in '{digest}'")
    if len(hexpart) != length or not _HEX.match(hexpart):
        raise ArtifactError(f"malformed {algorithm} digest '{digest}'")
    return algorithm, hexpart


ORIGIN_REVISION_KEY = "org.opencontainers.image.revision"


@dataclass(frozen=True)
class Artifact:
    """What a consumer needs of a source's ``status.artifact``."""

    url: str
    digest: str  # normalised "<algorithm>:<hex>"
    revision: str = ""
    size: int | None = None
    # Where the content came from, per its producer: an OCI artifact's
    # org.opencontainers.image.revision annotation (Flux's origin revision).
    origin_revision: str = ""

    @classmethod
    def from_status(cls, artifact: Mapping[str, Any]) -> Artifact:
        """Read ``status.artifact``; raises ArtifactError when it cannot be used."""
        url = artifact.get("url")
        if not isinstance(url, str) or not url:
            raise ArtifactError("the source's artifact has no URL")
        scheme = urlsplit(url).scheme.lower()
        if scheme not in ("http", "https"):
            raise ArtifactError(f"artifact URL {redact_url(url)} is not http(s)")
        digest = artifact.get("digest")
        if not isinstance(digest, str):
            raise ArtifactError(f"artifact {redact_url(url)} has no digest")
        algorithm, hexpart = parse_digest(digest)
        size = artifact.get("size")
        revision = artifact.get("revision")
        metadata = artifact.get("metadata")
        origin = metadata.get(ORIGIN_REVISION_KEY) if isinstance(metadata, Mapping) else None
        return cls(
            url=url,
            digest=f"{algorithm}:{hexpart}",
            revision=revision if isinstance(revision, str) else "",
            size=size if isinstance(size, int) and not isinstance(size, bool) else None,
            origin_revision=origin if isinstance(origin, str) else "",
        )

    @property
    def safe_url(self) -> str:
        return redact_url(self.url)


# --- download -----------------------------------------------------------------------------


@dataclass(frozen=True)
class DownloadPolicy:
    """Limits of one download: bytes, attempts, and time per attempt."""

    max_size: int
    retries: int = 3  # attempts after the first, on connection errors and 5xx
    backoff: float = 0.5  # seconds before the first retry, doubled each time
    max_backoff: float = 10.0
    timeout: float = 120.0  # one attempt, from connect to the last byte
    connect_timeout: float = 10.0


class _Retryable(Exception):
    def __init__(self, detail: str) -> None:
        self.detail = detail
        super().__init__(detail)


async def download(
    session: aiohttp.ClientSession, artifact: Artifact, dest: Path, policy: DownloadPolicy
) -> None:
    """Download `artifact` to `dest` and verify its digest; `dest` is removed on failure.

    Retries connection errors, timeouts and 5xx with exponential backoff; a 404 raises
    ArtifactNotFoundError at once, so callers can requeue and look at the source again.
    """
    url = artifact.safe_url
    if artifact.size is not None and artifact.size > policy.max_size:
        raise ArtifactTooLargeError(
            f"artifact {url} is {artifact.size} bytes, more than the limit of "
            f"{policy.max_size} bytes"
        )
    attempts = policy.retries + 1
    delay = policy.backoff
    for attempt in range(1, attempts + 1):
        try:
            await _download_once(session, artifact, dest, policy)
            return
        except _Retryable as exc:
            _unlink(dest)
            if attempt == attempts:
                raise ArtifactDownloadError(
                    f"downloading artifact {url} failed after {attempts} attempts: {exc.detail}"
                ) from None
        except BaseException:
            _unlink(dest)
            raise
        await asyncio.sleep(delay)
        delay = min(delay * 2, policy.max_backoff)


async def _download_once(
    session: aiohttp.ClientSession, artifact: Artifact, dest: Path, policy: DownloadPolicy
) -> None:
    url = artifact.safe_url
    algorithm, expected = parse_digest(artifact.digest)
    hasher = hashlib.new(algorithm)
    timeout = aiohttp.ClientTimeout(total=policy.timeout, connect=policy.connect_timeout)
    try:
        async with session.get(artifact.url, timeout=timeout, max_redirects=3) as resp:
            if resp.status == 404:
                raise ArtifactNotFoundError(f"artifact {url} not found (HTTP 404)")
            if resp.status >= 500 or resp.status == 429:
                raise _Retryable(f"HTTP {resp.status}")
            if resp.status != 200:
                raise ArtifactDownloadError(
                    f"downloading artifact {url} failed: HTTP {resp.status}"
                )
            length = resp.content_length
            if length is not None and length > policy.max_size:
                raise ArtifactTooLargeError(
                    f"artifact {url} is {length} bytes (Content-Length), more than the limit "
                    f"of {policy.max_size} bytes"
                )
            received = 0
            # O_EXCL: the name is ours alone; never reuse or follow something already there.
            fd = os.open(dest, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW, 0o600)
            with os.fdopen(fd, "wb") as out:
                async for chunk in resp.content.iter_chunked(_CHUNK):
                    received += len(chunk)
                    if received > policy.max_size:
                        raise ArtifactTooLargeError(
                            f"artifact {url} is more than the limit of {policy.max_size} bytes"
                        )
                    hasher.update(chunk)
                    out.write(chunk)
    except ArtifactError:
        raise
    except (aiohttp.ClientPayloadError, aiohttp.ClientConnectionError) as exc:
        raise _Retryable(_scrub(str(exc) or type(exc).__name__, artifact.url)) from None
    except TimeoutError:
        raise _Retryable(f"no complete answer within {policy.timeout:g}s") from None
    except aiohttp.ClientError as exc:
        raise ArtifactDownloadError(
            f"downloading artifact {url} failed: {_scrub(str(exc), artifact.url)}"
        ) from None
    except OSError as exc:
        raise ArtifactError(
            f"writing artifact {url} to disk failed: {exc.strerror or exc}"
        ) from None
    actual = hasher.hexdigest()
    if actual != expected:
        raise DigestMismatchError(
            f"artifact {url} does not match its digest: expected {algorithm}:{expected}, "
            f"got {algorithm}:{actual}; it was not unpacked"
        )


def _scrub(text: str, raw_url: str) -> str:
    return text.replace(raw_url, redact_url(raw_url)) if raw_url else text


def _unlink(path: Path) -> None:
    with contextlib.suppress(FileNotFoundError):
        path.unlink()


# --- extraction ---------------------------------------------------------------------------


def safe_extract(
    tarball: Path,
    dest: Path,
    *,
    max_size: int | None = None,
    max_entries: int | None = None,
) -> None:
    """Unpack regular files and directories of the gzip `tarball` into `dest`.

    Symlinks, hard links, devices and fifos are skipped, never created. Names that are
    absolute or climb out are refused; every directory on the way is checked with lstat and
    files are opened with O_NOFOLLOW, so nothing is written through a link or outside
    `dest`. `max_size` bounds the total bytes unpacked and `max_entries` the number of
    archive entries read. Raises UnsafeArchiveError naming the tarball and what was wrong.
    """
    total = 0
    entries = 0
    name = tarball.name
    stream_limit = None
    if max_size is not None:
        stream_limit = (
            max_size + _HEADER_ALLOWANCE * (max_entries or DEFAULT_MAX_ENTRIES) + _MAX_READ
        )
    try:
        with (
            gzip.GzipFile(tarball, "rb") as gz,
            _BoundedStream(gz, name, stream_limit) as bounded,
            tarfile.open(fileobj=cast(IO[bytes], bounded), mode="r:") as tar,
        ):
            for member in tar:
                entries += 1
                if max_entries is not None and entries > max_entries:
                    raise UnsafeArchiveError(
                        f"archive '{name}' has more than {max_entries} entries"
                    )
                if not (member.isreg() or member.isdir()):
                    continue
                try:
                    rel = clean_relative(member.name, "archive entry")
                except PathError as exc:
                    raise UnsafeArchiveError(f"archive '{name}': {exc}") from None
                if not rel:
                    continue
                target = dest / rel
                if member.isdir():
                    _ensure_dirs_in_archive(dest, target, name)
                    continue
                total += member.size
                if max_size is not None and total > max_size:
                    raise UnsafeArchiveError(
                        f"archive '{name}' unpacks to more than {max_size} bytes"
                    )
                _ensure_dirs_in_archive(dest, target.parent, name)
                source = tar.extractfile(member)
                if source is None:
                    continue
                mode = 0o755 if member.mode & stat.S_IXUSR else 0o644
                flags = os.O_WRONLY | os.O_CREAT | os.O_TRUNC | os.O_NOFOLLOW
                fd = os.open(target, flags, mode)
                with os.fdopen(fd, "wb") as out, source:
                    shutil.copyfileobj(source, out, _CHUNK)
    except ArtifactError:
        raise
    except (tarfile.TarError, EOFError, OSError, ValueError, zlib.error) as exc:
        raise UnsafeArchiveError(f"unpacking '{name}' failed: {exc}") from None


class _BoundedStream:
    """The decompressed tar stream, refusing to go past `limit` bytes or to read a huge block.

    tarfile reads pax and GNU long-name records whole and skips unextracted entries by
    seeking, so the per-file size check alone would let a few hundred KiB of gzip expand
    into gigabytes of memory or decompression work. Every byte the stream passes counts.
    """

    def __init__(self, raw: gzip.GzipFile, name: str, limit: int | None) -> None:
        self._raw = raw
        self._name = name
        self._limit = limit

    def _check(self, end: int) -> None:
        if self._limit is not None and end > self._limit:
            raise UnsafeArchiveError(
                f"archive '{self._name}' unpacks to more than {self._limit} bytes "
                "(tar headers included)"
            )

    def read(self, size: int | None = -1) -> bytes:
        if size is None or size < 0 or size > _MAX_READ:
            raise UnsafeArchiveError(
                f"archive '{self._name}' has a header record larger than {_MAX_READ} bytes"
            )
        self._check(self._raw.tell() + size)
        return self._raw.read(size)

    def seek(self, offset: int, whence: int = os.SEEK_SET) -> int:
        if whence != os.SEEK_SET:
            raise UnsafeArchiveError(f"archive '{self._name}': unexpected seek")
        self._check(offset)
        return self._raw.seek(offset)

    def tell(self) -> int:
        return self._raw.tell()

    def __enter__(self) -> _BoundedStream:
        return self

    def __exit__(self, *exc: object) -> None:
        return None


def _ensure_dirs_in_archive(dest: Path, path: Path, name: str) -> None:
    try:
        ensure_dirs(dest, path)
    except PathError as exc:
        raise UnsafeArchiveError(f"archive '{name}': {exc}") from None


def _make_read_only(root: Path) -> None:
    """Drop write permission on a shared tree, so a consumer that forgets to copy fails."""
    for dirpath, dirnames, filenames in os.walk(root):
        for fname in filenames:
            p = os.path.join(dirpath, fname)
            st = os.lstat(p)
            if stat.S_ISREG(st.st_mode):
                os.chmod(p, stat.S_IMODE(st.st_mode) & 0o555)
        for dname in dirnames:
            os.chmod(os.path.join(dirpath, dname), 0o555)
    os.chmod(root, 0o555)


def remove_tree(path: Path) -> None:
    """rm -rf `path`, including trees made read-only by the cache."""

    def writable_again(func: Callable[..., Any], failed: str, exc_info: Any) -> None:
        del func, exc_info
        parent = os.path.dirname(failed)
        with contextlib.suppress(OSError):
            os.chmod(parent, 0o755)
        with contextlib.suppress(OSError):
            os.chmod(failed, 0o755)
        st = os.lstat(failed)
        if stat.S_ISDIR(st.st_mode):
            shutil.rmtree(failed)
        else:
            os.unlink(failed)

    try:
        st = path.lstat()
    except FileNotFoundError:
        return
    if not stat.S_ISDIR(st.st_mode):
        path.unlink()
        return
    with contextlib.suppress(OSError):
        os.chmod(path, 0o755)
    shutil.rmtree(path, onerror=writable_again)


# --- the shared cache ---------------------------------------------------------------------


@dataclass
class _Entry:
    path: Path
    last_used: float = field(default_factory=time.monotonic)


class ArtifactCache:
    """One verified, extracted tree per artifact digest, shared by every consumer.

    `checkout(artifact)` yields the tree for the artifact's digest, downloading and
    extracting it first if needed; concurrent checkouts of one digest share one download.
    A tree stays while any checkout holds it; of the trees nobody holds, the
    `keep_unused` most recently used are kept for the next reconcile and older ones are
    deleted. The trees are read-only (and made so on disk): copy before changing anything.

    Leftovers of an earlier process under `root` (trees and temporary files, by their
    names) are removed when the cache is created; nothing else there is touched.
    """

    def __init__(
        self,
        root: Path,
        *,
        max_size: int,
        max_extracted_size: int | None = None,
        max_entries: int = DEFAULT_MAX_ENTRIES,
        keep_unused: int = 16,
        retries: int = 3,
        backoff: float = 0.5,
        timeout: float = 120.0,
        session: aiohttp.ClientSession | None = None,
    ) -> None:
        self.root = Path(root)
        self.policy = DownloadPolicy(
            max_size=max_size, retries=retries, backoff=backoff, timeout=timeout
        )
        if max_extracted_size is None:
            max_extracted_size = max_size * EXTRACTED_SIZE_FACTOR
        self.max_extracted_size = max_extracted_size
        self.max_entries = max_entries
        self.keep_unused = keep_unused
        self._session = session
        self._own_session = session is None
        self._entries: dict[str, _Entry] = {}
        self._refs: dict[str, int] = {}
        self._inflight: dict[str, asyncio.Task[_Entry]] = {}
        self._reset_root()

    def _reset_root(self) -> None:
        # Only names this cache makes: a root given by mistake loses nothing else.
        self.root.mkdir(parents=True, exist_ok=True)
        for child in self.root.iterdir():
            if _OWN_NAME.match(child.name):
                remove_tree(child)

    def _get_session(self) -> aiohttp.ClientSession:
        if self._session is None or self._session.closed:
            # auto_decompress off: the digest is over the bytes as served.
            self._session = aiohttp.ClientSession(auto_decompress=False)
            self._own_session = True
        return self._session

    async def close(self) -> None:
        """Close the HTTP session the cache opened (not one passed in)."""
        for task in list(self._inflight.values()):
            task.cancel()
        if self._own_session and self._session is not None:
            await self._session.close()

    def cached_digests(self) -> list[str]:
        """Digests with an extracted tree on disk, least recently used first."""
        return [k for k, _ in sorted(self._entries.items(), key=lambda kv: kv[1].last_used)]

    @contextlib.asynccontextmanager
    async def checkout(self, artifact: Artifact) -> AsyncIterator[Path]:
        """Yield the extracted tree of `artifact`; it stays on disk until the block exits."""
        key = artifact.digest
        self._refs[key] = self._refs.get(key, 0) + 1
        try:
            entry = await self._ensure(artifact)
            yield entry.path
        finally:
            self._refs[key] -= 1
            if self._refs[key] == 0:
                del self._refs[key]
            current = self._entries.get(key)
            if current is not None:
                current.last_used = time.monotonic()
            await self._evict()

    async def _ensure(self, artifact: Artifact) -> _Entry:
        key = artifact.digest
        entry = self._entries.get(key)
        if entry is not None:
            entry.last_used = time.monotonic()
            return entry
        task = self._inflight.get(key)
        if task is None:
            task = asyncio.ensure_future(self._fetch(artifact))
            self._inflight[key] = task

            def forget(done: asyncio.Task[_Entry], key: str = key) -> None:
                if self._inflight.get(key) is done:
                    del self._inflight[key]
                if not done.cancelled():
                    done.exception()  # retrieved here, so an unawaited failure is not logged

            task.add_done_callback(forget)
        # Shielded: one waiter giving up must not cancel the download the others wait for.
        return await asyncio.shield(task)

    async def _fetch(self, artifact: Artifact) -> _Entry:
        algorithm, hexpart = parse_digest(artifact.digest)
        token = secrets.token_hex(6)
        tarball = self.root / f".download-{token}.tar.gz"
        staging = self.root / f".extract-{token}"
        final = self.root / f"{algorithm}-{hexpart}"
        try:
            await download(self._get_session(), artifact, tarball, self.policy)
            await asyncio.to_thread(self._extract, tarball, staging, artifact)
            # The directory name is the digest, so a leftover can only hold the same tree.
            await asyncio.to_thread(remove_tree, final)
            os.rename(staging, final)
        except BaseException:
            await asyncio.to_thread(remove_tree, staging)
            raise
        finally:
            _unlink(tarball)
        entry = _Entry(final)
        self._entries[artifact.digest] = entry
        return entry

    def _extract(self, tarball: Path, staging: Path, artifact: Artifact) -> None:
        staging.mkdir(mode=0o755)
        try:
            safe_extract(
                tarball,
                staging,
                max_size=self.max_extracted_size,
                max_entries=self.max_entries,
            )
        except UnsafeArchiveError as exc:
            raise UnsafeArchiveError(f"artifact {artifact.safe_url}: {exc}") from None
        _make_read_only(staging)

    async def _evict(self) -> None:
        unused = [
            (entry.last_used, key)
            for key, entry in self._entries.items()
            if self._refs.get(key, 0) == 0
        ]
        if len(unused) <= self.keep_unused:
            return
        unused.sort()
        doomed = [key for _, key in unused[: len(unused) - self.keep_unused]]
        trash: list[Path] = []
        for key in doomed:
            entry = self._entries.pop(key)
            # Renamed away first, so a new fetch of the same digest never meets a half-deleted tree.
            moved = self.root / f".trash-{secrets.token_hex(6)}"
            try:
                os.rename(entry.path, moved)
            except OSError:
                moved = entry.path
            trash.append(moved)
        for path in trash:
            await asyncio.to_thread(remove_tree, path)
