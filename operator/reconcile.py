"""One reconciliation of a TTSCluster: owned objects, the worker set (replace, scale, drain), and status.

Level-based and idempotent: it reads what exists and moves it one step toward the spec, so create, update, resume
and the periodic timer all call the same function, and an operator restart picks up where the last one stopped.
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, Optional, cast

import httpx
import kopf

from tts_common.modes import mode_for

from . import pods, resources
from .autoscale import Autoscaler, cluster_admitted
from .kube import Kube
from .plan import Create, Drain, Remove, Replace, Rules, Undrain, WorkerPlan, loads_needed, plan
from .settings import OperatorSettings
from .spec import GROUP, PLURAL, VERSION, TTSClusterSpec, parse_spec
from .status import condition

EventFn = Callable[[str, str, str], None]  # (type, reason, message)


@dataclass
class ClusterMemory:
    """What the operator remembers of one TTSCluster between reconciliations. It lives in kopf's per-object memo,
    so kopf drops it with the object. The lock serialises the periodic timer with the change handlers, which kopf
    may run at the same time for one object."""

    lock: threading.Lock = field(default_factory=threading.Lock)
    autoscaler: Autoscaler = field(default_factory=Autoscaler)


def cluster_memory(memo: kopf.Memo) -> ClusterMemory:
    """The TTSCluster's memory from its kopf memo, made on first use (dict.setdefault is atomic)."""
    return cast(ClusterMemory, memo.setdefault("cluster", ClusterMemory()))


class Reconciler:
    """One per operator process: the API clients, and the worker pods this operator deleted itself (to tell them
    from deletions by hand)."""

    def __init__(self, settings: OperatorSettings, kube: Kube) -> None:
        self.settings = settings
        self.kube = kube
        self.http = httpx.Client()
        self._removing: set[tuple[str, str]] = set()

    def deleted_by_us(self, namespace: str, pod: str) -> bool:
        """Whether a pod's deletion was this operator's; asked once, when the deletion is seen."""
        key = (namespace, pod)
        if key in self._removing:
            self._removing.discard(key)
            return True
        return False

    def _delete_pod(self, namespace: str, pod: str) -> None:
        self._removing.add((namespace, pod))
        try:
            self.kube.delete_pod(namespace, pod)
        except Exception:
            self._removing.discard((namespace, pod))  # no deletion will be seen: forget it
            raise

    # -- the whole reconciliation --------------------------------------------------------------------------
    def reconcile(self, body: kopf.Body, memory: ClusterMemory, event: EventFn) -> dict[str, Any]:
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
        with memory.lock:
            if body["metadata"].get("deletionTimestamp"):
                return {}  # being deleted: cleanup() owns it now, and nothing may be re-created behind it
            self._owned_objects(name, namespace, spec, body, event)
            desired = self._desired_workers(name, namespace, spec, memory, event)
            return self._workers(body, spec, desired, event, old_conditions)

    def _owned_objects(self, name: str, namespace: str, spec: TTSClusterSpec, body: kopf.Body,
                       event: EventFn) -> None:
        objects = [
            resources.config_map(name, spec),
            resources.workers_service(name, spec),
            resources.router_service_account(name),
            resources.router_role(name),
            resources.router_role_binding(name),
            resources.router_deployment(name, spec),
            resources.router_service(name, spec),
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

    def _workers(self, body: kopf.Body, spec: TTSClusterSpec, desired: int, event: EventFn, old_conditions: list[dict[str, Any]]) -> dict[str, Any]:
        s = self.settings
        name, namespace = body["metadata"]["name"], body["metadata"]["namespace"]
        generation: Optional[int] = body["metadata"].get("generation")
        port = spec.workers.port
        worker_pods = self.kube.list_pods(namespace, resources.selector_string(name, "worker"))
        rules = Rules(s.crashloop_restarts, s.not_ready_seconds, spec.drain_timeout_seconds)
        now = pods.now()
        by_name = {pods.name_of(p): p for p in worker_pods}
        needed = loads_needed(desired, worker_pods, rules, now)
        loads = {n: pods.admitted(by_name[n], port, self.http) for n in needed}
        step = plan(desired, worker_pods, loads, rules, now)
        self._apply_workers(name, namespace, spec, body, step, event)
        active, ready, draining = step.active, step.ready, step.draining

        router_ok = self.kube.deployment_available(namespace, f"{name}-router") > 0
        progressing = active != desired or bool(draining) or ready < active
        degraded = ready < desired
        conditions = [
            condition(old_conditions, "Ready", ready > 0 and router_ok,
                      "Serving" if ready > 0 and router_ok else ("NoReadyWorker" if ready == 0 else "RouterUnavailable"),
                      f"{ready} of {desired} workers ready; router {'available' if router_ok else 'not available'}",
                      generation),
            condition(old_conditions, "Progressing", progressing,
                      "Scaling" if progressing else "Stable",
                      f"{active} workers, {draining} draining, {ready} ready, {desired} wanted", generation),
            condition(old_conditions, "Degraded", degraded,
                      "WorkersNotReady" if degraded else "AllReady", f"{ready} of {desired} workers ready", generation),
        ]
        return {
            "observedGeneration": generation,
            "workers": active,
            "readyWorkers": ready,
            "drainingWorkers": draining,
            "mode": mode_for(ready),
            "routerEndpoint": f"http://{name}.{namespace}.svc:{spec.router.port}",
            "selector": resources.selector_string(name, "worker"),
            "conditions": conditions,
        }

    def _apply_workers(self, name: str, namespace: str, spec: TTSClusterSpec, body: kopf.Body, step: WorkerPlan,
                       event: EventFn) -> None:
        """Carry out a plan against the API server, in its order, with one Event per action."""
        for action in step.actions:
            if isinstance(action, Replace):
                event("Warning", "ReplacingWorker", f"{action.pod}: {action.reason}")
                self._delete_pod(namespace, action.pod)
            elif isinstance(action, Undrain):
                self.kube.patch_pod_metadata(namespace, action.pod, {
                    "labels": {resources.LABEL_DRAINING: None}, "annotations": {resources.ANNOTATION_DRAIN_STARTED: None}})
                event("Normal", "DrainCancelled", f"{action.pod} serves again")
            elif isinstance(action, Create):
                pod = resources.worker_pod(name, spec)
                kopf.adopt(pod, owner=body)
                created = self.kube.create_pod(namespace, pod)
                event("Normal", "CreatedWorker", f"created {pods.name_of(created)} ({action.ordinal}/{step.active})")
            elif isinstance(action, Drain):
                self.kube.patch_pod_metadata(namespace, action.pod, {
                    "labels": {resources.LABEL_DRAINING: "true"},
                    "annotations": {resources.ANNOTATION_DRAIN_STARTED: pods.now().strftime("%Y-%m-%dT%H:%M:%SZ")}})
                event("Normal", "DrainingWorker", f"{action.pod}: {action.held} requests to finish")
            elif isinstance(action, Remove):
                event("Normal", "RemovedWorker", f"{action.pod}: {action.why}")
                self._delete_pod(namespace, action.pod)

    def cleanup(self, name: str, namespace: str, memory: ClusterMemory) -> None:
        """On TTSCluster deletion. Owner references let Kubernetes collect these; deleting them here as well
        makes removal immediate and independent of the garbage collector."""
        with memory.lock:  # after any reconciliation in flight, never during one
            self._delete_owned(name, namespace)

    def _delete_owned(self, name: str, namespace: str) -> None:
        for pod in self.kube.list_pods(namespace, resources.selector_string(name, "worker")):
            self.kube.delete_pod(namespace, pods.name_of(pod))
        for kind, obj_name in [("Service", name), ("Deployment", f"{name}-router"),
                               ("RoleBinding", f"{name}-router"), ("Role", f"{name}-router"),
                               ("ServiceAccount", f"{name}-router"), ("Service", resources.workers_service_name(name)),
                               ("ConfigMap", f"{name}-tts-infer")]:
            self.kube.delete(namespace, kind, obj_name)
