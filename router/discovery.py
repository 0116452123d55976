"""Where workers come from: a static list or file, or the EndpointSlices of the workers' headless Service.

Each source calls `on_change(targets)` on the event loop whenever the set changes; the pool starts or stops
polling accordingly, so workers appear and disappear without a router restart.
"""

from __future__ import annotations

import asyncio
import json
import logging
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any, Optional

from tts_common.logs import log_fields

from .pool import Target
from .settings import RouterSettings

log = logging.getLogger("tts_router.discovery")
OnChange = Callable[[list[Target]], None]


class StaticDiscovery:
    """`--worker URL` flags, plus a file of URLs (one per line, `#` comments) re-read when its mtime changes."""

    def __init__(self, urls: list[str], path: Optional[Path], on_change: OnChange, interval: float = 1.0) -> None:
        self.urls = urls
        self.path = path
        self.on_change = on_change
        self.interval = interval
        self._mtime: Optional[float] = None
        self._task: Optional[asyncio.Task[None]] = None

    def _read_file(self) -> list[str]:
        if self.path is None or not self.path.is_file():
            return []
        lines = (line.split("#", 1)[0].strip() for line in self.path.read_text(encoding="utf-8").splitlines())
        return [line.rstrip("/") for line in lines if line]

    def _publish(self) -> None:
        urls = list(dict.fromkeys([*self.urls, *self._read_file()]))
        self.on_change([Target(url=u) for u in urls])

    async def start(self) -> None:
        self._publish()
        if self.path is not None:
            self._task = asyncio.create_task(self._watch_file())

    async def _watch_file(self) -> None:
        assert self.path is not None
        while True:
            await asyncio.sleep(self.interval)
            try:
                mtime = self.path.stat().st_mtime
            except OSError:
                mtime = None
            if mtime != self._mtime:
                self._mtime = mtime
                self._publish()

    async def stop(self) -> None:
        if self._task:
            self._task.cancel()


class KubernetesDiscovery:
    """Watch the workers' EndpointSlices (ready endpoints only) and Pods carrying the draining label.

    The `kubernetes` client is synchronous, so each watch runs on a daemon thread and hands results to the loop.
    """

    def __init__(self, settings: RouterSettings, on_change: OnChange) -> None:
        self.settings = settings
        self.on_change = on_change
        self.loop: Optional[asyncio.AbstractEventLoop] = None
        self.slices: dict[str, dict[str, Any]] = {}
        self.draining: set[str] = set()
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self.namespace = settings.k8s_namespace or "default"

    async def start(self) -> None:
        from kubernetes import client, config

        if self.settings.kubeconfig:
            config.load_kube_config(config_file=str(self.settings.kubeconfig))
        else:
            config.load_incluster_config()
            if not self.settings.k8s_namespace:
                ns_file = Path("/var/run/secrets/kubernetes.io/serviceaccount/namespace")
                if ns_file.is_file():
                    self.namespace = ns_file.read_text().strip()
        self.loop = asyncio.get_running_loop()
        discovery_api, core_api = client.DiscoveryV1Api(), client.CoreV1Api()
        selector = f"kubernetes.io/service-name={self.settings.k8s_service}"
        threads = [
            (discovery_api.list_namespaced_endpoint_slice, selector, self._on_slice, self._reset_slices),
            (core_api.list_namespaced_pod, f"{self.settings.draining_label}=true", self._on_pod, self._reset_pods),
        ]
        for lister, sel, on_event, on_reset in threads:
            threading.Thread(
                target=self._watch_loop, args=(lister, sel, on_event, on_reset), daemon=True, name=f"watch {sel}"
            ).start()

    async def stop(self) -> None:
        self._stop.set()

    def _watch_loop(self, lister: Callable[..., Any], selector: str, on_event: Callable[[str, dict[str, Any]], None],
                    on_reset: Callable[[list[dict[str, Any]]], None]) -> None:
        from kubernetes import watch

        backoff = 0.5
        while not self._stop.is_set():
            try:
                listed = json.loads(
                    lister(self.namespace, label_selector=selector, _preload_content=False).data
                )
                on_reset(listed.get("items") or [])
                version = (listed.get("metadata") or {}).get("resourceVersion")
                stream = watch.Watch().stream(
                    lister, self.namespace, label_selector=selector, resource_version=version, timeout_seconds=30
                )
                for event in stream:
                    if self._stop.is_set():
                        return
                    on_event(event["type"], event["raw_object"])
                backoff = 0.5
            except Exception as exc:  # API server gone, 410 Gone, ...: list again after a pause
                log_fields(log, "kubernetes watch restarting", logging.WARNING, selector=selector, error=str(exc))
                time.sleep(backoff)
                backoff = min(backoff * 2, 10.0)

    # -- state -----------------------------------------------------------------------------------------------
    def _reset_slices(self, items: list[dict[str, Any]]) -> None:
        with self._lock:
            self.slices = {i["metadata"]["name"]: i for i in items}
        self._publish()

    def _on_slice(self, kind: str, obj: dict[str, Any]) -> None:
        with self._lock:
            name = obj["metadata"]["name"]
            if kind == "DELETED":
                self.slices.pop(name, None)
            elif kind in ("ADDED", "MODIFIED"):
                self.slices[name] = obj
        self._publish()

    def _reset_pods(self, items: list[dict[str, Any]]) -> None:
        with self._lock:
            self.draining = {i["metadata"]["name"] for i in items}
        self._publish()

    def _on_pod(self, kind: str, obj: dict[str, Any]) -> None:
        with self._lock:
            name = obj["metadata"]["name"]
            labels = obj["metadata"].get("labels") or {}
            if kind == "DELETED" or labels.get(self.settings.draining_label) != "true":
                self.draining.discard(name)
            else:
                self.draining.add(name)
        self._publish()

    def targets(self) -> list[Target]:
        out: dict[str, Target] = {}
        with self._lock:
            for sl in self.slices.values():
                ports = sl.get("ports") or []
                port = next((p.get("port") for p in ports if p.get("name") == self.settings.k8s_port_name), None)
                if port is None and ports:
                    port = ports[0].get("port")
                if port is None:
                    continue
                for ep in sl.get("endpoints") or []:
                    cond = ep.get("conditions") or {}
                    # EndpointSlice rule: a missing `ready` means ready; terminating endpoints get no new work.
                    if cond.get("ready") is False or cond.get("terminating") is True:
                        continue
                    addresses = ep.get("addresses") or []
                    if not addresses:
                        continue
                    addr = addresses[0]
                    host = f"[{addr}]" if ":" in addr else addr
                    pod = (ep.get("targetRef") or {}).get("name") or ""
                    url = f"http://{host}:{port}"
                    out[url] = Target(url=url, name=pod, draining=pod in self.draining)
        return list(out.values())

    def _publish(self) -> None:
        if self.loop is not None:
            targets = self.targets()
            self.loop.call_soon_threadsafe(self.on_change, targets)
