"""`tts-cluster healthcheck`: the images' HEALTHCHECK, probing the port the container's server was told to use.

A fixed URL in the Dockerfile (the router's used to be `127.0.0.1:9880`) reports a router started with
`--port 19883` as unhealthy while it serves. Instead this reads the command line of the container's main process
(PID 1 under the image's exec-form ENTRYPOINT: `tts-cluster router|worker|operator ...`) and parses it with that
command's own parser and settings, in the container's environment, so a port given by flag, by environment
variable or left at its default is the one probed: the server's /healthz (router, worker) or kopf's liveness
endpoint (operator). Exit 0 when it answers 2xx, 1 otherwise (what HEALTHCHECK expects).
"""

from __future__ import annotations

import argparse
import sys
import urllib.error
import urllib.request
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Optional
from urllib.parse import urlsplit, urlunsplit

SERVERS = ("router", "worker", "operator")
# What a wildcard bind address is reached by from inside the same network namespace.
_LOOPBACK = {"0.0.0.0": "127.0.0.1", "": "127.0.0.1", "::": "[::1]", "[::]": "[::1]"}


def server_argv(cmdline: Sequence[str]) -> Optional[list[str]]:
    """The `COMMAND ARGS...` part of a process's argv (`python3 /opt/venv/bin/tts-cluster router --port 1` gives
    `router --port 1`), or None when it runs no tts-cluster server."""
    for i, word in enumerate(cmdline):
        if word in SERVERS and i > 0 and Path(cmdline[i - 1]).name in ("tts-cluster", "tts_cli", "-m"):
            return list(cmdline[i:])
        if word in SERVERS and i == 0:
            return list(cmdline)
    return None


def _host(bind_addr: str) -> str:
    if bind_addr in _LOOPBACK:
        return _LOOPBACK[bind_addr]
    return f"[{bind_addr}]" if ":" in bind_addr else bind_addr


ParserFor = Callable[[str], argparse.ArgumentParser]


def health_url(argv: Sequence[str], parser_for: ParserFor) -> str:
    """The URL that tells whether the server `argv` starts is alive, from its flags, env and defaults, parsed by
    `parser_for(command)`: the command line's own parser (`tts_cli.main.build_parser`, handed in by it)."""
    from .flags import settings_from

    command = argv[0]
    args = parser_for(command).parse_args(list(argv))
    if command == "operator":
        from tts_operator.settings import OperatorSettings

        operator = settings_from(args, OperatorSettings, command)
        if operator is None:
            raise ValueError("the operator's settings do not parse")
        parts = urlsplit(operator.liveness)
        netloc = f"{_host(parts.hostname or '')}:{parts.port or 80}"
        return urlunsplit((parts.scheme, netloc, parts.path or "/", parts.query, ""))
    settings_model: type
    if command == "router":
        from tts_router.settings import RouterSettings as settings_model
    else:
        from tts_worker.settings import WorkerSettings as settings_model
    server = settings_from(args, settings_model, command)
    if server is None:
        raise ValueError(f"the {command}'s settings do not parse")
    return f"http://{_host(server.bind_addr)}:{server.port}/healthz"


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--pid", type=int, default=1, help="the server's process id (default 1: a container's main "
                   "process)")
    p.add_argument("--timeout", type=float, default=4.0, help="seconds to wait for the answer (default 4)")
    p.add_argument("--print-url", action="store_true", help="print the URL it would probe and exit")


def run(args: argparse.Namespace) -> int:
    try:
        raw = Path(f"/proc/{args.pid}/cmdline").read_bytes()
    except OSError as exc:
        print(f"tts-cluster healthcheck: cannot read process {args.pid}'s command line: {exc}", file=sys.stderr)
        return 1
    argv = server_argv([w.decode(errors="replace") for w in raw.split(b"\0") if w])
    if argv is None:
        print(f"tts-cluster healthcheck: process {args.pid} runs no tts-cluster router, worker or operator",
              file=sys.stderr)
        return 1
    try:
        url = health_url(argv, args.parser_for)
    except (ValueError, SystemExit) as exc:
        print(f"tts-cluster healthcheck: {exc}", file=sys.stderr)
        return 1
    if args.print_url:
        print(url)
        return 0
    try:
        with urllib.request.urlopen(url, timeout=args.timeout) as answer:  # noqa: S310 (a URL we built)
            return 0 if 200 <= answer.status < 300 else 1
    except (OSError, urllib.error.URLError) as exc:
        print(f"tts-cluster healthcheck: {url}: {exc}", file=sys.stderr)
        return 1
