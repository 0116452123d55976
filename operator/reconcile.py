"""One reconciliation of a TTSCluster: owned objects, the worker set (replace, scale, drain), and status.

Level-based and idempotent: it reads what exists and moves it one step toward the spec, so create, update, resume
and the periodic timer all call the same function, and an operator restart picks up where the last one stopped.
"""

from __future__ import annotations

import threading
from dataclasses import dataclass, field
from typing import Any, Callable, Optional

import httpx
import kopf

from . import pods as P
from . import resources as R
from .autoscale import Autoscaler, cluster_admitted
from .kube import Kube
from .settings import OperatorSettings
from .spec import GROUP, PLURAL, VERSION, TTSClusterSpec, parse_spec
from .status import condition, mode_for

EventFn = Callable[[str, str, str], None]  # (type, reason, message)


@dataclass
class ClusterMemory:
    lock: threading.Lock = field(default_factory=threading.Lock)
    autoscaler: Autoscaler = field(default_factory=Autoscaler)
    removing: set[str] = field(default_factory=set)  # pods this operator deleted, to tell them from hand deletions


class Reconciler:
    """Owned by the operator process (kopf's memo): the API client and per-cluster memory."""

    def __init__(self, settings: OperatorSettings, kube: Kube) -> None:
        self.settings = settings
        self.kube = kube
        self.http = httpx.Client()
        self._memory: dict[tuple[str, str], ClusterMemory] = {}
        self._memory_lock = threading.Lock()

    def memory(self, namespace: str, name: str) -> ClusterMemory:
        with self._memory_lock:
            return self._memory.setdefault((namespace, name), ClusterMemory())

    def forget(self, namespace: str, name: str) -> None:
        with self._memory_lock:
            self._memory.pop((namespace, name), None)

    # -- the whole reconciliation --------------------------------------------------------------------------
    def reconcile(self, body: kopf.Body, event: EventFn) -> dict[str, Any]:
        name, namespace = body["metadata"]["name"], body["metadata"]["namespace"]
        generation = body["metadata"].get("generation")
        old_conditions = list((body.get("status") or {}).get("conditions") or [])
        try:
            spec = parse_spec(dict(body.get("spec") or {}))
        except ValueError as exc:
            message = f"invalid spec: {exc}"
            event("Warning", "InvalidSpec", message)
            return {
                "observedGeneration": generation,
                "conditions": [
                    condition(old_conditions, "Ready", False, "InvalidSpec", message, generation),
                    condition(old_conditions, "Progressing", False, "InvalidSpec", message, generation),
                    condition(old_conditions, "Degraded", True, "InvalidSpec", message, generation),
                ],
            }
        memory = self.memory(namespace, name)
        with memory.lock:
            if body["metadata"].get("deletionTimestamp"):
                return {}  # being deleted: cleanup() owns it now, and nothing may be re-created behind it
            self._owned_objects(name, namespace, spec, body, event)
            desired = self._desired_workers(name, namespace, spec, memory, event)
            return self._workers(body, spec, desired, memory, event, old_conditions)

    def _owned_objects(self, name: str, namespace: str, spec: TTSClusterSpec, body: kopf.Body,
                       event: EventFn) -> None:
        objects = [
            R.config_map(name, spec),
            R.workers_service(name, spec),
            R.router_service_account(name),
            R.router_role(name),
            R.router_role_binding(name),
            R.router_deployment(name, spec),
            R.router_service(name, spec),
        ]
        for obj in objects:
            if obj is None:
                continue
            kopf.adopt(obj, owner=body)  # owner reference: Kubernetes removes them with the TTSCluster
            if self.kube.apply(namespace, obj) == "created":
                event("Normal", "Created", f"created {obj['kind']} {obj['metadata']['name']}")

    def _desired_workers(self, name: str, namespace: str, spec: TTSClusterSpec, memory: ClusterMemory,
                         event: EventFn) -> int:
        if not spec.autoscaling.enabled:
            return spec.workers.replicas
        url = self.settings.router_url.format(name=name, namespace=namespace, port=spec.router.port)
        admitted = cluster_admitted(url)
        current = spec.workers.replicas
        if admitted is None:
            return current
        decided = memory.autoscaler.decide(current, memory.autoscaler.recommend(admitted, spec), spec)
        if decided != current:
            event("Normal", "Autoscaled", f"workers {current} -> {decided}: {admitted} requests admitted, "
                                          f"target {spec.autoscaling.target_queue_depth:g} per worker")
            self.kube.set_worker_replicas(namespace, name, decided, GROUP, VERSION, PLURAL)
        return decided

    def _workers(self, body: kopf.Body, spec: TTSClusterSpec, desired: int, memory: ClusterMemory,
                 event: EventFn, old_conditions: list[dict[str, Any]]) -> dict[str, Any]:
        s = self.settings
        name, namespace = body["metadata"]["name"], body["metadata"]["namespace"]
        generation: Optional[int] = body["metadata"].get("generation")
        port = spec.workers.port
        pods = [p for p in self.kube.list_pods(namespace, R.selector_string(name, "worker"))
                if not P.is_terminating(p)]

        # 1. Replace failed workers.
        alive = []
        for pod in pods:
            reason = P.failure(pod, s.crashloop_restarts, s.not_ready_seconds)
            if reason:
                event("Warning", "ReplacingWorker", f"{P.name_of(pod)}: {reason}")
                memory.removing.add(P.name_of(pod))
                self.kube.delete_pod(namespace, P.name_of(pod))
            else:
                alive.append(pod)
        active = [p for p in alive if not P.is_draining(p)]
        draining = [p for p in alive if P.is_draining(p)]

        # 2. Scale up: take back a draining worker first (it is warm), then create new ones.
        while len(active) < desired and draining:
            pod = draining.pop()
            self.kube.patch_pod_metadata(namespace, P.name_of(pod), {
                "labels": {R.LABEL_DRAINING: None}, "annotations": {R.ANNOTATION_DRAIN_STARTED: None}})
            event("Normal", "DrainCancelled", f"{P.name_of(pod)} serves again")
            active.append(pod)
        missing = desired - len(active)
        for _ in range(max(0, missing)):
            pod = R.worker_pod(name, spec)
            kopf.adopt(pod, owner=body)
            created = self.kube.create_pod(namespace, pod)
            active.append(created)
            event("Normal", "CreatedWorker", f"created {P.name_of(created)} ({len(active)}/{desired})")

        # 3. Scale down with drain: the least-loaded workers stop getting requests, then go when empty.
        extra = len(active) - desired
        if extra > 0:
            loads = {P.name_of(p): P.admitted(p, port, self.http) for p in active}
            # Not ready or unreachable workers hold no requests: they go first.
            order = sorted(active, key=lambda p: (P.is_ready(p), loads[P.name_of(p)] or 0))
            for pod in order[:extra]:
                self.kube.patch_pod_metadata(namespace, P.name_of(pod), {
                    "labels": {R.LABEL_DRAINING: "true"},
                    "annotations": {R.ANNOTATION_DRAIN_STARTED: P.now().strftime("%Y-%m-%dT%H:%M:%SZ")}})
                event("Normal", "DrainingWorker", f"{P.name_of(pod)}: {loads[P.name_of(pod)] or 0} requests to finish")
                active.remove(pod)
                draining.append(pod)
        for pod in list(draining):
            held = P.admitted(pod, port, self.http)
            started = P.drain_started(pod) or P.now()
            waited = (P.now() - started).total_seconds()
            if not held or waited >= spec.drain_timeout_seconds:
                why = "drained" if not held else f"drain timeout after {waited:.0f} s with {held} requests"
                event("Normal", "RemovedWorker", f"{P.name_of(pod)}: {why}")
                memory.removing.add(P.name_of(pod))
                self.kube.delete_pod(namespace, P.name_of(pod))
                draining.remove(pod)

        # 4. Status.
        ready = sum(1 for p in active if P.is_ready(p))
        router_ok = self.kube.deployment_available(namespace, f"{name}-router") > 0
        progressing = len(active) != desired or bool(draining) or ready < len(active)
        degraded = ready < desired
        conditions = [
            condition(old_conditions, "Ready", ready > 0 and router_ok,
                      "Serving" if ready > 0 and router_ok else ("NoReadyWorker" if ready == 0 else "RouterUnavailable"),
                      f"{ready} of {desired} workers ready; router {'available' if router_ok else 'not available'}",
                      generation),
            condition(old_conditions, "Progressing", progressing,
                      "Scaling" if progressing else "Stable",
                      f"{len(active)} workers, {len(draining)} draining, {ready} ready, {desired} wanted", generation),
            condition(old_conditions, "Degraded", degraded,
                      "WorkersNotReady" if degraded else "AllReady", f"{ready} of {desired} workers ready", generation),
        ]
        return {
            "observedGeneration": generation,
            "workers": len(active),
            "readyWorkers": ready,
            "drainingWorkers": len(draining),
            "mode": mode_for(ready),
            "routerEndpoint": f"http://{name}.{namespace}.svc:{spec.router.port}",
            "selector": R.selector_string(name, "worker"),
            "conditions": conditions,
        }

    def cleanup(self, name: str, namespace: str) -> None:
        """On TTSCluster deletion. Owner references let Kubernetes collect these; deleting them here as well
        makes removal immediate and independent of the garbage collector."""
        with self.memory(namespace, name).lock:  # after any reconciliation in flight, never during one
            self._delete_owned(name, namespace)
        self.forget(namespace, name)

    def _delete_owned(self, name: str, namespace: str) -> None:
        for pod in self.kube.list_pods(namespace, R.selector_string(name, "worker")):
            self.kube.delete_pod(namespace, P.name_of(pod))
        for kind, obj_name in [("Service", name), ("Deployment", f"{name}-router"),
                               ("RoleBinding", f"{name}-router"), ("Role", f"{name}-router"),
                               ("ServiceAccount", f"{name}-router"), ("Service", R.workers_service_name(name)),
                               ("ConfigMap", f"{name}-tts-infer")]:
            self.kube.delete(namespace, kind, obj_name)
