"""Model pairs: what one voice is on the one `TTS` object (its GPT and SoVITS models, its config) and what every voice
shares (the text front end, BERT, HuBERT). The engine swaps a voice's pair in before its runs."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

# What every voice shares on one TTS object: the text front end, BERT, HuBERT, the speaker-verification model, and
# run-time flags. Everything else TTS holds (the GPT and SoVITS models, v3/v4's vocoder, the reference cache) is one
# voice's, as is its config (version, sample rate, weight paths).
SHARED_ATTRS = frozenset({"configs", "bert_model", "bert_tokenizer", "cnhuhbert_model", "text_preprocessor",
                          "sv_model", "stop_flag", "precision"})


@dataclass
class VoicePair:
    """One voice's part of the pipeline: what `TTS` holds for it, and its config; swapped in before its runs."""

    tts_attrs: dict[str, Any]
    config_attrs: dict[str, Any]

    @classmethod
    def capture(cls, tts: Any) -> "VoicePair":
        return cls({k: v for k, v in vars(tts).items() if k not in SHARED_ATTRS}, dict(vars(tts.configs)))

    def install(self, tts: Any) -> None:
        for key in [k for k in vars(tts) if k not in SHARED_ATTRS and k not in self.tts_attrs]:
            delattr(tts, key)
        vars(tts).update(self.tts_attrs)
        vars(tts.configs).update(self.config_attrs)

    @property
    def sample_rate(self) -> int:
        return int(self.config_attrs["sampling_rate"])

    @property
    def version(self) -> str:
        return str(self.config_attrs["version"])


def uses_vocoder(tts: Any) -> bool:
    """Whether the installed pair is a model that speaks through a vocoder (v3, v4), which the batch cannot serve."""
    configs = tts.configs
    return bool(getattr(configs, "use_vocoder", False)) or str(getattr(configs, "version", "")) in ("v3", "v4")
