"""Streaming modes 2 and 3 for one sentence of a batched request: TTS.run's streaming loop, fed one token at a time."""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import Optional

import numpy as np
import torch

from ..params import StreamMode
from .rows import BatchRequest, Sentence, drawing_from
from .t2s import StepEvent
from .vocoder import Chunks

#: TTS.run's `chunk_split_thershold` for mode 2: a token this similar to the mute token may end a chunk
CHUNK_SPLIT_THRESHOLD = 0.0
#: infer_panel_naive's `check_token_num`: mode 2 looks for a cut once this many tokens past `min_chunk_length`
CHUNK_CHECK_TOKENS = 2


class SentenceStream:
    """Modes 2 and 3 for one sentence: TTS.run's streaming loop, fed a token at a time. `infer_panel_naive` cuts the
    tokens into chunks (mode 2 where a token sounds like the mute token, mode 3 every `min_chunk_length`), and each
    chunk is decoded with all the sentence's tokens so far (`decode_streaming`, overlapping the previous chunk's
    latent) and joined to the previous audio by SOLA, exactly as TTS.run does between its decoder's yields.

    `feed` runs on the engine thread and cuts; the jobs it returns run on the vocoder thread, one at a time, and
    alone touch the decoded state (`pieces`, `last_audio`, `last_latent`, `first`)."""

    def __init__(self, request: BatchRequest, sentence: Sentence) -> None:
        r = request.params.request
        tts = request.view
        self.tts, self.request, self.r = tts, request, r
        vits = tts.vits_model
        self.phones = sentence.phones.unsqueeze(0).to(tts.configs.device)
        self.mute: Optional[torch.Tensor] = (
            tts.configs.mute_emb_sim_matrix if request.params.mode == StreamMode.TOKEN else None)
        self.chunk_length = int(r.min_chunk_length)
        self.frames = 2 if vits.semantic_frame_rate == "25hz" else 1
        self.upsample = math.prod(vits.upsample_rates) * (self.frames / r.speed_factor)
        self.overlap_size = math.ceil(r.overlap_length * self.upsample)
        self.tokens: list[int] = []
        self.counter = 0  # infer_panel_naive's token_counter
        self.ptr = 0  # its curr_ptr, past the prompt
        self.pieces: list[torch.Tensor] = []  # the chunks decoded so far
        self.last_audio: Optional[torch.Tensor] = None
        self.last_latent: Optional[torch.Tensor] = None
        self.first = True

    def feed(self, event: StepEvent) -> Optional[Callable[[], Chunks]]:
        """Take the step's token; the vocoding to run, if it completed a chunk or the sentence."""
        if event.token is not None:
            self.tokens.append(event.token)
        self.counter += 1
        if event.finish is not None:
            tail = self.tokens[self.ptr:]
            silence = np.zeros(int(int(self.tts.configs.sampling_rate) * self.r.fragment_interval), dtype=np.int16)
            return lambda: [*(self._vocode(tail, True) if tail else self._tail()), silence]
        chunk = self._cut()
        return None if chunk is None else lambda: self._vocode(chunk, False)

    def _cut(self) -> Optional[list[int]]:
        if self.mute is None:
            if self.counter < self.chunk_length:
                return None
            chunk = self.tokens[-self.counter:]
            self.ptr += self.counter
            self.counter = 0
            return chunk
        if self.counter < self.chunk_length + CHUNK_CHECK_TOKENS:
            return None
        recent = torch.tensor(self.tokens[self.ptr:], dtype=torch.long, device=self.mute.device)
        score = self.mute[recent] - CHUNK_SPLIT_THRESHOLD
        score[score < 0] = -1
        score[:-1] = score[:-1] + score[1:]  # two mute-like tokens in a row
        at = int(score.argmax())
        if not (score[at] >= 0 and at + 1 >= self.chunk_length):
            return None
        chunk = self.tokens[self.ptr:]  # upstream yields every token since the last cut, then moves past `at` only
        self.counter -= at + 1
        self.ptr += at + 1
        return chunk

    def _tail(self) -> list[np.ndarray]:
        """Nothing new after the last cut: TTS.run sends the end of the last chunk's audio that it held back."""
        if self.last_audio is None:
            return []
        return [self._post(self.last_audio[-self.overlap_size:])]

    def _vocode(self, chunk: list[int], final: bool) -> list[np.ndarray]:
        tts, r, ref = self.tts, self.r, self.request.ref
        n = len(chunk)
        self.pieces.append(torch.tensor([chunk], dtype=torch.long, device=tts.configs.device))
        codes = torch.cat(self.pieces, dim=-1)
        overlap = r.overlap_length + (10 - n) if not self.first and n < 10 else r.overlap_length
        with drawing_from(self.request.generator):
            audio, latent, _mask = tts.vits_model.decode_streaming(
                codes.unsqueeze(0), self.phones, ref.refer, speed=r.speed_factor, **ref.decode_kwargs(),
                result_length=None if self.first else n + overlap,
                overlap_frames=None if self.last_latent is None else self.last_latent[:, :, -overlap * self.frames:],
                padding_length=0)
        audio = audio.detach()[0, 0, :]
        if overlap > r.overlap_length:
            audio = audio[-int((r.overlap_length + n) * self.upsample):]
        out = audio
        if self.first:
            self.first = False
            if not final:
                out = out[:-self.overlap_size]
        elif not final:
            assert self.last_audio is not None
            # SOLA may change `audio` in place, as upstream's does: the next chunk overlaps what it left.
            out = tts.sola_algorithm([self.last_audio, out], self.overlap_size)
            out = out[self.last_audio.shape[0] - self.overlap_size: -self.overlap_size]
        self.last_latent, self.last_audio = latent, audio
        return [self._post(out)]

    def _post(self, audio: torch.Tensor) -> np.ndarray:
        _sr, pcm = self.tts.audio_postprocess([[audio]], self.tts.configs.sampling_rate, None, self.r.speed_factor,
                                              False, 0.0)
        return np.asarray(pcm, dtype=np.int16).reshape(-1)
