"""spec.url validation: which transports are allowed and what git is actually given."""

from __future__ import annotations

import re
from dataclasses import dataclass
from urllib.parse import unquote, urlsplit, urlunsplit

from controllers.toolkit.git.errors import URLInvalidError
from controllers.toolkit.git.redact import scrub_url

SCHEMES = ("http", "https", "ssh")
_BAD_CHARS = re.compile(r"[\x00-\x20\x7f]")


@dataclass(frozen=True)
class GitURL:
    """A validated repository URL.

    `url` is what git is given: for http(s) any userinfo is taken out of it (into
    `username`/`password`) so credentials never land in `.git/config` or in git's messages.
    """

    url: str
    scheme: str
    host: str
    port: int | None
    username: str | None = None
    password: str | None = None

    @property
    def is_http(self) -> bool:
        return self.scheme in ("http", "https")

    @property
    def origin(self) -> str:
        """``scheme://host[:port]/``: the prefix git's per-URL ``http.<url>.*`` config matches."""
        host = f"[{self.host}]" if ":" in self.host else self.host
        port = f":{self.port}" if self.port is not None else ""
        return f"{self.scheme}://{host}{port}/"

    def __str__(self) -> str:
        return scrub_url(self.url)


def parse_git_url(raw: str) -> GitURL:
    """Validate spec.url; raise URLInvalidError saying why (never echoing a password)."""
    shown = scrub_url(raw)
    if not raw or _BAD_CHARS.search(raw):
        raise URLInvalidError(f"invalid repository URL '{shown}': empty or contains whitespace")
    try:
        parts = urlsplit(raw)
        port = parts.port
    except ValueError as exc:
        raise URLInvalidError(f"invalid repository URL '{shown}': {exc}") from None
    scheme = parts.scheme.lower()
    if scheme not in SCHEMES:
        # scp-like "git@host:path" and local paths land here too, as in Flux.
        raise URLInvalidError(
            f"invalid repository URL '{shown}': scheme must be one of http, https, ssh"
        )
    host = parts.hostname or ""
    if not host or host.startswith("-"):
        raise URLInvalidError(f"invalid repository URL '{shown}': no valid host")
    if parts.path in ("", "/"):
        raise URLInvalidError(f"invalid repository URL '{shown}': no repository path")
    if parts.fragment:
        raise URLInvalidError(f"invalid repository URL '{shown}': fragments are not allowed")
    username = unquote(parts.username) if parts.username is not None else None
    password = unquote(parts.password) if parts.password is not None else None
    if scheme == "ssh":
        if password is not None:
            raise URLInvalidError(
                f"invalid repository URL '{shown}': SSH URLs cannot carry a password"
            )
        if username is not None and username.startswith("-"):
            raise URLInvalidError(f"invalid repository URL '{shown}': invalid user")
        return GitURL(url=raw, scheme=scheme, host=host, port=port, username=username)
    netloc = parts.netloc.rpartition("@")[2]
    clean = urlunsplit((scheme, netloc, parts.path, parts.query, ""))
    return GitURL(
        url=clean,
        scheme=scheme,
        host=host,
        port=port,
        username=username or None,
        password=password or None,
    )
