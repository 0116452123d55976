"""Continuous batching for the gpt-sovits engine: `TTS.run` taken apart into upstream's own pieces, so that the
requests in a batch share every step of the text-to-semantic decoder (`t2s.BatchDecoder`).

What TTS.run does for one request, and where it happens here:

- the reference (set_ref_audio, aux clips, the prompt text's phonemes and BERT features, SoVITS's decode condition)
  and the text (`preprocess` for mode 0, `pre_seg_text` then per-sentence features for the others, `to_batch`):
  at `add`, on the request's voice pair, through that pair's prompt cache as TTS.run uses it; the request keeps
  what it needs, so the next request's reference can replace the cache's;
- T2S: one row of its voice's decoder per request, its sentences one after another (in TTS.run's order: mode 0's
  bucketing sorts them by length), each with TTS.run's prompt, sampling parameters and `early_stop_num`; which
  tokens are kept when a sentence stops follows the upstream decode TTS.run would call (`infer_panel_batch_infer`,
  or `infer_panel_naive` for ref-free, `parallel_infer=false` and streaming);
- SoVITS: when a sentence's tokens are done (`decode`, or `non_vocoder_synthesis_batched_infer` when TTS.run
  takes that path), or in modes 2 and 3 as each chunk of tokens is cut (`decode_streaming` with its overlap and
  SOLA), then `audio_postprocess`: the same audio, chunk for chunk, as TTS.run's. With `--vocoder-thread` (the
  default with CUDA) it runs on a second thread (`vocoder`) while the other rows go on decoding; the request
  itself waits for it (its next sentence joins, or its streaming row steps again, once that vocoding is
  collected), because TTS.run draws the two stages' random numbers from one generator in that order;
- random numbers: TTS.run seeds the global generator once per run and draws from it for T2S sampling and SoVITS's
  noise alike. Here each request has a generator of its own, seeded alike and drawn from in the same order (SoVITS
  draws from it through the global generator, swapped in around each decode), so a seeded request gets TTS.run's
  audio whoever shares its steps.

It runs on GPT-SoVITS itself and on gpt-sovits-cpufast (what the tests install), whose TTS differs in a few
places: the fused T2S blocks' layout (`t2s._Layer`), and the fork's per-reference caches and SoVITS decode
condition (`ge`, `ge_text`), used where they exist. Models that speak through a vocoder (v3, v4) are not batched:
their requests get a clear error, and a worker whose default voice is one refuses `--batching` at start.

Catalog voices have their own weights, so they cannot share a forward pass: the session keeps one decoder per voice
pair in use, and a step steps each in turn. What differs from TTS.run: `batch_size` > 1 (sentences are decoded one
at a time, as with the default 1), and in modes 2 and 3 every sentence is spoken (TTS.run with batch_size > 1
speaks only the first of each batch there).
"""

from __future__ import annotations

import math
import os
import sys
import time
from collections.abc import Callable
from typing import Any, Optional, Protocol

import numpy as np
import torch

from ..base import ClipCounters, DecodeCounters, EngineError
from ..batch import BatchSession, StepOutput
from ..params import Cancelled, CancelToken, StreamMode, SynthesisParams
from .pairs import VoicePair, uses_vocoder
from .reference import (
    READ_FROM,
    ClipKey,
    Reference,
    ReferenceClips,
    Stamp,
    clip_of,
    holds_clip,
    mark_read,
    read_clip,
)
from .rows import BatchRequest, Keep, PairView, Sentence, Then, VoiceDecoder, drawing_from, kept_tokens
from .stream import SentenceStream
from .t2s import (
    UPSTREAM_MAX_DECODE_STEPS,
    BatchDecoder,
    CacheCapacityError,
    StepEvent,
    T2SBatchError,
    T2SRequest,
)
from .upstream import described
from .vocoder import Chunks, Finished, VocoderThread


class BatchHost(Protocol):
    """What the session needs of its engine (`engine.GPTSoVITSEngine` is one), and nothing more: it installs the
    request's voice pair on the one `TTS` object and counts what the session decodes and which clips it finds."""

    device: str
    vocoder_thread: bool
    max_reference_clips: int
    decoded: DecodeCounters
    clips: ClipCounters

    @property
    def max_batch(self) -> int: ...

    @property
    def default_pair(self) -> Optional[VoicePair]: ...

    def pair_for(self, params: SynthesisParams, cancel: CancelToken) -> VoicePair: ...

    def use_pair(self, pair: VoicePair) -> Any: ...


#: KV positions a cache row holds besides a sentence's new tokens: the prompt text's and the sentence's phonemes and
#: the reference clip's semantic tokens (a 10 s clip is about 260). A sentence that needs more fails alone.
PREFILL_POSITIONS = 1024

#: with no row to step, how long a step waits for the vocoder before handing back to the scheduler (who may have
#: requests to join)
VOCODER_WAIT_SECONDS = 0.05

class GPTSoVITSBatch(BatchSession):
    """The gpt-sovits engine's batch. Every method runs on the engine thread, which owns the one `TTS` object; the
    vocoding jobs it hands on run on the vocoder thread and read the `TTS` object only through their request's
    `PairView`."""

    def __init__(self, engine: BatchHost, vocoder_thread: Optional[bool] = None) -> None:
        self.engine = engine
        self._voices: list[VoiceDecoder] = []
        self._requests: dict[int, BatchRequest] = {}
        self._rows: dict[str, int] = {}  # decoder row id -> request key
        threaded = engine.vocoder_thread if vocoder_thread is None else vocoder_thread
        self._vocoder: VocoderThread[Then] = VocoderThread(inline=not threaded)
        self.clips = ReferenceClips[Reference](engine.max_reference_clips, engine.clips)
        if str(engine.device).startswith("cuda"):
            # TTS.run's set_seed turns TF32 off (for good) at every run: its audio is what a batched request's equals.
            torch.backends.cuda.matmul.allow_tf32 = False
            torch.backends.cudnn.allow_tf32 = False

    @property
    def active(self) -> int:
        return len(self._requests)

    @torch.no_grad()
    def add(self, key: int, params: SynthesisParams, cancel: CancelToken) -> None:
        pair = self.engine.pair_for(params, cancel)
        tts = self.engine.use_pair(pair)
        try:
            request = self._prepare(key, params, pair, tts)
        except (EngineError, Cancelled):
            raise
        except Exception as exc:  # noqa: BLE001 - as TTS.run's failures: this request's 400 `tts failed`
            raise EngineError(described(exc)) from exc
        cancel.check()
        try:
            self._admit(request)
        except EngineError:
            raise
        except Exception as exc:  # noqa: BLE001 - as above: this request's alone, and it holds no row
            raise EngineError(described(exc)) from exc
        self._requests[key] = request

    def remove(self, key: int) -> None:
        request = self._requests.pop(key, None)
        if request is not None and request.row is not None:
            request.voice.decoder.cancel(request.row)
            self._rows.pop(request.row, None)
            request.row = None

    def close(self) -> None:
        self._vocoder.close()

    @torch.no_grad()
    def step(self) -> list[StepOutput]:
        outputs: dict[int, StepOutput] = {}
        self._collect(outputs, 0.0)
        held = {r.row for r in self._requests.values() if r.vocoding and r.row is not None}
        stepped = False
        for voice in list(self._voices):
            if any(row not in held for row in voice.decoder.active):
                t0 = time.monotonic()
                events = voice.decoder.step(held)
                self.engine.decoded.add(sum(e.token is not None for e in events), time.monotonic() - t0)
                for event in events:
                    self._advance(event, outputs)
                stepped = True
        # What the step handed on (done already when vocoding inline); with no row to step, wait a little for it.
        self._collect(outputs, 0.0 if stepped else VOCODER_WAIT_SECONDS)
        default = self.engine.default_pair
        # A catalog voice's decoder (its KV cache) goes when its last request does (one between sentences, waiting
        # for the vocoder, holds no row but still needs it); the default voice's stays.
        needed = self._needed()
        self._voices = [v for v in self._voices if id(v) in needed or v.pair is default]
        return list(outputs.values())

    def _needed(self) -> set[int]:
        """The voices (their id()s) some request in the session still needs, with a row or between sentences."""
        return {id(r.voice) for r in self._requests.values()}

    def _collect(self, outputs: dict[int, StepOutput], timeout: float) -> None:
        """Take in the vocoder's finished jobs: their chunks, then what each request does next."""
        for job in self._vocoder.collect(timeout):
            request = self._requests.get(job.key)
            if request is None:
                continue  # it left meanwhile
            request.vocoding -= 1
            out = outputs.setdefault(job.key, StepOutput(job.key))
            try:
                self._resume(request, job, out)
            except Exception as exc:  # noqa: BLE001 - this request's alone: the others go on
                out.error = exc if isinstance(exc, EngineError) else EngineError(described(exc))
            if out.done or out.error is not None:
                self.remove(job.key)

    def _resume(self, request: BatchRequest, job: Finished[Then], out: StepOutput) -> None:
        if job.error is not None:
            raise job.error
        out.chunks.extend(job.chunks)
        if job.tag == "resume" or request.vocoding:
            return
        if request.next < len(request.sentences):
            self._admit(request)
        else:
            out.done = True

    # ---- joining --------------------------------------------------------------------------------------------

    def _prepare(self, key: int, params: SynthesisParams, pair: VoicePair, tts: Any) -> BatchRequest:
        r = params.request
        if uses_vocoder(tts):
            raise EngineError(
                f"voice: a {tts.configs.version} model speaks through a vocoder, which a batching worker does not "
                "serve (it batches v1, v2 and v2Pro models): send this voice to a worker without --batching")
        with_prompt = bool(r.prompt_text)
        ref = self._reference(params, tts, with_prompt)
        sentences, order, split_bucket = self._sentences(params, tts, ref.prompt_text)
        voice = self._voice(pair, tts)
        generator = torch.Generator(device=voice.model.ar_predict_layer.weight.device)
        if r.seed in (-1, None):  # TTS.run's set_seed(-1): a random seed
            generator.seed()
        else:
            generator.manual_seed(int(r.seed))
        if params.mode in (StreamMode.TOKEN, StreamMode.FIXED) or not with_prompt:
            keep: Keep = "all"
        else:
            keep = "batch" if r.parallel_infer else "naive"
        early_stop = int(tts.configs.hz * tts.configs.max_sec)
        return BatchRequest(key, params, voice, ref, sentences, order, split_bucket, generator, early_stop, keep,
                        PairView(tts))

    def _reference(self, params: SynthesisParams, tts: Any, with_prompt: bool) -> Reference:
        """TTS.run's reference and prompt handling, kept per clip (`reference`)."""
        key, models = clip_of(params, tts, with_prompt)
        return self.clips.get(key, models, lambda stamps: self._read_reference(key, stamps, tts))

    def _read_reference(self, key: ClipKey, stamps: tuple[Stamp, ...], tts: Any) -> Reference:
        """What TTS.run computes for a reference, on the installed pair's prompt cache. The clip files are read
        unless the cache holds them as they are now (TTS.run compares paths only: it would keep a clip rewritten
        since), the prompt text's features unless the cache has them."""
        cache = tts.prompt_cache
        read = False  # whether what the runtime entries derive from changed
        if not holds_clip(cache, key.ref, key.aux, stamps) or (tts.is_v2pro and cache["refer_spec"][0][1] is None):
            read = True
            cache.pop(READ_FROM, None)  # until the files are read
            read_clip(tts, key.ref)
            cache["aux_ref_audio_paths"] = list(key.aux)
            cache["refer_spec"] = [cache["refer_spec"][0]]
            cache["refer_spec"].extend(tts._get_ref_spec(p) for p in key.aux if p and os.path.exists(p))
            mark_read(cache, key.ref, key.aux, stamps)
        prompt_text: Optional[dict[str, Any]] = None
        if key.prompt is not None:
            text, lang = key.prompt
            text = text.strip("\n")
            if text[-1] not in vars(sys.modules[type(tts).__module__])["splits"]:
                text += "。" if lang != "en" else "."
            if (cache["prompt_text"], cache["prompt_lang"]) != (text, lang):
                phones, bert, norm_text = tts.text_preprocessor.segment_and_extract_feature_for_text(
                    text, lang, tts.configs.version)
                cache.update(prompt_text=text, prompt_lang=lang, phones=phones, bert_features=bert,
                             norm_text=norm_text)
                read = True
            prompt_text = {k: cache[k] for k in ("phones", "bert_features", "norm_text")}
        if read:
            # (else they are this pair's own and still right: a weight switch or a new voice blanks the cache)
            self._invalidate_runtime_cache(tts)
        refer, sv_emb = self._spectrograms(tts)
        condition: dict[str, Any] = {}
        if hasattr(tts.vits_model, "build_decode_condition"):
            ge, ge_text = tts._get_runtime_decode_condition()
            condition = {"ge": ge, "ge_text": ge_text}
        semantic = cache["prompt_semantic"] if key.prompt is not None else None
        return Reference(semantic, list(refer), list(sv_emb) if isinstance(sv_emb, list) else sv_emb, condition,
                         prompt_text)

    @staticmethod
    def _invalidate_runtime_cache(tts: Any) -> None:
        """gpt-sovits-cpufast caches what it derives from the prompt cache; GPT-SoVITS derives it at every run."""
        invalidate = getattr(tts, "_invalidate_prompt_runtime_cache", None)
        if invalidate is not None:
            invalidate()

    @staticmethod
    def _spectrograms(tts: Any) -> tuple[list[Any], Any]:
        """SoVITS's reference spectrograms and (v2Pro) speaker embeddings, as TTS.run computes them."""
        cached = getattr(tts, "_get_runtime_refer_audio_spec_and_sv_emb", None)
        if cached is not None:
            specs, embeddings = cached()
            return list(specs), embeddings
        refer = []
        sv_emb: Optional[list[Any]] = [] if tts.is_v2pro else None
        for spec, audio in tts.prompt_cache["refer_spec"]:
            refer.append(spec.to(dtype=tts.precision, device=tts.configs.device))
            if sv_emb is not None:
                sv_emb.append(tts.sv_model.compute_embedding3(audio))
        return refer, sv_emb

    def _sentences(self, params: SynthesisParams, tts: Any,
                   prompt_text: Optional[dict[str, Any]]) -> tuple[list[Sentence], list[list[int]], bool]:
        """The text's sentences as TTS.run cuts and orders them, each with its T2S inputs (to_batch's)."""
        r, prep, version = params.request, tts.text_preprocessor, tts.configs.version
        text, lang = r.text or "", (r.text_lang or "").lower()
        if params.mode == StreamMode.OFF:
            data = prep.preprocess(text, lang, r.text_split_method, version)
            if not data:  # TTS.run answers 1 s of 16 kHz silence; the one-at-a-time engine, this
                raise EngineError("the text has nothing to speak after GPT-SoVITS's text cleaning")
        else:
            data = []
            for sentence in prep.pre_seg_text(text, lang, r.text_split_method):
                phones, bert, norm_text = prep.segment_and_extract_feature_for_text(sentence, lang, version)
                if phones is not None:
                    data.append({"phones": phones, "bert_features": bert, "norm_text": norm_text})
            if not data:  # TTS.run yields nothing; the scheduler's answer to that
                raise EngineError("the text produced no audio")
        split_bucket = r.split_bucket and r.speed_factor == 1.0 and params.mode == StreamMode.OFF
        batches, order = tts.to_batch(data, prompt_data=prompt_text, batch_size=1,
                                      threshold=r.batch_threshold, split_bucket=split_bucket,
                                      device=tts.configs.device, precision=tts.precision)
        sentences = [Sentence(b["phones"][0], b["all_phones"][0], b["all_bert_features"][0]) for b in batches]
        return sentences, order, split_bucket

    def _voice(self, pair: VoicePair, tts: Any) -> VoiceDecoder:
        """The pair's decoder, built (its KV cache allocated) on first use and again after a weight switch."""
        model = tts.t2s_model.model
        for voice in self._voices:
            if voice.pair is pair and voice.model is model:
                return voice
        needed = self._needed()
        self._voices = [v for v in self._voices if v.pair is not pair or id(v) in needed]
        budget = min(UPSTREAM_MAX_DECODE_STEPS, int(tts.configs.hz * tts.configs.max_sec) + 1)
        max_len = min(int(model.ar_audio_position.pe.shape[1]), PREFILL_POSITIONS + budget)
        voice = VoiceDecoder(pair, model, BatchDecoder(model, self.engine.max_batch, max_len))
        self._voices.append(voice)
        return voice

    def _admit(self, request: BatchRequest) -> None:
        """Start decoding the request's next sentence in a row of its voice's decoder."""
        index = request.next
        sentence = request.sentences[index]
        r = request.params.request
        row = f"{request.key}.{index}"
        # Built before the row is taken: a value it cannot use (speed_factor 0) fails this request, holding no row.
        stream = SentenceStream(request, sentence) if request.params.mode in (StreamMode.TOKEN, StreamMode.FIXED) else None
        t2s = T2SRequest(row, sentence.all_phones, sentence.all_bert, request.ref.prompt, top_k=r.top_k,
                         top_p=r.top_p, temperature=r.temperature, repetition_penalty=r.repetition_penalty,
                         early_stop_num=request.early_stop, generator=request.generator)
        try:
            t0 = time.monotonic()
            request.voice.decoder.admit(t2s)  # its prefill: decoding time, as in upstream's decodes
            self.engine.decoded.add(0, time.monotonic() - t0)
        except CacheCapacityError as exc:
            phones = int(sentence.all_phones.shape[0])
            prompt = 0 if request.ref.prompt is None else int(request.ref.prompt.shape[0])
            raise EngineError(
                f"text: sentence {index + 1} does not fit a row of the batch's KV cache: {phones} phonemes (prompt "
                f"text and sentence) + {prompt} reference tokens + up to {exc.needed - phones - prompt} new tokens "
                f"need {exc.needed} positions, more than its {exc.capacity}: send shorter sentences, or a shorter "
                "prompt text or reference clip"
            ) from exc
        except T2SBatchError as exc:
            raise EngineError(str(exc)) from exc
        request.next, request.row, request.stream = index + 1, row, stream
        self._rows[row] = request.key

    # ---- stepping -------------------------------------------------------------------------------------------

    def _advance(self, event: StepEvent, outputs: dict[int, StepOutput]) -> None:
        key = self._rows[event.request_id]
        request = self._requests[key]
        out = outputs.setdefault(key, StepOutput(key))
        if event.finish is not None:
            self._rows.pop(event.request_id, None)
            request.row = None
        try:
            self._take(request, event, out)
        except Exception as exc:  # noqa: BLE001 - this request's alone: the others go on
            out.error = exc if isinstance(exc, EngineError) else EngineError(described(exc))
        if out.done or out.error is not None:
            self.remove(key)

    def _take(self, request: BatchRequest, event: StepEvent, out: StepOutput) -> None:
        """After the request's row stepped: hand the vocoder what is ready to speak (a cut chunk, or the finished
        sentence), which the request then waits for."""
        job: Optional[Callable[[], Chunks]]
        if request.stream is not None:
            job = request.stream.feed(event)
        elif event.finish is not None:
            index = request.next - 1
            tokens = kept_tokens(event.semantic or (), event.finish, request.keep)
            job = self._sentence_job(request, request.sentences[index], tokens, last=request.next >= len(
                request.sentences))
        else:
            return
        if job is None:
            return
        request.vocoding += 1
        self._vocoder.submit(request.key, "resume" if event.finish is None else "next", torch.no_grad()(job))

    def _sentence_job(self, request: BatchRequest, sentence: Sentence, tokens: tuple[int, ...],
                      last: bool) -> Callable[[], Chunks]:
        def job() -> Chunks:  # on the vocoder thread
            audio = self._vocode(request, sentence, tokens)
            if request.params.mode != StreamMode.OFF:
                return [self._postprocess(request, [[audio]], None, False)]
            request.parts.append(audio)
            if not last:
                return []
            return [self._postprocess(request, [[a] for a in request.parts], request.order, request.split_bucket)]
        return job

    @staticmethod
    def _vocode(request: BatchRequest, sentence: Sentence, tokens: tuple[int, ...]) -> torch.Tensor:
        """SoVITS for one sentence, by the path TTS.run takes for it (one sentence per batch)."""
        tts = request.view
        r, ref, vits = request.params.request, request.ref, tts.vits_model
        device = tts.configs.device
        codes = torch.tensor(tokens, dtype=torch.long, device=device)
        phones = sentence.phones.to(device)
        cond = ref.decode_kwargs()
        with drawing_from(request.generator):
            if r.parallel_infer and r.speed_factor == 1.0:
                audio: torch.Tensor = vits.decode(codes.view(1, 1, -1), phones.unsqueeze(0), ref.refer,
                                                  speed=r.speed_factor, **cond).detach()[0, 0, :]
                return audio[: len(tokens) * 2 * math.prod(vits.upsample_rates)]
            if hasattr(vits, "prepare_decode_latent"):
                parts: list[torch.Tensor] = tts.non_vocoder_synthesis_batched_infer(
                    [codes], [phones], ref.refer, speed=r.speed_factor, **cond)
                return parts[0]
            audio = vits.decode(codes.view(1, 1, -1), phones.unsqueeze(0), ref.refer, speed=r.speed_factor,
                                **cond).detach()[0, 0, :]
            return audio

    @staticmethod
    def _postprocess(request: BatchRequest, audio: list[list[torch.Tensor]], order: Optional[list[list[int]]],
                     split_bucket: bool) -> np.ndarray:
        r, tts = request.params.request, request.view
        _sr, pcm = tts.audio_postprocess(audio, tts.configs.sampling_rate, order, r.speed_factor, split_bucket,
                                         r.fragment_interval)
        return np.asarray(pcm, dtype=np.int16).reshape(-1)
