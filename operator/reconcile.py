"""One reconciliation of a TTSCluster: owned objects, the worker set (replace, scale, drain), and status.

Level-based and idempotent: it reads what exists and moves it one step toward the spec, so create, update, resume
and the periodic timer all call the same function, and an operator restart picks up where the last one stopped.
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Any, Optional, cast

import httpx
import kopf

from tts_common.modes import mode_for
from tts_common.voices import CatalogError

from . import pods, resources
from .autoscale import Autoscaler, cluster_admitted
from .default_weights import router_default_voice, to_persist
from .kube import Kube
from .placement import Placement, place
from .plan import Create, Drain, Remove, Replace, Rules, Undrain, WorkerPlan, loads_needed, plan, serving_after
from .settings import OperatorSettings
from .spec import TTSClusterSpec, parse_spec
from .status import condition
from .voice_status import VoiceErrorLog, placement_from_status, placement_problem, status_rows, voice_report
from .voices import VoicesSpec, catalog_yaml, empty_catalog_yaml, read_voices

EventFn = Callable[[str, str, str], None]  # (type, reason, message)


@dataclass
class ClusterMemory:
    """What the operator remembers of one TTSCluster between reconciliations. It lives in kopf's per-object memo,
    so kopf drops it with the object. The lock serialises the periodic timer with the change handlers, which kopf
    may run at the same time for one object."""

    lock: threading.Lock = field(default_factory=threading.Lock)
    autoscaler: Autoscaler = field(default_factory=Autoscaler)
    #: the placement last written to the voices ConfigMap (None: not yet in this process; the status has it)
    placement: Optional[Placement] = None
    #: voice load failures already posted as Events
    voice_errors: VoiceErrorLog = field(default_factory=VoiceErrorLog)
    #: the spec.voices error last posted as an Event, so a bad spec is told once, not every interval
    voices_refused: Optional[str] = None
    #: worker pods already reported Pending for want of a node (one Event each, not one per interval)
    unschedulable_told: frozenset[str] = frozenset()


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
                return {}  # being deleted (another finalizer holds it): nothing may be re-created behind it
            self._owned_objects(name, namespace, spec, body, event)
            self._persist_default_weights(name, namespace, spec, event)
            desired = self._desired_workers(name, namespace, spec, memory, event)
            voices = self._check_voices(spec, memory, event)
            return self._workers(body, spec, desired, voices, memory, event, old_conditions)

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

    def _persist_default_weights(self, name: str, namespace: str, spec: TTSClusterSpec, event: EventFn) -> None:
        """A default-voice switch made through the router goes into spec.defaultWeights (switches need the admin
        routes: without them there is nothing to read)."""
        if not (spec.admin.token_secret or spec.admin.allow_unauthenticated):
            return
        url = self.settings.router_url.format(name=name, namespace=namespace, port=spec.router.port)
        wanted = to_persist(spec.default_weights, router_default_voice(url))
        if wanted is None:
            return
        self.kube.patch_spec(namespace, name, {"defaultWeights": wanted})
        event("Normal", "DefaultVoiceSwitched", f"default voice switched through the router: {wanted} "
                                                "(persisted in spec.defaultWeights; routers restart with it)")

    def _desired_workers(self, name: str, namespace: str, spec: TTSClusterSpec, memory: ClusterMemory,
                         event: EventFn) -> int:
        current = spec.workers.bounded(spec.workers.replicas)
        if not spec.autoscaling.enabled:
            return current
        url = self.settings.router_url.format(name=name, namespace=namespace, port=spec.router.port)
        admitted = cluster_admitted(url)
        if admitted is None:
            return current
        decided = memory.autoscaler.decide(current, memory.autoscaler.recommend(admitted, spec), spec)
        if decided != current:
            event("Normal", "Autoscaled", f"workers {current} -> {decided}: {admitted} requests admitted, "
                                          f"target {spec.autoscaling.target_queue_depth:g} per worker")
            self.kube.set_worker_replicas(namespace, name, decided)
        return decided

    def _check_voices(self, spec: TTSClusterSpec, memory: ClusterMemory, event: EventFn) -> VoicesSpec | str:
        """spec.voices as a catalog, or why it is refused (told once in a Warning Event)."""
        try:
            voices = read_voices(spec.voices, spec.default_voice, spec.openai)
        except CatalogError as exc:
            message = f"{exc} (the voice catalog in force stays)"
            if memory.voices_refused != message:
                event("Warning", "InvalidVoices", message)
                memory.voices_refused = message
            return message
        memory.voices_refused = None
        return voices

    def _workers(self, body: kopf.Body, spec: TTSClusterSpec, desired: int, voices: VoicesSpec | str,
                 memory: ClusterMemory, event: EventFn, old_conditions: list[dict[str, Any]]) -> dict[str, Any]:
        s = self.settings
        name, namespace = body["metadata"]["name"], body["metadata"]["namespace"]
        generation: Optional[int] = body["metadata"].get("generation")
        worker_pods = self.kube.list_pods(namespace, resources.selector(name, "worker"))
        rules = Rules(s.crashloop_restarts, s.not_ready_seconds, spec.drain_timeout_seconds)
        now = pods.now()
        by_name = {pods.name_of(p): p for p in worker_pods}
        needed = loads_needed(desired, worker_pods, rules, now)
        asked = list(needed)
        if isinstance(voices, VoicesSpec) and not voices.empty:  # what they hold goes into status.voices
            asked += [pods.name_of(p) for p in worker_pods if pods.is_ready(p) and not pods.is_terminating(p)]
        stats = self._read_stats([by_name[n] for n in dict.fromkeys(asked)], spec.workers.port)
        loads = {n: pods.admitted(stats.get(n)) for n in needed}
        step = plan(desired, worker_pods, loads, rules, now)
        # The catalog goes out before new pods (they mount it) and again once their names are known.
        workers = serving_after(worker_pods, step.actions)
        placement = self._write_voices(name, namespace, spec, body, voices, workers, memory, event)
        created = self._apply_workers(name, namespace, spec, body, step, event)
        if created:
            workers = sorted(workers + created)
            placement = self._write_voices(name, namespace, spec, body, voices, workers, memory, event)
        voice_status, voice_conditions = self._voice_status(voices, placement, stats, workers, memory, event,
                                                            old_conditions, generation)
        active, ready, draining = step.active, step.ready, step.draining

        pending = self._unschedulable(worker_pods, memory, event)
        router_ok = self.kube.deployment_available(namespace, f"{name}-router") > 0
        progressing = active != desired or bool(draining) or ready < active
        degraded = ready < desired
        degraded_reason = "WorkersUnschedulable" if pending else ("WorkersNotReady" if degraded else "AllReady")
        degraded_message = f"{ready} of {desired} workers ready"
        if pending:
            degraded_message += f"; {len(pending)} Pending: {next(iter(pending.values()))}"
        conditions = [
            condition(old_conditions, "Ready", ready > 0 and router_ok,
                      "Serving" if ready > 0 and router_ok else ("NoReadyWorker" if ready == 0 else "RouterUnavailable"),
                      f"{ready} of {desired} workers ready; router {'available' if router_ok else 'not available'}",
                      generation),
            condition(old_conditions, "Progressing", progressing,
                      "Scaling" if progressing else "Stable",
                      f"{active} workers, {draining} draining, {ready} ready, {desired} wanted", generation),
            condition(old_conditions, "Degraded", degraded, degraded_reason, degraded_message, generation),
            *voice_conditions,
        ]
        return {
            "observedGeneration": generation,
            "workers": active,
            "readyWorkers": ready,
            "drainingWorkers": draining,
            "mode": mode_for(ready),
            "routerEndpoint": f"http://{name}.{namespace}.svc:{spec.router.port}",
            "selector": resources.selector_string(name, "worker"),
            **voice_status,
            "conditions": conditions,
        }

    @staticmethod
    def _unschedulable(worker_pods: list[dict[str, Any]], memory: ClusterMemory, event: EventFn) -> dict[str, str]:
        """Workers Pending for want of a node that fits them (more workers than free GPUs), with the scheduler's
        message; each is told once as a Warning Event."""
        pending = {pods.name_of(p): msg for p in worker_pods
                   if not pods.is_terminating(p) and (msg := pods.unschedulable(p)) is not None}
        for pod_name, message in pending.items():
            if pod_name not in memory.unschedulable_told:
                event("Warning", "WorkerUnschedulable", f"{pod_name} is Pending: {message}")
        memory.unschedulable_told = frozenset(pending)
        return pending

    def _read_stats(self, worker_pods: list[dict[str, Any]], port: int) -> dict[str, Optional[dict[str, Any]]]:
        """Each pod's /stats, asked all at once (each has a short timeout): one slow worker delays the
        reconciliation by that timeout, not by the sum over every worker."""
        if not worker_pods:
            return {}
        with ThreadPoolExecutor(max_workers=min(16, len(worker_pods))) as pool:
            found = list(pool.map(lambda p: pods.read_stats(p, port, self.http), worker_pods))
        return {pods.name_of(p): stats for p, stats in zip(worker_pods, found, strict=True)}

    def _write_voices(self, name: str, namespace: str, spec: TTSClusterSpec, body: kopf.Body,
                      voices: VoicesSpec | str, workers: list[str], memory: ClusterMemory,
                      event: EventFn) -> Placement:
        """The voices ConfigMap: the catalog with a placement over `workers`. A refused spec.voices changes
        nothing written before; a cluster that never had a catalog gets an empty one, which its pods need to
        start."""
        if isinstance(voices, str):
            obj = resources.voices_config_map(name, empty_catalog_yaml())
            kopf.adopt(obj, owner=body)
            if self.kube.create_if_absent(namespace, obj):
                event("Normal", "Created", f"created ConfigMap {obj['metadata']['name']} (no voices)")
            return {}
        current = memory.placement if memory.placement is not None else \
            placement_from_status(body.get("status") or {})
        placement = place(voices.min_workers, workers, current, spec.workers.max_loaded_voices)
        obj = resources.voices_config_map(name, catalog_yaml(voices, placement))
        kopf.adopt(obj, owner=body)
        if self.kube.apply(namespace, obj) == "created":
            event("Normal", "Created", f"created ConfigMap {obj['metadata']['name']}")
        memory.placement = placement
        return placement

    def _voice_status(self, voices: VoicesSpec | str, placement: Placement,
                      stats: dict[str, Optional[dict[str, Any]]], workers: list[str], memory: ClusterMemory,
                      event: EventFn, old_conditions: list[dict[str, Any]],
                      generation: Optional[int]) -> tuple[dict[str, Any], list[dict[str, Any]]]:
        """status.voices and the VoicesPlaced condition (only for a cluster with voices), and an Event for each
        voice load failure a worker reports for the first time."""
        if isinstance(voices, str):  # status.voices keeps describing the catalog still in force
            return {}, [condition(old_conditions, "VoicesPlaced", False, "InvalidVoices", voices, generation)]
        if voices.empty:
            return {"voices": []}, []
        reports = {w: voice_report(stats[w]) for w in workers if w in stats}
        for worker, voice, message in memory.voice_errors.new(reports, workers):
            event("Warning", "VoiceLoadFailed", f"worker {worker}: voice {voice}: {message}")
        problem = placement_problem(voices, placement, len(workers))
        placed = condition(old_conditions, "VoicesPlaced", problem is None,
                           "Placed" if problem is None else "PlacementShort",
                           problem or f"{len(voices.min_workers)} voices, each on its minWorkers workers",
                           generation)
        return {"voices": status_rows(voices, placement, reports)}, [placed]

    def _apply_workers(self, name: str, namespace: str, spec: TTSClusterSpec, body: kopf.Body, step: WorkerPlan,
                       event: EventFn) -> list[str]:
        """Carry out a plan against the API server, in its order, with one Event per action. Returns the names
        of the pods it created."""
        created_names: list[str] = []
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
                created_names.append(pods.name_of(created))
                event("Normal", "CreatedWorker", f"created {pods.name_of(created)} ({action.ordinal}/{step.active})")
            elif isinstance(action, Drain):
                self.kube.patch_pod_metadata(namespace, action.pod, {
                    "labels": {resources.LABEL_DRAINING: "true"},
                    "annotations": {resources.ANNOTATION_DRAIN_STARTED: pods.now().strftime("%Y-%m-%dT%H:%M:%SZ")}})
                event("Normal", "DrainingWorker", f"{action.pod}: {action.held} requests to finish")
            elif isinstance(action, Remove):
                event("Normal", "RemovedWorker", f"{action.pod}: {action.why}")
                self._delete_pod(namespace, action.pod)
        return created_names
