"""What the gpt-sovits engine derives from a request's reference, kept per clip.

TTS.run's prompt cache holds one reference, the last one used. Requests that alternate between reference clips (one
per user, as GPT-SoVITS is mostly used) recompute all of it whenever the clip changes: the clip's semantic prompt
(HuBERT), SoVITS's spectrograms and speaker embeddings, and the prompt text's phonemes and BERT features. In a batch,
each such join pauses every other row. Here each clip's reference is kept, least recently used evicted past `size`:
the batch keeps `Reference`s, the one-at-a-time engine copies of TTS.run's prompt cache.

An entry is found by its files' paths and their identity on disk (inode, size and modification time), so a clip
replaced or rewritten at the same path is read again (TTS.run compares paths only); a rewrite to the same size within
one tick of the file system's clock, keeping the inode, goes unseen. It is used only while the models it came from
are still the installed ones: after a SoVITS weight switch or a voice reload it is computed again.
"""

from __future__ import annotations

import os
import weakref
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Generic, Optional, TypeVar

from ..base import ClipCounters
from ..params import SynthesisParams

V = TypeVar("V")

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
        return stamps_of(self.ref, self.aux)


def stamps_of(ref: str, aux: tuple[str, ...]) -> tuple[Stamp, ...]:
    return tuple(stamp(p) for p in (ref, *aux))


#: our entry in TTS.run's prompt cache (TTS.run ignores it): the clip files the cache's reference was read from,
#: with their stamps then
READ_FROM = "ttsc_read_from"


def mark_read(cache: dict[str, Any], ref: str, aux: tuple[str, ...], stamps: tuple[Stamp, ...]) -> None:
    """Record in TTS.run's prompt cache that its reference was read from these files, as stamped."""
    cache[READ_FROM] = (ref, aux, stamps)


def holds_clip(cache: dict[str, Any], ref: str, aux: tuple[str, ...], stamps: tuple[Stamp, ...]) -> bool:
    """Whether TTS.run's prompt cache holds the reference of these clip files as they are on disk now (`stamps`).
    TTS.run itself compares paths only, so without this record a clip rewritten at its path must be read again."""
    return stamps[0] is not None and cache.get(READ_FROM) == (ref, aux, stamps)


def clip_of(params: SynthesisParams, tts: Any, with_prompt: bool) -> tuple[ClipKey, tuple[object, ...]]:
    """The request's clip on the pair installed in `tts`, and the models its reference is derived with."""
    r = params.request
    prompt = (r.prompt_text or "", (r.prompt_lang or "").lower()) if with_prompt else None
    key = ClipKey(id(tts.vits_model), str(tts.precision), str(params.ref_audio),
                  tuple(str(p) for p in params.aux_ref_audio), prompt)
    return key, (tts.vits_model, tts.cnhuhbert_model, tts.bert_model, getattr(tts, "sv_model", None))


def read_clip(tts: Any, path: str) -> None:
    """Read the main reference clip into TTS.run's prompt cache as TTS.run does (`set_ref_audio`: its semantic
    prompt, spectrogram and audio), failing on a missing file with TTS.run's own words."""
    if not os.path.exists(path):
        raise ValueError(f"{path} not exists")
    tts.set_ref_audio(path)


def copied_prompt_cache(cache: dict[str, Any]) -> dict[str, Any]:
    """TTS.run's prompt cache with lists and dicts of its own (TTS.run changes them in place); tensors shared."""
    return {k: list(v) if isinstance(v, list) else dict(v) if isinstance(v, dict) else v for k, v in cache.items()}


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


class _Entry(Generic[V]):
    def __init__(self, value: V, stamps: tuple[Stamp, ...], models: tuple[object, ...]) -> None:
        self.value = value
        self.stamps = stamps
        # Weak: an entry never keeps an evicted voice's models in memory.
        self._models = tuple(None if m is None else weakref.ref(m) for m in models)

    @property
    def orphaned(self) -> bool:
        """Whether a model it was made by is gone."""
        return any(ref is not None and ref() is None for ref in self._models)

    def holds(self, stamps: tuple[Stamp, ...], models: tuple[object, ...]) -> bool:
        """Whether it was made from these files, as they are now on disk, by these models."""
        if stamps != self.stamps or stamps[0] is None or len(models) != len(self._models):
            return False
        return all((ref is None and m is None) or (ref is not None and ref() is m)
                   for ref, m in zip(self._models, models, strict=True))


class ReferenceClips(Generic[V]):
    """The per-clip references of one engine thread (no lock: only that thread reads and fills it)."""

    def __init__(self, size: int, counters: Optional[ClipCounters] = None) -> None:
        # An OrderedDict in recency order, not cachetools' LRUCache: sweeping orphaned entries reads every entry,
        # and every read of an LRUCache counts as a use.
        self._cache: OrderedDict[ClipKey, _Entry[V]] = OrderedDict()
        self.size = max(1, size)
        self.hits = 0
        self.misses = 0
        self._counters = counters or ClipCounters()  # the engine's, shared by its caches

    def __len__(self) -> int:
        return len(self._cache)

    def find(self, key: ClipKey, models: tuple[object, ...]) -> tuple[Optional[V], tuple[Stamp, ...]]:
        """What is kept under `key` if it still holds (else None), and the files' stamps now, for `keep`: taken
        before the caller reads the files, so one rewritten meanwhile is read again next time."""
        stamps = key.stamps()
        entry = self._cache.get(key)
        if entry is not None and entry.holds(stamps, models):
            self._cache.move_to_end(key)
            self.hits += 1
            self._counters.found += 1
            return entry.value, stamps
        self.misses += 1
        self._counters.missed += 1
        return None, stamps

    def keep(self, key: ClipKey, stamps: tuple[Stamp, ...], models: tuple[object, ...], value: V) -> None:
        # Entries of models gone (an evicted voice, replaced weights) can never hold again: their tensors go now,
        # not when the least recently used order reaches them.
        for gone in [k for k, entry in self._cache.items() if entry.orphaned]:
            del self._cache[gone]
        self._cache[key] = _Entry(value, stamps, models)
        self._cache.move_to_end(key)
        while len(self._cache) > self.size:
            self._cache.popitem(last=False)  # the least recently used

    def get(self, key: ClipKey, models: tuple[object, ...], compute: Callable[[tuple[Stamp, ...]], V]) -> V:
        """What is kept under `key` if it still holds, else what `compute` makes of the files as stamped now, kept
        in its place (a failure keeps nothing new)."""
        value, stamps = self.find(key, models)
        if value is None:
            value = compute(stamps)
            self.keep(key, stamps, models, value)
        return value
