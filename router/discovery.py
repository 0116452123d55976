"""Where workers come from: a static list or file, or the EndpointSlices of the workers' headless Service.

Each source calls `on_change(targets)` on the event loop whenever the set changes; the pool starts or stops
polling accordingly, so workers appear and disappear without a router restart.
"""

from __future__ import annotations

import asyncio
import logging
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

    Each watch is a task on the router's loop (lightkube's asyncio client): list, hand the whole set over, then
    watch from the list's resourceVersion; any error (the API server gone, 410 Gone) lists again after a pause, so
    nothing deleted while the watch was down is kept.
    """

    def __init__(self, settings: RouterSettings, on_change: OnChange) -> None:
        self.settings = settings
        self.on_change = on_change
        self.slices: dict[str, dict[str, Any]] = {}
        self.draining: set[str] = set()
        self._tasks: list[asyncio.Task[None]] = []
        self.namespace = settings.k8s_namespace or "default"

    async def start(self) -> None:
        from lightkube import AsyncClient, KubeConfig
        from lightkube.resources.core_v1 import Pod
        from lightkube.resources.discovery_v1 import EndpointSlice

        if self.settings.kubeconfig:
            config = KubeConfig.from_file(self.settings.kubeconfig)
        else:
            config = KubeConfig.from_service_account()
            if not self.settings.k8s_namespace:
                ns_file = Path("/var/run/secrets/kubernetes.io/serviceaccount/namespace")
                if ns_file.is_file():
                    self.namespace = ns_file.read_text().strip()
        client = AsyncClient(config, namespace=self.namespace)
        watches: list[tuple[Any, dict[str, str], Callable[[str, dict[str, Any]], None],
                            Callable[[list[dict[str, Any]]], None]]] = [
            (EndpointSlice, {"kubernetes.io/service-name": self.settings.k8s_service}, self._on_slice,
             self._reset_slices),
            (Pod, {self.settings.draining_label: "true"}, self._on_pod, self._reset_pods),
        ]
        for kind, labels, on_event, on_reset in watches:
            self._tasks.append(asyncio.create_task(self._watch_loop(client, kind, labels, on_event, on_reset)))

    async def stop(self) -> None:
        for task in self._tasks:
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)

    async def _watch_loop(self, client: Any, kind: Any, labels: dict[str, str],
                          on_event: Callable[[str, dict[str, Any]], None],
                          on_reset: Callable[[list[dict[str, Any]]], None]) -> None:
        backoff = 0.5
        while True:
            try:
                listed = client.list(kind, namespace=self.namespace, labels=labels)
                on_reset([obj.to_dict() async for obj in listed])
                watch = client.watch(kind, namespace=self.namespace, labels=labels,
                                     resource_version=listed.resourceVersion, server_timeout=30)
                async for event, obj in watch:
                    on_event(event, obj.to_dict())
                    backoff = 0.5
            except asyncio.CancelledError:
                raise
            except Exception as exc:  # API server gone, 410 Gone, ...: list again after a pause
                log_fields(log, "kubernetes watch restarting", logging.WARNING, kind=kind.__name__,
                           error=str(exc) or type(exc).__name__)
                await asyncio.sleep(backoff)
                backoff = min(backoff * 2, 10.0)

    # -- state -----------------------------------------------------------------------------------------------
    def _reset_slices(self, items: list[dict[str, Any]]) -> None:
        self.slices = {i["metadata"]["name"]: i for i in items}
        self._publish()

    def _on_slice(self, kind: str, obj: dict[str, Any]) -> None:
        name = obj["metadata"]["name"]
        if kind == "DELETED":
            self.slices.pop(name, None)
        elif kind in ("ADDED", "MODIFIED"):
            self.slices[name] = obj
        self._publish()

    def _reset_pods(self, items: list[dict[str, Any]]) -> None:
        self.draining = {i["metadata"]["name"] for i in items}
        self._publish()

    def _on_pod(self, kind: str, obj: dict[str, Any]) -> None:
        name = obj["metadata"]["name"]
        labels = obj["metadata"].get("labels") or {}
        if kind == "DELETED" or labels.get(self.settings.draining_label) != "true":
            self.draining.discard(name)
        else:
            self.draining.add(name)
        self._publish()

    def targets(self) -> list[Target]:
        out: dict[str, Target] = {}
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
        self.on_change(self.targets())
