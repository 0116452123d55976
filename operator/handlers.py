"""kopf handlers for TTSCluster, registered with the operator's settings. Every entry point runs the same
level-based reconciliation."""

from __future__ import annotations

import dataclasses
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


def _without_finalizer(registry: kopf.OperatorRegistry, handler_id: str) -> None:
    """kopf puts a finalizer on every object with a timer, to stop the timer before the object goes; it offers no
    option against it. Here a deletion needs no such wait: the timer's next run finds the object gone and kopf ends
    it on the deletion event. Without the finalizer a TTSCluster is deleted even when no operator runs (helm
    uninstall deletes the operator alongside). tests/operator/test_helm_lifecycle.py fails if kopf changes this."""
    spawning = registry._spawning
    spawning._handlers = [dataclasses.replace(h, requires_finalizer=False) if h.id == handler_id else h
                          for h in spawning._handlers]


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
    _without_finalizer(registry, "reconcile-periodically")

    # No deletion handler, so no finalizer: every object the operator makes carries an owner reference to its
    # TTSCluster, and Kubernetes' garbage collector removes them. A finalizer would leave the TTSCluster stuck
    # Terminating whenever the operator is gone first (helm uninstall deletes its Deployment and RBAC alongside),
    # and kopf removes the finalizer an older operator put on a TTSCluster once no handler needs it.

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
            owner = reconciler.kube.get_cluster(namespace, cluster)
        except Exception:  # the TTSCluster itself is gone
            return
        # The API answers a plain dict; kopf posts an Event for any object with metadata.
        message = f"{name} was deleted outside the operator: replacing it"
        kopf.warn(owner, reason="WorkerDeleted", message=message)  # type: ignore[arg-type]
