"""The Kubernetes objects one TTSCluster owns, built as plain dicts from its spec (no API calls here)."""

from __future__ import annotations

from typing import Any

from .spec import TTSClusterSpec

LABEL_CLUSTER = "tts-cluster.io/cluster"
LABEL_DRAINING = "tts-cluster.io/draining"
ANNOTATION_DRAIN_STARTED = "tts-cluster.io/drain-started"
APP = "tts-cluster"
CONFIG_DIR = "/etc/tts-cluster"
# The restricted Pod Security Standard: non-root (the images' UID), no escalation, no capabilities, read-only root.
RESTRICTED_POD = {"runAsNonRoot": True, "runAsUser": 10001, "runAsGroup": 10001, "fsGroup": 10001,
                  "seccompProfile": {"type": "RuntimeDefault"}}
RESTRICTED_CONTAINER = {"allowPrivilegeEscalation": False, "readOnlyRootFilesystem": True, "runAsNonRoot": True,
                        "capabilities": {"drop": ["ALL"]}, "seccompProfile": {"type": "RuntimeDefault"}}
MODELS_DIR = "/models"
# Its own directory: a ConfigMap volume is updated in place (no subPath), so a changed catalog reaches running
# workers, which re-read it, without replacing a pod.
VOICES_DIR = "/etc/tts-cluster-voices"
API_KEYS_DIR = "/etc/tts-cluster-api-keys"
VOICES_KEY = "voices.yaml"


def labels(cluster: str, component: str) -> dict[str, str]:
    return {
        "app.kubernetes.io/name": APP,
        "app.kubernetes.io/instance": cluster,
        "app.kubernetes.io/component": component,
        "app.kubernetes.io/managed-by": "tts-cluster-operator",
        LABEL_CLUSTER: cluster,
    }


def selector(cluster: str, component: str) -> dict[str, str]:
    return {"app.kubernetes.io/instance": cluster, "app.kubernetes.io/component": component, LABEL_CLUSTER: cluster}


def selector_string(cluster: str, component: str) -> str:
    return ",".join(f"{k}={v}" for k, v in selector(cluster, component).items())


def workers_service_name(cluster: str) -> str:
    return f"{cluster}-workers"


def config_map_name(cluster: str, spec: TTSClusterSpec) -> str | None:
    if spec.workers.tts_infer_config_map:
        return spec.workers.tts_infer_config_map
    if spec.workers.tts_infer_yaml:
        return f"{cluster}-tts-infer"
    return None


def config_map(cluster: str, spec: TTSClusterSpec) -> dict[str, Any] | None:
    """Only when the spec carries tts_infer.yaml inline; a referenced ConfigMap is the user's own."""
    if not spec.workers.tts_infer_yaml:
        return None
    return {
        "apiVersion": "v1",
        "kind": "ConfigMap",
        "metadata": {"name": f"{cluster}-tts-infer", "labels": labels(cluster, "config")},
        "data": {"tts_infer.yaml": spec.workers.tts_infer_yaml},
    }


def voices_config_map_name(cluster: str) -> str:
    return f"{cluster}-voices"


def voices_config_map(cluster: str, catalog_yaml: str) -> dict[str, Any]:
    """The workers' voice catalog (spec.voices with the operator's placement), mounted into every worker."""
    return {
        "apiVersion": "v1",
        "kind": "ConfigMap",
        "metadata": {"name": voices_config_map_name(cluster), "labels": labels(cluster, "voices")},
        "data": {VOICES_KEY: catalog_yaml},
    }


def _quantities(resources: dict[str, Any]) -> dict[str, Any]:
    """Kubernetes quantities are strings on the wire ("1", "500m"); YAML users write `nvidia.com/gpu: 1`."""
    return {k: {q: str(v) for q, v in val.items()} if isinstance(val, dict) else val for k, val in resources.items()}


def _admin(spec: TTSClusterSpec, token_env: str) -> tuple[list[str], list[dict[str, Any]]]:
    """The admin settings as flags and env: the token from its Secret (never in args, where `ps` shows it)."""
    args = ["--allow-unauthenticated-admin"] if spec.admin.allow_unauthenticated else []
    env = []
    if spec.admin.token_secret:
        env.append({"name": token_env,
                    "valueFrom": {"secretKeyRef": {"name": spec.admin.token_secret, "key": "token"}}})
    return args, env


def worker_pod(cluster: str, spec: TTSClusterSpec) -> dict[str, Any]:
    w = spec.workers
    args = ["worker", "--bind-addr", "0.0.0.0", "--port", str(w.port), "--engine", w.engine,
            "--max-queue-size", str(w.max_queue_size), "--voice-dir", "/var/lib/tts-cluster/voices",
            "--drain-timeout", str(spec.drain_timeout_seconds), "--max-loaded-voices", str(w.max_loaded_voices)]
    if w.batching:
        args += ["--batching", "--max-batch", str(w.max_batch)]
    if w.vocoder_thread is not None:
        args.append("--vocoder-thread" if w.vocoder_thread else "--no-vocoder-thread")
    if w.engine == "gpt-sovits":
        args += ["--max-reference-clips", str(w.max_reference_clips)]
    admin_args, admin_env = _admin(spec, "TTSC_ADMIN_TOKEN")
    args += admin_args
    # Always mounted, whatever spec.voices holds now: voices added later then need no new pods.
    volumes: list[dict[str, Any]] = [{"name": "voices", "configMap": {"name": voices_config_map_name(cluster)}}]
    mounts: list[dict[str, Any]] = [{"name": "voices", "mountPath": VOICES_DIR, "readOnly": True}]
    cm = config_map_name(cluster, spec)
    if cm:
        volumes.append({"name": "tts-infer", "configMap": {"name": cm}})
        mounts.append({"name": "tts-infer", "mountPath": CONFIG_DIR, "readOnly": True})
        args += ["--tts-config", f"{CONFIG_DIR}/tts_infer.yaml"]
    if w.model_pvc:
        volumes.append({"name": "models", "persistentVolumeClaim": {"claimName": w.model_pvc, "readOnly": True}})
    elif w.model_volume:
        volumes.append({"name": "models", **w.model_volume})
    if w.model_pvc or w.model_volume:
        mounts.append({"name": "models", "mountPath": MODELS_DIR, "readOnly": True})
        # the directory weight switches and catalog voices' files must lie in (else the image's checkout)
        args += ["--models-dir", MODELS_DIR]
    probe = {"httpGet": {"path": "/readyz", "port": "http"}, "periodSeconds": 2, "failureThreshold": 1}
    container = {
        "name": "worker",
        "image": w.image,
        "imagePullPolicy": w.image_pull_policy,
        "args": args,
        # The worker id is the pod name: what the voices' placement names.
        "env": [{"name": "TTSC_WORKER_ID", "valueFrom": {"fieldRef": {"fieldPath": "metadata.name"}}},
                {"name": "TTSC_VOICES", "value": f"{VOICES_DIR}/{VOICES_KEY}"}, *admin_env],
        "ports": [{"name": "http", "containerPort": w.port, "protocol": "TCP"}],
        "readinessProbe": probe,
        "livenessProbe": {"httpGet": {"path": "/healthz", "port": "http"}, "periodSeconds": 10,
                          "failureThreshold": 3},
        "startupProbe": {"httpGet": {"path": "/healthz", "port": "http"}, "periodSeconds": 5,
                         "failureThreshold": 120},
        "resources": _quantities(w.resources),
        "volumeMounts": mounts,
        "securityContext": RESTRICTED_CONTAINER,
    }
    # The root filesystem is read-only; libraries that need scratch space get /tmp.
    volumes.append({"name": "tmp", "emptyDir": {}})
    mounts.append({"name": "tmp", "mountPath": "/tmp"})
    pod_spec: dict[str, Any] = {
        "containers": [container],
        "volumes": volumes,
        # The worker drains on SIGTERM: give it the drain timeout plus a margin before SIGKILL.
        "terminationGracePeriodSeconds": spec.drain_timeout_seconds + 15,
        "restartPolicy": "Always",
        "securityContext": RESTRICTED_POD,
    }
    if w.node_selector:
        pod_spec["nodeSelector"] = w.node_selector
    if w.tolerations:
        pod_spec["tolerations"] = w.tolerations
    if w.affinity:
        pod_spec["affinity"] = w.affinity
    return {
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {"generateName": f"{cluster}-worker-", "labels": labels(cluster, "worker")},
        "spec": pod_spec,
    }


def workers_service(cluster: str, spec: TTSClusterSpec) -> dict[str, Any]:
    """Headless: the router reads its EndpointSlices to find each worker pod."""
    return {
        "apiVersion": "v1",
        "kind": "Service",
        "metadata": {"name": workers_service_name(cluster), "labels": labels(cluster, "worker")},
        "spec": {
            "clusterIP": "None",
            "selector": selector(cluster, "worker"),
            "ports": [{"name": "http", "port": spec.workers.port, "targetPort": "http"}],
            "publishNotReadyAddresses": False,
        },
    }


def router_service_account(cluster: str) -> dict[str, Any]:
    return {"apiVersion": "v1", "kind": "ServiceAccount",
            "metadata": {"name": f"{cluster}-router", "labels": labels(cluster, "router")}}


def router_role(cluster: str) -> dict[str, Any]:
    """Exactly what the router's Kubernetes discovery reads."""
    return {
        "apiVersion": "rbac.authorization.k8s.io/v1",
        "kind": "Role",
        "metadata": {"name": f"{cluster}-router", "labels": labels(cluster, "router")},
        "rules": [
            {"apiGroups": ["discovery.k8s.io"], "resources": ["endpointslices"], "verbs": ["list", "watch"]},
            {"apiGroups": [""], "resources": ["pods"], "verbs": ["list", "watch"]},
        ],
    }


def router_role_binding(cluster: str) -> dict[str, Any]:
    return {
        "apiVersion": "rbac.authorization.k8s.io/v1",
        "kind": "RoleBinding",
        "metadata": {"name": f"{cluster}-router", "labels": labels(cluster, "router")},
        "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "Role", "name": f"{cluster}-router"},
        "subjects": [{"kind": "ServiceAccount", "name": f"{cluster}-router"}],
    }


def router_deployment(cluster: str, spec: TTSClusterSpec) -> dict[str, Any]:
    r = spec.router
    args = ["router", "--bind-addr", "0.0.0.0", "--port", str(r.port), "--discovery", "kubernetes",
            "--k8s-service", workers_service_name(cluster), "--policy", r.policy]
    admin_args, admin_env = _admin(spec, "TTSC_ROUTER_ADMIN_TOKEN")
    # The default voice every router replica keeps (a switch through one is persisted here by the operator).
    weights = spec.default_weights
    admin_env += [{"name": f"TTSC_ROUTER_DEFAULT_{kind.upper()}_WEIGHTS", "value": path}
                  for kind, path in weights.as_dict().items()]
    volumes: list[dict[str, Any]] = []
    mounts: list[dict[str, Any]] = []
    keys = spec.api_keys
    if keys.secret_name:
        # A mounted Secret, not an env var: the kubelet updates the file when the Secret changes, and the router
        # takes the new keys without a restart.
        volumes.append({"name": "api-keys", "secret": {"secretName": keys.secret_name,
                                                       "items": [{"key": keys.key, "path": keys.key}]}})
        mounts.append({"name": "api-keys", "mountPath": API_KEYS_DIR, "readOnly": True})
        admin_env.append({"name": "TTSC_ROUTER_API_KEYS_FILE", "value": f"{API_KEYS_DIR}/{keys.key}"})
    container: dict[str, Any] = {
        "name": "router",
        "image": r.image,
        "args": args + admin_args,
        **({"env": admin_env} if admin_env else {}),
        **({"volumeMounts": mounts} if mounts else {}),
        "ports": [{"name": "http", "containerPort": r.port, "protocol": "TCP"}],
        "readinessProbe": {"httpGet": {"path": "/readyz", "port": "http"}, "periodSeconds": 2},
        "livenessProbe": {"httpGet": {"path": "/healthz", "port": "http"}, "periodSeconds": 10},
        "resources": {"requests": {"cpu": "250m", "memory": "256Mi"}, "limits": {"memory": "1Gi"}},
        "securityContext": RESTRICTED_CONTAINER,
    }
    return {
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "metadata": {"name": f"{cluster}-router", "labels": labels(cluster, "router")},
        "spec": {
            "replicas": r.replicas,
            "selector": {"matchLabels": selector(cluster, "router")},
            "template": {
                "metadata": {"labels": labels(cluster, "router")},
                "spec": {
                    "serviceAccountName": f"{cluster}-router",
                    "containers": [container],
                    **({"volumes": volumes} if volumes else {}),
                    "securityContext": RESTRICTED_POD,
                },
            },
        },
    }


def router_service(cluster: str, spec: TTSClusterSpec) -> dict[str, Any]:
    return {
        "apiVersion": "v1",
        "kind": "Service",
        "metadata": {"name": cluster, "labels": labels(cluster, "router")},
        "spec": {
            "type": spec.router.service_type,
            "selector": selector(cluster, "router"),
            "ports": [{"name": "http", "port": spec.router.port, "targetPort": "http"}],
        },
    }
