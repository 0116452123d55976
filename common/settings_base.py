"""What every server's settings share: connection limits and timeouts, and the admin token (never from argv)."""

from __future__ import annotations

from pathlib import Path
from typing import Optional

from pydantic import Field, SecretStr, model_validator
from pydantic_settings import BaseSettings

from .serving import Limits


class ServingSettings(BaseSettings):
    """Fields of the worker's and the router's settings objects (each sets its own env prefix)."""

    max_connections: int = Field(
        1024, ge=1, le=1_000_000, description="Most open client connections; at the limit a new one displaces the "
        "oldest idle (or header-sending) one; with every one busy: 503 and closed.")
    max_connections_per_peer: int = Field(
        512, ge=1, le=1_000_000, description="Most open connections from one client address; past it a new one "
        "displaces that address's own oldest idle one, else 503 (behind a proxy, raise it to max_connections).")
    header_timeout: float = Field(5.0, gt=0, le=3600,
                                  description="Seconds a request's line and headers may take to arrive; then 408.")
    read_timeout: float = Field(10.0, gt=0, le=3600,
                                description="Seconds a request's headers and body may take to arrive; then 408.")
    keepalive_timeout: float = Field(5.0, gt=0, le=3600, description="Seconds an idle connection stays open.")
    max_body_bytes: int = Field(1024 * 1024, ge=1024, le=1 << 30, description="Largest request body; beyond: 413.")
    admin_token: Optional[SecretStr] = Field(
        None, description="Bearer token for /control and /set_*, from the environment only (never a flag); "
        "unset: 403."
    )
    admin_token_file: Optional[Path] = Field(
        None, description="A file holding the admin token (a mounted Secret); wins over the env var."
    )
    api_keys_file: Optional[Path] = Field(
        None, description="A file of API keys (a mounted Secret) that /tts and /v1/* then require as "
        "`Authorization: Bearer <key>`, each with optional limits; re-read when it changes. Unset: no keys asked."
    )
    api_key_limits: bool = Field(
        True, description="Enforce each API key's limits here; off: keys are checked and their limits left to the "
        "router in front (tts-cluster up's workers: a request the router retried elsewhere must not spend its key's "
        "quota twice)."
    )
    allow_unauthenticated_admin: bool = Field(
        False, description="Open /control and /set_* to callers without a token, as api_v2 is: only on a network "
        "where every client is trusted (a warning is logged at start)."
    )

    @model_validator(mode="after")
    def _read_token_file(self) -> "ServingSettings":
        if self.admin_token_file is not None:
            try:
                token = self.admin_token_file.read_text(encoding="utf-8").strip()
            except OSError as exc:
                raise ValueError(f"admin_token_file: cannot read {self.admin_token_file}: {exc.strerror}") from exc
            if not token:
                raise ValueError(f"admin_token_file: {self.admin_token_file} is empty")
            self.admin_token = SecretStr(token)
        return self

    def limits(self) -> Limits:
        return Limits(
            max_connections=self.max_connections,
            max_connections_per_peer=self.max_connections_per_peer,
            header_timeout=self.header_timeout,
            read_timeout=self.read_timeout,
            keepalive_timeout=self.keepalive_timeout,
            max_body_bytes=self.max_body_bytes,
        )
