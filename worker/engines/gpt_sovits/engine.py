"""GPT-SoVITS engine: the real pipeline (`TTS` and `TTS_Config` from GPT_SoVITS/TTS_infer_pack/TTS.py), driven
the way api_v2's `tts_handle` drives it, one instance per device.

GPT-SoVITS's code is imported by `upstream.import_pipeline`, on `load`; a voice is a model pair (`pairs`); batching
is the session in `session`, which sees the engine only through its `BatchHost` interface.
"""

from __future__ import annotations

import contextlib
import copy
import functools
import gc
import logging
import tempfile
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Any, Optional

import numpy as np

from tts_common.schemas import TTSRequest
from tts_common.voices import Voice

from ...reference import REFERENCE_TEXT
from ...voices import PathRejected, resolve_inside
from ..base import Engine, EngineError, EngineLoadError
from ..batch import run_together
from ..params import Cancelled, CancelToken, StreamMode, SynthesisParams
from .pairs import VoicePair, uses_vocoder
from .reference import (
    READ_FROM,
    ClipKey,
    ReferenceClips,
    Stamp,
    clip_of,
    copied_prompt_cache,
    holds_clip,
    mark_read,
    read_clip,
    stamps_of,
)
from .upstream import described, import_pipeline

if TYPE_CHECKING:
    from ..batch import BatchSession

log = logging.getLogger("tts_worker.gpt_sovits")

# The tts_infer.yaml keys that name files; TTS_Config silently falls back to defaults for missing ones.
PATH_KEYS = ("t2s_weights_path", "vits_weights_path", "bert_base_path", "cnhuhbert_base_path")
# api_v2's streaming_mode -> TTS.run's (streaming_mode, return_fragment, fixed_length_chunk)
STREAM_FLAGS = {
    StreamMode.OFF: (False, False, False),
    StreamMode.SEGMENT: (False, True, False),
    StreamMode.TOKEN: (True, False, False),
    StreamMode.FIXED: (True, False, True),
}


def pipeline_inputs(params: SynthesisParams) -> dict[str, Any]:
    """The dict api_v2 hands to `TTS.run`: every api_v2 field, the streaming mode as TTS.run's three flags, and
    reference paths already resolved inside the voice directory."""
    r: TTSRequest = params.request
    streaming, fragment, fixed = STREAM_FLAGS[params.mode]
    return {
        "text": r.text,
        "text_lang": (r.text_lang or "").lower(),
        "ref_audio_path": str(params.ref_audio),
        "aux_ref_audio_paths": [str(p) for p in params.aux_ref_audio],
        "prompt_text": r.prompt_text,
        "prompt_lang": (r.prompt_lang or "").lower(),
        "top_k": r.top_k,
        "top_p": r.top_p,
        "temperature": r.temperature,
        "text_split_method": r.text_split_method,
        "batch_size": r.batch_size,
        "batch_threshold": r.batch_threshold,
        "split_bucket": r.split_bucket,
        "speed_factor": r.speed_factor,
        "fragment_interval": r.fragment_interval,
        "seed": r.seed,
        "media_type": r.media_type,
        "parallel_infer": r.parallel_infer,
        "repetition_penalty": r.repetition_penalty,
        "sample_steps": r.sample_steps,
        "super_sampling": r.super_sampling,
        "overlap_length": r.overlap_length,
        "min_chunk_length": r.min_chunk_length,
        "streaming_mode": streaming,
        "return_fragment": fragment,
        "fixed_length_chunk": fixed,
    }


# Upstream's T2S decodes that TTS.run calls for whole sentences (each returns tokens and their counts; the streamed
# one, infer_panel_naive, is a generator and is left alone).
T2S_DECODES = ("infer_panel_batch_infer", "infer_panel_naive_batched")


class GPTSoVITSEngine(Engine):
    """The default voice is tts_infer.yaml's pair, always held; catalog voices are further GPT/SoVITS pairs held
    in `loaded` (least recently used evicted), sharing the one BERT, HuBERT and text front end. The engine thread
    runs one synthesis at a time, so a voice's pair is swapped into the one `TTS` object before its run.

    With `max_batch` > 1 it also serves requests together (`open_batch`, see session): TTS.run's pieces,
    with the T2S decoder stepping every request of a voice in one batch."""

    name = "gpt-sovits"
    switches_weights = True
    serves_voices = True
    uses_reference = True
    default_voice_load_seconds = 5.0

    def __init__(self, block: dict[str, Any], device: str, root: Optional[Path] = None,
                 warmup_reference: Optional[Path] = None, cpu_threads: int = 0,
                 models_dir: Optional[Path] = None, max_batch: int = 1,
                 vocoder_thread: Optional[bool] = None, max_reference_clips: int = 32) -> None:
        super().__init__()
        self._max_batch = max(1, max_batch)
        #: how many reference clips' features are kept (reference_clips): copies of TTS.run's prompt cache here
        #: (one request at a time), or in the batched session (batching: every synthesis, warm-up too, goes there)
        self.max_reference_clips = max_reference_clips
        self._clips = ReferenceClips[dict[str, Any]](max_reference_clips, self.clips)
        # Batched sessions vocode on a second thread; unset: only on CUDA (on CPU both threads share the cores).
        self.vocoder_thread = device.startswith("cuda") if vocoder_thread is None else vocoder_thread
        self.cpu_threads = cpu_threads
        self.block = dict(block)
        self.device = device
        self.root = root.resolve() if root else None
        self.models_dir = (models_dir or self.root or Path.cwd()).resolve()
        self.warmup_reference = warmup_reference
        self._tts: Any = None
        self._default: Optional[VoicePair] = None
        self._active: Optional[VoicePair] = None  # the pair installed in `_tts` now
        self._blank_prompt_cache: dict[str, Any] = {}

    # ---- loading -----------------------------------------------------------------------------------------

    def _resolved_block(self) -> dict[str, Any]:
        """The yaml block with this worker's device forced, half precision only on CUDA, and relative paths made
        absolute against the GPT-SoVITS root (api_v2 runs from there) or the working directory."""
        if not self.block:
            raise EngineLoadError(
                "engine gpt-sovits needs a tts_infer.yaml with a `custom` or `v2` block (--tts-config PATH)"
            )
        block = dict(self.block)
        block["device"] = self.device
        block["is_half"] = bool(block.get("is_half", False)) and self.device.startswith("cuda")
        for key in PATH_KEYS:
            value = block.get(key)
            if not value:
                raise EngineLoadError(f"tts_infer.yaml: {key} is not set")
            path = self._absolute(Path(str(value)))
            if not path.exists():
                raise EngineLoadError(f"tts_infer.yaml: {key} {path} does not exist")
            block[key] = str(path)
        return block

    def _absolute(self, path: Path) -> Path:
        """Relative paths mean what they mean to api_v2: relative to the GPT-SoVITS root it runs from."""
        return path if path.is_absolute() else (self.root or Path.cwd()) / path

    def load(self) -> None:
        tts_cls, config_cls = import_pipeline(self.root)
        block = self._resolved_block()
        import torch

        if self.device.startswith("cuda") and not torch.cuda.is_available():
            raise EngineLoadError(f"device {self.device} asked for, but torch sees no CUDA device")
        if self.cpu_threads and not self.device.startswith("cuda"):
            torch.set_num_threads(self.cpu_threads)  # several CPU workers on one machine share its cores

        # config_cls is GPT-SoVITS's TTS_Config, imported at run time from a checkout mypy cannot see.
        class ReadOnlyConfig(config_cls):  # type: ignore[misc, valid-type]
            """Never writes tts_infer.yaml: upstream rewrites it on every weight switch; here it is shared by
            every worker (a ConfigMap in Kubernetes), and a switch is this worker's alone."""

            def save_configs(self, configs_path: Optional[str] = None) -> None:
                pass

        # TTS_Config makes GPT_SoVITS/configs/ under the working directory. A checkout has it; for an installed
        # distribution that would litter the worker's directory, so it is made in a throwaway one.
        if self.root is not None:  # the working directory (import_pipeline's): GPT-SoVITS finds its own files
            config = ReadOnlyConfig({"custom": block})
        else:
            with tempfile.TemporaryDirectory() as tmp, contextlib.chdir(tmp):
                config = ReadOnlyConfig({"custom": block})
        try:
            self._tts = tts_cls(config)
        except Exception as exc:  # noqa: BLE001 - any failure to build the pipeline is a start-up error
            raise EngineLoadError(f"GPT-SoVITS failed to load: {described(exc)}") from exc
        self._blank_prompt_cache = copy.deepcopy(self._tts.prompt_cache)
        self._default = self._active = VoicePair.capture(self._tts)
        self._refresh()
        if self._max_batch > 1:
            if uses_vocoder(self._tts):
                raise EngineLoadError(
                    f"--batching serves v1, v2 and v2Pro models; this worker's default voice is {self.version}, "
                    "which speaks through a vocoder: start it without --batching")

    def _refresh(self) -> None:
        """Version, languages and sample rate follow the SoVITS weights loaded (v1 weights: v1's languages)."""
        cfg = self._tts.configs
        self.version = str(cfg.version)
        self.languages = tuple(cfg.languages)
        self.prompt_languages = self.languages
        self.sample_rate = int(cfg.sampling_rate)

    def warmup(self, count: int) -> None:
        reference = self.refer_audio or self.warmup_reference
        if count <= 0:
            return
        if reference is None or not reference.is_file():
            log.warning("gpt-sovits warm-up skipped: no reference clip (%s)", reference)
            return
        lang = "en" if "en" in self.languages else self.languages[0]
        # With a prompt text, as most requests have one: the prompt's phonemes and semantic tokens take part. It is
        # what the bundled reference clip says; another clip's warm-up audio (dropped) only sounds worse.
        req = TTSRequest(text="Warming up the engine.", text_lang=lang, prompt_lang=lang, prompt_text=REFERENCE_TEXT,
                         ref_audio_path=str(reference))
        params = SynthesisParams(req, StreamMode.OFF, reference)
        try:
            if self._max_batch > 1:
                # The path requests will take: the batch's kernels and shapes (up to max_batch rows), not TTS.run's.
                run_together(self.open_batch(), [params] * count, self._max_batch)
            else:
                for _ in range(count):
                    for _chunk in self.synthesize(params, CancelToken()):
                        pass
        except EngineError as exc:
            raise EngineError(f"synthesizing from the reference clip {reference}: {exc}") from exc

    # ---- synthesis ---------------------------------------------------------------------------------------

    @property
    def max_batch(self) -> int:
        return self._max_batch

    def open_batch(self) -> "BatchSession":
        assert self._default is not None, "load() first"
        from .session import GPTSoVITSBatch  # torch-heavy: imported once batching is used

        return GPTSoVITSBatch(self)

    @property
    def tts(self) -> Any:
        """The one `TTS` object, with the pair last installed."""
        return self._tts

    @property
    def default_pair(self) -> Optional[VoicePair]:
        return self._default

    def pair_for(self, params: SynthesisParams, cancel: CancelToken) -> VoicePair:
        """The request's voice pair, held (loaded first if a caller skipped prepare_voice)."""
        assert self._default is not None, "load() first"
        if params.voice is None:
            return self._default
        pair: VoicePair = self.voice_state(params.voice, cancel)
        return pair

    def use_pair(self, pair: VoicePair) -> Any:
        """Install `pair` in the one `TTS` object (a no-op if it is installed) and return that object."""
        self._install(pair)
        return self._tts

    def _pair_of(self, params: SynthesisParams) -> Optional[VoicePair]:
        """The held pair of the request's voice (the default pair for none); None while its voice is not held."""
        if params.voice is None:
            return self._default
        held: Optional[VoicePair] = self.loaded.peek(params.voice.name)
        return held

    def output_rate(self, params: SynthesisParams) -> int:
        pair = self._pair_of(params)
        version = pair.version if pair is not None else self.version
        # v3's super_sampling upsamples its 24 kHz output to 48 kHz.
        if params.request.super_sampling and version == "v3":
            return 48000
        return pair.sample_rate if pair is not None else self.sample_rate

    def _install(self, pair: VoicePair) -> None:
        if self._active is not pair:
            if self._active is not None:
                self._keep(self._active)
            pair.install(self._tts)
            self._active = pair

    def _keep(self, pair: VoicePair) -> None:
        """Record what a run or a switch changed in the installed pair (upstream replaces models and caches)."""
        fresh = VoicePair.capture(self._tts)
        pair.tts_attrs, pair.config_attrs = fresh.tts_attrs, fresh.config_attrs

    def _count_decoding(self, model: Any) -> None:
        """Time upstream's T2S decodes on this model (TTS.run picks one per run) into `decoded`, for /stats: the
        decoding stage's own speed, comparable with the batched path's. Streamed decodes (generators) pass as
        they are."""
        if getattr(model, "_ttsc_counted", False):
            return
        for name in T2S_DECODES:
            method = getattr(model, name, None)
            if method is not None:
                setattr(model, name, self._counted(method))
        model._ttsc_counted = True

    def _counted(self, method: Callable[..., Any]) -> Callable[..., Any]:
        @functools.wraps(method)
        def decode(*args: Any, **kwargs: Any) -> Any:
            if kwargs.get("streaming_mode"):
                return method(*args, **kwargs)
            t0 = time.monotonic()
            y_list, idx_list = method(*args, **kwargs)
            # idx: the new tokens of each item (0 for all when ref-free, where the items hold only new tokens)
            tokens = sum(int(i) for i in idx_list) or sum(int(y.shape[-1]) for y in y_list)
            self.decoded.add(tokens, time.monotonic() - t0)
            return y_list, idx_list

        return decode

    def synthesize(self, params: SynthesisParams, cancel: CancelToken) -> Iterator[np.ndarray]:
        pair = self.pair_for(params, cancel)
        self._install(pair)
        self._count_decoding(self._tts.t2s_model.model)
        expected = self.output_rate(params)
        try:
            clip = self._recall_reference(params)
        except Exception as exc:  # noqa: BLE001 - an unusable clip is TTS.run's failure too: api_v2's 400
            raise EngineError(described(exc)) from exc
        generator = self._tts.run(pipeline_inputs(params))
        try:
            while True:
                try:
                    sr, chunk = next(generator)
                except StopIteration:
                    return
                if sr != expected:
                    # TTS.run answers a failure inside inference (or a text with nothing to speak) with 1 s of
                    # 16 kHz silence, then raises on the next step: api_v2 sends that silence as a 200. The error
                    # is the answer here.
                    try:
                        next(generator)
                    except StopIteration:
                        raise EngineError("the text has nothing to speak after GPT-SoVITS's text cleaning") from None
                    raise EngineError(f"GPT-SoVITS returned {sr} Hz audio where {expected} Hz was expected")
                cancel.check()
                if clip is not None:  # its reference is behind TTS.run now, in its prompt cache
                    key, stamps, models = clip
                    mark_read(self._tts.prompt_cache, key.ref, key.aux, stamps)
                    self._clips.keep(key, stamps, models, copied_prompt_cache(self._tts.prompt_cache))
                    clip = None
                yield np.asarray(chunk, dtype=np.int16).reshape(-1)
        except (EngineError, Cancelled):
            raise
        except Exception as exc:  # noqa: BLE001 - api_v2 answers every pipeline failure with 400 `tts failed`
            raise EngineError(described(exc)) from exc
        finally:
            generator.close()
            if self._tts.t2s_model is None or self._tts.vits_model is None:
                # TTS.run re-initialises both models after a failure; if that failed too, the pair as it was
                # before the run is still whole: put it back rather than keep a voice without models.
                pair.install(self._tts)
            else:
                self._keep(pair)

    def _recall_reference(self, params: SynthesisParams) -> Optional[tuple[ClipKey, tuple[Stamp, ...],
                                                                           tuple[object, ...]]]:
        """Put the request's clip in TTS.run's prompt cache if it is kept (None: nothing to keep after the run).
        Else, unless the cache holds these clip files as they are now, a blank cache with the clip read into it
        afresh (TTS.run compares paths only, and would speak with a clip rewritten at its path as it was).

        The clip is read here, before TTS.run seeds the generator, rather than by TTS.run after: upstream's HuBERT
        (transformers') draws from the global generator at every layer even in eval, so a read inside the run
        would change the seeded request's SoVITS noise, and its audio would depend on whether an earlier request
        had left the clip in the cache."""
        tts = self._tts
        key, models = clip_of(params, tts, bool(params.request.prompt_text))
        kept, stamps = self._clips.find(key, models)
        if kept is not None:
            tts.prompt_cache = copied_prompt_cache(kept)
            return None
        if not holds_clip(tts.prompt_cache, key.ref, key.aux, stamps):
            # (and so with no record of what it was read from, should the read fail halfway)
            tts.prompt_cache = copied_prompt_cache(self._blank_prompt_cache)
            read_clip(tts, key.ref)  # TTS.run reads the aux clips and the prompt text itself, drawing nothing
        elif key.prompt is not None and tts.prompt_cache.get("prompt_lang") != key.prompt[1]:
            # TTS.run compares the prompt text alone: the same text in another language would keep the old
            # language's phonemes and BERT features (and they would be kept under this language's key)
            tts.prompt_cache["prompt_text"] = None
        return key, stamps, models

    # ---- catalog voices (on the engine thread, between syntheses) ----------------------------------------

    def _voice_file(self, raw: str, field: str) -> str:
        try:
            return str(resolve_inside(self.models_dir, raw, f"gpt_sovits.{field}", "models directory"))
        except PathRejected as exc:
            raise EngineLoadError(str(exc)) from None

    def _load_voice(self, voice: Voice, cancel: CancelToken) -> VoicePair:
        """Build the voice's GPT and SoVITS models with upstream's own loaders on the one TTS object, capture
        them as a pair, and put back the pair that was installed: BERT and HuBERT are never loaded again."""
        spec = voice.gpt_sovits
        if spec is None:
            raise EngineLoadError(f"voice {voice.name!r}: nothing for engine gpt-sovits in the catalog")
        gpt = self._voice_file(spec.gpt_weights, "gpt_weights")
        sovits = self._voice_file(spec.sovits_weights, "sovits_weights")
        assert self._active is not None
        previous = self._active
        self._keep(previous)
        tts = self._tts
        try:
            tts.prompt_cache = copy.deepcopy(self._blank_prompt_cache)  # this voice's own reference cache
            try:
                tts.init_t2s_weights(gpt)
                tts.init_vits_weights(sovits)
            except Exception as exc:  # noqa: BLE001 - a bad checkpoint of any kind: the voice is unavailable
                raise EngineLoadError(f"voice {voice.name!r}: gpt_sovits weights failed to load: "
                                      f"{described(exc)}") from exc
            pair = VoicePair.capture(tts)
            if spec.version is not None and pair.version != spec.version:
                raise EngineLoadError(f"voice {voice.name!r}: gpt_sovits.version: the catalog says {spec.version}, "
                                      f"the SoVITS weights {sovits} are {pair.version}")
            return pair
        finally:
            previous.install(tts)  # a failed load leaves no half-built voice installed
            self._active = previous

    def release_voice(self, state: Any) -> None:
        if state is self._active and self._default is not None:
            self._install(self._default)  # the TTS object must not keep the evicted pair's models alive
        del state
        gc.collect()
        if self.device.startswith("cuda"):
            import torch

            torch.cuda.empty_cache()

    # ---- api_v2's admin calls (run on the engine thread, between requests) -------------------------------

    def _weights_path(self, path: Path) -> Path:
        path = self._absolute(path)
        if not path.is_file():
            raise EngineError(f"{path} is not a file")
        return path

    def _switch(self, load: Any, key: str, path: Path) -> None:
        """api_v2's switch, of the default voice (catalog voices keep their own pairs)."""
        path = self._weights_path(path)
        assert self._default is not None
        self._install(self._default)
        before = getattr(self._tts.configs, key)
        try:
            load(str(path))
        except Exception as exc:  # noqa: BLE001 - a bad checkpoint of any kind is the caller's 400
            # Upstream changes the config (path, version, sample rate) before the load that failed: put the
            # default pair back whole, as it was before the switch.
            self._default.install(self._tts)
            setattr(self._tts.configs, key, before)
            self._refresh()
            raise EngineError(described(exc)) from exc
        self._refresh()
        # The cached reference features came from the old weights (upstream keeps using them): recompute them.
        self._tts.prompt_cache = copy.deepcopy(self._blank_prompt_cache)
        self._keep(self._default)

    def default_weights(self) -> tuple[Optional[str], Optional[str]]:
        if self._default is None:
            return None, None
        cfg = self._default.config_attrs
        return cfg.get("t2s_weights_path"), cfg.get("vits_weights_path")

    def set_gpt_weights(self, path: Path) -> None:
        self._switch(self._tts.init_t2s_weights, "t2s_weights_path", path)

    def set_sovits_weights(self, path: Path) -> None:
        self._switch(self._tts.init_vits_weights, "vits_weights_path", path)

    def set_refer_audio(self, path: Path) -> None:
        assert self._default is not None
        self._install(self._default)
        try:
            stamps = stamps_of(str(path), ())
            cache = self._tts.prompt_cache
            cache.pop(READ_FROM, None)  # it no longer holds what it was read from, if this read fails halfway
            self._tts.set_ref_audio(str(path))
            if not cache["aux_ref_audio_paths"]:  # the next request with this clip (and no aux) reads nothing
                mark_read(cache, str(path), (), stamps)
        except Exception as exc:  # noqa: BLE001 - an unusable clip is the caller's 400
            raise EngineError(described(exc)) from exc
        finally:
            self._keep(self._default)
        super().set_refer_audio(path)

    def memory_allocated(self) -> Optional[int]:
        if not self.device.startswith("cuda"):
            return None
        import torch

        return int(torch.cuda.memory_allocated(self.device))
