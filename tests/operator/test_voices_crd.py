"""The CRD's spec.voices against the catalog's model (tts_common.voices): field names, required fields, bounds,
defaults and the checks the model makes in code. Neither can change alone: each test fails on a one-sided edit."""

from __future__ import annotations

import typing
from typing import Any

import jsonschema
import pytest
import yaml
from pydantic import BaseModel, ValidationError
from pydantic.fields import FieldInfo

from support.paths import CRD as CRD_PATH
from tts_common.schemas import LANGUAGES_V2, MAX_AUX_REFS, MAX_PATH_CHARS
from tts_common.voices import MAX_VOICES, VOICE_NAME, GPTSoVITSVoice, PathText, PiperVoice, SyntheticVoice, Voice
from tts_operator.voices import MAX_MIN_WORKERS

pytestmark = pytest.mark.unit

SCHEMA = yaml.safe_load(CRD_PATH.read_text())["spec"]["versions"][0]["schema"]["openAPIV3Schema"]
SPEC = SCHEMA["properties"]["spec"]
VOICES = SPEC["properties"]["voices"]
ITEM = VOICES["items"]
BLOCKS: dict[str, type[BaseModel]] = {"": Voice, "gpt_sovits": GPTSoVITSVoice, "piper": PiperVoice,
                                      "synthetic": SyntheticVoice}
OPERATOR_ONLY = {"minWorkers"}  # the operator's, taken off before the entry is checked as a Voice
# What the model checks in code (field validators), and how the CRD says the same; `defaults` stays the operator's
# to check (any synthesis parameter of a request), the CRD only preserves it.
IN_CODE = {
    ("", "name"): {"pattern": VOICE_NAME.pattern, "maxLength": 63},
    ("", "defaults"): {},
    ("gpt_sovits", "prompt_lang"): {"enum": list(LANGUAGES_V2)},
    ("piper", "model"): {"pattern": r"\.onnx$"},
}
_PATH_CHECK = typing.get_args(PathText)[1]
BOUND_KEYS = ("minimum", "maximum", "minLength", "maxLength", "minItems", "maxItems", "pattern", "enum", "default")


def block(key: str) -> dict[str, Any]:
    return ITEM if key == "" else ITEM["properties"][key]


def _is_path(info: FieldInfo) -> bool:
    item = typing.get_args(info.annotation)
    return _PATH_CHECK in info.metadata or bool(item and _PATH_CHECK in typing.get_args(item[0])[1:])


def expected_bounds(model: type[BaseModel], name: str) -> dict[str, Any]:
    """What the CRD must say of one field, from the model: its constraints, Literal choices and default."""
    info = model.model_fields[name]
    out: dict[str, Any] = {}
    for meta in info.metadata:
        for attr, key in (("ge", "minimum"), ("le", "maximum"), ("min_length", "minLength"),
                          ("max_length", "maxLength")):
            if getattr(meta, attr, None) is not None:
                key = {"minLength": "minItems", "maxLength": "maxItems"}.get(key, key) \
                    if typing.get_origin(info.annotation) is list else key
                out[key] = getattr(meta, attr)
    choices = [a for a in typing.get_args(info.annotation) if typing.get_origin(a) is typing.Literal]
    if choices:
        out["enum"] = list(typing.get_args(choices[0]))
    if _is_path(info):
        out.update({"minLength": 1, "maxLength": MAX_PATH_CHARS})
    if not info.is_required():
        default = info.get_default(call_default_factory=True)
        if default is not None and not isinstance(default, dict):
            out["default"] = default
    out.update(IN_CODE.get((next(k for k, m in BLOCKS.items() if m is model), name), {}))
    return out


def crd_bounds(schema: dict[str, Any]) -> dict[str, Any]:
    out = {k: schema[k] for k in BOUND_KEYS if k in schema}
    if schema.get("type") == "array" and "items" in schema:  # a list of paths: each item's bounds
        out.update({f"items.{k}": v for k, v in crd_bounds(schema["items"]).items()})
    return out


@pytest.mark.parametrize("key", list(BLOCKS))
def test_field_names_and_required_fields_match(key):
    model, schema = BLOCKS[key], block(key)
    extra = OPERATOR_ONLY if key == "" else set()
    assert set(schema["properties"]) - extra == set(model.model_fields), key
    assert set(schema.get("required", [])) == {n for n, f in model.model_fields.items() if f.is_required()}, key


@pytest.mark.parametrize("key", list(BLOCKS))
def test_bounds_defaults_and_choices_match(key):
    model, schema = BLOCKS[key], block(key)
    for name in model.model_fields:
        if name in BLOCKS:  # an engine block: compared field by field in its own case
            assert schema["properties"][name]["type"] == "object"
            continue
        crd = crd_bounds(schema["properties"][name])
        expected = expected_bounds(model, name)
        if "items.maxLength" in crd:  # aux_ref_audio: the path bounds hold for each item
            expected = {k: v for k, v in expected.items() if k not in ("minLength", "maxLength")}
            expected.update({"items.minLength": 1, "items.maxLength": MAX_PATH_CHARS})
        assert crd == expected, (key, name)


def test_the_checks_the_model_makes_in_code_are_the_ones_the_crd_mirrors():
    in_code = {(key, field) for key, model in BLOCKS.items()
               for decorator in model.__pydantic_decorators__.field_validators.values()
               for field in decorator.info.fields}
    assert in_code == set(IN_CODE)


def test_list_and_operator_fields():
    assert VOICES["maxItems"] == MAX_VOICES
    assert VOICES["x-kubernetes-list-map-keys"] == ["name"]  # the API server refuses a name listed twice
    assert ITEM["properties"]["minWorkers"] == {**ITEM["properties"]["minWorkers"], "type": "integer",
                                                "minimum": 0, "maximum": MAX_MIN_WORKERS, "default": 0}
    assert ITEM["anyOf"] == [{"required": ["gpt_sovits"]}, {"required": ["piper"]}, {"required": ["synthetic"]}]
    assert SPEC["properties"]["defaultVoice"]["pattern"] == VOICE_NAME.pattern
    assert ITEM["properties"]["gpt_sovits"]["properties"]["aux_ref_audio"]["maxItems"] == MAX_AUX_REFS


GOOD_GPT = {"gpt_weights": "g.ckpt", "sovits_weights": "s.pth", "ref_audio": "a.wav", "prompt_lang": "en"}


@pytest.mark.parametrize("entry", [
    {"name": "a", "synthetic": {}},
    {"name": "a" * 63, "synthetic": {"tone_hz": 50, "speed": 4}},
    {"name": "a" * 64, "synthetic": {}},
    {"name": "../x", "synthetic": {}},
    {"name": "Alice", "synthetic": {}},
    {"name": "-a", "synthetic": {}},
    {"name": "a"},
    {"name": "a", "synthetic": {"tone_hz": 49.9}},
    {"name": "a", "synthetic": {"tone_hz": 4000.5}},
    {"name": "a", "synthetic": {"speed": 0.2}},
    {"name": "a", "piper": {"model": "v.onnx"}},
    {"name": "a", "piper": {"model": "v.bin"}},
    {"name": "a", "piper": {"model": "x" * 1020 + ".onnx"}},
    {"name": "a", "piper": {}},
    {"name": "a", "gpt_sovits": GOOD_GPT},
    {"name": "a", "gpt_sovits": {**GOOD_GPT, "version": "v5"}},
    {"name": "a", "gpt_sovits": {**GOOD_GPT, "prompt_lang": "fr"}},
    {"name": "a", "gpt_sovits": {**GOOD_GPT, "gpt_weights": ""}},
    {"name": "a", "gpt_sovits": {**GOOD_GPT, "ref_audio": "x" * 1025}},
    {"name": "a", "gpt_sovits": {**GOOD_GPT, "prompt_text": "x" * 1001}},
    {"name": "a", "gpt_sovits": {**GOOD_GPT, "aux_ref_audio": ["b.wav"] * 32}},
    {"name": "a", "gpt_sovits": {**GOOD_GPT, "aux_ref_audio": ["b.wav"] * 33}},
    {"name": "a", "gpt_sovits": {k: v for k, v in GOOD_GPT.items() if k != "ref_audio"}},
], ids=lambda e: str(e)[:60])
def test_the_api_server_and_the_model_agree_on_each_entry(entry):
    try:
        jsonschema.validate(entry, ITEM)
        crd_ok = True
    except jsonschema.ValidationError:
        crd_ok = False
    try:
        Voice.model_validate(entry)
        model_ok = True
    except ValidationError:
        model_ok = False
    assert crd_ok == model_ok, entry


def test_a_voice_named_like_a_path_is_refused_by_the_crd():
    with pytest.raises(jsonschema.ValidationError, match="does not match"):
        jsonschema.validate({"spec": {"voices": [{"name": "../x", "synthetic": {}}]}}, SCHEMA)
