"""OpenAI's speech API on the wire (`POST /v1/audio/speech`, `GET /v1/models`, `GET /v1/audio/voices`): the request
as OpenAI defines it, its error envelope, and how its names map onto the voice catalog.

A request names a `model` and a `voice`. The voice may be a catalog voice, an alias of the catalog's `openai.voices`
table, or one of OpenAI's own voice names, which without an alias mean the catalog's default voice (else the
engine's own). The model must be one of the catalog's `openai.models` (default: OpenAI's speech models and
`tts-cluster`); models do not change the engine here, they are accepted so that clients written for OpenAI work.
"""

from __future__ import annotations

from typing import Any, Literal, Optional, Union

from pydantic import BaseModel, ConfigDict, Field, ValidationError

OPENAI_VOICES = ("alloy", "ash", "ballad", "coral", "echo", "fable", "onyx", "nova", "sage", "shimmer", "verse",
                 "marin", "cedar")
DEFAULT_MODELS = ("tts-1", "tts-1-hd", "gpt-4o-mini-tts", "tts-cluster")
MAX_INPUT_CHARS = 4096
# response_format -> the worker's media_type; pcm is raw 16-bit mono little-endian at PCM_RATE
RESPONSE_FORMATS = {"mp3": "mp3", "opus": "opus", "aac": "aac", "flac": "flac", "wav": "wav", "pcm": "raw"}
PCM_RATE = 24000
CONTENT_TYPES = {"mp3": "audio/mpeg", "opus": "audio/opus", "aac": "audio/aac", "flac": "audio/flac",
                 "wav": "audio/wav", "pcm": "audio/pcm"}


class VoiceRef(BaseModel):
    model_config = ConfigDict(extra="ignore")
    id: str = Field(min_length=1, max_length=63)


class SpeechRequest(BaseModel):
    """The body of `POST /v1/audio/speech`, as OpenAI defines it (unknown fields are ignored, as OpenAI's SDK may
    send newer ones)."""

    model_config = ConfigDict(extra="ignore")

    model: str = Field(min_length=1, max_length=256)
    input: str = Field(min_length=1, max_length=MAX_INPUT_CHARS)
    voice: Union[str, VoiceRef]
    response_format: Literal["mp3", "opus", "aac", "flac", "wav", "pcm"] = "mp3"
    speed: float = Field(1.0, ge=0.25, le=4.0)
    instructions: Optional[str] = Field(None, max_length=MAX_INPUT_CHARS)
    stream_format: Literal["audio", "sse"] = "audio"

    @property
    def voice_id(self) -> str:
        return self.voice.id if isinstance(self.voice, VoiceRef) else self.voice


class OpenAIError(Exception):
    """An answer in OpenAI's error envelope: `{"error": {"message", "type", "param", "code"}}`."""

    def __init__(self, status: int, message: str, param: Optional[str] = None, code: Optional[str] = None,
                 kind: str = "invalid_request_error", retry_after: Optional[int] = None) -> None:
        super().__init__(message)
        self.status, self.message, self.param, self.code, self.kind = status, message, param, code, kind
        self.retry_after = retry_after

    def body(self) -> dict[str, Any]:
        return {"error": {"message": self.message, "type": self.kind, "param": self.param, "code": self.code}}


def error_kind(status: int) -> str:
    """The envelope's `type` for a status, as OpenAI uses them."""
    if status == 401:
        return "authentication_error"
    if status == 403:
        return "permission_error"
    if status == 404:
        return "not_found_error"
    if status == 429:
        return "rate_limit_error"
    if status >= 500:
        return "server_error"
    return "invalid_request_error"


def parse_speech(body: Any) -> SpeechRequest:
    """The request, or OpenAIError 400 naming the first field that is wrong."""
    try:
        return SpeechRequest.model_validate(body)
    except ValidationError as exc:
        first = exc.errors()[0]
        loc = [str(p) for p in first["loc"] if not str(p).startswith("function-")]
        param = loc[0] if loc else None
        where = ".".join(loc) or "body"
        raise OpenAIError(400, f"{where}: {first['msg']}", param=param, code="invalid_value") from None


def resolve_voice(voice: str, names: list[str], aliases: dict[str, str], default: Optional[str]) -> Optional[str]:
    """The catalog voice a request's `voice` means (None: the engine's own default voice), or OpenAIError 400
    naming the voices there are."""
    if voice in names:
        return voice
    if voice in aliases:
        return aliases[voice]
    if voice in OPENAI_VOICES:
        return default
    valid = sorted({*names, *aliases, *OPENAI_VOICES})
    raise OpenAIError(400, f"voice: {voice!r} is not a voice here (one of {', '.join(valid)})", param="voice",
                      code="invalid_value")


def check_model(model: str, models: list[str]) -> None:
    if model not in models:
        raise OpenAIError(400, f"model: {model!r} is not a model here (one of {', '.join(models)})", param="model",
                          code="model_not_found")
