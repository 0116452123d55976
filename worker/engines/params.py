"""What a synthesis is asked with: the validated request, its streaming mode, and the token that cancels it.

Both engine interfaces take these (one at a time: `base.Engine`; together: `batch.BatchSession`), so they live
apart from both, and neither interface imports the other's module to name them.
"""

from __future__ import annotations

import threading
from dataclasses import dataclass, field
from enum import IntEnum
from pathlib import Path
from typing import Optional

from tts_common.schemas import TTSRequest
from tts_common.voices import Voice


class StreamMode(IntEnum):
    """api_v2's streaming_mode: 0 whole body, 1 one chunk per text segment, 2 token chunks, 3 fixed-length chunks."""

    OFF = 0
    SEGMENT = 1
    TOKEN = 2
    FIXED = 3


class Cancelled(Exception):
    """The client left or the request timed out; the engine stopped between chunks."""


@dataclass(frozen=True)
class SynthesisParams:
    """A validated request, with languages lower-cased and reference paths resolved inside the voice directory."""

    request: TTSRequest
    mode: StreamMode
    ref_audio: Path
    aux_ref_audio: tuple[Path, ...] = ()
    #: aux clips asked for but skipped, as api_v2's pipeline skips them: empty entries, files not found
    skipped_aux: tuple[str, ...] = ()
    #: most seconds of audio this request may produce (None: no limit, as in warm-up)
    max_audio_seconds: Optional[float] = None
    #: the catalog voice asked for; None: the engine's default voice
    voice: Optional[Voice] = None


@dataclass
class CancelToken:
    """Set by the event loop, read by the executor thread between chunks."""

    event: threading.Event = field(default_factory=threading.Event)

    def cancel(self) -> None:
        self.event.set()

    @property
    def cancelled(self) -> bool:
        return self.event.is_set()

    def check(self) -> None:
        if self.event.is_set():
            raise Cancelled()
