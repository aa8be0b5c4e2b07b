"""Keep credentials out of messages: URLs with userinfo, auth headers, known secret values."""

from __future__ import annotations

import re
from collections.abc import Iterable
from urllib.parse import urlsplit, urlunsplit

MASK = "***"

# scheme://userinfo@ anywhere in free text (git's own stderr quotes URLs it was given).
_URL_USERINFO = re.compile(r"(?P<scheme>[A-Za-z][A-Za-z0-9+.\-]*://)(?P<userinfo>[^/@\s'\"]+)@")
# Header values that carry credentials, however a tool chose to print them.
_AUTH_HEADER = re.compile(
    r"(?P<name>(?:proxy-)?authorization\s*[:=]\s*)(?P<scheme>(?:basic|bearer|token)\s+)?"
    r"(?P<value>[^\s'\"]+)",
    re.IGNORECASE,
)
# Too short to replace literally without mangling ordinary words.
_MIN_SECRET_LEN = 4


def scrub_url(url: str) -> str:
    """The URL without a password; for http(s) without any userinfo at all.

    A username over HTTPS is often a token (e.g. ``<token>:x-oauth-basic``), so it goes too;
    an SSH user such as ``git@`` is not secret and helps to read the message.
    """
    try:
        parts = urlsplit(url)
    except ValueError:
        return scrub_text(url)
    if "@" not in parts.netloc:
        return url
    userinfo, _, hostport = parts.netloc.rpartition("@")
    if parts.scheme in ("http", "https"):
        netloc = hostport
    else:
        user = userinfo.split(":", 1)[0]
        netloc = f"{user}@{hostport}" if ":" not in userinfo else f"{user}:{MASK}@{hostport}"
    return urlunsplit((parts.scheme, netloc, parts.path, parts.query, parts.fragment))


def _mask_userinfo(match: re.Match[str]) -> str:
    scheme = match.group("scheme")
    userinfo = match.group("userinfo")
    if scheme.lower().startswith(("http://", "https://")):
        return f"{scheme}{MASK}@"
    user, sep, _ = userinfo.partition(":")
    return f"{scheme}{user}:{MASK}@" if sep else match.group(0)


def scrub_text(text: str, secrets: Iterable[str | bytes] = ()) -> str:
    """Replace credentials in free text: URL userinfo, Authorization values, and `secrets`."""
    out = _URL_USERINFO.sub(_mask_userinfo, text)
    out = _AUTH_HEADER.sub(lambda m: f"{m.group('name')}{m.group('scheme') or ''}{MASK}", out)
    values: set[str] = set()
    for secret in secrets:
        value = secret.decode("utf-8", "replace") if isinstance(secret, bytes) else secret
        value = value.strip()
        if len(value) >= _MIN_SECRET_LEN:
            values.add(value)
            # Multi-line secrets (keys) may surface one line at a time.
            values.update(line.strip() for line in value.splitlines() if len(line.strip()) >= 16)
    # Longest first so a secret containing another is masked whole.
    for value in sorted(values, key=len, reverse=True):
        out = out.replace(value, MASK)
    return out
