"""An HTTP/1.1 client that keeps the server's chunk boundaries, which every library client hides or merges: what
api_v2 clients that decode each chunk on its own see."""

from __future__ import annotations

import json
import socket
from dataclasses import dataclass, field
from typing import BinaryIO
from urllib.parse import urlencode, urlsplit


@dataclass
class ChunkedAnswer:
    status: int
    headers: dict[str, str]
    chunks: list[bytes] = field(default_factory=list)  # one entry per HTTP chunk; the whole body if not chunked


def _read_line(f: BinaryIO) -> bytes:
    line = f.readline(65537)
    if not line.endswith(b"\r\n"):
        raise ConnectionError(f"connection ended mid-line: {line!r}")
    return bytes(line[:-2])


def request(url: str, params: dict[str, object] | None = None, body: dict[str, object] | None = None,
            timeout: float = 60.0) -> ChunkedAnswer:
    """GET `url` with `params`, or POST `body` as JSON; read the answer chunk by chunk."""
    parts = urlsplit(url)
    path = parts.path + (f"?{urlencode(params, doseq=True)}" if params else "")
    payload = json.dumps(body).encode() if body is not None else b""
    head = [f"{'POST' if body is not None else 'GET'} {path} HTTP/1.1", f"Host: {parts.netloc}", "Connection: close"]
    if body is not None:
        head += ["Content-Type: application/json", f"Content-Length: {len(payload)}"]
    with socket.create_connection((parts.hostname, parts.port or 80), timeout=timeout) as sock:
        sock.sendall(("\r\n".join(head) + "\r\n\r\n").encode() + payload)
        f = sock.makefile("rb")
        status = int(_read_line(f).split()[1])
        headers: dict[str, str] = {}
        while line := _read_line(f):
            name, _, value = line.decode("latin-1").partition(":")
            headers[name.strip().lower()] = value.strip()
        answer = ChunkedAnswer(status, headers)
        if headers.get("transfer-encoding", "").lower() != "chunked":
            answer.chunks.append(f.read())
            return answer
        while True:
            size = int(_read_line(f).split(b";")[0], 16)
            if size == 0:
                _read_line(f)
                return answer
            data = f.read(size)
            if len(data) != size:
                raise ConnectionError("answer cut inside a chunk")
            answer.chunks.append(data)
            _read_line(f)
