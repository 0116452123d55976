"""Wire schemas shared by worker, router and operator.

`TTSRequest` is the GPT-SoVITS api_v2 `/tts` parameter set with api_v2's defaults. Required fields default to
None on purpose: api_v2 checks them in a fixed order with its own messages (see `tts_worker.validation`), so the
model must not reject a missing `text` before `ref_audio_path` has been checked.
"""

from __future__ import annotations

from typing import Annotated, Any, Literal, Optional, Union

from pydantic import BaseModel, ConfigDict, Field, field_validator

# api_v2's four, then those beyond it (encoded in-process with PyAV)
MEDIA_TYPES = ("wav", "raw", "ogg", "aac", "mp3", "opus", "flac")
TEXT_SPLIT_METHODS = ("cut0", "cut1", "cut2", "cut3", "cut4", "cut5")
LANGUAGES_V1 = ("auto", "en", "zh", "ja", "all_zh", "all_ja")
LANGUAGES_V2 = ("auto", "auto_yue", "en", "zh", "ja", "yue", "ko", "all_zh", "all_ja", "all_yue", "all_ko")
# Bounds on what one request may carry, whatever the engine: a path no filesystem takes, or a list of 300k aux
# clips (which stalled a worker's event loop for 17 s), is refused by the schema with the field named.
MAX_PATH_CHARS = 1024
MAX_AUX_REFS = 32
MAX_TEXT_CHARS = 100_000


# Sent by the router with a request whose voice another worker held when it routed it: the worker counts such a
# request if it waits for its voice's load (`WorkerStats.voice_load_waits_held_elsewhere`).
HELD_ELSEWHERE_HEADER = "x-ttsc-voice-held-elsewhere"


class TTSRequest(BaseModel):
    """Parameters of `GET /tts` (query) and `POST /tts` (JSON body); unknown keys are ignored as in api_v2."""

    model_config = ConfigDict(extra="ignore")

    text: Optional[str] = Field(None, max_length=MAX_TEXT_CHARS, description="Text to speak (required).")
    text_lang: Optional[str] = Field(None, description="Language of `text` (required), e.g. en, zh, ja.")
    ref_audio_path: Optional[str] = Field(
        None, max_length=MAX_PATH_CHARS, description="Reference clip, relative to the worker's voice directory (required)."
    )
    aux_ref_audio_paths: list[Annotated[str, Field(max_length=MAX_PATH_CHARS)]] = Field(
        default_factory=list, max_length=MAX_AUX_REFS,
        description="Extra reference clips (tone fusion). Empty entries and clips not found are skipped, as api_v2's "
        "pipeline does (the answer's X-Aux-Refs-Skipped header counts them).",
    )
    prompt_text: str = Field("", max_length=MAX_TEXT_CHARS, description="Transcript of the reference clip.")
    prompt_lang: Optional[str] = Field(None, description="Language of `prompt_text` (required).")
    # No ranges on the sampling and shaping numbers: api_v2 has none, and a value an engine cannot use is its
    # `tts failed` 400 with the reason. What bounds a request's work is max_text_length, max_audio_seconds (checked
    # before synthesis from the text, fragment_interval and speed_factor) and the request timeout.
    top_k: int = 15
    top_p: float = 1.0
    temperature: float = 1.0
    text_split_method: str = Field("cut5", description="One of cut0..cut5.")
    batch_size: int = 1
    batch_threshold: float = 0.75
    split_bucket: bool = True
    speed_factor: float = 1.0
    fragment_interval: float = Field(0.3, description="Seconds of silence between segments.")
    seed: int = -1
    media_type: str = Field("wav", description="wav, raw, ogg or aac.")
    # bool or int 0-3; a string is kept as-is here and judged by validation step 7 with api_v2's message.
    streaming_mode: Union[bool, int, str] = Field(False, description="false/0, true/1, 2 or 3 (also yes/no, on/off).")
    parallel_infer: bool = True
    repetition_penalty: float = 1.35
    sample_steps: int = 32
    super_sampling: bool = False
    overlap_length: int = 2
    min_chunk_length: int = 16
    # Beyond api_v2: a voice of the worker's catalog (voices.yaml). Absent: the default voice, as api_v2 serves.
    voice: Optional[str] = Field(None, max_length=63, description="A voice of the catalog; absent: the default.")

    @field_validator("aux_ref_audio_paths", mode="before")
    @classmethod
    def _one_path_or_none(cls, value: Any) -> Any:
        """A bare string (some clients send `""` for "none") is a list of that one path; null is none."""
        if value is None:
            return []
        if isinstance(value, str):
            return [value] if value else []
        return value


class WorkerStats(BaseModel):
    """`GET /stats` of one worker: the load signal the router polls."""

    worker_id: str
    engine: str
    engine_version: str
    device: str
    sample_rate: int
    languages: list[str] = Field(description="What text_lang may name.")
    prompt_languages: list[str] = Field(description="What prompt_lang may name.")
    max_text_length: int = Field(description="Longest text accepted, in characters.")
    ready: bool
    draining: bool
    queue_depth: int = Field(description="Admitted requests waiting for the engine.")
    in_flight: int = Field(description="Requests the engine is synthesizing now (0 or 1; up to max_batch on a "
                           "batching worker).")
    capacity: int = Field(description="Most requests admitted at once (waiting + running): max_queue_size.")
    queued_work_seconds: float = Field(
        description="Estimated engine seconds of all admitted work: text length x measured engine seconds per "
        "character (on a batching worker, each request's share of the steps it runs in: the seconds the engine needs "
        "at its measured aggregate speed, chars_per_second)."
    )
    seconds_per_char: float = Field(description="Moving average of wall seconds one request takes per text "
                                    "character, at the concurrency it ran with (on a one-at-a-time worker, the "
                                    "engine seconds per character).")
    max_batch: int = Field(1, ge=1, description="Most requests the engine serves at once (1: one at a time); the "
                           "admitted requests beyond it wait in the queue.")
    batch_occupancy: int = Field(0, ge=0, description="Requests in the engine's batch now (at most max_batch).")
    decoded_tokens: int = Field(0, ge=0, description="Autoregressive engines (gpt-sovits): semantic tokens its T2S "
                                "decoder made since start, one request at a time (the tokens upstream's decode "
                                "reports: one fewer for a sentence stopped at its cap) or batched.")
    decoding_seconds: float = Field(0.0, ge=0, description="Engine seconds spent making them (prefill included): "
                                    "decoded_tokens / decoding_seconds is the decoding stage's own speed.")
    chars_per_second: float = Field(0.0, ge=0, description="Measured aggregate engine throughput: characters of text "
                                    "completed per second of engine time at the concurrency the engine has been "
                                    "running (1 / seconds_per_char on a one-at-a-time worker; 0 until measured).")
    retry_after_seconds: int = Field(1, description="When a slot is likely free here: what this worker answers in "
                                     "Retry-After, and what the router passes on (tts_common.retry_after).")
    queued_chars: int = Field(0, description="Characters of text admitted (waiting + running), for pricing a worker "
                              "that has measured no speed yet.")
    processed: int = Field(description="Requests that produced audio.")
    failed: int = Field(description="Requests admitted that failed in the engine or timed out.")
    rejected: int = Field(description="Requests refused with 503 because the queue was full or draining.")
    cancelled: int = Field(description="Requests whose client left before the engine finished them.")
    average_processing_time: float = Field(description="Mean engine seconds per processed request.")
    average_queue_wait: float = Field(description="Mean seconds admitted requests waited for the engine.")
    audio_seconds: float = Field(description="Total seconds of audio produced.")
    uptime_seconds: float
    pid: int
    instance_id: str = Field("", description="Unique per worker process start (a restart, even in place, changes it).")
    gpt_weights: Optional[str] = Field(None, description="The default voice's GPT weights file, where the engine has one.")
    sovits_weights: Optional[str] = Field(None, description="The default voice's SoVITS weights file, likewise.")
    voices: list[str] = Field(default_factory=list, description="Catalog voices this worker's engine can serve.")
    loaded_voices: list[str] = Field(default_factory=list, description="Voices held now, least recently used first.")
    max_loaded_voices: int = Field(1, description="Most voices held at once (least recently used evicted).")
    voice_load_seconds: dict[str, float] = Field(default_factory=dict, description="Each voice's last load time.")
    voices_loading: list[str] = Field(default_factory=list, description="Voices being loaded now (0 or 1).")
    voices_queued: list[str] = Field(default_factory=list, description="Voices the admitted requests want (held or "
                                     "about to be loaded): where the router sends the next requests for them.")
    pinned_voices: list[str] = Field(default_factory=list, description="Voices this worker keeps loaded, never "
                                     "evicted: the catalog's placement for it.")
    voice_loads: int = Field(0, description="Voice loads performed since start.")
    voice_load_waits: int = Field(0, description="Requests that waited for a voice load (their own or one queued "
                                  "before them) since start.")
    voice_own_load_waits: int = Field(0, description="Requests that waited for a load of their own voice here "
                                      "(not held when admitted, or evicted before they ran) since start.")
    voice_load_waits_held_elsewhere: int = Field(
        0, description="Of those, the ones the router sent while another worker held their voice "
        f"({HELD_ELSEWHERE_HEADER}): what replicating ahead of need keeps at 0.")
    voices_replicating: list[str] = Field(default_factory=list, description="Voices asked to load in the "
                                          "background (POST /voices/{name}/load), not loaded yet.")
    voice_background_loads: int = Field(0, description="Background voice loads performed since start.")
    voice_errors: dict[str, str] = Field(default_factory=dict, description="Voices whose last load failed, with why "
                                         "(naming the file); cleared by a load that succeeds.")
    gpu_memory_allocated_bytes: Optional[int] = None


class MessageBody(BaseModel):
    message: str


class Health(BaseModel):
    status: Literal["ok", "ready", "starting", "draining"]
