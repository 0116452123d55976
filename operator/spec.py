"""The TTSCluster spec as the operator reads it: the CRD's defaults again, so a spec written before a default
existed (or an API server that does not default) still reconciles the same way."""

from __future__ import annotations

from typing import Any, Literal, Optional

from pydantic import BaseModel, ConfigDict, Field, model_validator

from tts_common.policies import DEFAULT_POLICY, PolicyName

GROUP, VERSION, PLURAL, KIND = "tts-cluster.io", "v1alpha1", "ttsclusters", "TTSCluster"


class _Model(BaseModel):
    model_config = ConfigDict(populate_by_name=True, extra="ignore")


class WorkersSpec(_Model):
    replicas: int = Field(1, ge=0, le=256)
    min_replicas: int = Field(1, ge=0, le=256, alias="minReplicas")
    max_replicas: int = Field(8, ge=1, le=256, alias="maxReplicas")
    image: str = Field("tts-cluster/worker:0.1.0", min_length=1)
    image_pull_policy: Literal["Always", "IfNotPresent", "Never"] = Field("IfNotPresent", alias="imagePullPolicy")
    engine: Literal["piper", "gpt-sovits", "synthetic"] = "piper"
    port: int = Field(9880, ge=1, le=65535)
    max_queue_size: int = Field(10, ge=1, le=1000, alias="maxQueueSize")
    #: the worker's --max-loaded-voices; placement pins at most one fewer per worker
    max_loaded_voices: int = Field(3, ge=1, le=64, alias="maxLoadedVoices")
    #: the worker's --batching and --max-batch: requests in the engine at once (at most maxQueueSize)
    batching: bool = False
    max_batch: int = Field(8, ge=1, le=64, alias="maxBatch")
    #: the worker's --vocoder-thread / --no-vocoder-thread (gpt-sovits batching); None: the worker's default
    vocoder_thread: Optional[bool] = Field(None, alias="vocoderThread")
    #: the worker's --max-reference-clips (gpt-sovits)
    max_reference_clips: int = Field(32, ge=1, le=1024, alias="maxReferenceClips")
    tts_infer_config_map: Optional[str] = Field(None, alias="ttsInferConfigMap")
    tts_infer_yaml: Optional[str] = Field(None, alias="ttsInferYaml")
    model_volume: Optional[dict[str, Any]] = Field(None, alias="modelVolume")
    model_pvc: Optional[str] = Field(None, alias="modelPVC")
    resources: dict[str, Any] = Field(default_factory=lambda: {"limits": {"nvidia.com/gpu": 1}})
    node_selector: dict[str, str] = Field(default_factory=dict, alias="nodeSelector")
    tolerations: list[dict[str, Any]] = Field(default_factory=list)
    affinity: Optional[dict[str, Any]] = None

    def bounded(self, count: int) -> int:
        """``count`` within minReplicas..maxReplicas. The CRD refuses a replicas outside them; an API server without
        CRD validation rules (before Kubernetes 1.25) stores one, and this clamp gives the same workers there."""
        return max(self.min_replicas, min(self.max_replicas, count))


class RouterSpec(_Model):
    replicas: int = Field(1, ge=1, le=32)
    image: str = Field("tts-cluster/router:0.1.0", min_length=1)
    service_type: Literal["ClusterIP", "NodePort", "LoadBalancer"] = Field("ClusterIP", alias="serviceType")
    port: int = Field(9880, ge=1, le=65535)
    policy: PolicyName = DEFAULT_POLICY


class AutoscalingSpec(_Model):
    enabled: bool = False
    target_queue_depth: float = Field(2.0, ge=0.1, le=1000, alias="targetQueueDepth")
    scale_up_stabilization_seconds: int = Field(30, ge=0, le=3600, alias="scaleUpStabilizationSeconds")
    scale_down_stabilization_seconds: int = Field(300, ge=0, le=3600, alias="scaleDownStabilizationSeconds")


class AdminSpec(_Model):
    """api_v2's admin routes (/control, /set_*) on the router and the workers."""

    #: a Secret in the TTSCluster's namespace whose key `token` is the bearer token (unset: admin routes answer 403)
    token_secret: Optional[str] = Field(None, alias="tokenSecret", min_length=1)
    #: open the admin routes to callers without a token, as api_v2 is: only where every client is trusted
    allow_unauthenticated: bool = Field(False, alias="allowUnauthenticated")


class ApiKeysSpec(_Model):
    """API keys that /tts and /v1/* on the router then require (see docs/operate/keys.md)."""

    #: a Secret in the TTSCluster's namespace holding the keys file (unset: no keys asked)
    secret_name: Optional[str] = Field(None, alias="secretName", min_length=1, max_length=253)
    #: the Secret's key that holds the file
    key: str = Field("keys.yaml", min_length=1, max_length=253, pattern=r"^[-._a-zA-Z0-9]+$")


class DefaultWeightsSpec(_Model):
    #: paths inside the workers' models directory (/models); unset: each worker's tts_infer.yaml
    gpt: Optional[str] = Field(None, min_length=1, max_length=1024)
    sovits: Optional[str] = Field(None, min_length=1, max_length=1024)

    def as_dict(self) -> dict[str, str]:
        return {k: v for k, v in (("gpt", self.gpt), ("sovits", self.sovits)) if v}


class TTSClusterSpec(_Model):
    workers: WorkersSpec = Field(default_factory=WorkersSpec)
    router: RouterSpec = Field(default_factory=RouterSpec)
    autoscaling: AutoscalingSpec = Field(default_factory=AutoscalingSpec)
    admin: AdminSpec = Field(default_factory=AdminSpec)
    api_keys: ApiKeysSpec = Field(default_factory=ApiKeysSpec, alias="apiKeys")
    drain_timeout_seconds: int = Field(120, ge=0, le=3600, alias="drainTimeoutSeconds")
    #: the voice catalog's entries, checked apart (operator/voices.py): a bad voice must not stop the workers'
    #: reconciliation, only keep the last good catalog in force
    voices: list[Any] = Field(default_factory=list)
    default_voice: Optional[str] = Field(None, alias="defaultVoice")
    #: the catalog's OpenAI names table, checked with spec.voices (operator/voices.py)
    openai: Optional[dict[str, Any]] = None
    default_weights: DefaultWeightsSpec = Field(default_factory=DefaultWeightsSpec, alias="defaultWeights")

    @model_validator(mode="after")
    def _bounds(self) -> "TTSClusterSpec":
        if self.workers.min_replicas > self.workers.max_replicas:
            raise ValueError("workers.minReplicas must not exceed workers.maxReplicas")
        if self.workers.tts_infer_config_map and self.workers.tts_infer_yaml:
            raise ValueError("give workers.ttsInferConfigMap or workers.ttsInferYaml, not both")
        if self.workers.model_pvc and self.workers.model_volume:
            raise ValueError("give workers.modelPVC or workers.modelVolume, not both")
        if self.workers.batching and self.workers.max_batch > self.workers.max_queue_size:
            raise ValueError("workers.maxBatch must not exceed workers.maxQueueSize when workers.batching is on")
        return self


def parse_spec(spec: dict[str, Any]) -> TTSClusterSpec:
    return TTSClusterSpec.model_validate(spec or {})
