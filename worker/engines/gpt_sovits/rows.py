"""What one request is inside the batched session: its rows of the T2S decoder, its sentences, its voice's decoder,
its own random generator, and the read-only view of its voice pair that the vocoder thread uses."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from types import MethodType, SimpleNamespace
from typing import Any, Literal, Optional, Protocol

import torch

from ..params import SynthesisParams
from .pairs import VoicePair
from .reference import Reference
from .t2s import BatchDecoder, StepEvent
from .vocoder import Chunks


class TokenFeed(Protocol):
    """A sentence streamed in modes 2 and 3 (`stream.SentenceStream`): fed each step's token, it hands back the
    vocoding to run when a chunk (or the sentence) is complete."""

    def feed(self, event: StepEvent) -> Optional[Callable[[], Chunks]]: ...

# Which upstream decode TTS.run would call decides which tokens of a stopped sentence it keeps.
Keep = Literal["batch", "naive", "all"]
# What the engine thread does once a request's vocoding is collected: step its streaming row again, or start its
# next sentence (or finish it).
Then = Literal["resume", "next"]


@contextmanager
def drawing_from(generator: torch.Generator) -> Iterator[None]:
    """Upstream code that draws from the device's global generator (SoVITS's noise) draws from `generator` instead,
    as TTS.run's decodes draw from the one generator it seeded; the global generator is left as it was."""
    device = generator.device
    if device.type == "cuda":
        saved = torch.cuda.get_rng_state(device)
        torch.cuda.set_rng_state(generator.get_state(), device)
        try:
            yield
        finally:
            generator.set_state(torch.cuda.get_rng_state(device))
            torch.cuda.set_rng_state(saved, device)
    else:
        saved = torch.get_rng_state()
        torch.set_rng_state(generator.get_state())
        try:
            yield
        finally:
            generator.set_state(torch.get_rng_state())
            torch.set_rng_state(saved)


def kept_tokens(tokens: tuple[int, ...], finish: Optional[str], keep: Keep) -> tuple[int, ...]:
    """The tokens TTS.run hands to SoVITS for a sentence that stopped with `finish`. On EOS, every token before it.
    Otherwise (early stop, the step cap) `infer_panel_batch_infer` keeps the tokens before the stopping step's, and
    `infer_panel_naive` with a prompt keeps its last `steps - 1` (TTS.run's `item[-idx:]`); ref-free, all."""
    if finish == "eos" or keep == "all":
        return tokens
    return tokens[:-1] if keep == "batch" else tokens[1:]


class PairView:
    """What upstream's vocoding methods read from `self`, taken from the one `TTS` object while the request's voice
    pair is installed: the vocoder thread uses this, never the `TTS` object, whose installed pair the engine
    thread may change meanwhile."""

    def __init__(self, tts: Any) -> None:
        configs = tts.configs
        self.vits_model = tts.vits_model
        self.precision = tts.precision
        self.configs = SimpleNamespace(sampling_rate=configs.sampling_rate, device=configs.device,
                                       mute_emb_sim_matrix=getattr(configs, "mute_emb_sim_matrix", None))
        cls = type(tts)
        # The last is gpt-sovits-cpufast's alone (used only when its SoVITS has `prepare_decode_latent`).
        for name in ("audio_postprocess", "recovery_order", "sola_algorithm", "non_vocoder_synthesis_batched_infer"):
            method = getattr(cls, name, None)
            if method is not None:
                setattr(self, name, MethodType(method, self))

    def __getattr__(self, name: str) -> Any:  # the methods bound above, for the type checker
        raise AttributeError(name)


@dataclass
class Sentence:
    phones: torch.Tensor  # its own phonemes, for SoVITS
    all_phones: torch.Tensor  # the prompt text's then its own, for T2S
    all_bert: torch.Tensor


@dataclass
class VoiceDecoder:
    """One voice pair's decoder, over the T2S model it was built on."""

    pair: VoicePair
    model: Any
    decoder: BatchDecoder


@dataclass
class BatchRequest:
    key: int
    params: SynthesisParams
    voice: VoiceDecoder
    ref: Reference
    sentences: list[Sentence]  # in decoding order
    order: list[list[int]]  # mode 0: to_batch's batch_index_list, decoding order -> text order
    split_bucket: bool
    generator: torch.Generator
    early_stop: int
    keep: Keep
    view: PairView
    next: int = 0  # the next sentence to decode
    vocoding: int = 0  # its vocoder jobs not yet collected; while any is, its row (if any) sits steps out
    row: Optional[str] = None  # the decoder row of the sentence decoding now
    parts: list[torch.Tensor] = field(default_factory=list)  # mode 0: each sentence's audio, until the last
    stream: Optional[TokenFeed] = None  # modes 2 and 3: the sentence decoding now
