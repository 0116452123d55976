"""kopf handlers for TTSCluster, registered with the operator's settings. Every entry point runs the same
level-based reconciliation."""

from __future__ import annotations

from typing import Any

import kopf

from .reconcile import Reconciler
from .resources import LABEL_CLUSTER
from .spec import GROUP, PLURAL, VERSION


def _events(body: kopf.Body):  # type: ignore[no-untyped-def]
    def post(kind: str, reason: str, message: str) -> None:
        (kopf.warn if kind == "Warning" else kopf.info)(body, reason=reason, message=message)

    return post


def register(registry: kopf.OperatorRegistry, reconciler: Reconciler) -> None:
    def reconcile(body: kopf.Body, patch: kopf.Patch, **_: Any) -> None:
        status = reconciler.reconcile(body, _events(body))
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
    def cleanup(name: str, namespace: str, **_: Any) -> None:
        reconciler.cleanup(name, namespace)

    @kopf.on.event("", "v1", "pods", registry=registry,
                   labels={LABEL_CLUSTER: kopf.PRESENT, "app.kubernetes.io/component": "worker"})
    def worker_pod_event(event: dict[str, Any], name: str, namespace: str, labels: dict[str, str],
                         **_: Any) -> None:
        """A worker deleted by someone else (kubectl delete, eviction) is replaced on the next reconciliation;
        say so on the TTSCluster so `kubectl describe ttsc` explains the new pod."""
        if event.get("type") != "DELETED":
            return
        cluster = labels[LABEL_CLUSTER]
        memory = reconciler.memory(namespace, cluster)
        if name in memory.removing:
            memory.removing.discard(name)
            return
        try:
            owner = reconciler.kube.custom.get_namespaced_custom_object(GROUP, VERSION, namespace, PLURAL, cluster)
        except Exception:  # the TTSCluster itself is gone
            return
        kopf.warn(owner, reason="WorkerDeleted", message=f"{name} was deleted outside the operator: replacing it")
