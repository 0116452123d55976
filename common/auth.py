"""Admin bearer-token check shared by worker and router (constant-time compare; no token configured: refuse)."""

from __future__ import annotations

import hmac
from typing import Optional

from pydantic import SecretStr

ENV_HINT = "configure an admin token (TTSC_ADMIN_TOKEN)"


OPEN_WARNING = ("admin routes are open to unauthenticated callers (allow_unauthenticated_admin): anyone who can "
                "reach this port can restart the service and switch its weights")


def admin_refusal(token: Optional[SecretStr], authorization: str, env_hint: str = ENV_HINT,
                  open_to_all: bool = False) -> Optional[str]:
    """None when `authorization` carries the configured token (or the routes are opened to all, api_v2's way),
    else the 403 message."""
    if open_to_all:
        return None
    if token is None or not token.get_secret_value():
        return f"admin routes are disabled: {env_hint}"
    scheme, _, given = authorization.partition(" ")
    if scheme.lower() != "bearer" or not hmac.compare_digest(given.strip().encode(), token.get_secret_value().encode()):
        return "admin token missing or wrong: send Authorization: Bearer <token>"
    return None
