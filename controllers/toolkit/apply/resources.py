"""Raw, counted access to any Kubernetes resource, for the apply engine.

The apply, prune and health steps work on arbitrary kinds, so they talk to the
API server through this one client instead of typed APIs:

- discovery is cached per group-version and fetched only for the
  group-versions the objects use (never a full discovery walk), so applying
  thousands of objects costs a handful of discovery requests;
- every request runs on a bounded thread pool (the kubernetes client is
  synchronous), so however many objects a reconcile holds, at most
  `concurrency` requests are in flight for this client;
- every request has a timeout, retries only what is safe to retry
  (throttling, unavailable server, dropped connections) a bounded number of
  times, and is counted by verb, so benchmarks can report API requests.

Create one ResourceClient per ApiClient (per identity) and reuse it across
reconciles; `close()` it when the controller stops.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import contextlib
import dataclasses
import json
import logging
import threading
import time
from collections.abc import AsyncIterator, Callable, Mapping, Sequence
from typing import Any, TypeVar
from urllib.parse import quote

import kubernetes.client
import urllib3.exceptions
from kubernetes.client.rest import ApiException

log = logging.getLogger(__name__)

T = TypeVar("T")

APPLY_PATCH = "application/apply-patch+yaml"
JSON_PATCH = "application/json-patch+json"

# Requests answered with these statuses never changed anything, so repeating
# them is safe even for writes.
_RETRY_STATUSES = frozenset({429, 502, 503, 504})
_MAX_ATTEMPTS = 4
_MAX_RETRY_AFTER = 10.0
# How long a discovery answer (positive or negative) is trusted before a miss
# makes us ask again; keeps a burst of objects of an unknown kind from asking
# once each.
_DISCOVERY_RECHECK = 2.0
# Error texts from the API server can embed whole objects; keep them readable.
_MAX_MESSAGE = 600


def shorten(text: str, limit: int = _MAX_MESSAGE) -> str:
    """Cut `text` to `limit` characters, keeping its start and its end."""
    if len(text) <= limit:
        return text
    head = limit * 2 // 5
    tail = limit - head - 3
    return f"{text[:head]} … {text[-tail:]}"


@dataclasses.dataclass(frozen=True)
class ResourceInfo:
    """Where a kind is served: its REST path and scope."""

    group: str
    version: str
    kind: str
    plural: str
    namespaced: bool

    @property
    def api_version(self) -> str:
        return f"{self.group}/{self.version}" if self.group else self.version

    def path(self, namespace: str | None = None, name: str | None = None) -> str:
        """The collection path, or the object path when `name` is given."""
        base = f"/apis/{self.group}/{self.version}" if self.group else f"/api/{self.version}"
        if self.namespaced and namespace:
            base += f"/namespaces/{quote(namespace, safe='')}"
        base += f"/{self.plural}"
        if name is not None:
            base += f"/{quote(name, safe='')}"
        return base


def split_api_version(api_version: str) -> tuple[str, str]:
    """`apps/v1` -> ("apps", "v1"); `v1` -> ("", "v1")."""
    group, sep, version = api_version.rpartition("/")
    return (group, version) if sep else ("", api_version)


@dataclasses.dataclass(frozen=True)
class Cause:
    """One entry of a Status' details.causes: which field, and what is wrong with it."""

    field: str
    reason: str
    message: str

    def __str__(self) -> str:
        return f"{self.field}: {self.message}" if self.field else self.message


class ApiError(Exception):
    """The API server refused a request (or could not be reached: status 0)."""

    def __init__(
        self,
        status: int,
        reason: str,
        message: str,
        causes: Sequence[Cause] = (),
        details_kind: str = "",
    ) -> None:
        super().__init__(message)
        self.status = status
        self.reason = reason
        self.message = message
        self.causes = tuple(causes)
        self.details_kind = details_kind

    def __str__(self) -> str:
        return shorten(self.message)

    @property
    def not_found(self) -> bool:
        return self.status == 404

    @classmethod
    def from_exception(cls, exc: ApiException) -> ApiError:
        body: Any = None
        raw = exc.body
        if raw:
            with contextlib.suppress(ValueError, TypeError):
                body = json.loads(raw)
        if isinstance(body, dict) and body.get("kind") == "Status":
            details = body.get("details") or {}
            causes = [
                Cause(
                    field=str(c.get("field") or ""),
                    reason=str(c.get("reason") or ""),
                    message=str(c.get("message") or ""),
                )
                for c in details.get("causes") or ()
                if isinstance(c, dict)
            ]
            return cls(
                status=int(body.get("code") or exc.status or 0),
                # Only the Status' own reason: the HTTP phrase ("Internal Server
                # Error" for a schema mismatch) would mislead.
                reason=str(body.get("reason") or ""),
                message=str(body.get("message") or exc.reason or ""),
                causes=causes,
                details_kind=str(details.get("kind") or ""),
            )
        text = raw.decode("utf-8", "replace") if isinstance(raw, bytes) else str(raw or "")
        return cls(
            status=int(exc.status or 0),
            reason=str(exc.reason or ""),
            message=shorten(text.strip() or str(exc.reason or "request failed")),
        )


class NoMatchError(Exception):
    """No resource serves this kind at this apiVersion (missing CRD, wrong version)."""

    def __init__(self, api_version: str, kind: str, detail: str = "") -> None:
        message = f'no matches for kind "{kind}" in version "{api_version}"'
        super().__init__(f"{message}: {detail}" if detail else message)
        self.api_version = api_version
        self.kind = kind


class RequestCounter:
    """API requests by verb; thread-safe, cheap, shared by every caller of a client."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._counts: dict[str, int] = {}

    def add(self, verb: str) -> None:
        with self._lock:
            self._counts[verb] = self._counts.get(verb, 0) + 1

    def snapshot(self) -> dict[str, int]:
        with self._lock:
            return dict(self._counts)

    def since(self, before: Mapping[str, int]) -> dict[str, int]:
        """Requests made after `before` (an earlier snapshot), by verb."""
        now = self.snapshot()
        return {verb: n - before.get(verb, 0) for verb, n in now.items() if n - before.get(verb, 0)}


@dataclasses.dataclass
class _GroupVersion:
    kinds: dict[str, ResourceInfo] | None  # None: the group-version is not served
    fetched: float


class ResourceClient:
    """Discovery-cached, bounded, counted REST access to any kind."""

    def __init__(
        self,
        api_client: kubernetes.client.ApiClient,
        *,
        concurrency: int = 8,
        request_timeout: float = 30.0,
        counter: RequestCounter | None = None,
    ) -> None:
        pool = int(getattr(api_client.configuration, "connection_pool_maxsize", concurrency) or 1)
        # More threads than pooled connections would open and drop connections.
        self.concurrency = max(1, min(concurrency, pool))
        self._api = api_client
        self._timeout = (min(10.0, request_timeout), request_timeout)
        self.counter = counter or RequestCounter()
        self._executor = concurrent.futures.ThreadPoolExecutor(
            max_workers=self.concurrency, thread_name_prefix="headwater-api"
        )
        self._discovery: dict[str, _GroupVersion] = {}
        self._preferred: dict[str, tuple[str, float]] = {}
        self._discovery_locks: dict[str, asyncio.Lock] = {}

    async def __aenter__(self) -> ResourceClient:
        return self

    async def __aexit__(self, *_: object) -> None:
        self.close()

    @property
    def api_client(self) -> kubernetes.client.ApiClient:
        """The API client underneath, for typed calls the apply engine does not make."""
        return self._api

    def close(self) -> None:
        """Stop the worker threads; requests still queued are cancelled."""
        self._executor.shutdown(wait=False, cancel_futures=True)

    # -- transport ---------------------------------------------------------

    def _call(
        self,
        verb: str,
        method: str,
        path: str,
        *,
        query: Sequence[tuple[str, str]] = (),
        body: Any = None,
        content_type: str = "application/json",
    ) -> Any:
        """One request with bounded retries; runs on a worker thread."""
        delay = 0.25
        for attempt in range(1, _MAX_ATTEMPTS + 1):
            self.counter.add(verb)
            try:
                response = self._api.call_api(
                    path,
                    method,
                    query_params=list(query),
                    header_params={"Content-Type": content_type, "Accept": "application/json"},
                    body=body,
                    auth_settings=["BearerToken"],
                    _preload_content=False,
                    _return_http_data_only=True,
                    _request_timeout=self._timeout,
                )
                data = response.data
                return json.loads(data) if data else None
            except ApiException as exc:
                error = ApiError.from_exception(exc)
                if error.status not in _RETRY_STATUSES or attempt == _MAX_ATTEMPTS:
                    raise error from None
                wait = _retry_after(exc) or delay
            except (urllib3.exceptions.HTTPError, OSError) as exc:
                if attempt == _MAX_ATTEMPTS:
                    raise ApiError(0, "ConnectionError", f"{method} {path}: {exc}") from None
                wait = delay
            log.debug("retrying %s %s in %.2fs (attempt %d)", method, path, wait, attempt)
            time.sleep(wait)
            delay = min(delay * 2, 4.0)
        raise AssertionError("unreachable")

    async def _run(self, fn: Callable[[], T]) -> T:
        loop = asyncio.get_running_loop()
        return await loop.run_in_executor(self._executor, fn)

    async def request(
        self,
        verb: str,
        method: str,
        path: str,
        *,
        query: Sequence[tuple[str, str]] = (),
        body: Any = None,
        content_type: str = "application/json",
    ) -> Any:
        """Any request on the pool; `verb` is the name it is counted under."""
        return await self._run(
            lambda: self._call(
                verb, method, path, query=query, body=body, content_type=content_type
            )
        )

    # -- discovery ---------------------------------------------------------

    def forget(self, group: str) -> None:
        """Drop what discovery knows about `group` (e.g. after a CRD changed)."""
        for key in [k for k in self._discovery if split_api_version(k)[0] == group]:
            del self._discovery[key]
        self._preferred.pop(group, None)

    async def _group_version(self, api_version: str, *, refresh: bool) -> _GroupVersion:
        lock = self._discovery_locks.setdefault(api_version, asyncio.Lock())
        async with lock:
            known = self._discovery.get(api_version)
            fresh = known is not None and time.monotonic() - known.fetched < _DISCOVERY_RECHECK
            if known is not None and (not refresh or fresh):
                return known
            group, version = split_api_version(api_version)
            path = f"/apis/{group}/{version}" if group else f"/api/{version}"
            try:
                doc = await self.request("discovery", "GET", path)
            except ApiError as exc:
                if exc.status != 404:
                    raise
                doc = None
            kinds: dict[str, ResourceInfo] | None = None
            if isinstance(doc, dict):
                kinds = {}
                for item in doc.get("resources") or ():
                    name = str(item.get("name") or "")
                    if not name or "/" in name:  # subresources
                        continue
                    kind = str(item.get("kind") or "")
                    kinds.setdefault(
                        kind,
                        ResourceInfo(group, version, kind, name, bool(item.get("namespaced"))),
                    )
            entry = _GroupVersion(kinds, time.monotonic())
            self._discovery[api_version] = entry
            return entry

    async def resource_for(self, api_version: str, kind: str) -> ResourceInfo:
        """The resource serving `kind` at `api_version`; NoMatchError when none does."""
        entry = await self._group_version(api_version, refresh=False)
        if entry.kinds is None or kind not in entry.kinds:
            entry = await self._group_version(api_version, refresh=True)
        if entry.kinds is None:
            raise NoMatchError(api_version, kind, "the API version is not served")
        info = entry.kinds.get(kind)
        if info is None:
            raise NoMatchError(api_version, kind)
        return info

    async def preferred_version(self, group: str) -> str:
        """The group's preferred version (for references that name no version)."""
        if not group:
            return "v1"
        known = self._preferred.get(group)
        if known and time.monotonic() - known[1] < 300:
            return known[0]
        try:
            doc = await self.request("discovery", "GET", f"/apis/{group}")
        except ApiError as exc:
            if exc.not_found:
                raise NoMatchError(group, "*", "the API group is not served") from None
            raise
        version = str(((doc or {}).get("preferredVersion") or {}).get("version") or "")
        if not version:
            raise NoMatchError(group, "*", "the API group has no preferred version")
        self._preferred[group] = (version, time.monotonic())
        return version

    # -- objects -----------------------------------------------------------

    async def get(self, info: ResourceInfo, namespace: str, name: str) -> dict[str, Any] | None:
        """The live object, or None when it does not exist."""
        try:
            result: dict[str, Any] = await self.request("get", "GET", info.path(namespace, name))
        except ApiError as exc:
            # A missing namespace means the object is missing too.
            if exc.not_found:
                return None
            raise
        return result

    async def list_pages(
        self,
        info: ResourceInfo,
        namespace: str,
        *,
        label_selector: str = "",
        limit: int = 500,
    ) -> AsyncIterator[list[dict[str, Any]]]:
        """The collection, one page (at most `limit` objects) at a time."""
        token = ""
        while True:
            query = [("limit", str(limit))]
            if label_selector:
                query.append(("labelSelector", label_selector))
            if token:
                query.append(("continue", token))
            page = await self.request("list", "GET", info.path(namespace), query=query)
            items: list[dict[str, Any]] = list((page or {}).get("items") or ())
            # Items of a list carry no kind/apiVersion; give them theirs.
            for item in items:
                item.setdefault("apiVersion", info.api_version)
                item.setdefault("kind", info.kind)
            yield items
            token = str(((page or {}).get("metadata") or {}).get("continue") or "")
            if not token:
                return

    async def apply(
        self,
        info: ResourceInfo,
        obj: Mapping[str, Any],
        *,
        field_manager: str,
        dry_run: bool = False,
        force: bool = True,
    ) -> dict[str, Any]:
        """Server-side apply `obj`; returns the object as the server has (or would have) it."""
        meta = obj.get("metadata") or {}
        query = [("fieldManager", field_manager), ("fieldValidation", "Strict")]
        if force:
            query.append(("force", "true"))
        if dry_run:
            query.append(("dryRun", "All"))
        result: dict[str, Any] = await self.request(
            "apply-dry-run" if dry_run else "apply",
            "PATCH",
            info.path(str(meta.get("namespace") or ""), str(meta.get("name") or "")),
            query=query,
            body=obj,
            content_type=APPLY_PATCH,
        )
        return result

    async def json_patch(
        self,
        info: ResourceInfo,
        namespace: str,
        name: str,
        operations: Sequence[Mapping[str, Any]],
        *,
        field_manager: str,
    ) -> dict[str, Any]:
        """An RFC 6902 patch (used for metadata surgery such as managedFields)."""
        result: dict[str, Any] = await self.request(
            "patch",
            "PATCH",
            info.path(namespace, name),
            query=[("fieldManager", field_manager)],
            body=list(operations),
            content_type=JSON_PATCH,
        )
        return result

    async def delete(
        self,
        info: ResourceInfo,
        namespace: str,
        name: str,
        *,
        propagation: str = "Background",
        uid: str | None = None,
    ) -> bool:
        """Delete; False when it was already gone. `uid` guards against a namesake."""
        body: dict[str, Any] = {
            "apiVersion": "v1",
            "kind": "DeleteOptions",
            "propagationPolicy": propagation,
        }
        if uid:
            body["preconditions"] = {"uid": uid}
        try:
            await self.request("delete", "DELETE", info.path(namespace, name), body=body)
        except ApiError as exc:
            if exc.not_found:
                return False
            raise
        return True


def _retry_after(exc: ApiException) -> float | None:
    headers = exc.headers or {}
    value = headers.get("Retry-After") if hasattr(headers, "get") else None
    try:
        return min(float(value), _MAX_RETRY_AFTER) if value else None
    except (TypeError, ValueError):
        return None
