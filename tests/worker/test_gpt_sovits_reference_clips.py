"""The gpt-sovits engine keeps each reference clip's features (`gpt_sovits.reference`), in process on generated weights:
TTS.run's own prompt cache holds the last clip only, so requests alternating between clips would read a clip at every
switch. Both the batch and the one-at-a-time engine read each clip once, give the audio a fresh read gives, and read a
clip again when it is rewritten on disk (TTS.run compares paths only) or the weights change."""

from __future__ import annotations

import shutil
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from support.gpt_sovits_engine import ONE_SENTENCE, backwards_clip, loaded_engine, request

torch = pytest.importorskip("torch", reason="the gpt-sovits engine needs torch (make setup-gpt-sovits)")

from tts_worker.engines.base import CancelToken, EngineError, SynthesisParams  # noqa: E402
from tts_worker.engines.gpt_sovits import GPTSoVITSEngine  # noqa: E402
from tts_worker.engines.gpt_sovits.reference import READ_FROM, ReferenceClips  # noqa: E402
from tts_worker.engines.gpt_sovits.session import GPTSoVITSBatch  # noqa: E402

pytestmark = pytest.mark.unit


@pytest.fixture(scope="module")
def engine(gpt_sovits_weights: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[GPTSoVITSEngine, Path]]:
    voices = tmp_path_factory.mktemp("clip-voices")
    with loaded_engine(gpt_sovits_weights, voices) as eng:
        assert isinstance(eng, GPTSoVITSEngine)
        yield eng, voices


@pytest.fixture
def reads(engine: tuple[GPTSoVITSEngine, Path], monkeypatch: pytest.MonkeyPatch) -> list[str]:
    """The clips the TTS object reads from here on (its set_ref_audio calls, which TTS.run makes too)."""
    cls: Any = type(engine[0].tts)
    read = cls.set_ref_audio
    seen: list[str] = []

    def counted(self: Any, path: str) -> Any:
        seen.append(Path(path).name)
        return read(self, path)

    monkeypatch.setattr(cls, "set_ref_audio", counted)
    return seen


def alone(eng: GPTSoVITSEngine, p: SynthesisParams) -> bytes:
    """The one-at-a-time engine's audio (TTS.run)."""
    return b"".join(c.tobytes() for c in eng.synthesize(p, CancelToken()))


def fresh(eng: GPTSoVITSEngine, p: SynthesisParams) -> bytes:
    """The one-at-a-time engine's audio with nothing kept and its prompt cache vouching for nothing: the clip read
    afresh, as TTS.run reads a new clip."""
    eng._clips = ReferenceClips(eng.max_reference_clips)
    eng.tts.prompt_cache.pop(READ_FROM, None)
    return alone(eng, p)


def batched(session: GPTSoVITSBatch, key: int, p: SynthesisParams) -> bytes:
    """One request through the batch session, stepped to its end."""
    session.add(key, p, CancelToken())
    audio: list[bytes] = []
    for _ in range(5000):
        for out in session.step():
            assert out.error is None, out.error
            audio.extend(c.tobytes() for c in out.chunks)
        if not session.active:
            return b"".join(audio)
    raise AssertionError("the request never finished")


def alternating(engine: tuple[GPTSoVITSEngine, Path]) -> list[SynthesisParams]:
    """Five requests: two clips in turn, then the second clip without a prompt text (ref-free: another key, and
    found in TTS.run's prompt cache, which the request before left holding that clip)."""
    eng, voices = engine
    backwards_clip(voices, "two.wav")
    return [request(eng, voices, ONE_SENTENCE, ref_audio_path=clip, prompt_text=prompt)
            for clip, prompt in [("one.wav", "a test"), ("two.wav", "a test"), ("one.wav", "a test"),
                                 ("two.wav", "a test"), ("two.wav", "")]]


def test_a_batch_reads_each_clip_once_and_speaks_as_a_fresh_read(engine: tuple[GPTSoVITSEngine, Path],
                                                                  reads: list[str]) -> None:
    eng = engine[0]
    requests = alternating(engine)
    want = [fresh(eng, p) for p in requests]
    assert want[0] != want[1]  # the clips sound different: a reference mixed up would show
    del reads[:]
    session = GPTSoVITSBatch(eng, vocoder_thread=False)
    try:
        got = [batched(session, key, p) for key, p in enumerate(requests)]
    finally:
        session.close()
    assert got == want
    assert reads == ["one.wav", "two.wav"]
    assert (session.clips.hits, session.clips.misses, len(session.clips)) == (2, 3, 3)


def test_the_one_at_a_time_engine_reads_each_clip_once(engine: tuple[GPTSoVITSEngine, Path],
                                                       reads: list[str]) -> None:
    """It puts a kept clip's prompt cache back before TTS.run, so TTS.run finds the clip there; a clip it has
    not kept gets a blank cache, read afresh."""
    eng = engine[0]
    requests = alternating(engine)
    want = [fresh(eng, p) for p in requests]
    eng._clips = ReferenceClips(eng.max_reference_clips)
    del reads[:]
    got = [alone(eng, p) for p in requests]
    assert got == want and got[0] != got[1]
    assert reads == ["one.wav", "two.wav"]
    assert (eng._clips.hits, eng._clips.misses) == (2, 3)


def test_a_clip_rewritten_on_disk_is_read_again(engine: tuple[GPTSoVITSEngine, Path]) -> None:
    """TTS.run compares paths only and would go on speaking with the old clip; both engines read it again."""
    eng, voices = engine
    shutil.copy(voices / "one.wav", voices / "changing.wav")
    backwards = backwards_clip(voices, "backwards.wav")
    p = request(eng, voices, ONE_SENTENCE, ref_audio_path="changing.wav")
    session = GPTSoVITSBatch(eng, vocoder_thread=False)
    try:
        before = alone(eng, p), batched(session, 1, p)
        assert batched(session, 2, p) == before[1] and session.clips.hits == 1
        shutil.copy(backwards, voices / "changing.wav")  # in place, the same size: its modification time tells
        after = alone(eng, p), batched(session, 3, p)
    finally:
        session.close()
    want = alone(eng, request(eng, voices, ONE_SENTENCE, ref_audio_path="backwards.wav"))
    assert before[0] == before[1] != want
    assert after == (want, want)
    assert (session.clips.hits, session.clips.misses) == (1, 2)


def test_a_clip_removed_after_validation_fails_that_request_with_tts_runs_words(
        engine: tuple[GPTSoVITSEngine, Path]) -> None:
    """The route checked the clip; it is gone by the time the engine reads it (never kept): both paths end that
    request with TTS.run's own error, and the batch takes no row for it."""
    eng, voices = engine
    shutil.copy(voices / "one.wav", voices / "leaving.wav")
    p = request(eng, voices, ONE_SENTENCE, ref_audio_path="leaving.wav")
    (voices / "leaving.wav").unlink()
    with pytest.raises(EngineError, match=r"ValueError: .*/leaving\.wav not exists"):
        alone(eng, p)
    session = GPTSoVITSBatch(eng, vocoder_thread=False)
    try:
        with pytest.raises(EngineError, match=r"ValueError: .*/leaving\.wav not exists"):
            session.add(1, p, CancelToken())
        assert session.active == 0
    finally:
        session.close()


def test_a_weight_switch_reads_the_clip_again(engine: tuple[GPTSoVITSEngine, Path], gpt_sovits_weights: Path,
                                              reads: list[str]) -> None:
    """A kept reference came from the SoVITS model installed then (the prompt semantic is its quantizer's): after
    a switch the clip is read again (once: the batch finds it in the prompt cache the one-at-a-time run filled
    with the new weights), and both engines speak with the new weights' reference."""
    eng, voices = engine
    p = request(eng, voices, ONE_SENTENCE)
    session = GPTSoVITSBatch(eng, vocoder_thread=False)
    try:
        before = alone(eng, p), batched(session, 1, p)
        eng.set_sovits_weights(gpt_sovits_weights / "w1" / "s2G.pth")
        del reads[:]
        after = alone(eng, p), batched(session, 2, p)
        assert reads == ["one.wav"]
    finally:
        session.close()
        eng.set_sovits_weights(gpt_sovits_weights / "w0" / "s2G.pth")
    assert before[0] == before[1] and after[0] == after[1] != before[0]
    assert (session.clips.hits, session.clips.misses) == (0, 2)


def test_a_clip_set_by_set_refer_audio_is_not_read_again(engine: tuple[GPTSoVITSEngine, Path],
                                                          reads: list[str]) -> None:
    """/set_refer_audio reads the clip ahead of the requests that use it: neither engine reads it again, and the
    audio is a fresh read's."""
    eng, voices = engine
    clip = backwards_clip(voices, "preset.wav")
    p = request(eng, voices, ONE_SENTENCE, ref_audio_path="preset.wav")
    want = fresh(eng, p)
    eng._clips = ReferenceClips(eng.max_reference_clips)
    eng.set_refer_audio(clip)
    assert reads[-1:] == ["preset.wav"]
    del reads[:]
    session = GPTSoVITSBatch(eng, vocoder_thread=False)
    try:
        got = alone(eng, p), batched(session, 1, p)
    finally:
        session.close()
    assert reads == [] and got == (want, want)


def test_the_same_prompt_text_in_another_language_is_read_again(engine: tuple[GPTSoVITSEngine, Path],
                                                                 monkeypatch: pytest.MonkeyPatch) -> None:
    """TTS.run compares the prompt text alone, so it would keep another language's phonemes and BERT features for
    the same text; the one-at-a-time engine has it compute them again (the batch compares both)."""
    eng, voices = engine
    p = request(eng, voices, ONE_SENTENCE)
    alone(eng, p)  # the live prompt cache holds one.wav and "a test" in English now, marked read
    eng._clips = ReferenceClips(eng.max_reference_clips)  # not kept: the live cache is what it would use
    eng.tts.prompt_cache["prompt_lang"] = "all_zh"  # as a request of that language with the same text leaves it
    prep: Any = eng.tts.text_preprocessor
    extract, texts = prep.segment_and_extract_feature_for_text, []

    def counted(text: str, *args: Any, **kwargs: Any) -> Any:
        texts.append(text)
        return extract(text, *args, **kwargs)

    monkeypatch.setattr(prep, "segment_and_extract_feature_for_text", counted)
    alone(eng, p)
    assert "a test." in texts  # the prompt text's features, computed again for English
    assert eng.tts.prompt_cache["prompt_lang"] == "en"


def test_a_batch_finding_its_clip_in_the_prompt_cache_derives_nothing_again(engine: tuple[GPTSoVITSEngine, Path],
                                                                           reads: list[str],
                                                                           monkeypatch: pytest.MonkeyPatch) -> None:
    """A clip new to the batch that the pair's prompt cache holds as it is on disk (a batching worker's warm-up
    leaves it so) is not read, and what gpt-sovits-cpufast derives from it (the spectrograms on the device, the
    decode condition) is used as it is: nothing it derives from changed."""
    eng, voices = engine
    p = request(eng, voices, ONE_SENTENCE)
    want = fresh(eng, p)
    model: Any = type(eng.tts.vits_model)
    if not hasattr(model, "build_decode_condition"):
        pytest.skip("a GPT-SoVITS checkout derives these at every run: only gpt-sovits-cpufast keeps them")
    build, built = model.build_decode_condition, []

    def counted(self: Any, *args: Any, **kwargs: Any) -> Any:
        built.append(1)
        return build(self, *args, **kwargs)

    monkeypatch.setattr(model, "build_decode_condition", counted)
    del reads[:]
    session = GPTSoVITSBatch(eng, vocoder_thread=False)
    try:
        got = batched(session, 1, p)
    finally:
        session.close()
    assert (session.clips.hits, session.clips.misses) == (0, 1)
    assert reads == [] and built == [] and got == want


def test_a_seeded_request_sounds_the_same_whether_its_clip_is_read_or_kept(engine: tuple[GPTSoVITSEngine, Path],
                                                                          monkeypatch: pytest.MonkeyPatch) -> None:
    """Upstream's HuBERT (transformers' HubertEncoder) draws from the global generator at every layer, in eval
    too (its LayerDrop check); gpt-sovits-cpufast's draws nothing. Read inside TTS.run, after it seeds, that draw
    would move the seeded SoVITS noise, so a request's audio would depend on whether an earlier request had left
    its clip in the cache. Here the read draws as upstream's does: the audio is the same read afresh and kept."""
    eng, voices = engine
    cls: Any = type(eng.tts)
    read = cls._set_prompt_semantic

    def drawing(self: Any, path: str) -> Any:
        torch.rand([])  # what transformers' HubertEncoder draws per layer
        return read(self, path)

    monkeypatch.setattr(cls, "_set_prompt_semantic", drawing)
    backwards_clip(voices, "drawn.wav")
    p = request(eng, voices, ONE_SENTENCE, ref_audio_path="drawn.wav", top_k=20, seed=7)
    got = fresh(eng, p), alone(eng, p)
    assert eng._clips.hits == 1  # the second was kept
    assert got[0] == got[1]
