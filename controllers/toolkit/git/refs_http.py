"""Listing a repository's references over smart HTTP in-process, instead of ``git ls-remote``.

A GitRepository whose ref has not moved costs one listing per interval; with git that is
two processes (git and git-remote-http) and, with protocol v2, two requests. Here it is
one GET of ``info/refs?service=git-upload-pack`` (protocol v0's reference
advertisement, which every smart HTTP server answers), parsed as git parses it.

This is a shortcut, never a second implementation to get right in every corner: anything
but a plain, well-formed answer makes `list_refs` return None and the caller runs git,
whose behaviour and error messages stay the reference. So it steps aside for a proxy
(spec.proxySecretRef or the deployment's proxy variables), a client certificate, a URL
with a query, any redirect, any status but 200, a dumb (non-smart) server, a TLS or
connection failure, and an answer over `MAX_ADVERTISEMENT` bytes. Only running out of
time is an answer of its own (git would say the same, later): the listing shares the
fetch's deadline and fails as git's commands do when it passes. Credentials go only to
the repository's own origin (no redirect is followed), and a custom CA is trusted in
addition to the system's, as for git.
"""

from __future__ import annotations

import logging
import os
import ssl
import time
from collections.abc import Mapping

import urllib3

from controllers.toolkit.git.credentials import GitAuth, ProxyConfig, basic_credentials
from controllers.toolkit.git.errors import GitOperationError
from controllers.toolkit.git.giturl import GitURL

log = logging.getLogger(__name__)

__all__ = [
    "MAX_ADVERTISEMENT",
    "NotAdvertisement",
    "git_must_list",
    "list_refs",
    "parse_advertisement",
]

MAX_ADVERTISEMENT = 16 * 1024 * 1024
_CONTENT_TYPE = "application/x-git-upload-pack-advertisement"
# Smart HTTP servers (GitLab among them) look for a git client's agent.
_USER_AGENT = "git/headwater"
_ZERO_ID = "0" * 40
# Variables through which the deployment changes how git reaches servers: when set, git's
# own handling applies.
_AMBIENT = (
    "http_proxy",
    "https_proxy",
    "all_proxy",
    "HTTP_PROXY",
    "HTTPS_PROXY",
    "ALL_PROXY",
)


class _OutOfTime(Exception):
    """The whole listing took longer than its budget."""


class NotAdvertisement(ValueError):
    """The body is not a protocol v0 reference advertisement as git would read it."""


def _packets(body: bytes) -> list[bytes | None]:
    """pkt-lines: each payload, None for a flush packet."""
    out: list[bytes | None] = []
    pos = 0
    while pos < len(body):
        head = body[pos : pos + 4]
        try:
            size = int(head, 16)
        except ValueError:
            raise NotAdvertisement(f"bad pkt-line length {head!r}") from None
        if len(head) < 4 or size in (1, 2, 3) or pos + max(size, 4) > len(body):
            raise NotAdvertisement(f"bad pkt-line length {head!r}")
        if size == 0:
            out.append(None)
            pos += 4
            continue
        out.append(body[pos + 4 : pos + size])
        pos += size
    return out


def parse_advertisement(body: bytes) -> dict[str, str]:
    """The advertised references as {name: object id}, as ``git ls-remote`` lists them
    (peeled annotated tags under ``<tag>^{}``). Raises NotAdvertisement otherwise."""
    packets = _packets(body)
    if len(packets) < 2 or packets[0] is None:
        raise NotAdvertisement("no service line")
    if packets[0].rstrip(b"\n") != b"# service=git-upload-pack" or packets[1] is not None:
        raise NotAdvertisement("not a git-upload-pack advertisement")
    rest = packets[2:]
    if not rest or rest[-1] is not None or None in rest[:-1]:
        raise NotAdvertisement("references not ended by one flush packet")
    refs: dict[str, str] = {}
    for index, packet in enumerate(rest[:-1]):
        assert packet is not None
        line = packet.rstrip(b"\n")
        if index == 0:
            line = line.partition(b"\0")[0]  # the first line carries the capabilities
        elif b"\0" in line:
            raise NotAdvertisement("capabilities after the first line")
        try:
            text = line.decode("utf-8")
        except UnicodeDecodeError:
            raise NotAdvertisement("a reference name is not UTF-8") from None
        object_id, sep, name = text.partition(" ")
        if not sep or len(object_id) != 40 or not _is_hex(object_id) or not name:
            raise NotAdvertisement(f"bad reference line {text[:100]!r}")
        if name == "capabilities^{}" and object_id == _ZERO_ID and index == 0:
            continue  # an empty repository advertises no references
        if name.startswith("shallow "):
            raise NotAdvertisement("shallow lines in an advertisement")
        refs[name] = object_id
    return refs


def _is_hex(text: str) -> bool:
    return all(c in "0123456789abcdef" for c in text)


def git_must_list(url: GitURL, auth: GitAuth, proxy: ProxyConfig | None) -> str | None:
    """Why git itself must list this repository, or None."""
    if not url.is_http:
        return "not http(s)"
    if proxy is not None:
        return "a proxy"
    if auth.tls_cert is not None:
        return "a client certificate"
    if "?" in url.url:
        return "a query in the URL"
    ambient = [name for name in _AMBIENT if os.environ.get(name)]
    if ambient:
        return f"{ambient[0]} is set"
    return None


def _tls_context(auth: GitAuth) -> ssl.SSLContext:
    # The deployment's CA choice for git (GIT_SSL_CAINFO/CAPATH, which gitexec keeps)
    # replaces the system's, as for git; the Secret's ca.crt is trusted on top of either.
    cafile = os.environ.get("GIT_SSL_CAINFO") or None
    capath = os.environ.get("GIT_SSL_CAPATH") or None
    context = ssl.create_default_context(cafile=cafile, capath=capath)
    if auth.ca_cert is not None:
        context.load_verify_locations(cadata=auth.ca_cert.decode("ascii", "replace"))
    return context


def _read_bounded(response: urllib3.BaseHTTPResponse, deadline: float) -> bytes:
    """The body, up to one byte over MAX_ADVERTISEMENT, read before `deadline`
    (urllib3's timeouts bound each read, not a server sending a byte at a time)."""
    chunks: list[bytes] = []
    size = 0
    while size <= MAX_ADVERTISEMENT:
        if time.monotonic() > deadline:
            raise _OutOfTime
        chunk = response.read(min(1 << 16, MAX_ADVERTISEMENT + 1 - size))
        if not chunk:
            break
        chunks.append(chunk)
        size += len(chunk)
    return b"".join(chunks)


def list_refs(
    url: GitURL, auth: GitAuth, proxy: ProxyConfig | None, *, timeout: float
) -> Mapping[str, str] | None:
    """Every reference the server advertises for `url`, or None: ask git."""
    reason = git_must_list(url, auth, proxy)
    if reason is not None:
        log.debug("listing %s with git: %s", url, reason)
        return None
    headers = {"User-Agent": _USER_AGENT, "Accept": _CONTENT_TYPE, "Pragma": "no-cache"}
    credentials = basic_credentials(auth)
    if credentials is not None:
        headers["Authorization"] = f"Basic {credentials}"
    elif auth.bearer_token is not None:
        headers["Authorization"] = f"Bearer {auth.bearer_token}"
    target = url.url.rstrip("/") + "/info/refs?service=git-upload-pack"
    try:
        context = _tls_context(auth) if url.scheme == "https" else None
        with urllib3.PoolManager(
            num_pools=1, ssl_context=context, retries=False, timeout=timeout
        ) as pool:
            response = pool.request(
                "GET", target, headers=headers, redirect=False, preload_content=False
            )
            try:
                if response.status != 200:
                    log.debug("listing %s with git: the server answered %s", url, response.status)
                    return None
                content_type = response.headers.get("Content-Type", "").split(";")[0].strip()
                if content_type != _CONTENT_TYPE:
                    log.debug("listing %s with git: not a smart HTTP server", url)
                    return None
                body = _read_bounded(response, time.monotonic() + timeout)
            finally:
                response.release_conn()
    except (urllib3.exceptions.TimeoutError, _OutOfTime):
        # The budget is spent: git could only say the same, later. Its wording (gitexec).
        raise GitOperationError(
            f"listing remote references for '{url}' timed out after {timeout:.0f}s"
        ) from None
    except (urllib3.exceptions.HTTPError, ssl.SSLError, OSError, ValueError) as exc:
        # The message is git's to give (it may also succeed where this did not).
        log.debug("listing %s with git: %s", url, type(exc).__name__)
        return None
    if len(body) > MAX_ADVERTISEMENT:
        log.debug("listing %s with git: the advertisement is over %d bytes", url, MAX_ADVERTISEMENT)
        return None
    try:
        return parse_advertisement(body)
    except NotAdvertisement as exc:
        log.debug("listing %s with git: %s", url, exc)
        return None
