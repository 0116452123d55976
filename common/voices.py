"""The voice catalog: which voices a cluster serves and what each engine needs for each (`voices.yaml`).

One file for the CLI and `tts-cluster up` (next to `tts_infer.yaml`), and the same shape under `spec.voices` of a
TTSCluster. A client names a voice with `voice` on `/tts`; one that names none gets the default voice, which is
`tts_infer.yaml`'s weights unless the catalog's `default` names another, so api_v2 clients see no change.

    voices:
      - name: alice
        gpt_sovits: {gpt_weights: GPT_weights_v2/alice.ckpt, sovits_weights: SoVITS_weights_v2/alice.pth,
                     version: v2, ref_audio: alice.wav, prompt_text: "...", prompt_lang: en}
        synthetic: {tone_hz: 330}
      - name: bob
        piper: {model: voices/en_US-bob-medium.onnx}

Every error names the voice and the field; a file that fails to load or validate raises `CatalogError`, and
`CatalogFile` keeps the last good catalog in force when a changed file is bad.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Annotated, Any, Literal, Optional

from pydantic import AfterValidator, BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

from .openai_speech import DEFAULT_MODELS
from .schemas import LANGUAGES_V2, MAX_AUX_REFS, MAX_PATH_CHARS, TTSRequest
from .watched_file import FileProblem, WatchedFile, read_yaml

# A DNS label: safe as a Kubernetes name, a metric label and a file name, and never a path.
VOICE_NAME = re.compile(r"^[a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?$")
MAX_VOICES = 256
MAX_CATALOG_BYTES = 1 << 20
MAX_WORKERS = 1024
# What a voice may preset for its requests: the synthesis knobs, never the text, the voice's own clips or the format.
_NOT_DEFAULTS = frozenset({"text", "text_lang", "ref_audio_path", "aux_ref_audio_paths", "prompt_text",
                           "prompt_lang", "media_type", "streaming_mode", "voice"})
DEFAULTABLE = tuple(name for name in TTSRequest.model_fields if name not in _NOT_DEFAULTS)


class CatalogError(ValueError):
    """A catalog that cannot be used; the message names the voice and the field."""


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


def _path(value: str) -> str:
    if not value or len(value) > MAX_PATH_CHARS or "\x00" in value:
        raise ValueError(f"a path of 1 to {MAX_PATH_CHARS} characters without NUL bytes")
    return value


PathText = Annotated[str, AfterValidator(_path)]


class GPTSoVITSVoice(_Strict):
    """A GPT-SoVITS model pair and its reference clip; paths relative to the worker's models and voice dirs."""

    gpt_weights: PathText = Field(description="GPT weights (.ckpt), inside the worker's models directory.")
    sovits_weights: PathText = Field(description="SoVITS weights (.pth), inside the worker's models directory.")
    version: Optional[Literal["v1", "v2", "v2Pro", "v2ProPlus", "v3", "v4"]] = Field(
        None, description="Model version; unset: read from the weights.")
    ref_audio: PathText = Field(description="Default reference clip, inside the voice directory.")
    prompt_text: str = Field("", max_length=1000)
    prompt_lang: str = Field(description="Language of prompt_text.")
    aux_ref_audio: list[PathText] = Field(default_factory=list, max_length=MAX_AUX_REFS)

    @field_validator("prompt_lang")
    @classmethod
    def _language(cls, value: str) -> str:
        if value.lower() not in LANGUAGES_V2:
            raise ValueError(f"{value!r} is not one of {', '.join(LANGUAGES_V2)}")
        return value.lower()


class PiperVoice(_Strict):
    model: PathText = Field(description="The Piper voice (.onnx), its .onnx.json beside it.")

    @field_validator("model")
    @classmethod
    def _onnx(cls, value: str) -> str:
        if not value.endswith(".onnx"):
            raise ValueError("a Piper voice is an .onnx file")
        return value


class SyntheticVoice(_Strict):
    """Load-test voices that tests and benchmarks can tell apart by ear and by numbers."""

    tone_hz: float = Field(220.0, ge=50.0, le=4000.0)
    speed: float = Field(1.0, ge=0.25, le=4.0, description="Multiplies the engine's synthesis time.")
    weights: Optional[PathText] = Field(
        None, description="A file that must exist in the worker's models directory to load this voice, standing in "
        "for a model's weights (so a missing one can be exercised).")


class Voice(_Strict):
    name: str
    gpt_sovits: Optional[GPTSoVITSVoice] = None
    piper: Optional[PiperVoice] = None
    synthetic: Optional[SyntheticVoice] = None
    defaults: dict[str, Any] = Field(default_factory=dict, description="Synthesis parameters this voice presets.")

    @field_validator("name")
    @classmethod
    def _name(cls, value: str) -> str:
        if not VOICE_NAME.match(value):
            raise ValueError("lower-case letters, digits and '-', 1 to 63 characters, starting and ending with a "
                             "letter or digit (no path characters)")
        return value

    @field_validator("defaults")
    @classmethod
    def _defaults(cls, value: dict[str, Any]) -> dict[str, Any]:
        unknown = sorted(set(value) - set(DEFAULTABLE))
        if unknown:
            raise ValueError(f"{', '.join(unknown)}: not a synthesis parameter a voice may preset "
                             f"(one of {', '.join(DEFAULTABLE)})")
        try:
            TTSRequest.model_validate(value)  # the same types as a request's
        except ValidationError as exc:
            first = exc.errors()[0]
            raise ValueError(f"{'.'.join(str(p) for p in first['loc'])}: {first['msg']}") from None
        return value

    @model_validator(mode="after")
    def _some_engine(self) -> "Voice":
        if self.gpt_sovits is None and self.piper is None and self.synthetic is None:
            raise ValueError("says nothing for any engine: give gpt_sovits, piper or synthetic")
        return self

    def supports(self, engine: str) -> bool:
        return getattr(self, engine.replace("-", "_"), None) is not None


class OpenAINames(_Strict):
    """How OpenAI's speech API names map here: the models it accepts, and aliases from OpenAI's voice names (or any
    name) to catalog voices. An OpenAI voice name without an alias means the default voice."""

    models: list[str] = Field(default_factory=lambda: list(DEFAULT_MODELS), min_length=1, max_length=64)
    voices: dict[str, str] = Field(default_factory=dict, max_length=MAX_VOICES,
                                   description="alias (e.g. alloy) -> catalog voice")


class VoiceCatalog(_Strict):
    voices: list[Voice] = Field(default_factory=list, max_length=MAX_VOICES)
    default: Optional[str] = Field(None, description="The voice of requests that name none; unset: tts_infer.yaml's.")
    placement: dict[str, list[str]] = Field(
        default_factory=dict, max_length=MAX_WORKERS,
        description="Worker id -> voices that worker keeps loaded (never evicted); the operator writes it from "
        "spec.voices[*].minWorkers.")
    openai: OpenAINames = Field(default_factory=OpenAINames, description="Names for OpenAI's speech API.")

    @model_validator(mode="after")
    def _names(self) -> "VoiceCatalog":
        seen: set[str] = set()
        for voice in self.voices:
            if voice.name in seen:
                raise ValueError(f"voice {voice.name!r} is listed twice")
            seen.add(voice.name)
        if self.default is not None and self.default not in seen:
            raise ValueError(f"default: {self.default!r} is not a voice of this catalog ({', '.join(sorted(seen))})")
        for alias, target in self.openai.voices.items():
            if target not in seen:
                raise ValueError(f"openai.voices.{alias}: {target!r} is not a voice of this catalog")
        for worker, names in self.placement.items():
            if not worker or len(worker) > 253:
                raise ValueError(f"placement: worker id {worker[:40]!r} must be 1 to 253 characters")
            if len(names) > MAX_VOICES:
                raise ValueError(f"placement.{worker}: more than {MAX_VOICES} voices")
            unknown = [n for n in names if n not in seen]
            if unknown:
                raise ValueError(f"placement.{worker}: {', '.join(map(repr, unknown))} not a voice of this catalog")
        return self

    def pinned_for(self, worker_id: str) -> list[str]:
        """The voices the placement asks `worker_id` to keep loaded."""
        return list(dict.fromkeys(self.placement.get(worker_id, [])))

    def names(self) -> list[str]:
        return [v.name for v in self.voices]

    def get(self, name: str) -> Optional[Voice]:
        return next((v for v in self.voices if v.name == name), None)

    def for_engine(self, engine: str) -> list[Voice]:
        return [v for v in self.voices if v.supports(engine)]


def _where(loc: tuple[Any, ...], data: Any) -> str:
    """`voices[1].gpt_sovits.gpt_weights` as `voice 'alice': gpt_sovits.gpt_weights`."""
    if len(loc) >= 2 and loc[0] == "voices" and isinstance(loc[1], int):
        voices = data.get("voices") if isinstance(data, dict) else None
        entry = voices[loc[1]] if isinstance(voices, list) and loc[1] < len(voices) else None
        name = entry.get("name") if isinstance(entry, dict) else None
        rest = ".".join(str(p) for p in loc[2:]) or "entry"
        return f"voice {name!r}: {rest}" if isinstance(name, str) else f"voices[{loc[1]}]: {rest}"
    return ".".join(str(p) for p in loc) or "catalog"


def parse_catalog(data: Any, source: str = "voices.yaml") -> VoiceCatalog:
    """Validate already-parsed YAML (a mapping with `voices`, or the list alone as in `spec.voices`)."""
    if data is None:
        return VoiceCatalog()
    if isinstance(data, list):
        data = {"voices": data}
    try:
        return VoiceCatalog.model_validate(data)
    except ValidationError as exc:
        first = exc.errors()[0]
        raise CatalogError(f"{source}: {_where(tuple(first['loc']), data)}: {first['msg']}") from None


def load_catalog(path: Path) -> VoiceCatalog:
    try:
        data = read_yaml(path, MAX_CATALOG_BYTES)
    except FileProblem as exc:
        raise CatalogError(str(exc)) from None
    return parse_catalog(data, str(path))


class CatalogFile(WatchedFile[VoiceCatalog]):
    """A catalog file re-read when it changes; a change that does not load leaves the last good catalog in force
    and is reported in `error` until the file is fixed."""

    def __init__(self, path: Path) -> None:
        super().__init__(path, load_catalog)

    @property
    def catalog(self) -> VoiceCatalog:
        return self.value
