"""Events for notification tests, shaped as the emitters send them."""

from __future__ import annotations

from typing import Any

from controllers.notification.event import FluxEvent, parse_event

REVISION = "main@sha1:0123456789abcdef0123456789abcdef01234567"


def wire_event(**overrides: Any) -> dict[str, Any]:
    """Flux's event JSON about a GitRepository, with `overrides` applied."""
    body: dict[str, Any] = {
        "involvedObject": {
            "apiVersion": "source.toolkit.fluxcd.io/v1",
            "kind": "GitRepository",
            "name": "podinfo",
            "namespace": "apps",
            "uid": "1b2c3d4e-0000-0000-0000-000000000000",
        },
        "severity": "info",
        "timestamp": "2026-01-02T03:04:05Z",
        "message": "stored artifact for revision 'main@sha1:0123456'",
        "reason": "NewArtifact",
        "metadata": {
            "source.toolkit.fluxcd.io/revision": REVISION,
            "source.toolkit.fluxcd.io/digest": "sha256:feed",
        },
        "reportingController": "source-controller",
        "reportingInstance": "source-controller-abc",
    }
    body.update(overrides)
    return body


def flux_event(**overrides: Any) -> FluxEvent:
    return parse_event(wire_event(**overrides))


def notification(metadata: dict[str, str] | None = None, **overrides: Any) -> FluxEvent:
    """An event as providers get it: metadata already merged and stripped of prefixes."""
    event = flux_event(**overrides)
    return event.with_metadata({"revision": REVISION} if metadata is None else metadata)
