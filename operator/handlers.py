"""kopf handlers for TTSCluster, registered with the operator's settings. Every entry point runs the same
level-based reconciliation."""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any, Optional

import kopf

from .reconcile import Reconciler, cluster_memory
from .resources import LABEL_CLUSTER
from .spec import GROUP, PLURAL, VERSION


def _events(body: kopf.Body) -> Callable[[str, str, str], None]:
    def post(kind: str, reason: str, message: str) -> None:
        (kopf.warn if kind == "Warning" else kopf.info)(body, reason=reason, message=message)

    return post


def register(registry: kopf.OperatorRegistry, reconciler: Reconciler) -> None:
    def reconcile(body: kopf.Body, patch: kopf.Patch, memo: kopf.Memo, **_: Any) -> None:
        status = reconciler.reconcile(body, cluster_memory(memo), _events(body))
        patch.setdefault("status", {}).update(status)

    # A failed attempt (API server busy, conflict) is retried soon: the state only converges by retrying.
    retry = max(1.0, reconciler.settings.interval)
    on_change = kopf.on.create(GROUP, VERSION, PLURAL, registry=registry, id="reconcile", backoff=retry)(reconcile)
    kopf.on.resume(GROUP, VERSION, PLURAL, registry=registry, id="reconcile", backoff=retry)(on_change)
    kopf.on.update(GROUP, VERSION, PLURAL, field="spec", registry=registry, id="reconcile", backoff=retry)(on_change)
    # Replacements, drains and autoscaling follow pods and load, which change without any spec change.
    kopf.timer(GROUP, VERSION, PLURAL, interval=reconciler.settings.interval, sharp=False, registry=registry,
               id="reconcile-periodically", backoff=retry)(reconcile)

    @kopf.on.delete(GROUP, VERSION, PLURAL, registry=registry)
    def cleanup(name: str, namespace: Optional[str], memo: kopf.Memo, **_: Any) -> None:
        if namespace is not None:  # a TTSCluster is namespaced: kopf always passes one
            reconciler.cleanup(name, namespace, cluster_memory(memo))

    @kopf.on.event("", "v1", "pods", registry=registry,
                   labels={LABEL_CLUSTER: kopf.PRESENT, "app.kubernetes.io/component": "worker"})
    def worker_pod_event(event: kopf.RawEvent, name: str, namespace: Optional[str], labels: Mapping[str, str],
                         **_: Any) -> None:
        """A worker deleted by someone else (kubectl delete, eviction) is replaced on the next reconciliation;
        say so on the TTSCluster so `kubectl describe ttsc` explains the new pod."""
        if event.get("type") != "DELETED" or namespace is None:
            return
        cluster = labels[LABEL_CLUSTER]
        if reconciler.deleted_by_us(namespace, name):
            return
        try:
            owner = reconciler.kube.custom.get_namespaced_custom_object(GROUP, VERSION, namespace, PLURAL, cluster)
        except Exception:  # the TTSCluster itself is gone
            return
        # The API answers a plain dict; kopf posts an Event for any object with metadata.
        message = f"{name} was deleted outside the operator: replacing it"
        kopf.warn(owner, reason="WorkerDeleted", message=message)  # type: ignore[arg-type]
