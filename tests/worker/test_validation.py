"""api_v2's validation: every rule, its message, its order, for GET and POST; bad input is a 4xx, never a 500."""

from __future__ import annotations

from typing import Any

import httpx
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from support.params import tts_params

VERSION = "piper/en_US-joe-medium"


def call(url: str, method: str, params: dict[str, Any]) -> httpx.Response:
    if method == "GET":
        return httpx.get(f"{url}/tts", params={k: v for k, v in params.items() if v is not None}, timeout=60)
    return httpx.post(f"{url}/tts", json={k: v for k, v in params.items() if v is not None}, timeout=60)


CASES = [
    # (overrides, expected message, field) -- in api_v2's order: each case also breaks every later rule
    ({"ref_audio_path": None, "text": None, "media_type": "wma"}, "ref_audio_path is required", "ref_audio_path"),
    ({"ref_audio_path": "", "text": ""}, "ref_audio_path is required", "ref_audio_path"),
    ({"text": None, "text_lang": None}, "text is required", "text"),
    ({"text": "", "prompt_lang": None}, "text is required", "text"),
    ({"text_lang": None, "prompt_lang": None}, "text_lang is required", "text_lang"),
    ({"text_lang": "zh", "prompt_lang": None}, f"text_lang: zh is not supported in version {VERSION}", "text_lang"),
    ({"text_lang": "klingon"}, f"text_lang: klingon is not supported in version {VERSION}", "text_lang"),
    ({"prompt_lang": None, "media_type": "wma"}, "prompt_lang is required", "prompt_lang"),
    ({"prompt_lang": "xx", "media_type": "wma"}, f"prompt_lang: xx is not supported in version {VERSION}",
     "prompt_lang"),
    ({"media_type": "wma", "text_split_method": "cut9"}, "media_type: wma is not supported", "media_type"),
    ({"media_type": "WAV"}, "media_type: WAV is not supported", "media_type"),
    ({"text_split_method": "cut9", "streaming_mode": 7}, "text_split_method:cut9 is not supported",
     "text_split_method"),
    ({"streaming_mode": 7}, "the value of streaming_mode must be 0, 1, 2, 3(int) or true/false(bool)",
     "streaming_mode"),
    ({"streaming_mode": "sometimes"}, "the value of streaming_mode must be 0, 1, 2, 3(int) or true/false(bool)",
     "streaming_mode"),
]


@pytest.mark.process
@pytest.mark.parametrize("method", ["GET", "POST"])
@pytest.mark.parametrize("overrides,message,field", CASES)
def test_rules_in_order(piper_worker, method, overrides, message, field):
    r = call(piper_worker.url, method, tts_params(**overrides))
    assert r.status_code == 400, r.text
    assert r.json()["message"] == message
    assert r.json()["field"] == field


@pytest.mark.process
@pytest.mark.parametrize("method", ["GET", "POST"])
def test_languages_are_compared_lower_cased(piper_worker, method):
    # api_v2's POST forgot to lower-case before use; ours accepts "EN" both ways.
    r = call(piper_worker.url, method, tts_params(text_lang="EN", prompt_lang="En"))
    assert r.status_code == 200, r.text


@pytest.mark.process
@pytest.mark.parametrize("method", ["GET", "POST"])
def test_prompt_lang_accepts_any_api_v2_language_for_piper(piper_worker, method):
    # Piper does not clone the reference clip, so its transcript may be in any api_v2 language.
    r = call(piper_worker.url, method, tts_params(prompt_lang="zh", prompt_text="参考音频"))
    assert r.status_code == 200, r.text


@pytest.mark.process
@pytest.mark.parametrize("method", ["GET", "POST"])
@pytest.mark.parametrize(
    "name,value",
    [("top_k", "abc"), ("top_p", "x"), ("temperature", "hot"), ("batch_size", "1.5"), ("speed_factor", "fast"),
     ("seed", "s"), ("split_bucket", "maybe"), ("sample_steps", "many")],
)
def test_bad_types_name_the_field(piper_worker, method, name, value):
    r = call(piper_worker.url, method, tts_params(**{name: value}))
    assert r.status_code == 400, r.text
    body = r.json()
    assert body["field"] == name
    assert body["message"].startswith(f"{name}: ")


@pytest.mark.process
@pytest.mark.parametrize("method", ["GET", "POST"])
def test_numbers_outside_any_sensible_range_are_the_engines_to_judge(piper_worker, method):
    """api_v2 has no ranges: a value Piper ignores is taken, one it cannot use is its `tts failed`."""
    assert call(piper_worker.url, method, tts_params(top_p=2, sample_steps=0)).status_code == 200
    r = call(piper_worker.url, method, tts_params(fragment_interval=-1))
    assert r.status_code == 400 and r.json()["message"] == "tts failed", r.text


@pytest.mark.process
def test_text_over_the_limit_is_refused(piper_worker):
    r = call(piper_worker.url, "POST", tts_params(text="word " * 200))
    assert r.status_code == 400
    assert r.json() == {"message": "text: 1000 characters is over the limit of 600", "field": "text"}


@pytest.mark.process
def test_body_that_is_not_a_json_object(piper_worker):
    r = httpx.post(f"{piper_worker.url}/tts", content=b"[1, 2]", headers={"content-type": "application/json"})
    assert r.status_code == 400 and r.json()["field"] == "body"
    r = httpx.post(f"{piper_worker.url}/tts", content=b"{oops", headers={"content-type": "application/json"})
    assert r.status_code == 400 and r.json()["message"] == "body: invalid JSON"


@pytest.mark.process
def test_unknown_post_keys_are_ignored(piper_worker):
    r = call(piper_worker.url, "POST", tts_params(return_fragment=True, something_else=[1, 2]))
    assert r.status_code == 200


@pytest.mark.process
def test_unspeakable_text_is_an_error_not_silence(piper_worker):
    # api_v2 answers 200 with a second of silence here; we answer its `tts failed` error instead.
    r = call(piper_worker.url, "GET", tts_params(text="..."))
    assert r.status_code == 400
    assert r.json()["message"] == "tts failed"
    assert "no audio" in r.json()["Exception"]


_values = st.one_of(
    st.none(), st.booleans(), st.integers(-5, 5000), st.floats(allow_nan=True, allow_infinity=True),
    st.text(max_size=30), st.lists(st.text(max_size=5), max_size=3),
)
_keys = st.sampled_from(
    ["text", "text_lang", "ref_audio_path", "prompt_lang", "prompt_text", "top_k", "top_p", "temperature",
     "text_split_method", "batch_size", "speed_factor", "fragment_interval", "seed", "media_type", "streaming_mode",
     "aux_ref_audio_paths", "split_bucket", "min_chunk_length"]
)


@pytest.mark.process
@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(overrides=st.dictionaries(_keys, _values, max_size=4))
def test_arbitrary_input_never_gets_a_500(piper_worker, overrides):
    params = tts_params(text="Short.")
    params.update(overrides)
    try:
        r = httpx.post(f"{piper_worker.url}/tts", json=params, timeout=60)
    except ValueError:  # not JSON-encodable (NaN): send it as a query instead
        r = httpx.get(f"{piper_worker.url}/tts", params={k: str(v) for k, v in params.items()}, timeout=60)
    assert r.status_code in (200, 400), r.text
    if r.status_code == 400:
        assert isinstance(r.json()["message"], str) and r.json()["message"]


@pytest.mark.unit
def test_the_silence_between_sentences_is_known_before_synthesis():
    from tts_worker.validation import silence_seconds

    assert silence_seconds("One. Two. Three.", 0.3) == pytest.approx(0.6)  # the last mark adds nothing
    assert silence_seconds("No marks at all", 10) == 0
    assert silence_seconds("a" + "." * 999, 10) == 0  # trailing marks: the engine's own split is checked later
    assert silence_seconds("a. " * 300, 10) == pytest.approx(2990)
