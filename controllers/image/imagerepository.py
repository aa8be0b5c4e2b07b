"""Reconcile one ImageRepository: credentials → TLS → scan → exclusions → store → report.

- credentials: `spec.secretRef`, a docker-registry Secret, for the image's host;
- TLS: `spec.certSecretRef` (`ca.crt`, `tls.crt`/`tls.key`); `spec.insecure` is plain HTTP;
- scan: every tag through the distribution API (`registry.py`), bounded by
  `spec.timeout` and by `HEADWATER_IMAGE_MAX_TAGS` (more is `TagLimitExceeded`);
- exclusions: `spec.exclusionList` (default `^.*\\.sig$`) drops matching tags;
- store: the tags go to the controller's `TagStore`, which policies read;
- report: `status.lastScanResult` (tagCount, scanTime, latestTags: the first ten in
  reverse alphabetical order), `canonicalImageName`, `observedExclusionList`, Ready
  "successful scan, found N tags".

A failed scan keeps the last good result in status and in the store (Flux keeps its
database), so policies keep their choice while the registry is down.
"""

from __future__ import annotations

import datetime
import ssl
from collections.abc import Callable
from dataclasses import dataclass, field

from controllers.image import registry
from controllers.image.repositoryspec import ImageRepositorySpec
from controllers.image.tags import TagStore
from controllers.toolkit.runtime import conditions as cond
from controllers.toolkit.runtime.durations import jittered
from controllers.toolkit.runtime.events import NORMAL
from controllers.toolkit.runtime.frame import ReconcileError, ReconcileFrame, ReconcileRun
from controllers.toolkit.runtime.kube import SecretReader
from controllers.toolkit.runtime.reconciler import Object, ObjectRef, Outcome, Resource

RESOURCE = Resource("image.toolkit.fluxcd.io", "v1", "imagerepositories", "ImageRepository")
LATEST_TAGS = 10


def latest_tags(tags: list[str]) -> list[str]:
    """Flux's `latestTags`: the first ten of the tags sorted in reverse alphabetical order."""
    return sorted(tags, reverse=True)[:LATEST_TAGS]


@dataclass
class ImageRepositoryReconciler:
    frame: ReconcileFrame
    read_secret: SecretReader
    store: TagStore
    max_tags: int
    # Called with the repository's ref when its tag set changed (policies requeue).
    on_new_tags: Callable[[ObjectRef], None] = field(default=lambda ref: None)

    async def reconcile(self, obj: Object) -> Outcome:
        return await self.frame.run(obj, self._steps)

    async def finalize(self, obj: Object) -> bool:
        self.store.drop(ObjectRef.of(obj))
        return True

    async def _steps(self, run: ReconcileRun) -> None:
        spec = ImageRepositorySpec.parse(run.spec)
        run.retry_after = jittered(min(spec.interval, 60.0))
        await run.progressing(f"scanning '{spec.image.canonical}'")
        credentials, tls = await self._access(run.ref.namespace, spec)
        try:
            tags = await registry.list_tags(
                spec.image,
                credentials=credentials,
                tls=tls,
                insecure=spec.insecure,
                timeout=spec.timeout,
                max_tags=self.max_tags,
            )
        except registry.RegistryError as exc:
            raise ReconcileError(exc.reason, exc.message) from None
        kept = [tag for tag in tags if not spec.excluded(tag)]
        changed = self.store.put(run.ref, spec.image.canonical, kept)
        now = cond.format_time(datetime.datetime.now(datetime.UTC))
        message = f"successful scan, found {len(kept)} tags"
        status = dict(run.status)
        status["canonicalImageName"] = spec.image.canonical
        status["observedExclusionList"] = list(spec.exclusion_list)
        status["lastScanResult"] = {
            "tagCount": len(kept),
            "scanTime": now,
            "latestTags": latest_tags(kept),
        }
        run.status = status
        run.ready(message, reason=cond.SUCCEEDED)
        if changed:
            run.notify(NORMAL, cond.SUCCEEDED, message)
            self.on_new_tags(run.ref)
        run.requeue_after = jittered(spec.interval)

    async def _access(
        self, namespace: str, spec: ImageRepositorySpec
    ) -> tuple[registry.Credentials | None, ssl.SSLContext | None]:
        credentials = None
        if spec.secret_name:
            where = f"secret '{namespace}/{spec.secret_name}' (spec.secretRef)"
            data = await self.read_secret(namespace, spec.secret_name)
            if data is None:
                raise ReconcileError(registry.AUTHENTICATION_FAILED, f"{where} not found")
            try:
                credentials = registry.credentials_from_dockerconfig(data, spec.image.host, where)
            except registry.RegistryError as exc:
                raise ReconcileError(exc.reason, exc.message) from None
        tls = None
        if spec.cert_secret_name:
            where = f"secret '{namespace}/{spec.cert_secret_name}' (spec.certSecretRef)"
            data = await self.read_secret(namespace, spec.cert_secret_name)
            if data is None:
                raise ReconcileError(registry.FAILURE, f"{where} not found")
            try:
                tls = registry.ssl_context(data, where)
            except registry.RegistryError as exc:
                raise ReconcileError(exc.reason, exc.message) from None
        return credentials, tls
