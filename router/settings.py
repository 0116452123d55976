"""The router's one settings object: flags > `TTSC_ROUTER_*` env vars > defaults."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Annotated, Any, Literal, Optional

from pydantic import Field, field_validator
from pydantic_settings import NoDecode, SettingsConfigDict

from tts_common.policies import DEFAULT_POLICY, PolicyName
from tts_common.settings_base import ServingSettings


class RouterSettings(ServingSettings):
    model_config = SettingsConfigDict(env_prefix="TTSC_ROUTER_", extra="ignore")

    bind_addr: str = Field("127.0.0.1", description="Address to listen on.")
    port: int = Field(9880, ge=1, le=65535, description="Port to listen on (GPT-SoVITS's usual 9880).")
    worker: Annotated[list[str], NoDecode] = Field(
        default_factory=list, description="Static discovery: a worker URL; repeat the flag (env: comma-separated)."
    )
    workers_file: Optional[Path] = Field(
        None, description="Static discovery: a file with one worker URL per line, re-read when it changes."
    )
    discovery: Literal["static", "kubernetes"] = Field("static", description="Where workers come from.")
    k8s_namespace: Optional[str] = Field(None, description="Kubernetes: namespace; default: the pod's own.")
    k8s_service: str = Field("tts-workers", description="Kubernetes: the workers' headless Service name.")
    k8s_port_name: str = Field("http", description="Kubernetes: the EndpointSlice port name to send to.")
    draining_label: str = Field(
        "tts-cluster.io/draining", description="Kubernetes: a Pod label whose value 'true' marks a worker draining."
    )
    kubeconfig: Optional[Path] = Field(None, description="Kubernetes: kubeconfig file; default: in-cluster.")
    policy: PolicyName = Field(DEFAULT_POLICY, description="How to choose a worker for each request.")
    voice_affinity: bool = Field(
        True, description="Send a voice where it is loaded (least-work adds a worker's load time for a voice it "
        "lacks); off: voice-blind, for comparison in benchmarks.")
    replicate_wait_ratio: float = Field(
        0.35, gt=0, le=100, description="Voice-aware: a voice is under pressure while the shortest expected wait at "
        "the workers holding it is above this many times the voice's load time; sustained for replicate_window "
        "seconds, another worker loads it in the background (its requests keep going to the holders until it is "
        "loaded). Pressure ends below half of it.")
    replicate_window: float = Field(
        0.75, ge=0, le=600, description="Voice-aware: seconds a voice's pressure must last before another worker "
        "loads it, so one burst does not make a copy.")
    replicate_min_share: float = Field(
        0.15, ge=0, le=1, description="Voice-aware: a voice under pressure gets another copy only while each of its "
        "copies is asked for at least this share of one worker's time (its recent demand over its copies), so a "
        "minor voice queued behind a hot one is not copied; a copy evicts only a copy less needed than itself.")
    default_gpt_weights: Optional[str] = Field(
        None, description="The cluster's default voice: GPT weights every worker is brought to (a path inside the "
        "workers' models directory); unset: each worker's tts_infer.yaml, until a switch through the router.")
    default_sovits_weights: Optional[str] = Field(
        None, description="Likewise, the SoVITS weights (the operator sets both from spec.defaultWeights).")
    poll_interval: float = Field(0.2, gt=0, le=60, description="Seconds between /stats polls of each worker.")
    stale_after: float = Field(1.0, gt=0, description="A poll older than this many seconds is unknown load.")
    max_retries: int = Field(2, ge=0, le=10, description="Other workers tried after a failure before any byte.")
    retry_budget: float = Field(
        0.2, ge=0, le=1, description="Retries allowed per request on average (token bucket), beyond a floor of 10."
    )
    eject_after: int = Field(3, ge=1, description="Consecutive failed polls, or gateway failures, that eject a worker.")
    ejection_seconds: float = Field(
        5.0, gt=0, le=3600, description="First ejection for failed requests; doubles each time, then a probe."
    )
    max_ejected_share: float = Field(
        0.5, ge=0, le=1, description="Most workers ejected at once for failing requests, as a share of all."
    )
    capacity_wait: float = Field(
        0.5, ge=0, le=30, description="Seconds a request may wait for a free worker slot before 503."
    )
    connect_timeout: float = Field(2.0, gt=0, description="Seconds to connect to a worker.")
    control_ready_timeout: float = Field(
        600.0, gt=0, le=7200, description="Rolling /control: seconds one worker may take to serve again (a model "
        "reload) before the roll stops, leaving the rest untouched."
    )
    request_timeout: float = Field(300.0, gt=0, description="Seconds to wait for a worker's answer.")
    log_level: str = Field("info", description="debug, info, warning or error.")
    log_json: bool = Field(True, description="One JSON object per log line.")

    @field_validator("worker", mode="before")
    @classmethod
    def _split_urls(cls, v: Any) -> Any:
        if isinstance(v, str):
            return [u for u in re.split(r"[,\s]+", v) if u]
        return v

    @field_validator("worker")
    @classmethod
    def _check_urls(cls, v: list[str]) -> list[str]:
        for url in v:
            if not re.match(r"^https?://[^/\s]+", url):
                raise ValueError(f"worker URL must start with http:// or https://, got {url!r}")
        return [u.rstrip("/") for u in v]
