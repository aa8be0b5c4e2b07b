"""Event rows, trace's reading of labels and drift messages, tree rendering, wait outcomes."""

from __future__ import annotations

import datetime
import io

from rich.console import Console

from controllers.commands import common, events, health_progress, trace, tree, waiting
from controllers.toolkit.apply import health
from controllers.toolkit.apply.inventory import ObjectId

NOW = datetime.datetime(2026, 1, 2, 12, 0, 0, tzinfo=datetime.UTC)
WEB = ObjectId("apps", "Deployment", "shop", "web")

DRIFT = (
    "Drift detected and corrected:\n"
    "Deployment/shop/web configured\n"
    "  spec.replicas: 2 → 5\n"
    "Deployment/shop/web-canary configured\n"
    "  spec.replicas: 1 → 3\n"
    "ConfigMap/shop/settings configured\n"
    "  data.mode: a → b"
)


def test_event_row_is_one_line_when_piped() -> None:
    event = {
        "type": "Warning",
        "reason": "DriftDetected",
        "lastTimestamp": "2026-01-02T11:59:30Z",
        "message": DRIFT,
        "involvedObject": {"kind": "Kustomization", "name": "web", "namespace": "shop"},
    }
    row = events.event_row(event, NOW, with_namespace=True, terminal=False)
    assert row[:5] == ["shop", "30s", "Warning", "DriftDetected", "Kustomization/web"]
    assert "\n" not in row[5]
    assert row[5].startswith("Drift detected and corrected: Deployment/shop/web configured")
    # On a terminal the message keeps its lines.
    assert "\n" in events.event_row(event, NOW, with_namespace=False, terminal=True)[4]


def test_last_seen_falls_back_to_the_event_time() -> None:
    assert events.last_seen({"eventTime": "2026-01-02T11:00:00.000000Z"}).startswith("2026")
    assert events.is_flux_event(
        {"involvedObject": {"apiVersion": "kustomize.toolkit.fluxcd.io/v1"}}
    )
    assert not events.is_flux_event({"involvedObject": {"apiVersion": "apps/v1"}})


def test_for_takes_flux_names_and_any_kind() -> None:
    assert events.parse_for("ks/web") == ("Kustomization", "web")
    assert events.parse_for("Deployment/web") == ("Deployment", "web")


def test_owner_labels() -> None:
    labelled = {
        "metadata": {
            "labels": {
                "kustomize.toolkit.fluxcd.io/name": "apps",
                "kustomize.toolkit.fluxcd.io/namespace": "headwater-system",
            }
        }
    }
    assert trace.owner_of(labelled) == ("headwater-system", "apps")
    assert trace.owner_of({"metadata": {"labels": {"app": "web"}}}) is None


def test_drift_lines_are_the_objects_own() -> None:
    assert trace.names_object(DRIFT, WEB)
    assert trace.drift_lines(DRIFT, WEB) == ["spec.replicas: 2 → 5"]
    other = ObjectId("", "ConfigMap", "shop", "other")
    assert not trace.names_object(DRIFT, other)
    assert trace.drift_lines(DRIFT, other) == []


def test_tree_renders_nesting_and_health() -> None:
    leaf = tree.Node(WEB, "apps/v1", "Current", "Deployment is available. Replicas: 2")
    gone = tree.Node(ObjectId("", "ConfigMap", "shop", "settings"), "v1", "NotFound", "gone")
    child = tree.Node(
        ObjectId("kustomize.toolkit.fluxcd.io", "Kustomization", "shop", "web"),
        "kustomize.toolkit.fluxcd.io/v1",
        "Current",
        "Resource is Ready",
        [leaf, gone],
    )
    root = tree.Node(child.id, child.api_version, "InProgress", "[bold]not markup[/bold]", [child])
    buffer = io.StringIO()
    Console(file=buffer, width=200, no_color=True).print(tree.render(root, terminal=False))
    lines = buffer.getvalue().splitlines()
    assert lines[0] == "Kustomization/shop/web  InProgress: [bold]not markup[/bold]"
    assert lines[1].endswith("Kustomization/shop/web  Current: Resource is Ready")
    assert lines[2].endswith("Deployment/shop/web  Current: Deployment is available. Replicas: 2")
    assert lines[2].index("Deployment") > lines[1].index("Kustomization")
    assert lines[3].endswith("ConfigMap/shop/settings  NotFound: gone")
    assert root.to_json()["children"][0]["children"][1]["status"] == "NotFound"


def test_a_request_is_done_once_handled_and_settled() -> None:
    def obj(handled: str, *conditions: dict[str, str]) -> dict[str, object]:
        return {"status": {"lastHandledReconcileAt": handled, "conditions": list(conditions)}}

    working = {"type": "Reconciling", "status": "True", "message": "Fetching"}
    unknown = {"type": "Ready", "status": "Unknown", "message": "Fetching"}
    failed = {"type": "Ready", "status": "False", "message": "boom"}
    assert not waiting.handled(obj("old", failed), "new")
    assert waiting.handled(obj("new", failed), "new")
    assert waiting.settled(obj("new", failed)) == "False"
    assert waiting.settled(obj("new", unknown, working)) is None
    # A failure to be retried (ProgressingWithRetry) has ended this attempt.
    assert waiting.settled(obj("new", failed, working)) == "False"
    assert waiting.condition_line(obj("new", unknown, working)) == "Reconciling=True: Fetching"


def test_tokens_are_unique_rfc3339() -> None:
    first, second = waiting.new_token(), waiting.new_token()
    assert first != second
    assert common.parse_time(first) is not None


def test_piped_tables_have_no_borders_and_never_wrap() -> None:
    buffer = io.StringIO()
    out = Console(file=buffer, width=common.PIPED_WIDTH, no_color=True)
    out.print(common.table(["NAME", "MESSAGE"], [["web", "x" * 300]], terminal=False))
    lines = buffer.getvalue().splitlines()
    assert lines[0].split() == ["NAME", "MESSAGE"]
    assert lines[1].split() == ["web", "x" * 300]
    assert len(lines) == 2


def test_health_progress_reports_what_moves() -> None:
    ks = {
        "metadata": {"namespace": "shop"},
        "spec": {"wait": True},
        "status": {
            "inventory": {
                "entries": [
                    {"id": "shop_web_apps_Deployment", "v": "v1"},
                    {"id": "shop_settings__ConfigMap", "v": "v1"},
                ]
            }
        },
    }
    replicas = {"web": 0}

    def read(api_version: str, kind: str, namespace: str, name: str) -> dict[str, object] | None:
        if kind == "ConfigMap":
            return {"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": name}}
        available = replicas["web"]
        return {
            "apiVersion": api_version,
            "kind": kind,
            "metadata": {"name": name, "generation": 1},
            "spec": {"replicas": 2},
            "status": {
                "observedGeneration": 1,
                "replicas": 2,
                "updatedReplicas": 2,
                "readyReplicas": available,
                "availableReplicas": available,
                "conditions": [
                    {"type": "Available", "status": "True" if available == 2 else "False"},
                    {"type": "Progressing", "status": "True", "reason": "NewReplicaSetAvailable"},
                ],
            },
        }

    watcher = health_progress.HealthProgress(read)
    # First look: only what is not Current yet.
    [(first_id, first)] = watcher.look(ks)
    assert first_id == WEB and str(first) == "InProgress: Available: 0/2"
    assert watcher.look(ks) == []  # nothing moved
    replicas["web"] = 2
    [(_, done)] = watcher.look(ks)
    assert done.status is health.Status.CURRENT


def test_health_targets_follow_the_kustomization_spec() -> None:
    checks = {
        "metadata": {"namespace": "shop"},
        "spec": {"healthChecks": [{"apiVersion": "apps/v1", "kind": "Deployment", "name": "web"}]},
    }
    assert health_progress.targets(checks) == [("apps/v1", WEB)]
    assert health_progress.targets({"metadata": {}, "spec": {}}) == []


def test_trace_masks_a_password_in_the_source_url() -> None:
    assert trace.without_password("https://bot:hunter2@git.example.com:8443/a.git") == (
        "https://bot:***@git.example.com:8443/a.git"
    )
    assert trace.without_password("ssh://git@git.example.com/a.git") == (
        "ssh://git@git.example.com/a.git"
    )
