"""The batched gpt-sovits engine's session, in process on generated weights: while one request's sentence is being
vocoded (SoVITS, on the vocoder thread), the other requests' rows go on decoding, and the request itself waits (its
next sentence does not start) until that vocoding is collected; every request still gets the one-at-a-time audio.
Also the session's paths for GPT-SoVITS itself, where its TTS lacks what gpt-sovits-cpufast (installed here) adds."""

from __future__ import annotations

import threading
from collections import defaultdict
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import numpy as np
import pytest

from support.gpt_sovits_engine import ONE_SENTENCE, loaded_engine, request

torch = pytest.importorskip("torch", reason="the gpt-sovits engine needs torch (make setup-gpt-sovits)")

from tts_worker.engines.base import CancelToken, Engine, EngineError, SynthesisParams  # noqa: E402
from tts_worker.engines.gpt_sovits import GPTSoVITSEngine  # noqa: E402
from tts_worker.engines.gpt_sovits.pairs import uses_vocoder  # noqa: E402
from tts_worker.engines.gpt_sovits.rows import PairView  # noqa: E402
from tts_worker.engines.gpt_sovits.session import GPTSoVITSBatch  # noqa: E402

pytestmark = pytest.mark.unit

TWO_SENTENCES = "Glue the sheet to the dark blue background. It is easy to tell the depth of a well."


@pytest.fixture(scope="module")
def engine(gpt_sovits_weights: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[Engine, Path]]:
    voices = tmp_path_factory.mktemp("overlap-voices")
    with loaded_engine(gpt_sovits_weights, voices) as eng:
        yield eng, voices


def params(engine: tuple[Engine, Path], text: str, **extra: Any) -> SynthesisParams:
    return request(engine[0], engine[1], text, **extra)  # type: ignore[no-any-return]


def alone(eng: Engine, p: SynthesisParams) -> list[bytes]:
    return [c.tobytes() for c in eng.synthesize(p, CancelToken())]


@dataclass
class Served:
    """What a threaded session gave each request: its non-empty chunks, whether it finished, or its error."""

    chunks: dict[int, list[bytes]] = field(default_factory=lambda: defaultdict(list))
    done: set[int] = field(default_factory=set)
    errors: dict[int, Exception] = field(default_factory=dict)


def serve(eng: GPTSoVITSEngine, requests: dict[int, SynthesisParams]) -> Served:
    """All `requests` in one batch of a session with the vocoder thread, stepped until it is empty."""
    session = GPTSoVITSBatch(eng, vocoder_thread=True)
    served = Served()
    try:
        for key, p in requests.items():
            session.add(key, p, CancelToken())
        for _ in range(5000):
            for out in session.step():
                if out.error is not None:
                    served.errors[out.key] = out.error
                served.chunks[out.key].extend(c.tobytes() for c in out.chunks if len(c))
                if out.done:
                    served.done.add(out.key)
            if not session.active:
                break
    finally:
        session.close()
    return served


def test_other_rows_decode_while_a_sentence_is_vocoded(engine: tuple[Engine, Path],
                                                       monkeypatch: pytest.MonkeyPatch) -> None:
    eng = engine[0]
    assert isinstance(eng, GPTSoVITSEngine)
    first, second = params(engine, TWO_SENTENCES), params(engine, ONE_SENTENCE)
    want = {key: b"".join(alone(eng, p)) for key, p in ((1, first), (2, second))}

    vits: Any = eng.tts.vits_model
    decode = vits.decode
    entered, gate = threading.Event(), threading.Event()
    threads: list[str] = []

    def held_decode(*args: Any, **kwargs: Any) -> Any:
        threads.append(threading.current_thread().name)
        if not entered.is_set():
            entered.set()
            assert gate.wait(60), "the test never let the first vocoding go"
        return decode(*args, **kwargs)

    monkeypatch.setattr(vits, "decode", held_decode)
    session = GPTSoVITSBatch(eng, vocoder_thread=True)  # what --vocoder-thread (the default with CUDA) opens
    audio: dict[int, list[np.ndarray]] = {1: [], 2: []}
    done: set[int] = set()

    def step() -> set[int]:
        took_part = set()
        for out in session.step():
            assert out.error is None, out.error
            took_part.add(out.key)
            audio[out.key].extend(out.chunks)
            if out.done:
                done.add(out.key)
        return took_part

    try:
        session.add(1, first, CancelToken())
        for _ in range(500):  # the first sentence decodes to its end, then its vocoding starts and is held
            step()
            if entered.wait(0.0):
                break
        assert entered.is_set(), "the first sentence never reached the vocoder"
        session.add(2, second, CancelToken())
        for _ in range(10):  # request 2's row steps; request 1 waits for its vocoding, starting no sentence
            assert step() == {2}
        assert not done and audio[1] == []
        gate.set()
        for _ in range(2000):
            step()
            if done == {1, 2}:
                break
    finally:
        gate.set()
        session.close()
    assert done == {1, 2}
    assert set(threads) and all(name.startswith("tts-vocoder") for name in threads)
    # the held vocoding changed nothing: each request has exactly the one-at-a-time engine's audio
    assert {key: b"".join(c.tobytes() for c in chunks) for key, chunks in audio.items()} == want


def test_every_streaming_mode_on_the_vocoder_thread_gets_the_one_at_a_time_chunks(engine: tuple[Engine, Path]) -> None:
    """Modes 2 and 3 vocode chunk by chunk while their rows are held; each request's chunks, in order, are still
    the one-at-a-time engine's, with seeded sampling, all four modes in one batch."""
    eng = engine[0]
    assert isinstance(eng, GPTSoVITSEngine)
    text = "Streaming by sentence. Each one is sent when it is spoken."
    requests = {
        1: params(engine, text, streaming_mode=1, split_bucket=False),
        2: params(engine, text, split_bucket=False, top_k=5, seed=7),
        3: params(engine, "Token chunks stream as they are decoded. Then more.", streaming_mode=2, top_k=5),
        4: params(engine, "Fixed length chunks, without a prompt text.", prompt_text="", streaming_mode=3,
                  min_chunk_length=8),
    }
    want = {key: alone(eng, p) for key, p in requests.items()}
    served = serve(eng, requests)
    got = served.chunks
    assert served.errors == {} and served.done == set(requests)
    assert len(got[3]) >= 2 and len(got[4]) >= 2  # chunked as they were decoded, not at the end
    for key in requests:
        assert b"".join(got[key]) == b"".join(want[key]), f"request {key}"
    assert [c for c in got[1]] == [c for c in want[1] if c]  # mode 1: the same chunks, sentence by sentence


def test_a_vocoding_that_fails_on_the_thread_ends_its_request_alone(engine: tuple[Engine, Path],
                                                                     monkeypatch: pytest.MonkeyPatch) -> None:
    eng = engine[0]
    assert isinstance(eng, GPTSoVITSEngine)
    requests = {1: params(engine, ONE_SENTENCE), 2: params(engine, TWO_SENTENCES, top_k=5)}
    want = {key: b"".join(alone(eng, p)) for key, p in requests.items()}
    vits: Any = eng.tts.vits_model
    decode, calls = vits.decode, []

    def failing_first(*args: Any, **kwargs: Any) -> Any:
        calls.append(threading.current_thread().name)
        if len(calls) == 1:
            raise RuntimeError("SoVITS ran out of memory")
        return decode(*args, **kwargs)

    monkeypatch.setattr(vits, "decode", failing_first)
    served = serve(eng, requests)
    assert calls[0].startswith("tts-vocoder")
    # the request whose sentence was vocoded first failed, with the error; the other got its own audio, whole
    assert len(served.errors) == 1 and "SoVITS ran out of memory" in str(next(iter(served.errors.values())))
    (other,) = set(requests) - set(served.errors)
    assert served.done == {other} and b"".join(served.chunks[other]) == want[other]


def test_reference_spectrograms_without_the_forks_cache_are_the_same(engine: tuple[Engine, Path]) -> None:
    """GPT-SoVITS's TTS has no `_get_runtime_refer_audio_spec_and_sv_emb` (the fork's cache): the session then
    computes them as GPT-SoVITS's TTS.run does, to the same tensors."""
    eng = engine[0]
    assert isinstance(eng, GPTSoVITSEngine)
    tts = eng.tts
    list(eng.synthesize(params(engine, ONE_SENTENCE), CancelToken()))  # the clip is in the prompt cache now
    cached, cached_sv = GPTSoVITSBatch._spectrograms(tts)

    class WithoutForkCache:
        def __getattr__(self, name: str) -> Any:
            if name == "_get_runtime_refer_audio_spec_and_sv_emb":
                raise AttributeError(name)
            return getattr(tts, name)

    computed, computed_sv = GPTSoVITSBatch._spectrograms(WithoutForkCache())
    assert len(computed) == len(cached) >= 1
    assert all(torch.equal(a, b) for a, b in zip(computed, cached, strict=True))
    assert computed_sv is None and cached_sv is None  # v2: no speaker embedding


def test_models_that_speak_through_a_vocoder_are_recognised() -> None:
    def configs(**attrs: Any) -> SimpleNamespace:
        return SimpleNamespace(configs=SimpleNamespace(**attrs))

    assert uses_vocoder(configs(version="v3", use_vocoder=True))
    assert uses_vocoder(configs(version="v4"))  # an older TTS_Config without the flag
    assert not uses_vocoder(configs(version="v2", use_vocoder=False))
    assert not uses_vocoder(configs(version="v2Pro"))


def test_the_vocoder_thread_view_binds_what_the_installed_tts_has(engine: tuple[Engine, Path]) -> None:
    """The vocoder thread reads the TTS through a view with upstream's methods bound to it; GPT-SoVITS's own TTS
    has no `non_vocoder_synthesis_batched_infer` (the fork's), and the view is built all the same."""
    eng = engine[0]
    assert isinstance(eng, GPTSoVITSEngine)
    tts = eng.tts
    fork_view = PairView(tts)
    assert hasattr(fork_view, "non_vocoder_synthesis_batched_infer") == \
        hasattr(type(tts), "non_vocoder_synthesis_batched_infer")  # (the fork's: the suite runs on it)
    cls = type(tts)
    upstream_like = type("UpstreamTTS", (), {name: getattr(cls, name) for name in
                                             ("audio_postprocess", "recovery_order", "sola_algorithm")})()
    for name in ("configs", "vits_model", "precision"):
        setattr(upstream_like, name, getattr(tts, name))
    view = PairView(upstream_like)
    assert not hasattr(view, "non_vocoder_synthesis_batched_infer")
    audio = torch.linspace(-0.5, 0.5, 4000)
    # the view's audio_postprocess is upstream's, on the pair's rate, precision and device
    sr, pcm = view.audio_postprocess([[audio.clone()]], tts.configs.sampling_rate, None, 1.0, False, 0.1)
    want_sr, want = tts.audio_postprocess([[audio.clone()]], tts.configs.sampling_rate, None, 1.0, False, 0.1)
    assert sr == want_sr and len(pcm) == 4000 + int(0.1 * tts.configs.sampling_rate)
    assert (pcm == want).all()


def test_a_streaming_request_the_engine_cannot_shape_fails_alone_holding_no_row(engine: tuple[Engine, Path]) -> None:
    """speed_factor 0 in a streaming mode cannot be cut into chunks: that request's own error at `add`, and the
    batch it tried to join goes on (its row was never taken, so no step decodes for a request that is gone)."""
    eng = engine[0]
    assert isinstance(eng, GPTSoVITSEngine)
    good = params(engine, ONE_SENTENCE)
    want = b"".join(alone(eng, good))
    session = GPTSoVITSBatch(eng, vocoder_thread=True)
    chunks: list[bytes] = []
    done = False
    try:
        session.add(1, good, CancelToken())
        with pytest.raises(EngineError):
            session.add(2, params(engine, TWO_SENTENCES, streaming_mode=2, speed_factor=0.0), CancelToken())
        assert session.active == 1
        for _ in range(5000):
            for out in session.step():
                assert out.key == 1 and out.error is None, out.error
                chunks.extend(c.tobytes() for c in out.chunks)
                done = done or out.done
            if not session.active:
                break
    finally:
        session.close()
    assert done and b"".join(chunks) == want


def test_a_batching_engine_warms_up_through_its_batch(engine: tuple[Engine, Path],
                                                       monkeypatch: pytest.MonkeyPatch) -> None:
    """The warm-up runs the path requests will take: `--num-warmup` requests through one batch, up to `max_batch`
    at once (the next joining as one ends), with a prompt text, never TTS.run; its session is closed after."""
    eng, voices = engine
    assert isinstance(eng, GPTSoVITSEngine)
    monkeypatch.setattr(eng, "warmup_reference", voices / "one.wav")
    alone_runs: list[object] = []
    monkeypatch.setattr(eng, "synthesize", lambda *args: alone_runs.append(args) or iter(()))
    sessions: list[GPTSoVITSBatch] = []
    added: list[SynthesisParams] = []
    peaks: list[int] = []
    closed: list[GPTSoVITSBatch] = []

    def open_batch() -> GPTSoVITSBatch:
        session = GPTSoVITSBatch(eng)
        add, step, close = session.add, session.step, session.close

        def counted_add(key: int, p: SynthesisParams, cancel: CancelToken) -> None:
            added.append(p)
            add(key, p, cancel)

        def counted_step() -> list[Any]:
            peaks.append(session.active)
            return step()

        def counted_close() -> None:
            closed.append(session)
            close()

        monkeypatch.setattr(session, "add", counted_add)
        monkeypatch.setattr(session, "step", counted_step)
        monkeypatch.setattr(session, "close", counted_close)
        sessions.append(session)
        return session

    monkeypatch.setattr(eng, "open_batch", open_batch)
    tokens = eng.decoded.tokens
    eng.warmup(3)
    assert alone_runs == [] and len(sessions) == 1 and closed == sessions
    assert len(added) == 3 and max(peaks) == 3 and sessions[0].active == 0
    assert all(p.request.prompt_text for p in added)
    assert eng.decoded.tokens > tokens
    del added[:], peaks[:]
    eng.warmup(6)  # more than the batch holds: all six, never more than four at once
    assert len(sessions) == 2 and closed == sessions and alone_runs == []
    assert len(added) == 6 and max(peaks) == eng.max_batch == 4
