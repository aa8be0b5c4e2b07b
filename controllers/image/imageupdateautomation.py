"""Reconcile one ImageUpdateAutomation: source → policies → checkout → setters → commit → push.

- source: the GitRepository `spec.sourceRef` names (read from the watch cache; its
  URL, ref, `secretRef`, `proxySecretRef` and `timeout` are used as the source
  controller uses them, through the same toolkit git code);
- policies: every ImagePolicy of the automation's namespace that `spec.policySelector`
  selects, with its `status.latestRef`;
- nothing new: when the checkout ref still points at `status.observedSourceRevision`
  (one `git ls-remote`) and the policies' images equal `status.observedPolicies`,
  nothing is cloned ("no change since last reconciliation");
- checkout: `spec.git.checkout.ref`, else the GitRepository's ref; the push branch is
  `spec.git.push.branch`, else the checkout branch;
- setters: every marked field under `spec.update.path` (`setters.py`); a marker that
  names a missing policy, or one with no latest image, fails with UpdateFailed and
  nothing is committed; no change, no commit ("repository up-to-date");
- commit: the templated message (`template.py`), the author, signed with
  `spec.git.commit.signingKey` when given; push: one atomic push to the push branch
  (forced when it differs from the checkout branch, as Flux's GitForcePushBranch) and
  `spec.git.push.refspec`; a rejected push changes nothing on the remote.
- report: `lastPushCommit`, `lastPushTime`, `observedPolicies`,
  `observedSourceRevision`, `lastAutomationRunTime`; a Normal event "pushed commit
  '<short>' to branch '<branch>'" followed by the commit message.
"""

from __future__ import annotations

import asyncio
import datetime
import tempfile
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from controllers.image import gitcommit
from controllers.image.automationspec import (
    INVALID_SOURCE_CONFIGURATION,
    UPDATE_FAILED,
    ImageUpdateAutomationSpec,
)
from controllers.image.setters import LatestImage, Result, SetterError, update_tree
from controllers.image.template import AutomationName, TemplateError, render_message
from controllers.toolkit.git import errors
from controllers.toolkit.git.checkout import DEFAULT_TIMEOUT, resolve_remote
from controllers.toolkit.git.credentials import (
    GitAuth,
    ProxyConfig,
    auth_from_secret,
    proxy_from_secret,
)
from controllers.toolkit.git.gitref import HEADS, GitRef, RefKind, format_revision
from controllers.toolkit.git.giturl import GitURL, parse_git_url
from controllers.toolkit.runtime import conditions as cond
from controllers.toolkit.runtime.durations import DurationError, jittered, parse_duration
from controllers.toolkit.runtime.events import NORMAL
from controllers.toolkit.runtime.frame import ReconcileError, ReconcileFrame, ReconcileRun
from controllers.toolkit.runtime.kube import SecretReader
from controllers.toolkit.runtime.reconciler import Object, ObjectRef, Outcome, Resource
from controllers.toolkit.runtime.tenancy import Lockdown, Reference

RESOURCE = Resource(
    "image.toolkit.fluxcd.io", "v1", "imageupdateautomations", "ImageUpdateAutomation"
)
WAIT_SECONDS = 10.0


@dataclass(frozen=True)
class GitSource:
    """What the automation needs of a GitRepository's spec."""

    url: GitURL
    ref: GitRef
    secret_name: str | None
    proxy_secret: str | None
    timeout: float


def git_source(obj: Object) -> GitSource:
    spec = obj.get("spec") or {}
    try:
        url = parse_git_url(str(spec.get("url") or ""))
        ref = GitRef.from_spec(spec.get("ref"))
        timeout = (
            parse_duration(str(spec["timeout"]), field="spec.timeout")
            if spec.get("timeout")
            else DEFAULT_TIMEOUT
        )
    except (errors.SourceError, DurationError) as exc:
        raise ReconcileError(
            INVALID_SOURCE_CONFIGURATION, f"the GitRepository's spec is not usable: {exc}"
        ) from None
    return GitSource(
        url=url,
        ref=ref,
        secret_name=(spec.get("secretRef") or {}).get("name"),
        proxy_secret=(spec.get("proxySecretRef") or {}).get("name"),
        timeout=timeout,
    )


def source_ref(obj: Object) -> ObjectRef:
    ref = (obj.get("spec") or {}).get("sourceRef") or {}
    return ObjectRef(str(ref.get("namespace") or ObjectRef.of(obj).namespace), str(ref.get("name")))


def _now() -> str:
    return cond.format_time(datetime.datetime.now(datetime.UTC))


@dataclass
class ImageUpdateAutomationReconciler:
    frame: ReconcileFrame
    read_secret: SecretReader
    git_repositories: Callable[[ObjectRef], Object | None]
    policies: Callable[[], list[Object]]
    lockdown: Lockdown = field(default_factory=Lockdown)

    async def reconcile(self, obj: Object) -> Outcome:
        return await self.frame.run(obj, self._steps)

    async def _steps(self, run: ReconcileRun) -> None:
        spec = ImageUpdateAutomationSpec.parse(run.spec)
        run.retry_after = jittered(min(spec.interval, 60.0))
        await run.progressing("updating images in git")
        ref = source_ref(run.obj)
        self.lockdown.check_references(
            run.ref.namespace,
            [Reference("spec.sourceRef", "GitRepository", ref.name, ref.namespace)],
        )
        repo = self.git_repositories(ref)
        if repo is None:
            raise ReconcileError(
                cond.DEPENDENCY_NOT_READY,
                f"referenced GitRepository '{ref.namespace}/{ref.name}' does not exist",
                requeue_after=WAIT_SECONDS,
                event=None,
            )
        source = git_source(repo)
        checkout_ref = spec.checkout_ref or source.ref
        push_branch = spec.push_branch or (
            checkout_ref.branch_or_default if checkout_ref.kind is RefKind.BRANCH else None
        )
        if push_branch is None:
            raise ReconcileError(
                INVALID_SOURCE_CONFIGURATION,
                f"no push branch: the checkout is {checkout_ref.describe()}; set "
                "spec.git.push.branch",
                stalled=True,
            )
        auth, proxy = await self._git_access(ref.namespace, source)
        observed = self._observed_policies(run.ref.namespace, spec)
        status = dict(run.status)
        resolved = (
            await asyncio.to_thread(
                resolve_remote, source.url, checkout_ref, auth, timeout=source.timeout, proxy=proxy
            )
            if checkout_ref.kind is not RefKind.COMMIT
            else None
        )
        if (
            resolved is not None
            and not run.has_new_work()
            and status.get("observedSourceRevision") == resolved.revision
            and status.get("observedPolicies") == _as_status(observed)
            and cond.is_true(status, cond.READY)
        ):
            run.ready("no change since last reconciliation", reason=cond.SUCCEEDED)
            run.requeue_after = jittered(spec.interval)
            return
        signing = await self._signing_key(run.ref.namespace, spec)
        policies = {key: image for key, image in observed.items()}
        automation = AutomationName(run.ref.namespace, run.ref.name)
        force = (
            push_branch != checkout_ref.branch_or_default or checkout_ref.kind is not RefKind.BRANCH
        )
        pushed, revision, message = await asyncio.to_thread(
            self._update,
            source,
            checkout_ref,
            auth,
            proxy,
            spec,
            policies,
            automation,
            signing,
            push_branch,
            force,
        )
        status["lastAutomationRunTime"] = _now()
        status["observedPolicies"] = _as_status(observed)
        if pushed is not None:
            status["lastPushCommit"] = pushed.commit
            status["lastPushTime"] = _now()
            if not force:
                revision = format_revision(HEADS + push_branch, pushed.commit)
            run.notify(
                NORMAL,
                cond.SUCCEEDED,
                f"pushed commit '{pushed.commit[:7]}' to branch '{push_branch}'\n{message}",
                {"revision": format_revision(HEADS + push_branch, pushed.commit)},
            )
            ready = f"pushed commit '{pushed.commit[:7]}' to branch '{push_branch}'"
        else:
            ready = "repository up-to-date"
        status["observedSourceRevision"] = revision
        run.status = status
        run.ready(ready, reason=cond.SUCCEEDED)
        run.requeue_after = jittered(spec.interval)

    def _update(
        self,
        source: GitSource,
        checkout_ref: GitRef,
        auth: GitAuth,
        proxy: ProxyConfig | None,
        spec: ImageUpdateAutomationSpec,
        policies: Mapping[tuple[str, str], LatestImage | None],
        automation: AutomationName,
        signing: gitcommit.SigningKey | None,
        push_branch: str,
        force: bool,
    ) -> tuple[gitcommit.Pushed | None, str, str]:
        """Blocking: clone, rewrite, commit, push; (pushed or None, checkout revision, message)."""
        with tempfile.TemporaryDirectory(prefix="headwater-imageupdate-") as tmp:
            checkout = gitcommit.prepare(
                source.url,
                checkout_ref,
                auth,
                Path(tmp) / "work",
                timeout=source.timeout,
                proxy=proxy,
            )
            try:
                result = update_tree(checkout.path, spec.update_path, policies)
            except SetterError as exc:
                raise ReconcileError(UPDATE_FAILED, str(exc)) from None
            if not result:
                return None, checkout.revision, ""
            try:
                message = render_message(
                    spec.message_template, automation, result, spec.template_values
                )
            except TemplateError as exc:
                raise ReconcileError(UPDATE_FAILED, str(exc), stalled=True) from None
            pushed = gitcommit.commit_and_push(
                checkout,
                source.url,
                auth,
                files=sorted(result.files),
                message=message,
                author=gitcommit.Author(spec.author_name, spec.author_email),
                signing=signing,
                push_branch=push_branch,
                force=force,
                refspec=spec.push_refspec,
                options=spec.push_options,
                timeout=source.timeout,
                proxy=proxy,
            )
            return pushed, checkout.revision, message

    def _observed_policies(
        self, namespace: str, spec: ImageUpdateAutomationSpec
    ) -> dict[tuple[str, str], LatestImage | None]:
        found: dict[tuple[str, str], LatestImage | None] = {}
        for policy in self.policies():
            ref = ObjectRef.of(policy)
            if ref.namespace != namespace or not spec.selector.matches_object(policy):
                continue
            latest = (policy.get("status") or {}).get("latestRef") or {}
            image = None
            if latest.get("name") and latest.get("tag"):
                image = LatestImage(
                    str(latest["name"]), str(latest["tag"]), str(latest.get("digest") or "")
                )
            found[(ref.namespace, ref.name)] = image
        return found

    async def _git_access(
        self, namespace: str, source: GitSource
    ) -> tuple[GitAuth, ProxyConfig | None]:
        secret = None
        if source.secret_name:
            secret = await self.read_secret(namespace, source.secret_name)
            if secret is None:
                raise errors.AuthenticationError(
                    f"secret '{namespace}/{source.secret_name}' (the GitRepository's "
                    "spec.secretRef) not found"
                )
        auth = auth_from_secret(secret, source.url)
        proxy = None
        if source.proxy_secret:
            where = f"secret '{namespace}/{source.proxy_secret}' (spec.proxySecretRef)"
            data = await self.read_secret(namespace, source.proxy_secret)
            if data is None:
                raise errors.AuthenticationError(f"{where} not found")
            proxy = proxy_from_secret(data, where)
        return auth, proxy

    async def _signing_key(
        self, namespace: str, spec: ImageUpdateAutomationSpec
    ) -> gitcommit.SigningKey | None:
        if spec.signing_secret is None:
            return None
        where = f"secret '{namespace}/{spec.signing_secret}' (spec.git.commit.signingKey)"
        data = await self.read_secret(namespace, spec.signing_secret)
        if data is None:
            raise gitcommit.SigningError(f"{where} not found")
        armored = data.get("git.asc")
        if not armored:
            raise gitcommit.SigningError(f"{where} has no 'git.asc' key")
        passphrase = data.get("passphrase")
        return gitcommit.SigningKey(
            armored, passphrase.decode("utf-8", "replace") if passphrase else None
        )


def _as_status(observed: Mapping[tuple[str, str], LatestImage | None]) -> dict[str, Any]:
    """Flux's observedPolicies: policy name -> {name, tag} (policies with an image only)."""
    out: dict[str, Any] = {}
    for (_, name), image in sorted(observed.items()):
        if image is None:
            continue
        entry = {"name": image.name, "tag": image.tag}
        if image.digest:
            entry["digest"] = image.digest
        out[name] = entry
    return out


__all__ = ["RESOURCE", "ImageUpdateAutomationReconciler", "Result"]
