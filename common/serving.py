"""uvicorn, minus one behaviour: after a graceful shutdown uvicorn re-raises the signal it caught, which turns a
clean SIGTERM stop into exit code -15. Kubernetes and supervisors read that as a crash, so ours exit 0."""

from __future__ import annotations

from types import FrameType
from typing import Optional

import uvicorn


class Server(uvicorn.Server):
    def handle_exit(self, sig: int, frame: Optional[FrameType]) -> None:
        if self.should_exit:
            self.force_exit = True
        self.should_exit = True
