"""Reconcile one ImagePolicy: repository → access → tags → select → report.

- repository: `spec.imageRepositoryRef` (the policy's namespace when none is given);
  missing is DependencyNotReady, waited for without a Warning;
- access: a repository in another namespace must allow the policy's namespace through
  its `spec.accessFrom.namespaceSelectors` (Flux's ACL), else AccessDenied;
- tags: the repository's last scan from the controller's `TagStore`; none yet is
  DependencyNotReady, and the scan requeues the policy when it lands;
- select: `policy.select_latest` (semver / alphabetical / numerical, filterTags);
  nothing selected is a failure naming the policy, and the last `latestRef` stays;
- report: `status.latestRef` {name, tag}, the previous one in `observedPreviousRef`
  when it moves (with a Normal event saying from what to what); Ready "Latest image
  tag for '<image>' resolved to <tag>".
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass, field

from controllers.image.policy import PolicyError, select_latest
from controllers.image.policyspec import ImagePolicySpec
from controllers.image.tags import TagStore
from controllers.toolkit.runtime import conditions as cond
from controllers.toolkit.runtime.events import NORMAL
from controllers.toolkit.runtime.frame import ReconcileError, ReconcileFrame, ReconcileRun
from controllers.toolkit.runtime.reconciler import Object, ObjectRef, Outcome, Resource
from controllers.toolkit.runtime.tenancy import Lockdown, Reference

RESOURCE = Resource("image.toolkit.fluxcd.io", "v1", "imagepolicies", "ImagePolicy")
ACCESS_DENIED = "AccessDenied"
FAILURE = "Failure"
WAIT_SECONDS = 10.0

NamespaceLabels = Callable[[str], Awaitable[Mapping[str, str] | None]]


def repository_ref(obj: Object) -> ObjectRef:
    """The ImageRepository a policy names (its own namespace when none is given)."""
    ref = (obj.get("spec") or {}).get("imageRepositoryRef") or {}
    return ObjectRef(str(ref.get("namespace") or ObjectRef.of(obj).namespace), str(ref.get("name")))


@dataclass
class ImagePolicyReconciler:
    frame: ReconcileFrame
    store: TagStore
    repositories: Callable[[ObjectRef], Object | None]
    namespace_labels: NamespaceLabels
    lockdown: Lockdown = field(default_factory=Lockdown)

    async def reconcile(self, obj: Object) -> Outcome:
        return await self.frame.run(obj, self._steps)

    async def _steps(self, run: ReconcileRun) -> None:
        spec = ImagePolicySpec.parse(run.spec)
        run.retry_after = 30.0
        await run.progressing("applying policy")
        repo_ref = repository_ref(run.obj)
        where = f"ImageRepository '{repo_ref.namespace}/{repo_ref.name}'"
        repo = self.repositories(repo_ref)
        if repo is None:
            raise ReconcileError(
                cond.DEPENDENCY_NOT_READY,
                f"failed to get the referred ImageRepository: {where} does not exist",
                requeue_after=WAIT_SECONDS,
                event=None,
            )
        self.lockdown.check_references(
            run.ref.namespace,
            [
                Reference(
                    "spec.imageRepositoryRef", "ImageRepository", repo_ref.name, repo_ref.namespace
                )
            ],
        )
        if repo_ref.namespace != run.ref.namespace:
            await self._check_access(repo, run.ref.namespace, where)
        scanned = self.store.get(repo_ref)
        if scanned is None:
            raise ReconcileError(
                cond.DEPENDENCY_NOT_READY,
                f"{where} has not been scanned yet",
                requeue_after=WAIT_SECONDS,
                event=None,
            )
        try:
            tag = select_latest(scanned.tags, spec.policy)
        except PolicyError as exc:
            raise ReconcileError(
                FAILURE,
                f"cannot determine latest tag for policy {spec.policy.describe()}: {exc}",
            ) from None
        image = scanned.canonical_image
        latest = {"name": image, "tag": tag}
        status = dict(run.status)
        previous = status.get("latestRef")
        if previous != latest:
            if previous:
                status["observedPreviousRef"] = previous
                run.notify(
                    NORMAL,
                    cond.SUCCEEDED,
                    f"Latest image tag for '{image}' updated from {previous.get('tag')} to {tag}",
                )
            status["latestRef"] = latest
        run.status = status
        run.ready(f"Latest image tag for '{image}' resolved to {tag}", reason=cond.SUCCEEDED)
        # No interval of its own: a new scan of the repository requeues it.
        run.requeue_after = None

    async def _check_access(self, repo: Object, namespace: str, where: str) -> None:
        access = (repo.get("spec") or {}).get("accessFrom")
        denied = ReconcileError(
            ACCESS_DENIED,
            f"cannot access {where}: its spec.accessFrom does not allow namespace '{namespace}'",
        )
        if access is None:
            raise denied
        selectors = [s.get("matchLabels") or {} for s in access.get("namespaceSelectors") or []]
        labels = await self.namespace_labels(namespace) or {}
        if not any(all(labels.get(k) == v for k, v in sel.items()) for sel in selectors):
            raise denied
