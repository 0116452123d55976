"""The operator's one settings object: flags > `TTSC_OPERATOR_*` env vars > defaults."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Any, Optional

from pydantic import Field, field_validator
from pydantic_settings import BaseSettings, NoDecode, SettingsConfigDict


class OperatorSettings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="TTSC_OPERATOR_", extra="ignore")

    namespace: Annotated[list[str], NoDecode] = Field(
        default_factory=list, description="Namespace to watch; repeat the flag (env: comma-separated)."
    )
    all_namespaces: bool = Field(False, description="Watch every namespace (needs a ClusterRole).")
    peering: Optional[str] = Field(
        None, description="kopf peering name, so a second replica stands by instead of acting twice."
    )
    priority: Optional[int] = Field(
        None, description="Peering priority: the highest acts, the others stand by; default: random per process, "
        "so replicas of one Deployment never tie (kopf pauses every peer on a tie).",
    )
    liveness: str = Field("http://0.0.0.0:8080/healthz", description="Liveness endpoint kopf serves.")
    kubeconfig: Optional[Path] = Field(None, description="kubeconfig file; default: in-cluster, else ~/.kube.")
    interval: float = Field(5.0, gt=0, le=3600, description="Seconds between reconciliations of each TTSCluster.")
    crashloop_restarts: int = Field(5, ge=1, description="Restarts in CrashLoopBackOff before a worker is replaced.")
    not_ready_seconds: float = Field(
        900.0, gt=0, description="A worker not ready this long after start (model loading included) is replaced."
    )
    router_url: str = Field(
        "http://{name}.{namespace}.svc:{port}",
        description="Where the autoscaler reads /concurrent_stats; {name}, {namespace}, {port} are filled in.",
    )
    log_level: str = Field("info", description="debug, info, warning or error.")

    @field_validator("namespace", mode="before")
    @classmethod
    def _split(cls, v: Any) -> Any:
        if isinstance(v, str):
            return [n.strip() for n in v.split(",") if n.strip()]
        return v
