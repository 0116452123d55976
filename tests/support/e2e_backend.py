"""The end-to-end suite's view of its backend: a kubeconfig (a real cluster's, or the emulator's), a namespace of
its own, and the API clients with the few reads the suite repeats."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import kubernetes
from kubernetes.client import AppsV1Api, CoreV1Api, CustomObjectsApi, DiscoveryV1Api

GROUP, VERSION, PLURAL = "tts-cluster.io", "v1alpha1", "ttsclusters"
RELEASE = "tts"


@dataclass
class Backend:
    kubeconfig: Path
    namespace: str
    real: bool
    core: CoreV1Api = field(init=False)
    apps: AppsV1Api = field(init=False)
    custom: CustomObjectsApi = field(init=False)
    slices: DiscoveryV1Api = field(init=False)

    def __post_init__(self) -> None:
        api = kubernetes.config.new_client_from_config(config_file=str(self.kubeconfig))
        self.core, self.apps = CoreV1Api(api), AppsV1Api(api)
        self.custom, self.slices = CustomObjectsApi(api), DiscoveryV1Api(api)

    def ttsc(self) -> dict:
        return self.custom.get_namespaced_custom_object(GROUP, VERSION, self.namespace, PLURAL, RELEASE)

    def pods(self, component: str) -> list:
        return [p for p in self.core.list_namespaced_pod(
            self.namespace, label_selector=f"app.kubernetes.io/component={component}").items
            if not p.metadata.deletion_timestamp]

    def ready(self, pod) -> bool:
        return any(c.type == "Ready" and c.status == "True" for c in (pod.status.conditions or []))

    def router_url(self) -> str | None:
        """The router Service's ready endpoint, read from its EndpointSlice (what kube-proxy follows)."""
        for s in self.slices.list_namespaced_endpoint_slice(
                self.namespace, label_selector=f"kubernetes.io/service-name={RELEASE}").items:
            for e in s.endpoints or []:
                if e.conditions and e.conditions.ready:
                    return f"http://{e.addresses[0]}:{s.ports[0].port}"
        return None
