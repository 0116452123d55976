"""Request parameters and credentials the tests share."""

from __future__ import annotations

# The admin token the test fixtures give workers and routers (through the environment, as in production).
ADMIN_TOKEN = "test-admin-token"


def tts_params(**overrides: object) -> dict[str, object]:
    """The usual GPT-SoVITS call against the default voice directory."""
    params: dict[str, object] = {
        "text": "The birch canoe slid on the smooth planks.",
        "text_lang": "en",
        "ref_audio_path": "reference.wav",
        "prompt_lang": "en",
    }
    params.update(overrides)
    return params
