"""KustomizationReconciler with fakes of its collaborators: no cluster, the real steps.

The build runs the pinned kustomize binary on a tree on disk; the apply
wing's steps (apply, prune, health), the client factory, the config reader,
the status writer and the event sink are fakes that record what they saw.
"""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, cast

import pytest
from kubernetes.client.rest import ApiException

from controllers.kustomize.kustomization import RESOURCE, KustomizationReconciler
from controllers.kustomize.spec import KustomizationSpec
from controllers.toolkit.apply import health, ssa
from controllers.toolkit.apply.inventory import Inventory, InventoryEntry, ObjectId
from controllers.toolkit.apply.inventory_watch import WatchedKind, WatchToken
from controllers.toolkit.apply.resources import ResourceClient
from controllers.toolkit.artifacts import Artifact, ArtifactCache
from controllers.toolkit.runtime import conditions as cond
from controllers.toolkit.runtime.events import EventRecorder
from controllers.toolkit.runtime.frame import ReconcileFrame
from controllers.toolkit.runtime.patching import ObjectWriter
from controllers.toolkit.runtime.reconciler import Object, ObjectRef, Resource, WatchCache
from tests.support.fakes import ListSink, RecordingWriter

GIT_REPOSITORY = Resource("source.toolkit.fluxcd.io", "v1", "gitrepositories", "GitRepository")
NAMESPACE = "apps"
DIGEST = "sha256:" + "a" * 64
CONFIG_MAP = """\
apiVersion: v1
kind: ConfigMap
metadata:
  name: settings
data:
  greeting: hello
"""
IMPERSONATING = cast(ResourceClient, object())


def _repository(revision: str | None, digest: str = DIGEST) -> Object:
    repo: Object = {"metadata": {"name": "repo", "namespace": NAMESPACE}, "status": {}}
    if revision is not None:
        repo["status"]["artifact"] = {
            "url": "http://source/repo.tar.gz",
            "digest": digest,
            "revision": revision,
        }
    return repo


def _kustomization(**spec: Any) -> Object:
    return {
        "apiVersion": RESOURCE.api_version,
        "kind": RESOURCE.kind,
        "metadata": {"name": "app", "namespace": NAMESPACE, "generation": 1},
        "spec": {
            "interval": "10m",
            "retryInterval": "20s",
            "path": "./",
            "sourceRef": {"kind": "GitRepository", "name": "repo"},
            **spec,
        },
    }


@dataclass
class FakeArtifacts:
    """Every artifact checks out as the same tree; counts the checkouts (builds)."""

    tree: Path
    checkouts: int = 0

    @contextlib.asynccontextmanager
    async def checkout(self, artifact: Artifact) -> AsyncIterator[Path]:
        self.checkouts += 1
        yield self.tree


@dataclass
class Harness:
    tmp_path: Path
    sources: WatchCache = field(default_factory=lambda: WatchCache(GIT_REPOSITORY))
    others: dict[ObjectRef, Object] = field(default_factory=dict)
    reads: list[tuple[ResourceClient, str, str, str]] = field(default_factory=list)
    refuse_reads: bool = False
    applied: list[list[Mapping[str, Any]]] = field(default_factory=list)
    health: health.HealthOutcome = health.HealthOutcome.HEALTHY
    sink: ListSink = field(default_factory=ListSink)
    writer: RecordingWriter = field(default_factory=lambda: RecordingWriter({}))
    # What the fake apply reports for every object.
    action: ssa.Action = ssa.Action.CREATED
    # What the fake inventory watch says (None: it vouches), and a clock to move.
    watch_says: str | None = None
    now: float = 1000.0

    def __post_init__(self) -> None:
        (self.tmp_path / "cm.yaml").write_text(CONFIG_MAP)
        self.artifacts = FakeArtifacts(self.tmp_path)
        frame = ReconcileFrame(
            RESOURCE, cast(ObjectWriter, self.writer), EventRecorder("test", [self.sink])
        )
        self.reconciler = KustomizationReconciler(
            frame=frame,
            artifacts=cast(ArtifactCache, self.artifacts),
            sources={"GitRepository": self.sources},
            dependencies=lambda dep: self.others.get(ObjectRef(dep.namespace, dep.name)),
            read_config=self.read_config,
            load_keys=self.load_keys,
            client_for=self.client_for,
            observe_kinds=lambda inventory: None,
            expect_deletions=lambda ids: None,
            apply_all=self.apply_all,
            wait_for_health=self.wait_for_health,
            watch_proof=self,
            full_verify_interval=3600.0,
            clock=lambda: self.now,
        )

    def token(self, owner: tuple[str, str]) -> WatchToken:
        return WatchToken({}, 0)

    def broken(
        self, token: WatchToken, owner: tuple[str, str], kinds: Iterable[WatchedKind]
    ) -> str | None:
        return self.watch_says

    async def read_config(
        self, client: ResourceClient, namespace: str, kind: str, name: str
    ) -> Mapping[str, str] | None:
        self.reads.append((client, namespace, kind, name))
        if self.refuse_reads:
            refused = ApiException(status=403, reason="Forbidden")
            refused.body = (
                '{"message":"secrets \\"vars\\" is forbidden: User '
                '\\"system:serviceaccount:apps:deployer\\" cannot get resource \\"secrets\\" '
                'in API group \\"\\" in the namespace \\"apps\\""}'
            )
            raise refused
        return {"greeting": "hi"}

    async def load_keys(self, namespace: str, secret: str | None) -> Sequence[Any]:
        return []

    async def client_for(
        self, spec: KustomizationSpec, namespace: str, *, account_must_exist: bool = False
    ) -> ResourceClient:
        return IMPERSONATING

    async def apply_all(
        self,
        client: ResourceClient,
        objects: Sequence[Mapping[str, Any]],
        options: ssa.ApplyOptions,
    ) -> ssa.ChangeSet:
        self.applied.append(list(objects))
        return ssa.ChangeSet(
            [
                ssa.ChangeSetEntry(
                    ObjectId(
                        "",
                        str(obj["kind"]),
                        str(obj["metadata"].get("namespace") or ""),
                        str(obj["metadata"]["name"]),
                    ),
                    "v1",
                    self.action,
                )
                for obj in objects
            ]
        )

    async def wait_for_health(
        self, client: ResourceClient, entries: Sequence[InventoryEntry], **_: Any
    ) -> health.HealthResult:
        statuses = {
            entry.id: health.ObjectStatus(
                health.Status.CURRENT
                if self.health is health.HealthOutcome.HEALTHY
                else health.Status.FAILED,
                "",
            )
            for entry in entries
        }
        return health.HealthResult(self.health, statuses, 1.0)

    async def reconcile(self, obj: Object) -> float | None:
        """One reconcile of `obj` as the API server has it now; returns the requeue."""
        live = dict(obj, status=dict(self.writer.live))
        outcome = await self.reconciler.reconcile(live)
        return outcome.requeue_after

    def ready(self) -> tuple[str, str, str]:
        ready = cond.get_condition(self.writer.live, cond.READY)
        assert ready is not None
        return ready["status"], ready["reason"], ready["message"]

    def events(self) -> list[tuple[str, str]]:
        return [(event.type, event.reason) for event in self.sink.events]


async def test_a_spec_error_stalls_without_retry(tmp_path: Path) -> None:
    harness = Harness(tmp_path)
    obj = _kustomization(interval="10 minutes")
    assert await harness.reconcile(obj) is None
    assert cond.is_true(harness.writer.live, cond.STALLED)
    status, _, message = harness.ready()
    assert status == "False"
    assert "spec.interval" in message
    assert harness.events() == [("Warning", cond.RECONCILIATION_FAILED)]
    assert harness.artifacts.checkouts == 0


@pytest.mark.parametrize(
    ("spec", "field"),
    [
        ({"sourceRef": {"kind": "Bucket", "name": "repo"}}, "spec.sourceRef.kind"),
        ({"decryption": {"provider": "sops"}}, "spec.decryption.provider"),
    ],
)
async def test_a_value_headwater_does_not_serve_stalls_naming_the_field(
    tmp_path: Path, spec: dict[str, Any], field: str
) -> None:
    harness = Harness(tmp_path)
    assert await harness.reconcile(_kustomization(**spec)) is None
    assert cond.is_true(harness.writer.live, cond.STALLED)
    status, reason, message = harness.ready()
    assert (status, reason) == ("False", "UnsupportedField")
    assert message.startswith(f"{field}: ") and "not supported by headwater" in message


async def test_a_missing_source_waits_without_a_warning(tmp_path: Path) -> None:
    harness = Harness(tmp_path)
    assert await harness.reconcile(_kustomization()) == 30.0
    assert harness.ready() == (
        "False",
        cond.ARTIFACT_FAILED,
        f"Source 'GitRepository/{NAMESPACE}/repo' not found",
    )
    assert harness.events() == []


async def test_a_source_without_an_artifact_waits_without_a_warning(tmp_path: Path) -> None:
    harness = Harness(tmp_path)
    harness.sources.observe("ADDED", _repository(None))
    assert await harness.reconcile(_kustomization()) == 30.0
    status, reason, message = harness.ready()
    assert (status, reason) == ("False", cond.ARTIFACT_FAILED)
    assert "is not ready, artifact not found" in message
    assert harness.events() == []


async def test_a_dependency_not_ready_is_a_normal_event_and_a_wait(tmp_path: Path) -> None:
    harness = Harness(tmp_path)
    harness.sources.observe("ADDED", _repository("main@sha1:1"))
    obj = _kustomization(dependsOn=[{"name": "infra"}])
    assert await harness.reconcile(obj) == 30.0
    status, reason, message = harness.ready()
    assert (status, reason) == ("False", cond.DEPENDENCY_NOT_READY)
    assert message == f"dependency '{NAMESPACE}/infra' is not ready: not found"
    assert harness.events() == [("Normal", cond.DEPENDENCY_NOT_READY)]
    assert harness.applied == []


async def test_a_reused_build_reports_the_revision_just_reconciled(tmp_path: Path) -> None:
    harness = Harness(tmp_path)
    harness.sources.observe("ADDED", _repository("main@sha1:1"))
    obj = _kustomization()
    await harness.reconcile(obj)
    assert harness.ready() == (
        "True",
        cond.RECONCILIATION_SUCCEEDED,
        "Applied revision: main@sha1:1",
    )

    # An empty commit: a new revision, the same artifact content, so the same build.
    harness.sources.observe("MODIFIED", _repository("main@sha1:2"))
    assert await harness.reconcile(obj) is not None
    assert harness.artifacts.checkouts == 1  # built once, reused
    assert len(harness.applied) == 2
    assert harness.ready() == (
        "True",
        cond.RECONCILIATION_SUCCEEDED,
        "Applied revision: main@sha1:2",
    )
    assert harness.writer.live["lastAppliedRevision"] == "main@sha1:2"
    assert harness.writer.live["lastAttemptedRevision"] == "main@sha1:2"
    succeeded = [e for e in harness.sink.events if e.reason == cond.RECONCILIATION_SUCCEEDED]
    assert [e.metadata["revision"] for e in succeeded] == ["main@sha1:1", "main@sha1:2"]


async def test_a_no_op_the_watch_vouches_for_skips_the_dry_run_until_a_reason_to_verify(
    tmp_path: Path,
) -> None:
    harness = Harness(tmp_path)
    harness.sources.observe("ADDED", _repository("main@sha1:1"))
    obj = _kustomization(wait=True)
    # The first apply creates: its own writes come back as watch events, so the
    # next reconcile verifies in full; that one finds everything as built.
    await harness.reconcile(obj)
    harness.action = ssa.Action.UNCHANGED
    await harness.reconcile(obj)
    assert len(harness.applied) == 2
    status = dict(harness.writer.live)

    harness.now += 60
    await harness.reconcile(obj)
    assert len(harness.applied) == 2, "the periodic no-op reuses the verification"
    assert harness.writer.live == status, "status as after a dry-run that changed nothing"
    assert [entry.id.name for entry in Inventory.from_status(status["inventory"])] == ["settings"]
    assert harness.ready()[0] == "True"

    # The watch saw a change (or a gap): a full verification.
    harness.watch_says = "an applied object changed since the last full verification"
    await harness.reconcile(obj)
    assert len(harness.applied) == 3
    harness.watch_says = None
    await harness.reconcile(obj)
    assert len(harness.applied) == 3

    # A requested reconcile, once per requestedAt value.
    requested = dict(
        obj, metadata={**obj["metadata"], "annotations": {cond.REQUESTED_AT_ANNOTATION: "1"}}
    )
    await harness.reconcile(requested)
    await harness.reconcile(requested)
    assert len(harness.applied) == 4

    # The full-verification interval, counted from the last full one.
    harness.now += 3600
    await harness.reconcile(requested)
    assert len(harness.applied) == 5

    # A failed reconcile (here its health check, after a skipped dry-run) leaves
    # nothing to reuse.
    harness.health = health.HealthOutcome.FAILED
    await harness.reconcile(requested)
    assert len(harness.applied) == 5
    assert harness.ready()[1] == cond.HEALTH_CHECK_FAILED
    harness.health = health.HealthOutcome.HEALTHY
    await harness.reconcile(requested)
    assert len(harness.applied) == 6
    await harness.reconcile(requested)
    assert len(harness.applied) == 6


async def test_a_health_failure_keeps_the_inventory_it_applied(tmp_path: Path) -> None:
    harness = Harness(tmp_path)
    harness.health = health.HealthOutcome.FAILED
    harness.sources.observe("ADDED", _repository("main@sha1:1"))
    assert await harness.reconcile(_kustomization(wait=True)) == 20.0  # retryInterval
    status, reason, _ = harness.ready()
    assert (status, reason) == ("False", cond.HEALTH_CHECK_FAILED)
    inventory = Inventory.from_status(harness.writer.live.get("inventory"))
    assert [entry.id.name for entry in inventory] == ["settings"]
    healthy = cond.get_condition(harness.writer.live, "Healthy")
    assert healthy is not None
    assert (healthy["status"], healthy["reason"]) == ("False", cond.HEALTH_CHECK_FAILED)
    assert "lastAppliedRevision" not in harness.writer.live
    assert ("Warning", cond.HEALTH_CHECK_FAILED) in harness.events()


async def test_substitute_from_is_read_as_the_kustomization_and_a_refusal_is_reported(
    tmp_path: Path,
) -> None:
    harness = Harness(tmp_path)
    harness.refuse_reads = True
    harness.sources.observe("ADDED", _repository("main@sha1:1"))
    obj = _kustomization(
        serviceAccountName="deployer",
        postBuild={"substituteFrom": [{"kind": "Secret", "name": "vars"}]},
    )
    assert await harness.reconcile(obj) == 20.0  # retryInterval
    assert harness.reads == [(IMPERSONATING, NAMESPACE, "Secret", "vars")]
    status, reason, message = harness.ready()
    assert (status, reason) == ("False", cond.RECONCILIATION_FAILED)
    assert 'secrets "vars" is forbidden' in message
    assert 'cannot get resource "secrets"' in message
    assert harness.events() == [("Warning", cond.RECONCILIATION_FAILED)]
    assert harness.applied == []
