"""api_v2's request checks, in api_v2's order and with its messages, shared by worker and router.

Engine-dependent inputs (languages, model version, text limit) are parameters: the worker passes its engine's, the
router passes what its workers report in /stats, so a bad request is refused before it occupies a worker slot.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, Optional, Union

from .schemas import MEDIA_TYPES, TEXT_SPLIT_METHODS, TTSRequest

STREAMING_MODE_MESSAGE = "the value of streaming_mode must be 0, 1, 2, 3(int) or true/false(bool)"
# The strings pydantic reads as a bool (api_v2 declares streaming_mode `Union[bool, int]`): the same meaning here.
_TRUE = frozenset({"true", "t", "yes", "y", "on"})
_FALSE = frozenset({"false", "f", "no", "n", "off"})


class InvalidRequest(ValueError):
    def __init__(self, message: str, field: Optional[str] = None) -> None:
        super().__init__(message)
        self.message = message
        self.field = field


def parse_streaming_mode(value: Union[bool, int, str, None]) -> int:
    """bool or int 0-3 (query strings arrive as text: "true", "2"); anything else is api_v2's step-7 error."""
    if value is None:
        return 0
    if isinstance(value, bool):
        return 1 if value else 0
    if isinstance(value, str):
        text = value.strip().lower()
        if text in _TRUE or text in _FALSE:
            return 1 if text in _TRUE else 0
        if text in ("0", "1", "2", "3"):
            return int(text)
        raise InvalidRequest(STREAMING_MODE_MESSAGE, "streaming_mode")
    if isinstance(value, int) and 0 <= value <= 3:
        return value
    raise InvalidRequest(STREAMING_MODE_MESSAGE, "streaming_mode")


def as_api_v2_get(req: TTSRequest) -> TTSRequest:
    """api_v2's GET /tts lower-cases text_lang and prompt_lang before any check (its messages then name the
    lower-cased value); its POST does not."""
    return req.model_copy(update={"text_lang": req.text_lang.lower() if req.text_lang else req.text_lang,
                                  "prompt_lang": req.prompt_lang.lower() if req.prompt_lang else req.prompt_lang})


def _blank(v: Any) -> bool:
    return v is None or v == ""


def check_request(
    req: TTSRequest,
    languages: Optional[Sequence[str]],
    prompt_languages: Optional[Sequence[str]],
    version: str,
    max_text_length: Optional[int],
    reference_required: bool = True,
) -> int:
    """Raise InvalidRequest for the first failing check; return the streaming mode. `None` skips a check whose
    engine facts are unknown (the worker then makes it). `reference_required` False: a catalog voice brings its own
    reference clip and prompt (or its engine reads none), so a request naming it may leave them out."""
    if _blank(req.ref_audio_path) and reference_required:
        raise InvalidRequest("ref_audio_path is required", "ref_audio_path")
    if _blank(req.text):
        raise InvalidRequest("text is required", "text")
    if _blank(req.text_lang):
        raise InvalidRequest("text_lang is required", "text_lang")
    assert req.text_lang is not None
    if languages is not None and req.text_lang.lower() not in languages:
        raise InvalidRequest(f"text_lang: {req.text_lang} is not supported in version {version}", "text_lang")
    if _blank(req.prompt_lang):
        if reference_required:
            raise InvalidRequest("prompt_lang is required", "prompt_lang")
    elif prompt_languages is not None and (req.prompt_lang or "").lower() not in prompt_languages:
        raise InvalidRequest(
            f"prompt_lang: {req.prompt_lang} is not supported in version {version}", "prompt_lang"
        )
    if req.media_type not in MEDIA_TYPES:
        raise InvalidRequest(f"media_type: {req.media_type} is not supported", "media_type")
    if req.text_split_method not in TEXT_SPLIT_METHODS:
        raise InvalidRequest(f"text_split_method:{req.text_split_method} is not supported", "text_split_method")
    mode = parse_streaming_mode(req.streaming_mode)
    # Beyond api_v2: a bound on work per request.
    assert req.text is not None
    if max_text_length is not None and len(req.text) > max_text_length:
        raise InvalidRequest(f"text: {len(req.text)} characters is over the limit of {max_text_length}", "text")
    return mode
