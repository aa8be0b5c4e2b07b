"""Who the dashboard acts as, and whether that identity may change things.

- Locally (`headwater dashboard`), it is the kubeconfig's identity, exactly
  as `headwater get` would be: the person running it.
- In a cluster, it runs as its ServiceAccount behind an authenticating proxy
  (oauth2-proxy or the like) that puts the signed-in user's name in a header
  (`--user-header`, e.g. `X-Forwarded-User`). Every API call made for a
  request then impersonates that user (`Impersonate-User`), so Kubernetes
  RBAC decides what each person sees and may do. The header is trusted, so
  only the proxy may reach the dashboard (docs/operations.md); a request
  without it is refused (401), never served as the ServiceAccount.

Buttons are shown only when a SelfSubjectAccessReview, made as the same
identity, says it may `patch` the object's kind in its namespace; the API
server checks again on every write anyway.
"""

from __future__ import annotations

import collections
import dataclasses
import re
import threading
import time

import kubernetes.client
from kubernetes.client.exceptions import ApiException

from controllers.commands.common import Session
from controllers.commands.kinds import FluxKind

IMPERSONATE_USER = "Impersonate-User"
# How long an access review's answer is reused for the same identity, kind and namespace.
REVIEW_TTL_SECONDS = 30.0
MAX_IDENTITIES = 256
MAX_USER_LENGTH = 256
_USER = re.compile(r"^[^\x00-\x1f\x7f]+$")


class Unauthenticated(Exception):
    """The request carries no usable user from the trusted header."""


@dataclasses.dataclass
class Sessions:
    """One API Session per identity (the kubeconfig's, or each impersonated user's)."""

    configuration: kubernetes.client.Configuration
    namespace: str
    all_namespaces: bool
    user_header: str | None = None

    def __post_init__(self) -> None:
        self._lock = threading.Lock()
        self._sessions: collections.OrderedDict[str, Session] = collections.OrderedDict()
        self._reviews: dict[tuple[str, str, str, str], tuple[float, bool]] = {}

    def _new(self, user: str | None) -> Session:
        api = kubernetes.client.ApiClient(self.configuration)
        if user is not None:
            api.set_default_header(IMPERSONATE_USER, user)
        return Session(api=api, namespace=self.namespace, all_namespaces=self.all_namespaces)

    def base(self) -> Session:
        """The dashboard's own identity (for its watches): the kubeconfig's or the
        ServiceAccount's."""
        return self.get(None)

    def user_of(self, headers: object) -> str | None:
        """The user a request acts as: None for the kubeconfig identity (local use)."""
        if self.user_header is None:
            return None
        value = str(getattr(headers, "get", lambda _k: None)(self.user_header) or "").strip()
        if not value or len(value) > MAX_USER_LENGTH or not _USER.match(value):
            raise Unauthenticated(f"no authenticated user in the {self.user_header} header")
        return value

    def get(self, user: str | None) -> Session:
        key = user if user is not None else "\x00kubeconfig"
        with self._lock:
            found = self._sessions.get(key)
            if found is not None:
                self._sessions.move_to_end(key)
                return found
            session = self._new(user)
            self._sessions[key] = session
            while len(self._sessions) > MAX_IDENTITIES:
                _, old = self._sessions.popitem(last=False)
                old.close()
            return session

    def can_patch(self, user: str | None, kind: FluxKind, namespace: str) -> bool:
        key = (user or "", kind.plural, kind.group, namespace)
        now = time.monotonic()
        with self._lock:
            cached = self._reviews.get(key)
        if cached is not None and now - cached[0] < REVIEW_TTL_SECONDS:
            return cached[1]
        allowed = self._review(self.get(user), kind, namespace)
        with self._lock:
            if len(self._reviews) > 4096:
                self._reviews.clear()
            self._reviews[key] = (now, allowed)
        return allowed

    @staticmethod
    def _review(session: Session, kind: FluxKind, namespace: str) -> bool:
        body = kubernetes.client.V1SelfSubjectAccessReview(
            spec=kubernetes.client.V1SelfSubjectAccessReviewSpec(
                resource_attributes=kubernetes.client.V1ResourceAttributes(
                    group=kind.group, resource=kind.plural, verb="patch", namespace=namespace
                )
            )
        )
        try:
            result = kubernetes.client.AuthorizationV1Api(
                session.api
            ).create_self_subject_access_review(body)
        except ApiException:
            return False
        return bool(result.status and result.status.allowed)

    def close(self) -> None:
        with self._lock:
            for session in self._sessions.values():
                session.close()
            self._sessions.clear()
