"""Stand-ins for the two outputs of a reconcile, for unit tests of reconcilers.

The Kubernetes API is never faked in integration tests; in unit tests of a
reconciler's steps, these record what would have been written and emitted.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from controllers.toolkit.runtime.events import Event
from controllers.toolkit.runtime.patching import merge_patch
from controllers.toolkit.runtime.reconciler import ObjectRef


class RecordingWriter:
    """Applies status patches to a dict, as the API server would."""

    def __init__(self, live: Mapping[str, Any]) -> None:
        self.live = dict(live)
        self.patches: list[dict[str, Any]] = []

    async def patch_status(
        self, ref: ObjectRef, old: Mapping[str, Any], new: Mapping[str, Any]
    ) -> bool:
        patch = merge_patch(old, new)
        if not patch:
            return False
        self.patches.append(patch)
        self.live = dict(new)
        return True


class ListSink:
    def __init__(self) -> None:
        self.events: list[Event] = []

    async def emit(self, event: Event) -> None:
        self.events.append(event)
