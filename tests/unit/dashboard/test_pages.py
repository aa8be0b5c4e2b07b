"""The dashboard's pages rendered from objects as the API returns them (no cluster)."""

from __future__ import annotations

from typing import Any

from controllers.commands import kinds
from controllers.dashboard import app, state

NOW = state.common.parse_time("2026-01-01T12:00:00Z")
assert NOW is not None


def ks(name: str, ready: str, **spec: Any) -> dict[str, Any]:
    return {
        "apiVersion": "kustomize.toolkit.fluxcd.io/v1",
        "kind": "Kustomization",
        "metadata": {
            "name": name,
            "namespace": "apps",
            "creationTimestamp": "2026-01-01T11:00:00Z",
        },
        "spec": {"sourceRef": {"kind": "GitRepository", "name": "repo"}, **spec},
        "status": {
            "lastAppliedRevision": "main@sha1:abc",
            "conditions": [{"type": "Ready", "status": ready, "message": f"<b>{name}</b>"}],
        },
    }


def rows() -> list[state.Row]:
    return [
        state.row(kinds.KUSTOMIZATION, ks("web", "True"), NOW),
        state.row(kinds.KUSTOMIZATION, ks("db", "False"), NOW),
        state.row(kinds.KUSTOMIZATION, ks("off", "True", suspend=True), NOW),
    ]


def render(name: str, **context: Any) -> str:
    env = app.templates()
    return env.get_template(name).render(path="/", user=None, **context)


def test_states_and_counts_cover_every_kind() -> None:
    view = state.summarise(rows(), state.Filters())
    assert view.counts["Kustomization"] == {
        "Ready": 1,
        "Progressing": 0,
        "Failed": 1,
        "Stalled": 0,
        "Suspended": 1,
    }
    assert view.counts["HelmRelease"]["Ready"] == 0
    failed = state.summarise(rows(), state.Filters(state="Failed"))
    assert [r.name for r in failed.rows] == ["db"]
    searched = state.summarise(rows(), state.Filters(search="wEb"))
    assert [r.name for r in searched.rows] == ["web"]


def test_overview_escapes_messages_and_shows_buttons_only_when_allowed() -> None:
    view = state.summarise(rows(), state.Filters())
    allowed = {"Kustomization/apps/web": True}
    page = render(
        "overview.html",
        fragment=False,
        view=view,
        filters=state.Filters(),
        allowed=allowed,
        key_text=state.key_text,
        read_ms=1,
    )
    assert "&lt;b&gt;web&lt;/b&gt;" in page and "<b>web</b>" not in page
    assert page.count('hx-post="/act/reconcile/Kustomization/apps/web"') == 1
    assert "/act/reconcile/Kustomization/apps/db" not in page
    fragment = render(
        "overview.html",
        fragment=True,
        view=view,
        filters=state.Filters(),
        allowed={},
        key_text=state.key_text,
        read_ms=1,
    )
    assert "<html" not in fragment and 'data-key="Kustomization/apps/db"' in fragment
    assert "hx-post" not in fragment


def test_drift_messages_split_into_objects_and_fields() -> None:
    message = (
        "Drift detected and corrected:\n"
        "Deployment/apps/web configured\n"
        "  spec.replicas: 5 -> 2\n"
        "ConfigMap/apps/settings configured\n"
        "  data.mode: b -> a\n"
    )
    assert state.parse_drift(message) == [
        ("Deployment/apps/web configured", ["spec.replicas: 5 -> 2"]),
        ("ConfigMap/apps/settings configured", ["data.mode: b -> a"]),
    ]


def test_facts_never_carry_values_or_credentials() -> None:
    release = {
        "apiVersion": "helm.toolkit.fluxcd.io/v2",
        "kind": "HelmRelease",
        "metadata": {"name": "blog", "namespace": "apps"},
        "spec": {
            "chart": {"spec": {"chart": "wordpress", "version": "1.x"}},
            "values": {"password": "hunter2"},
        },
    }
    repo = {
        "apiVersion": "source.toolkit.fluxcd.io/v1",
        "kind": "GitRepository",
        "metadata": {"name": "repo", "namespace": "apps"},
        "spec": {"url": "https://bot:s3cret@git.example/repo", "ref": {"branch": "main"}},
    }
    text = repr(state._facts(kinds.HELM_RELEASE, release)) + repr(
        state._facts(kinds.GIT_REPOSITORY, repo)
    )
    assert "hunter2" not in text and "s3cret" not in text
    assert "wordpress" in text and "bot:***@git.example" in text


def test_graph_layout_draws_sources_dependencies_and_objects() -> None:
    web, db = (state.row(kinds.KUSTOMIZATION, ks(n, "True"), NOW) for n in ("web", "db"))
    web = state.row(kinds.KUSTOMIZATION, ks("web", "True", dependsOn=[{"name": "db"}]), NOW)
    repo = state.Row(
        kinds.GIT_REPOSITORY,
        "apps",
        "repo",
        "main@sha1:abc",
        "Ready",
        "True",
        "",
        "1m",
        False,
        None,
        (),
    )
    graph = state.Graph(
        sources=[repo],
        appliers=[db, web],
        objects=[],
        edges=[
            ("source", "GitRepository/apps/repo", "Kustomization/apps/web"),
            ("depends", "Kustomization/apps/db", "Kustomization/apps/web"),
        ],
        notes=[],
    )
    laid = app.layout(graph)
    assert [n["label"] for n in laid["nodes"]] == [
        "GitRepository/repo",
        "Kustomization/db",
        "Kustomization/web",
    ]
    assert [e["kind"] for e in laid["edges"]] == ["source", "depends"]
    page = render("graph.html", fragment=True, graph=laid, filters=state.Filters(), view=None)
    assert page.count('class="edge depends"') == 1
    assert 'href="/object/Kustomization/apps/web"' in page
