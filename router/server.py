"""Run the router with uvicorn. SIGTERM: stop accepting, let in-flight requests finish, exit 0."""

from __future__ import annotations

import logging
import os
import sys

from tts_common.api_keys import KeysError
from tts_common.auth import OPEN_WARNING
from tts_common.logs import configure_logging, log_fields, refused_start
from tts_common.serving import GuardedConfig, Server, check_fd_budget

from .app import create_app
from .settings import RouterSettings

log = logging.getLogger("tts_router.server")


def run(settings: RouterSettings) -> int:
    configure_logging(settings.log_level, settings.log_json)
    log_fields(
        log, "starting router", port=settings.port, discovery=settings.discovery, policy=settings.policy,
        workers=settings.worker, workers_file=str(settings.workers_file) if settings.workers_file else None,
        api_keys_file=str(settings.api_keys_file) if settings.api_keys_file else None,
    )
    if settings.allow_unauthenticated_admin:
        log_fields(log, OPEN_WARNING, logging.WARNING)
    # Each client connection may hold one to a worker too, plus the pollers' and discovery's.
    check_fd_budget(settings.limits(), reserve=settings.max_connections + 256)
    try:
        app = create_app(settings)
    except KeysError as exc:
        return refused_start(log, "router", "API keys file refused", exc)
    config = GuardedConfig(
        app,
        settings.limits(),
        host=settings.bind_addr,
        port=settings.port,
        log_config=None,
        access_log=False,
        timeout_graceful_shutdown=30,
    )
    server = Server(config)
    server.run()
    code = 0 if server.started else 1
    if server.started:
        exit_at_once(code)
    return code


def exit_at_once(code: int) -> None:
    """End the process now that the server has closed everything it owns (connections, pollers, HTTP clients):
    the interpreter's own teardown of the ~900 modules a router imports adds 0.13-0.2 s to every restart, which a
    supervisor or Kubernetes waits out before starting the next (issue 30: SIGTERM-to-ready)."""
    logging.shutdown()  # every handler flushed and closed
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(code)
