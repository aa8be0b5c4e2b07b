"""An ImageUpdateAutomation's spec (image.toolkit.fluxcd.io/v1), parsed once.

Every field is handled; by value, `git.commit.signingKey.type: ssh` is refused (gpg
signing is implemented), as is a `sourceRef.kind` other than GitRepository. A
messageTemplate that uses Go template constructs headwater does not interpret stalls
naming the construct (`template.py`).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from controllers.image.template import TemplateError, check_template
from controllers.toolkit.git.errors import SourceError
from controllers.toolkit.git.gitref import GitRef, check_ref_name
from controllers.toolkit.runtime.durations import DurationError, parse_duration
from controllers.toolkit.runtime.fields import UNSUPPORTED_FIELD
from controllers.toolkit.runtime.frame import ReconcileError
from controllers.toolkit.runtime.selectors import LabelSelector, SelectorError, from_label_selector

UNSUPPORTED_FIELDS: dict[str, str] = {}

GIT_REPOSITORY = "GitRepository"
SETTERS = "Setters"
# Flux's reasons for an ImageUpdateAutomation.
INVALID_SOURCE_CONFIGURATION = "InvalidSourceConfiguration"
INVALID_POLICY_SELECTOR = "InvalidPolicySelector"
UPDATE_FAILED = "UpdateFailed"


@dataclass(frozen=True)
class ImageUpdateAutomationSpec:
    source_name: str
    source_namespace: str | None
    interval: float
    checkout_ref: GitRef | None
    author_name: str
    author_email: str
    signing_secret: str | None
    message_template: str | None
    template_values: Mapping[str, str]
    push_branch: str | None
    push_refspec: str | None
    push_options: Mapping[str, str]
    selector: LabelSelector
    update_path: str
    observed: Mapping[str, Any] = field(default_factory=dict)

    @classmethod
    def parse(cls, spec: Mapping[str, Any]) -> ImageUpdateAutomationSpec:
        source = spec.get("sourceRef") or {}
        kind = source.get("kind") or GIT_REPOSITORY
        if kind != GIT_REPOSITORY:
            raise ReconcileError(
                INVALID_SOURCE_CONFIGURATION,
                f"spec.sourceRef.kind '{kind}' is not supported: only GitRepository",
                stalled=True,
            )
        api_version = source.get("apiVersion")
        if api_version and not str(api_version).startswith("source.toolkit.fluxcd.io/"):
            raise ReconcileError(
                INVALID_SOURCE_CONFIGURATION,
                f"spec.sourceRef.apiVersion '{api_version}' is not source.toolkit.fluxcd.io",
                stalled=True,
            )
        try:
            interval = parse_duration(str(spec.get("interval") or ""), field="spec.interval")
        except DurationError as exc:
            raise ReconcileError(INVALID_SOURCE_CONFIGURATION, str(exc), stalled=True) from None
        git = spec.get("git") or {}
        checkout = git.get("checkout")
        checkout_ref = None
        try:
            if checkout is not None:
                checkout_ref = GitRef.from_spec(checkout.get("ref") or {})
                checkout_ref.validate()
            push = git.get("push") or {}
            push_branch = push.get("branch") or None
            if push_branch:
                check_ref_name(f"refs/heads/{push_branch}", "spec.git.push.branch")
        except SourceError as exc:
            raise ReconcileError(INVALID_SOURCE_CONFIGURATION, exc.message, stalled=True) from None
        refspec = push.get("refspec") or None
        if refspec is not None:
            src, sep, dst = str(refspec).partition(":")
            if not sep or not src or not dst or src.startswith("+"):
                raise ReconcileError(
                    INVALID_SOURCE_CONFIGURATION,
                    f"spec.git.push.refspec '{refspec}' must be <src>:<dst>; deletion and "
                    "force ('+') refspecs are not supported",
                    stalled=True,
                )
        commit = git.get("commit") or {}
        author = commit.get("author") or {}
        if not author.get("email"):
            raise ReconcileError(
                INVALID_SOURCE_CONFIGURATION,
                "spec.git.commit.author.email is required",
                stalled=True,
            )
        signing = commit.get("signingKey") or None
        signing_secret = None
        if signing is not None:
            key_type = signing.get("type") or "gpg"
            if key_type != "gpg":
                raise ReconcileError(
                    UNSUPPORTED_FIELD,
                    f"spec.git.commit.signingKey.type '{key_type}' is not supported by "
                    "headwater: only gpg",
                    stalled=True,
                )
            signing_secret = (signing.get("secretRef") or {}).get("name") or None
        template = commit.get("messageTemplate")
        try:
            check_template(template)
        except TemplateError as exc:
            raise ReconcileError(UPDATE_FAILED, str(exc), stalled=True) from None
        try:
            selector = from_label_selector(spec.get("policySelector"), "spec.policySelector")
        except SelectorError as exc:
            raise ReconcileError(INVALID_POLICY_SELECTOR, str(exc), stalled=True) from None
        update = spec.get("update") or {}
        strategy = update.get("strategy") or SETTERS
        if strategy != SETTERS:
            raise ReconcileError(
                UPDATE_FAILED, f"spec.update.strategy '{strategy}' is not Setters", stalled=True
            )
        return cls(
            source_name=str(source.get("name") or ""),
            source_namespace=source.get("namespace"),
            interval=interval,
            checkout_ref=checkout_ref,
            author_name=str(author.get("name") or ""),
            author_email=str(author["email"]),
            signing_secret=signing_secret,
            message_template=template,
            template_values=dict(commit.get("messageTemplateValues") or {}),
            push_branch=push_branch,
            push_refspec=refspec,
            push_options=dict(push.get("options") or {}),
            selector=selector,
            update_path=str(update.get("path") or "."),
        )
