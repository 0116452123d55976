"""A test agent that plays kubelet for one node: the end-to-end suite's one stand-in besides the API emulator.

It registers a Node advertising N GPUs (``nvidia.com/gpu``), then runs each pod bound to that node as a local
process of this repository (``python -m tts_cli <the container's args>``), one loopback address per pod
(127.0.0.N, so every worker keeps its port 9880), and reports through the API what kubelet reports: the pod's IP,
phase, readiness from its readiness probe, restarts, and its exit. Against the emulator the emulator's scheduler
binds pods to the node; against a real cluster, kube-scheduler does.

What it does as kubelet does: configMap, secret and emptyDir volumes (written under the pod's own folder), env
with ``fieldRef`` and ``secretKeyRef``/``configMapKeyRef``, a ServiceAccount token from the TokenRequest API,
readiness probes over HTTP, restart of an exited container (restartPolicy Always) and CrashLoopBackOff after 5,
SIGTERM then SIGKILL after the grace period when a pod is deleted, node heartbeats.

What it does not do: images (every ``tts-cluster/*`` image is this checkout, run from the venv; other images
fail as ErrImagePull), containers beyond the first, init containers, liveness and startup probes, resource limits,
security contexts, in-cluster config files (a pod's token and namespace reach the component as a kubeconfig path
and namespace in its ``TTSC_*`` settings, since /var/run/secrets is not writable here), and absolute paths in args
and env are re-rooted under the pod's folder (the container's filesystem).
"""

from __future__ import annotations

import base64
import datetime
import json
import os
import signal
import subprocess
import sys
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import kubernetes
import yaml
from kubernetes.client import ApiException, CoreV1Api

NODE_LABELS = {"nvidia.com/gpu.present": "true"}
CRASHLOOP_AFTER = 5


def _now() -> str:
    return datetime.datetime.now(datetime.UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


@dataclass
class _Running:
    name: str
    namespace: str
    uid: str
    ip: str
    root: Path
    command: list[str]
    env: dict[str, str]
    probe: tuple[str, int] | None  # (path, port) of the readiness probe
    grace: float
    container: str  # the first container's name and image, as its status reports them
    image: str
    process: subprocess.Popen[bytes] | None = None
    restarts: int = 0
    ready: bool = False
    started: str = field(default_factory=_now)
    reported: str = ""  # the last status sent, to send only changes
    waiting: str = ""  # a waiting reason (CrashLoopBackOff, ErrImagePull)


class KubeletAgent:
    def __init__(self, kubeconfig: Path, node: str, gpus: int, workdir: Path, *, first_ip: int = 20) -> None:
        self.kubeconfig = kubeconfig
        self.node = node
        self.gpus = gpus
        self.workdir = workdir
        self.core = CoreV1Api(kubernetes.config.new_client_from_config(config_file=str(kubeconfig)))
        self._pods: dict[str, _Running] = {}
        self._free_ips = [f"127.0.0.{n}" for n in range(first_ip, 250)]
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._last_heartbeat = 0.0
        self.errors: list[str] = []

    # -- life --

    def start(self) -> KubeletAgent:
        self._register()
        self._thread = threading.Thread(target=self._loop, name=f"kubelet-{self.node}", daemon=True)
        self._thread.start()
        return self

    def stop(self, delete_node: bool = True) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(30)
        for running in list(self._pods.values()):
            self._kill(running)
        if delete_node:
            try:
                self.core.delete_node(self.node)
            except ApiException:
                pass

    def running(self) -> dict[str, int]:
        """The pods this agent runs now: name -> process id (0 while waiting: an image it cannot run, a crash
        loop)."""
        return {r.name: r.process.pid if r.process is not None and r.process.poll() is None else 0
                for r in list(self._pods.values())}

    # -- the node --

    def _node_status(self) -> dict[str, Any]:
        resources = {"cpu": "16", "memory": "64Gi", "pods": "30", "nvidia.com/gpu": str(self.gpus)}
        return {"capacity": resources, "allocatable": resources,
                "conditions": [{"type": "Ready", "status": "True", "reason": "KubeletReady",
                                "message": "the test agent is posting ready status",
                                "lastHeartbeatTime": _now(), "lastTransitionTime": _now()}],
                "addresses": [{"type": "InternalIP", "address": "127.0.0.1"},
                              {"type": "Hostname", "address": self.node}],
                "nodeInfo": {"kubeletVersion": "v1.36.0-tts-cluster-agent", "operatingSystem": "linux",
                             "architecture": "amd64", "containerRuntimeVersion": "local://", "kernelVersion": "",
                             "osImage": "", "kubeProxyVersion": "", "machineID": "", "systemUUID": "",
                             "bootID": ""}}

    def _register(self) -> None:
        body = {"apiVersion": "v1", "kind": "Node",
                "metadata": {"name": self.node, "labels": {"kubernetes.io/hostname": self.node, **NODE_LABELS}}}
        try:
            self.core.create_node(body)
        except ApiException as exc:
            if exc.status != 409:
                raise
        self.core.patch_node_status(self.node, {"status": self._node_status()})
        self._last_heartbeat = time.monotonic()

    # -- the loop --

    def _loop(self) -> None:
        while not self._stop.wait(0.2):
            try:
                self._tick()
            except Exception as exc:  # noqa: BLE001 - kept for the test to show, and the agent goes on
                self.errors.append(repr(exc))
                time.sleep(0.5)

    def _tick(self) -> None:
        if time.monotonic() - self._last_heartbeat > 10:
            self.core.patch_node_status(self.node, {"status": {"conditions": self._node_status()["conditions"]}})
            self._last_heartbeat = time.monotonic()
        pods = self.core.list_pod_for_all_namespaces(field_selector=f"spec.nodeName={self.node}").items
        seen = set()
        for pod in pods:
            uid = pod.metadata.uid
            seen.add(uid)
            if pod.metadata.deletion_timestamp:  # graceful deletion (a real API server): stop, then remove it
                running = self._pods.pop(uid, None)
                if running is not None:
                    self._kill(running)
                try:
                    self.core.delete_namespaced_pod(pod.metadata.name, pod.metadata.namespace, grace_period_seconds=0)
                except ApiException:
                    pass
                continue
            if pod.status and pod.status.phase in ("Succeeded", "Failed"):
                continue
            running = self._pods.get(uid)
            if running is None:
                running = self._pods[uid] = self._prepare(self.core.api_client.sanitize_for_serialization(pod))
                self._launch(running)
            self._watch(running)
            self._report(running)
        for uid in set(self._pods) - seen:  # deleted at once (the emulator): stop the process
            self._kill(self._pods.pop(uid))

    # -- one pod --

    def _prepare(self, pod: dict[str, Any]) -> _Running:
        meta, spec = pod["metadata"], pod["spec"]
        container = spec["containers"][0]
        ip = self._free_ips.pop(0)
        root = self.workdir / f"{meta['namespace']}-{meta['name']}"
        root.mkdir(parents=True, exist_ok=True)
        mounts = {m["name"]: m["mountPath"] for m in container.get("volumeMounts") or []}
        for volume in spec.get("volumes") or []:
            target = mounts.get(volume["name"])
            if target is None:
                continue
            folder = root / target.lstrip("/")
            folder.mkdir(parents=True, exist_ok=True)
            for key, value in self._volume_files(meta["namespace"], volume).items():
                (folder / key).write_bytes(value)

        def local(value: str) -> str:
            value = value.replace("0.0.0.0", ip)
            return str(root) + value if value.startswith("/") else value

        image = container.get("image", "")
        if "tts-cluster/worker" in image:  # the worker image's reference clip (Dockerfile.worker)
            from tts_worker.reference import write_reference_clip

            voices = root / "var/lib/tts-cluster/voices"
            voices.mkdir(parents=True, exist_ok=True)
            write_reference_clip(voices)
        env = {"PATH": os.environ.get("PATH", ""), "HOME": str(root), "PYTHONUNBUFFERED": "1"}
        for item in container.get("env") or []:
            env[item["name"]] = local(self._env_value(pod, ip, item))
        token = self._token(meta["namespace"], spec.get("serviceAccountName") or "default")
        if token is not None:
            kubeconfig = root / "kubeconfig"
            kubeconfig.write_text(self._kubeconfig(token, meta["namespace"]))
            for prefix in ("TTSC_ROUTER_", "TTSC_OPERATOR_"):
                env[f"{prefix}KUBECONFIG"] = str(kubeconfig)
            env["TTSC_ROUTER_K8S_NAMESPACE"] = meta["namespace"]
        command = [*(container.get("command") or []), *(container.get("args") or [])]
        probe = None
        http = ((container.get("readinessProbe") or {}).get("httpGet")) or None
        if http is not None:
            port = http.get("port")
            if not isinstance(port, int):
                port = next(p["containerPort"] for p in container.get("ports") or [] if p.get("name") == port)
            probe = (http.get("path", "/"), int(port))
        running = _Running(meta["name"], meta["namespace"], meta["uid"], ip, root,
                           [sys.executable, "-m", "tts_cli", *[local(a) for a in command]], env, probe,
                           float(min(spec.get("terminationGracePeriodSeconds") or 30, 30)), container["name"], image)
        if not image.startswith("tts-cluster/") and "/tts-cluster/" not in image:
            running.waiting = "ErrImagePull"
        return running

    def _volume_files(self, namespace: str, volume: dict[str, Any]) -> dict[str, bytes]:
        if "configMap" in volume:
            cm = self.core.read_namespaced_config_map(volume["configMap"]["name"], namespace)
            return {k: v.encode() for k, v in (cm.data or {}).items()}
        if "secret" in volume:
            secret = self.core.read_namespaced_secret(volume["secret"]["secretName"], namespace)
            return {k: base64.b64decode(v) for k, v in (secret.data or {}).items()}
        return {}  # emptyDir (and anything else): an empty folder

    def _env_value(self, pod: dict[str, Any], ip: str, item: dict[str, Any]) -> str:
        if "value" in item:
            return str(item["value"])
        source = item.get("valueFrom") or {}
        if "fieldRef" in source:
            path = source["fieldRef"]["fieldPath"]
            return {"metadata.name": pod["metadata"]["name"], "metadata.namespace": pod["metadata"]["namespace"],
                    "status.podIP": ip, "spec.nodeName": self.node}.get(path, "")
        if "secretKeyRef" in source:
            ref = source["secretKeyRef"]
            secret = self.core.read_namespaced_secret(ref["name"], pod["metadata"]["namespace"])
            return base64.b64decode((secret.data or {})[ref["key"]]).decode()
        if "configMapKeyRef" in source:
            ref = source["configMapKeyRef"]
            return str((self.core.read_namespaced_config_map(ref["name"], pod["metadata"]["namespace"]).data
                        or {})[ref["key"]])
        return ""

    def _token(self, namespace: str, account: str) -> str | None:
        try:
            answer = self.core.create_namespaced_service_account_token(
                account, namespace, {"spec": {"audiences": [], "expirationSeconds": 3600}})
        except ApiException as exc:
            if exc.status == 404:
                return None  # no such ServiceAccount (the emulator has no "default" one)
            raise
        return str(answer.status.token)

    def _kubeconfig(self, token: str, namespace: str) -> str:
        config = yaml.safe_load(self.kubeconfig.read_text())
        context = next(c for c in config["contexts"] if c["name"] == config["current-context"])["context"]
        cluster = next(c for c in config["clusters"] if c["name"] == context["cluster"])
        return json.dumps({"apiVersion": "v1", "kind": "Config", "clusters": [cluster],
                           "users": [{"name": "pod", "user": {"token": token}}],
                           "contexts": [{"name": "pod", "context": {"cluster": cluster["name"], "user": "pod",
                                                                    "namespace": namespace}}],
                           "current-context": "pod"})

    def _launch(self, running: _Running) -> None:
        if running.waiting == "ErrImagePull":
            return
        log = open(running.root / "container.log", "ab")  # noqa: SIM115 - the process owns it
        running.process = subprocess.Popen(running.command, env=running.env, cwd=running.root, stdout=log,
                                           stderr=subprocess.STDOUT, start_new_session=True)
        running.started = _now()
        running.ready = False

    def _watch(self, running: _Running) -> None:
        process = running.process
        if process is None:
            return
        if process.poll() is not None:  # exited: restartPolicy Always
            running.restarts += 1
            running.ready = False
            if running.restarts >= CRASHLOOP_AFTER:
                running.waiting = "CrashLoopBackOff"
                running.process = None
                return
            self._launch(running)
            return
        if running.probe is None:
            running.ready = True
            return
        path, port = running.probe
        try:
            running.ready = httpx.get(f"http://{running.ip}:{port}{path}", timeout=1.0).status_code == 200
        except httpx.HTTPError:
            running.ready = False

    def _report(self, running: _Running) -> None:
        state: dict[str, Any] = ({"waiting": {"reason": running.waiting}} if running.waiting
                                 else {"running": {"startedAt": running.started}})
        ready = "True" if running.ready else "False"
        status = {
            "phase": "Pending" if running.waiting == "ErrImagePull" else "Running",
            "podIP": running.ip, "podIPs": [{"ip": running.ip}], "hostIP": "127.0.0.1",
            "startTime": running.started,
            "conditions": [{"type": "PodScheduled", "status": "True"}, {"type": "Initialized", "status": "True"},
                           {"type": "ContainersReady", "status": ready}, {"type": "Ready", "status": ready}],
            # Named as the spec names the container: a real API server refuses statuses of containers it lacks.
            "containerStatuses": [{"name": running.container, "ready": running.ready,
                                   "restartCount": running.restarts, "image": running.image, "imageID": "",
                                   "started": running.process is not None, "state": state}],
        }
        fingerprint = json.dumps([status["phase"], ready, running.restarts, running.waiting])
        if fingerprint == running.reported:
            return
        now = _now()
        for cond in status["conditions"]:
            cond["lastTransitionTime"] = now
        try:
            self.core.patch_namespaced_pod_status(running.name, running.namespace, {"status": status})
            running.reported = fingerprint
        except ApiException as exc:
            if exc.status != 404:
                raise

    def _kill(self, running: _Running) -> None:
        process = running.process
        if process is not None and process.poll() is None:
            os.killpg(process.pid, signal.SIGTERM)
            try:
                process.wait(running.grace)
            except subprocess.TimeoutExpired:
                os.killpg(process.pid, signal.SIGKILL)
                process.wait(5)
        self._free_ips.append(running.ip)
