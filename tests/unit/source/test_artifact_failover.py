"""After a failover, a kept artifact is advertised at the new leader's storage address."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from controllers.source.artifactfile import store_bytes, verified_artifact
from controllers.source.storage import ObjectKey, Storage


class Run:
    """The two parts of a ReconcileRun that verified_artifact uses."""

    def __init__(self, status: dict[str, Any]) -> None:
        self.status = status
        self.notified: list[tuple[str, str, str]] = []

    def notify(self, type_: str, reason: str, message: str, *_: Any) -> None:
        self.notified.append((type_, reason, message))


def test_a_kept_artifact_gets_this_replicas_url(tmp_path: Path) -> None:
    key = ObjectKey("helmrepository", "ns", "repo")
    # Written by the old leader, which advertised another address.
    old = store_bytes(Storage(tmp_path, "old-leader:9090"), key, "index.json", b"{}", "r1")
    run = Run({"artifact": old.to_status()})
    kept = verified_artifact(Storage(tmp_path, "new-leader:9090"), run, key, again="again")
    assert kept is not None
    assert kept["url"] == f"http://new-leader:9090/{old.path}"
    assert kept["digest"] == old.digest and run.notified == []


def test_a_missing_artifact_is_dropped_to_be_rebuilt(tmp_path: Path) -> None:
    key = ObjectKey("helmrepository", "ns", "repo")
    elsewhere = store_bytes(Storage(tmp_path / "a", "a:9090"), key, "index.json", b"{}", "r1")
    run = Run({"artifact": elsewhere.to_status()})
    kept = verified_artifact(Storage(tmp_path / "b", "b:9090"), run, key, again="fetching it again")
    assert kept is None
    assert "artifact" not in run.status
    assert [reason for _, reason, _ in run.notified] == ["ArtifactVerificationFailed"]
