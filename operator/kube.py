"""The few Kubernetes API calls the operator makes, on the official `kubernetes` client (synchronous: kopf runs
sync handlers on a thread pool)."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, cast

from kubernetes import client
from kubernetes.client.exceptions import ApiException


class Kube:
    def __init__(self, api_client: client.ApiClient) -> None:
        self.core = client.CoreV1Api(api_client)
        self.apps = client.AppsV1Api(api_client)
        self.rbac = client.RbacAuthorizationV1Api(api_client)
        self.custom = client.CustomObjectsApi(api_client)

    def _ops(self, kind: str) -> tuple[Callable[..., Any], Callable[..., Any]]:
        """(create, patch) for the kinds a TTSCluster owns; they go with it through their owner references."""
        table: dict[str, tuple[Callable[..., Any], Callable[..., Any]]] = {
            "ConfigMap": (self.core.create_namespaced_config_map, self.core.patch_namespaced_config_map),
            "Service": (self.core.create_namespaced_service, self.core.patch_namespaced_service),
            "ServiceAccount": (self.core.create_namespaced_service_account,
                               self.core.patch_namespaced_service_account),
            "Deployment": (self.apps.create_namespaced_deployment, self.apps.patch_namespaced_deployment),
            "Role": (self.rbac.create_namespaced_role, self.rbac.patch_namespaced_role),
            "RoleBinding": (self.rbac.create_namespaced_role_binding, self.rbac.patch_namespaced_role_binding),
        }
        return table[kind]

    def apply(self, namespace: str, obj: dict[str, Any]) -> str:
        """Create, or bring an existing object to `obj` with a merge patch. Returns "created" or "updated"."""
        create, patch = self._ops(obj["kind"])
        try:
            create(namespace, obj)
            return "created"
        except ApiException as exc:
            if exc.status != 409:
                raise
        patch(obj["metadata"]["name"], namespace, obj)
        return "updated"

    def create_if_absent(self, namespace: str, obj: dict[str, Any]) -> bool:
        """Create `obj` unless one of its name exists (that one is left as it is). Returns whether it created."""
        create, _ = self._ops(obj["kind"])
        try:
            create(namespace, obj)
            return True
        except ApiException as exc:
            if exc.status != 409:
                raise
        return False

    def list_pods(self, namespace: str, selector: str) -> list[dict[str, Any]]:
        items = self.core.list_namespaced_pod(namespace, label_selector=selector).items
        return cast(list[dict[str, Any]], self.core.api_client.sanitize_for_serialization(items))

    def create_pod(self, namespace: str, pod: dict[str, Any]) -> dict[str, Any]:
        # The client sends a plain dict body as it is; its annotation names only its model class.
        created = self.core.create_namespaced_pod(namespace, pod)  # type: ignore[arg-type]
        return cast(dict[str, Any], self.core.api_client.sanitize_for_serialization(created))

    def delete_pod(self, namespace: str, name: str) -> None:
        try:
            self.core.delete_namespaced_pod(name, namespace)
        except ApiException as exc:
            if exc.status != 404:
                raise

    def patch_pod_metadata(self, namespace: str, name: str, metadata: dict[str, Any]) -> None:
        self.core.patch_namespaced_pod(name, namespace, {"metadata": metadata})

    def deployment_available(self, namespace: str, name: str) -> int:
        try:
            d = self.apps.read_namespaced_deployment(name, namespace)
        except ApiException as exc:
            if exc.status == 404:
                return 0
            raise
        return int((d.status and d.status.available_replicas) or 0)

    def patch_spec(self, namespace: str, name: str, spec: dict[str, Any], group: str, version: str,
                   plural: str) -> None:
        """A merge patch of the resource's spec (the default voice persisted from a router's switch)."""
        self.custom.patch_namespaced_custom_object(group, version, namespace, plural, name, {"spec": spec})

    def set_worker_replicas(self, namespace: str, name: str, replicas: int, group: str, version: str,
                            plural: str) -> None:
        """Through the scale subresource, as `kubectl scale`, an HPA or KEDA would: the autoscaler never writes
        the user's spec directly (the CRD maps scale's replicas to spec.workers.replicas)."""
        self.custom.patch_namespaced_custom_object_scale(
            group, version, namespace, plural, name, {"spec": {"replicas": replicas}}
        )
