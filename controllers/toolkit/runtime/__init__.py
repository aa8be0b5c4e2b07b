"""What every controller runs on: the toolkit's runtime wing.

Modules used as namespaces (`from controllers.toolkit.runtime import conditions as cond`):
- `conditions`: Flux's condition rules as pure functions over a status;
- `durations`: Go duration strings, jitter;
- `kube`: API clients, kubeconfig loading, Secret and ConfigMap readers;
- `runner`: `headwater run`, one controller or all of them on kopf.

Types a controller wires together:
- `Reconciler`, `WatchCache`, `Resource`, `ObjectRef`, `Outcome` (`reconciler`):
  the level-based queue over kopf's watches;
- `ObjectWriter` (`patching`): status and finalizer writes, only when changed;
- `EventRecorder` (`events`): Kubernetes Events plus the notification intake;
- `ReconcileSlots` (`concurrency`), `Settings` (`settings`), `HttpServer` (`http`);
- `logs`, `observability`, `memory_storage`: logging, metrics and probes, kopf state.
"""

from __future__ import annotations

from controllers.toolkit.runtime import conditions, durations, kube, runner
from controllers.toolkit.runtime.concurrency import ReconcileSlots
from controllers.toolkit.runtime.events import EventRecorder, make_recorder
from controllers.toolkit.runtime.http import HttpServer
from controllers.toolkit.runtime.patching import ObjectWriter
from controllers.toolkit.runtime.reconciler import (
    Object,
    ObjectRef,
    Outcome,
    Reconciler,
    Resource,
    WatchCache,
)
from controllers.toolkit.runtime.settings import Settings, SettingsError

__all__ = [
    "EventRecorder",
    "HttpServer",
    "Object",
    "ObjectRef",
    "ObjectWriter",
    "Outcome",
    "ReconcileSlots",
    "Reconciler",
    "Resource",
    "Settings",
    "SettingsError",
    "WatchCache",
    "conditions",
    "durations",
    "kube",
    "make_recorder",
    "runner",
]
