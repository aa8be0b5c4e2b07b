"""GitHub commit statuses: the event's revision gets `success` or `failure`.

The Provider's address is the repository (`https://github.com/org/repo`,
`.git` and SSH forms too); the API is `https://api.github.com/` for
github.com and `<scheme>://<host>/api/v3/` for GitHub Enterprise. As Flux
does: the context is `<kind>/<name>/<first part of the Provider's UID>`
(lowercase, unique per cluster), the description the reason in words
(`reconciliation succeeded`), Progressing events are skipped, and a status
identical to the latest one for that context is not posted again.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from typing import Any
from urllib.parse import quote, urlsplit

from controllers.notification.event import ERROR, INFO, REVISION, FluxEvent
from controllers.notification.providers.base import (
    DeliveryError,
    ProviderConfig,
    ProviderConfigError,
)
from controllers.notification.providers.http import encode_json, request

PROGRESSING = "Progressing"
_HASH = re.compile(r"^[0-9a-f]{40}$|^[0-9a-f]{64}$")
_SCP_LIKE = re.compile(r"^(?:[^@/]+@)?(?P<host>[^:/]+):(?P<path>[^/].*)$")


@dataclass(frozen=True)
class Repository:
    api_base: str  # ends with "/"
    owner: str
    repo: str


def parse_repository(address: str) -> Repository:
    """The API base, owner and repository of a GitHub repository address."""
    text = address.strip()
    if "://" in text:
        parts = urlsplit(text)
        scheme = "https" if parts.scheme == "ssh" else parts.scheme
        host = parts.hostname or ""
        if parts.port and parts.scheme != "ssh":
            host = f"{host}:{parts.port}"
        path = parts.path
    else:
        match = _SCP_LIKE.match(text)
        if not match:
            raise ProviderConfigError(
                "github provider address must be a repository URL such as "
                "https://github.com/org/repo"
            )
        scheme, host, path = "https", match["host"], match["path"]
    segments = path.strip("/").removesuffix(".git").split("/")
    if scheme not in ("http", "https") or not host or len(segments) != 2 or not all(segments):
        raise ProviderConfigError(
            "github provider address must be a repository URL such as https://github.com/org/repo"
        )
    api_base = "https://api.github.com/" if host == "github.com" else f"{scheme}://{host}/api/v3/"
    return Repository(api_base=api_base, owner=segments[0], repo=segments[1])


def commit_of(revision: str) -> str:
    """The commit hash in a Flux revision (`main@sha1:<hex>`, `sha1:<hex>`, `main/<hex>`)."""
    tail = revision.rpartition("@")[2]
    if ":" in tail:
        algorithm, _, digest = tail.partition(":")
        if algorithm in ("sha1", "sha256") and _HASH.match(digest):
            return digest
    else:
        digest = tail.rpartition("/")[2]
        if _HASH.match(digest):
            return digest
    raise DeliveryError(
        f"failed to extract commit hash from revision {revision!r}", retryable=False
    )


def split_camel_case(text: str) -> list[str]:
    """`ReconciliationSucceeded` -> ['Reconciliation', 'Succeeded'], keeping acronyms."""
    return re.findall(r"[A-Z]+(?=[A-Z][a-z])|[A-Z]?[a-z]+|[A-Z]+|\d+|[^A-Za-z\d]+", text)


def commit_status_context(event: FluxEvent, provider_uid: str) -> str:
    return f"{event.kind}/{event.name}/{provider_uid.split('-')[0]}".lower()


def commit_status(event: FluxEvent, provider_uid: str) -> dict[str, str]:
    """The status body for the event's commit."""
    state = {INFO: "success", ERROR: "failure"}[event.severity]
    return {
        "state": state,
        "context": commit_status_context(event, provider_uid),
        "description": " ".join(split_camel_case(event.reason)).lower(),
    }


def is_duplicate(existing: list[Any], status: dict[str, str]) -> bool:
    """True when the newest status with this context already says the same."""
    for item in existing:
        if not isinstance(item, dict) or item.get("context") != status["context"]:
            continue
        return bool(
            item.get("state") == status["state"]
            and item.get("description") == status["description"]
        )
    return False


class GitHubSender:
    def __init__(self, config: ProviderConfig) -> None:
        token = config.token or config.password
        if not token:
            raise ProviderConfigError("github provider needs 'token' in spec.secretRef")
        if not config.address:
            raise ProviderConfigError("github provider needs spec.address (the repository URL)")
        self.config = config
        self.repository = parse_repository(config.address)
        self.headers = {
            "Authorization": f"Bearer {token}",
            "Accept": "application/vnd.github+json",
            "X-GitHub-Api-Version": "2022-11-28",
        }

    async def send(self, event: FluxEvent) -> None:
        if event.reason == PROGRESSING:
            return
        revision = event.metadata.get(REVISION)
        if not revision:
            raise DeliveryError("missing revision metadata", retryable=False)
        sha = commit_of(revision)
        status = commit_status(event, self.config.uid)
        repo = self.repository
        path = f"repos/{quote(repo.owner)}/{quote(repo.repo)}"
        listed = await request(
            "GET",
            f"{repo.api_base}{path}/commits/{sha}/statuses?per_page=50",
            self.config,
            headers=self.headers,
        )
        try:
            existing = json.loads(listed.body or b"[]")
        except ValueError:
            existing = []
        if isinstance(existing, list) and is_duplicate(existing, status):
            return
        await request(
            "POST",
            f"{repo.api_base}{path}/statuses/{sha}",
            self.config,
            body=encode_json(status),
            headers=self.headers,
        )
