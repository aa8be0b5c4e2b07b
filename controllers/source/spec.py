"""A GitRepository's spec, parsed once and typed; what cannot work stalls, naming the field.

Every field of the v1 schema is either parsed here or refused: `UNSUPPORTED_FIELDS`
lists the ones refused whatever their value; `spec.provider` is refused by value
(only `generic`, git's own authentication, is implemented).
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from controllers.source.verify import VerifyMode
from controllers.toolkit.git import errors
from controllers.toolkit.git.checkout import DEFAULT_TIMEOUT
from controllers.toolkit.git.gitref import GitRef
from controllers.toolkit.git.giturl import parse_git_url
from controllers.toolkit.runtime.durations import DurationError, parse_duration
from controllers.toolkit.runtime.fields import UNSUPPORTED_FIELD, unsupported_in
from controllers.toolkit.runtime.frame import ReconcileError

# Fields the CRD accepts that headwater refuses (dotted path -> why).
UNSUPPORTED_FIELDS: dict[str, str] = {
    # Flux uses it only for the azure provider's workload identity, refused below.
    "spec.serviceAccountName": "it only serves cloud-provider (workload identity) "
    "authentication; use spec.secretRef",
}

GENERIC_PROVIDER = "generic"
# Cloud / GitHub App authentication: tokens minted from the pod's identity.
CLOUD_PROVIDERS = ("aws", "azure", "github")

# Characters that would make a sparse-checkout directory a pattern instead of a path.
_PATTERN_CHARS = re.compile(r"[*?\[\]\\!#]")


class SpecError(errors.SourceError):
    """The spec cannot work as written: retrying cannot help until it changes."""

    reason = errors.URL_INVALID
    stalled = True


class SparseCheckoutError(SpecError):
    """A spec.sparseCheckout entry git cannot check out as a directory (Flux's reason)."""

    reason = errors.GIT_OPERATION_FAILED


@dataclass(frozen=True)
class IncludeSpec:
    name: str
    from_path: str
    to_path: str


@dataclass(frozen=True)
class GitRepositorySpec:
    url: str
    ref: GitRef
    interval: float
    timeout: float
    suspend: bool
    secret_name: str | None
    ignore: str | None
    recurse_submodules: bool
    include: tuple[IncludeSpec, ...]
    verify_mode: VerifyMode | None
    verify_secret: str | None
    proxy_secret: str | None = None
    # As written in the spec (recorded as observedSparseCheckout), and as git paths.
    sparse_checkout: tuple[str, ...] | None = None
    sparse_dirs: tuple[str, ...] = ()

    @classmethod
    def parse(cls, spec: Mapping[str, Any]) -> GitRepositorySpec:
        """The spec, checked; every error it raises stalls, as the spec must change first."""
        try:
            return cls._parse(spec)
        except errors.SourceError as exc:
            # A step's error (a bad ref name, verify mode) found before any step ran.
            exc.stalled = True
            raise

    @classmethod
    def _parse(cls, spec: Mapping[str, Any]) -> GitRepositorySpec:
        refused = unsupported_in({"spec": spec}, UNSUPPORTED_FIELDS)
        provider = spec.get("provider") or GENERIC_PROVIDER
        if provider != GENERIC_PROVIDER:
            refused.insert(
                0,
                f"spec.provider: '{provider}' is not supported by headwater: only "
                f"'{GENERIC_PROVIDER}' (credentials from spec.secretRef) is implemented",
            )
        if refused:
            # Both at once: the schema allows serviceAccountName only with a cloud provider.
            raise ReconcileError(UNSUPPORTED_FIELD, "; ".join(refused), stalled=True)
        try:
            interval = parse_duration(str(spec.get("interval", "")), field="spec.interval")
            timeout = (
                parse_duration(str(spec["timeout"]), field="spec.timeout")
                if spec.get("timeout")
                else DEFAULT_TIMEOUT
            )
        except DurationError as exc:
            raise SpecError(str(exc)) from None
        url = str(spec.get("url") or "")
        parsed = parse_git_url(url)  # raises URLInvalidError naming the problem
        proxy_secret = (spec.get("proxySecretRef") or {}).get("name") or None
        if proxy_secret and not parsed.is_http:
            raise ReconcileError(
                UNSUPPORTED_FIELD,
                "spec.proxySecretRef: headwater sends only http(s) repositories through a "
                f"proxy, and spec.url is {parsed.scheme}://",
                stalled=True,
            )
        verify = spec.get("verify")
        include = tuple(
            IncludeSpec(
                name=str((item.get("repository") or {}).get("name") or ""),
                from_path=str(item.get("fromPath") or ""),
                to_path=str(item.get("toPath") or ""),
            )
            for item in spec.get("include") or []
        )
        sparse = spec.get("sparseCheckout")
        sparse_checkout = tuple(str(p) for p in sparse) if sparse else None
        return cls(
            url=url,
            ref=GitRef.from_spec(spec.get("ref")),
            interval=interval,
            timeout=timeout,
            suspend=bool(spec.get("suspend")),
            secret_name=(spec.get("secretRef") or {}).get("name"),
            ignore=spec.get("ignore"),
            recurse_submodules=bool(spec.get("recurseSubmodules")),
            include=include,
            verify_mode=VerifyMode.parse(verify.get("mode")) if verify else None,
            verify_secret=((verify or {}).get("secretRef") or {}).get("name"),
            proxy_secret=proxy_secret,
            sparse_checkout=sparse_checkout,
            sparse_dirs=sparse_directories(sparse_checkout or ()),
        )

    def observed(self) -> dict[str, Any]:
        """The status fields recording what shaped the artifact (Flux's observed*)."""
        fields: dict[str, Any] = {"observedRecurseSubmodules": self.recurse_submodules}
        if self.ignore is not None:
            fields["observedIgnore"] = self.ignore
        if self.include:
            fields["observedInclude"] = [_include_status(inc) for inc in self.include]
        if self.sparse_checkout:
            fields["observedSparseCheckout"] = list(self.sparse_checkout)
        if self.verify_mode is not None:
            fields["sourceVerificationMode"] = self.verify_mode.value
        return fields


def sparse_directories(paths: tuple[str, ...]) -> tuple[str, ...]:
    """spec.sparseCheckout as clean relative directories (`./a/b/` -> `a/b`).

    Flux joins each entry to the checkout root, so `/a` and `./a` both mean `a`;
    an entry that leaves the repository or would be read as a pattern cannot work.
    """
    dirs = []
    for position, raw in enumerate(paths):
        where = f"spec.sparseCheckout[{position}]"
        parts = [p for p in raw.strip().split("/") if p not in ("", ".")]
        if not parts:
            raise SparseCheckoutError(f"{where}: '{raw}' is the repository root, not a directory")
        if ".." in parts:
            raise SparseCheckoutError(f"{where}: '{raw}' must stay inside the repository")
        if _PATTERN_CHARS.search(raw):
            raise SparseCheckoutError(f"{where}: '{raw}' must be a directory path, not a pattern")
        dirs.append("/".join(parts))
    return tuple(dirs)


def _include_status(inc: IncludeSpec) -> dict[str, Any]:
    entry: dict[str, Any] = {"repository": {"name": inc.name}}
    if inc.from_path:
        entry["fromPath"] = inc.from_path
    if inc.to_path:
        entry["toPath"] = inc.to_path
    return entry
