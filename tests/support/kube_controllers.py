"""The control plane's controllers the end-to-end suite needs, as pure functions of the stored objects: the
scheduler (bind a pod to a Ready node with room for its GPUs, or say why not as kube-scheduler does), the Deployment
controller (a Deployment's pods, and its status from them) and the EndpointSlice controller (a Service's ready and
terminating endpoints from the pods its selector matches). The emulator applies what they return
(``KubeEmulator(controllers=True)``); a real cluster runs the real ones.

Simplifications, each listed in the emulator's gaps: no ReplicaSets (a Deployment owns its pods directly; a template
change replaces them all at once, as the Recreate strategy does), the scheduler knows only GPUs, pod count,
nodeSelector and node readiness (no CPU or memory fit, taints, affinity or preemption), one EndpointSlice per Service.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Iterable
from typing import Any

GPU = "nvidia.com/gpu"


def _int(value: Any) -> int:
    try:
        return int(str(value))
    except (TypeError, ValueError):
        return 0


def gpus_requested(pod: dict[str, Any]) -> int:
    """A pod's GPUs: extended resources are asked as limits (requests default to them)."""
    total = 0
    for c in (pod.get("spec") or {}).get("containers") or []:
        res = c.get("resources") or {}
        total += _int((res.get("limits") or {}).get(GPU) or (res.get("requests") or {}).get(GPU))
    return total


def _node_ready(node: dict[str, Any]) -> bool:
    return any(c.get("type") == "Ready" and c.get("status") == "True"
               for c in (node.get("status") or {}).get("conditions") or [])


def _active(pod: dict[str, Any]) -> bool:
    return (pod.get("status") or {}).get("phase") not in ("Succeeded", "Failed")


def schedule(pod: dict[str, Any], nodes: list[dict[str, Any]], pods: list[dict[str, Any]]) -> tuple[str | None, str]:
    """(the node to bind ``pod`` to, "") or (None, kube-scheduler's message for why no node fits)."""
    wanted = gpus_requested(pod)
    selector = (pod.get("spec") or {}).get("nodeSelector") or {}
    reasons: dict[str, int] = {}
    for node in sorted(nodes, key=lambda n: n["metadata"]["name"]):
        name = node["metadata"]["name"]
        labels = node["metadata"].get("labels") or {}
        if not _node_ready(node):
            reasons["node(s) had untolerated taint {node.kubernetes.io/not-ready: }"] = \
                reasons.get("node(s) had untolerated taint {node.kubernetes.io/not-ready: }", 0) + 1
            continue
        if any(labels.get(k) != v for k, v in selector.items()):
            reasons["node(s) didn't match Pod's node affinity/selector"] = \
                reasons.get("node(s) didn't match Pod's node affinity/selector", 0) + 1
            continue
        bound = [p for p in pods if (p.get("spec") or {}).get("nodeName") == name and _active(p)
                 and not p["metadata"].get("deletionTimestamp")]
        allocatable = (node.get("status") or {}).get("allocatable") or {}
        if wanted and sum(gpus_requested(p) for p in bound) + wanted > _int(allocatable.get(GPU)):
            reasons[f"Insufficient {GPU}"] = reasons.get(f"Insufficient {GPU}", 0) + 1
            continue
        if len(bound) + 1 > _int(allocatable.get("pods") or 110):
            reasons["Too many pods"] = reasons.get("Too many pods", 0) + 1
            continue
        return name, ""
    detail = ", ".join(f"{n} {r}" for r, n in sorted(reasons.items()))
    return None, f"0/{len(nodes)} nodes are available: {detail}." if detail else f"0/{len(nodes)} nodes are available."


def template_hash(deployment: dict[str, Any]) -> str:
    text = json.dumps(deployment["spec"].get("template") or {}, sort_keys=True)
    return hashlib.sha256(text.encode()).hexdigest()[:10]


def owned_by(obj: dict[str, Any], owner: dict[str, Any]) -> bool:
    return any(r.get("uid") == owner["metadata"]["uid"] for r in obj["metadata"].get("ownerReferences") or [])


def owner_reference(owner: dict[str, Any]) -> dict[str, Any]:
    return {"apiVersion": owner["apiVersion"], "kind": owner["kind"], "name": owner["metadata"]["name"],
            "uid": owner["metadata"]["uid"], "controller": True, "blockOwnerDeletion": True}


def deployment_step(deployment: dict[str, Any], pods: list[dict[str, Any]], suffixes: Iterable[str]
                    ) -> tuple[list[dict[str, Any]], list[str], dict[str, Any]]:
    """(pods to create, names of pods to delete, the Deployment's status). ``suffixes`` gives new pods' names."""
    want = _int(deployment["spec"].get("replicas", 1))
    h = template_hash(deployment)
    mine = [p for p in pods if owned_by(p, deployment) and not p["metadata"].get("deletionTimestamp")]
    current = [p for p in mine if (p["metadata"].get("labels") or {}).get("pod-template-hash") == h]
    delete = [p["metadata"]["name"] for p in mine if p not in current]
    delete += [p["metadata"]["name"] for p in sorted(current, key=lambda p: p["metadata"]["name"])[want:]]
    keep = [p for p in current if p["metadata"]["name"] not in delete]
    template = deployment["spec"].get("template") or {}
    create = []
    names = iter(suffixes)
    for _ in range(max(0, want - len(keep))):
        meta = template.get("metadata") or {}
        create.append({
            "apiVersion": "v1", "kind": "Pod",
            "metadata": {"name": f"{deployment['metadata']['name']}-{h[:6]}-{next(names)}",
                         "labels": {**(meta.get("labels") or {}), "pod-template-hash": h},
                         "annotations": dict(meta.get("annotations") or {}),
                         "ownerReferences": [owner_reference(deployment)]},
            "spec": template.get("spec") or {},
        })
    ready = sum(1 for p in keep if _pod_ready(p))
    status = {"observedGeneration": deployment["metadata"].get("generation", 1), "replicas": len(keep),
              "updatedReplicas": len(keep), "readyReplicas": ready, "availableReplicas": ready,
              "unavailableReplicas": max(0, want - ready)}
    return create, delete, status


def _pod_ready(pod: dict[str, Any]) -> bool:
    return any(c.get("type") == "Ready" and c.get("status") == "True"
               for c in (pod.get("status") or {}).get("conditions") or [])


def _matches(selector: dict[str, str], labels: dict[str, str]) -> bool:
    return bool(selector) and all(labels.get(k) == v for k, v in selector.items())


def _target_port(service_port: dict[str, Any], pod: dict[str, Any]) -> int | None:
    target = service_port.get("targetPort", service_port.get("port"))
    if isinstance(target, int) or str(target).isdigit():
        return int(target)
    for c in (pod.get("spec") or {}).get("containers") or []:
        for p in c.get("ports") or []:
            if p.get("name") == target:
                return int(p["containerPort"])
    return None


def endpoint_slice(service: dict[str, Any], pods: list[dict[str, Any]]) -> dict[str, Any] | None:
    """The Service's one EndpointSlice: every pod its selector matches that has an IP, ready or not (a headless
    Service publishes not-ready addresses only when asked), terminating ones marked so."""
    selector = (service.get("spec") or {}).get("selector") or {}
    if not selector:
        return None  # a Service without a selector has its EndpointSlices written by someone else
    name = service["metadata"]["name"]
    matched = sorted((p for p in pods if _matches(selector, p["metadata"].get("labels") or {})
                      and (p.get("status") or {}).get("podIP")), key=lambda p: p["metadata"]["name"])
    ports = (service.get("spec") or {}).get("ports") or []
    endpoints = []
    for p in matched:
        terminating = bool(p["metadata"].get("deletionTimestamp"))
        ready = _pod_ready(p) and not terminating
        endpoints.append({
            "addresses": [p["status"]["podIP"]],
            "conditions": {"ready": ready, "serving": _pod_ready(p), "terminating": terminating},
            "targetRef": {"kind": "Pod", "name": p["metadata"]["name"], "namespace": p["metadata"]["namespace"],
                          "uid": p["metadata"]["uid"]},
            **({"nodeName": p["spec"]["nodeName"]} if (p.get("spec") or {}).get("nodeName") else {}),
        })
    first = matched[0] if matched else None
    slice_ports = [{"name": sp.get("name", ""), "protocol": sp.get("protocol", "TCP"),
                    "port": _target_port(sp, first) if first else None} for sp in ports]
    return {
        "apiVersion": "discovery.k8s.io/v1", "kind": "EndpointSlice",
        "metadata": {"name": f"{name}-slice", "namespace": service["metadata"]["namespace"],
                     "labels": {"kubernetes.io/service-name": name,
                                "endpointslice.kubernetes.io/managed-by": "endpointslice-controller.k8s.io"},
                     "ownerReferences": [owner_reference(service)]},
        "addressType": "IPv4",
        "endpoints": endpoints,
        "ports": [p for p in slice_ports if p["port"] is not None],
    }
