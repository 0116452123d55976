"""What the batching gpt-sovits engine derives from a request's reference, kept per clip.

TTS.run's prompt cache holds one reference, the last one used. Requests that alternate between reference clips (one
per user or per voice) recompute all of it at every join: the clip's semantic prompt (HuBERT), SoVITS's
spectrograms and speaker embeddings, and the prompt text's phonemes and BERT features. Each join pauses every other
row of the batch. Here each clip's reference is kept, least recently used evicted past `size`.

An entry is found by its files' paths and their identity on disk (inode, size and modification time), so a clip
replaced or rewritten at the same path is read again (TTS.run compares paths only). It is used only while the
models it came from are still the installed ones: after a weight switch or a voice reload it is computed again.
"""

from __future__ import annotations

import os
import weakref
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Optional

from cachetools import LRUCache

#: a file's identity on disk: (inode, size, modification time in ns); None if it cannot be read
Stamp = Optional[tuple[int, int, int]]


def stamp(path: str) -> Stamp:
    try:
        st = os.stat(path)
    except OSError:
        return None
    return st.st_ino, st.st_size, st.st_mtime_ns


@dataclass(frozen=True)
class ClipKey:
    """What a reference is derived from, besides the files' contents."""

    models: int  # id() of the SoVITS model installed (checked against the entry's models, never trusted alone)
    precision: str
    ref: str  # the main clip's path
    aux: tuple[str, ...]  # the aux clips' paths
    prompt: Optional[tuple[str, str]]  # (prompt text, prompt language); None: ref-free

    def stamps(self) -> tuple[Stamp, ...]:
        return tuple(stamp(p) for p in (self.ref, *self.aux))


@dataclass
class Reference:
    """A request's copy of what TTS.run's prompt cache holds for its reference."""

    prompt: Optional[Any]  # the clip's semantic tokens; None: no prompt text (ref-free)
    refer: list[Any]  # SoVITS's reference spectrograms (main clip, then aux clips)
    sv_emb: Any
    condition: dict[str, Any]  # gpt-sovits-cpufast's precomputed decode condition (`ge`, `ge_text`); upstream: none
    prompt_text: Optional[dict[str, Any]]  # the prompt text's phones and bert_features, as to_batch reads them

    def decode_kwargs(self) -> dict[str, Any]:
        """What SoVITS's decode and decode_streaming take besides tokens, phonemes and spectrograms."""
        return {"sv_emb": self.sv_emb, **self.condition}


class _Entry:
    def __init__(self, reference: Reference, stamps: tuple[Stamp, ...], models: tuple[object, ...]) -> None:
        self.reference = reference
        self.stamps = stamps
        # Weak: an entry never keeps an evicted voice's models in memory.
        self._models = tuple(None if m is None else weakref.ref(m) for m in models)

    def holds(self, stamps: tuple[Stamp, ...], models: tuple[object, ...]) -> bool:
        """Whether it was made from these files, as they are now on disk, by these models."""
        if stamps != self.stamps or stamps[0] is None or len(models) != len(self._models):
            return False
        return all((ref is None and m is None) or (ref is not None and ref() is m)
                   for ref, m in zip(self._models, models, strict=True))


class ReferenceClips:
    """The per-clip references of one engine thread (no lock: only that thread reads and fills it)."""

    def __init__(self, size: int) -> None:
        self._cache: LRUCache[ClipKey, _Entry] = LRUCache(maxsize=max(1, size))
        self.hits = 0
        self.misses = 0

    def __len__(self) -> int:
        return len(self._cache)

    def get(self, key: ClipKey, models: tuple[object, ...], compute: Callable[[], Reference]) -> Reference:
        """The reference kept under `key` if it still holds, else `compute()`'s, kept in its place (a failure keeps
        nothing new). The files are stamped before `compute` reads them: one rewritten meanwhile is read again."""
        stamps = key.stamps()
        entry = self._cache.get(key)
        if entry is not None and entry.holds(stamps, models):
            self.hits += 1
            return entry.reference
        self.misses += 1
        reference = compute()
        self._cache[key] = _Entry(reference, stamps, models)
        return reference
