"""The continuous-batching T2S decoder against upstream's own single-request decode, on random weights built with
GPT-SoVITS's model classes and loaded the way TTS.init_t2s_weights loads a checkpoint (fused blocks, no `h`)."""

from __future__ import annotations

import importlib
import sys
from collections import Counter
from collections.abc import Callable, Iterator
from dataclasses import replace
from types import SimpleNamespace
from typing import Any, Optional

import pytest
import torch

from tts_worker.engines.gpt_sovits.t2s import (
    BatchDecoder,
    BatchFullError,
    CacheCapacityError,
    InvalidRequestError,
    StepEvent,
    T2SRequest,
)

pytestmark = pytest.mark.unit

CONFIG = {  # s1longer-v2's vocabulary (EOS 1024, 732 phonemes), a small transformer
    "data": {"max_sec": 2},
    "model": {"vocab_size": 1025, "phoneme_vocab_size": 732, "embedding_dim": 192, "hidden_dim": 192, "head": 4,
              "linear_units": 768, "n_layer": 2, "dropout": 0, "EOS": 1024},
}
CAP = 60  # early_stop_num: upstream then keeps at most CAP + 1 tokens
# (phonemes, prompt tokens): no prompt (ref-free), short, long, longer than the text
SHAPES = [(9, 0), (23, 5), (40, 17), (14, 30)]


@pytest.fixture(scope="module")
def upstream() -> Iterator[tuple[Callable[[], Any], Any]]:
    """(a builder of the T2S runtime model, always with the same random weights; upstream's t2s_model module)."""
    torch.set_num_threads(1)
    saved_path = list(sys.path)
    importlib.import_module("GPT_SoVITS")  # first: it puts its folder on sys.path for the short imports below
    import AR.models.t2s_model as t2s_module
    from AR.models.t2s_lightning_module import Text2SemanticLightningModule

    sys.path[:] = saved_path  # its short top-level names (text, module, utils) must not shadow anything else

    def build() -> Any:
        # The training-only accuracy metric wants torchmetrics; the random `h` weights are all we take from it.
        builder = t2s_module._build_multiclass_accuracy_for_training
        t2s_module._build_multiclass_accuracy_for_training = lambda *a, **k: None
        try:
            torch.manual_seed(0)
            state = Text2SemanticLightningModule(CONFIG, "****", is_train=False).state_dict()
        finally:
            t2s_module._build_multiclass_accuracy_for_training = builder
        runtime = Text2SemanticLightningModule(CONFIG, "****", is_train=False, build_t2s_transformer=False,
                                               build_h_module=False)
        runtime.load_inference_only_state_dict(state)
        runtime.model.release_inference_only_unused_modules()
        return runtime.eval().model

    yield build, t2s_module


@pytest.fixture(scope="module")
def model(upstream: tuple[Callable[[], Any], Any]) -> Any:
    return upstream[0]()


def make_requests(seed: int = 1, **params: Any) -> list[T2SRequest]:
    g = torch.Generator().manual_seed(seed)
    out = []
    for i, (n, p) in enumerate(SHAPES):
        prompt = torch.randint(0, 1024, (p,), generator=g) if p else None
        out.append(T2SRequest(f"r{i}", torch.randint(0, 732, (n,), generator=g), torch.randn(1024, n, generator=g),
                              prompt, **params))
    return out


def reference(model: Any, req: T2SRequest) -> list[int]:
    """Upstream's single-request decode (`infer_panel`, what TTS.run calls per item when not batching)."""
    prompt = req.prompt_semantic
    with torch.no_grad():
        y, _ = model.infer_panel(
            req.phoneme_ids.unsqueeze(0), torch.tensor([req.phoneme_ids.shape[0]]),
            None if prompt is None else prompt.unsqueeze(0), req.bert_features.unsqueeze(0),
            top_k=req.top_k, top_p=req.top_p, early_stop_num=req.early_stop_num, temperature=req.temperature,
            repetition_penalty=req.repetition_penalty,
        )
    tokens: list[int] = y[0, 0 if prompt is None else prompt.shape[0]:].tolist()
    return tokens


@pytest.fixture(scope="module")
def eos_model(upstream: tuple[Callable[[], Any], Any]) -> tuple[Any, list[T2SRequest], dict[str, list[int]]]:
    """Random weights almost never emit EOS. Make EOS's output row 1.1 x a frequent token's, so EOS wins wherever
    that token would (by a clear margin: no near-ties, and EOS is never penalised as a repeat), for a token where,
    greedily, some requests stop on EOS and some run to the cap. Returns (model, greedy requests, upstream's
    tokens for each)."""
    model = upstream[0]()  # its own copy: the other tests keep the plain weights
    reqs = make_requests(top_k=1, early_stop_num=CAP)
    counts = Counter(t for r in reqs for t in reference(model, r))
    weight = model.ar_predict_layer.weight
    for token, _ in counts.most_common(20):
        with torch.no_grad():
            weight[model.EOS] = weight[token] * 1.1
        refs = {r.request_id: reference(model, r) for r in reqs}
        lengths = [len(t) for t in refs.values()]
        if any(n <= CAP for n in lengths) and CAP + 1 in lengths and min(lengths) >= 12:
            return model, reqs, refs
    pytest.fail("no token gave a mix of EOS-finished and capped sequences")


def drain(dec: BatchDecoder, events: Optional[dict[str, list[StepEvent]]] = None) -> dict[str, StepEvent]:
    """Step until nothing is decoding; returns each request's finishing event."""
    done: dict[str, StepEvent] = {}
    while dec.active:
        for e in dec.step():
            if events is not None:
                events.setdefault(e.request_id, []).append(e)
            if e.finish:
                done[e.request_id] = e
    return done


def test_greedy_batch_with_staggered_joins_matches_upstream_single_requests(eos_model):
    model, reqs, refs = eos_model
    dec = BatchDecoder(model, max_batch=4, max_len=256)
    events: dict[str, list[StepEvent]] = {}
    dec.admit(reqs[0])
    dec.admit(reqs[1])
    for _ in range(5):
        assert len(dec.step()) == 2  # both rows advance in every step
    dec.admit(reqs[2])
    for _ in range(7):
        for e in dec.step():
            events.setdefault(e.request_id, []).append(e)
    dec.admit(reqs[3])
    assert dec.free_slots == 0
    done = drain(dec, events)

    for r in reqs:
        ref = refs[r.request_id]
        assert list(done[r.request_id].semantic or ()) == ref, r.request_id
        assert done[r.request_id].finish == ("eos" if len(ref) <= CAP else "early_stop")
    assert sum(len(t) for t in refs.values()) >= 100
    # The streamed tokens are the final sequence; an EOS step streams no token.
    for rid in ("r2", "r3"):
        streamed = [e.token for e in events[rid] if e.token is not None]
        assert streamed == refs[rid]
    assert dec.free_slots == 4 and dec.active == ()


def test_max_new_tokens_is_upstreams_decode_step_cap(model, upstream, monkeypatch):
    t2s_module = upstream[1]
    reqs = make_requests(seed=3, top_k=1)
    monkeypatch.setattr(t2s_module, "MAX_AR_DECODE_STEPS", 25)
    refs = [reference(model, r) for r in reqs]
    dec = BatchDecoder(model, max_batch=4, max_len=128)
    for r in reqs:
        dec.admit(replace(r, max_new_tokens=25))
    done = drain(dec)
    for r, ref in zip(reqs, refs, strict=True):
        assert len(ref) == 25 and list(done[r.request_id].semantic or ()) == ref
        assert done[r.request_id].finish == "max_tokens"


def test_seeded_sampling_does_not_depend_on_batch_companions(model):
    sampled = dict(top_k=15, top_p=0.9, temperature=0.8, repetition_penalty=1.35, early_stop_num=40)
    reqs = [replace(r, seed=100 + i) for i, r in enumerate(make_requests(seed=5, **sampled))]
    alone = {}
    for r in reqs:
        dec = BatchDecoder(model, max_batch=1, max_len=128)
        dec.admit(r)
        alone[r.request_id] = drain(dec)[r.request_id].semantic
    # Together, with joins at different steps, in different rows, with greedy and other sampled companions.
    dec = BatchDecoder(model, max_batch=8, max_len=128)
    dec.admit(replace(reqs[0], request_id="greedy", top_k=1))
    dec.admit(reqs[3])
    for _ in range(4):
        dec.step()
    dec.admit(reqs[1])
    dec.step()
    dec.admit(reqs[0])
    dec.admit(reqs[2])
    together = {k: e.semantic for k, e in drain(dec).items()}
    for r in reqs:
        assert together[r.request_id] == alone[r.request_id], r.request_id
    # It really sampled: another seed gives other tokens, and the greedy companion differs from the sampled one.
    dec = BatchDecoder(model, max_batch=1, max_len=128)
    dec.admit(replace(reqs[0], seed=999))
    assert drain(dec)["r0"].semantic != alone["r0"]
    assert together["greedy"] != alone["r0"]


def test_a_seeded_request_draws_upstreams_random_stream(model):
    """Given a generator seeded as TTS.run seeds the global one, a sampled request gets upstream's own tokens, in a
    batch, and leaves its generator where upstream leaves the global one: the next draw (SoVITS's noise) is the
    same, so a caller can keep one random stream per request across sentences and vocoder as TTS.run does."""
    sampled = dict(top_k=15, top_p=0.9, temperature=0.8, repetition_penalty=1.35, early_stop_num=40)
    reqs = make_requests(seed=6, **sampled)
    generators = {r.request_id: torch.Generator().manual_seed(200 + i) for i, r in enumerate(reqs)}
    dec = BatchDecoder(model, max_batch=4, max_len=128)
    for r in reqs:
        dec.admit(replace(r, generator=generators[r.request_id]))
    done = drain(dec)
    for i, r in enumerate(reqs):
        torch.manual_seed(200 + i)
        assert list(done[r.request_id].semantic or ()) == reference(model, r), r.request_id
        assert torch.equal(torch.randn(8, generator=generators[r.request_id]), torch.randn(8)), r.request_id


def test_cancel_frees_the_row_at_once_and_a_reused_row_decodes_correctly(eos_model):
    model, reqs, refs = eos_model
    dec = BatchDecoder(model, max_batch=3, max_len=256)
    for r in reqs[:3]:
        dec.admit(r)
    for _ in range(10):
        dec.step()
    row = dec.slot_of("r2")
    assert dec.cancel("r2") and not dec.cancel("r2")
    assert dec.slot_of("r2") is None and dec.free_slots == 1 and set(dec.active) == {"r0", "r1"}
    assert {e.request_id for e in dec.step()} <= {"r0", "r1"}
    # r3's prefill (44) is shorter than what r2 left in that row (57 + 9): its stale KV must stay masked out.
    assert dec.admit(reqs[3]) == row
    with pytest.raises(BatchFullError):
        dec.admit(replace(reqs[2], request_id="extra"))
    done = drain(dec)
    assert set(done) == {"r0", "r1", "r3"}
    for rid in ("r0", "r1", "r3"):
        assert list(done[rid].semantic or ()) == refs[rid], rid


def test_requests_that_cannot_fit_are_refused_with_typed_errors(model):
    dec = BatchDecoder(model, max_batch=2, max_len=64)
    g = torch.Generator().manual_seed(9)

    def req(rid: str, phones: int, prompt: int, **params: Any) -> T2SRequest:
        return T2SRequest(rid, torch.randint(0, 732, (phones,), generator=g), torch.randn(1024, phones, generator=g),
                          torch.randint(0, 1024, (prompt,), generator=g), **params)

    with pytest.raises(CacheCapacityError) as err:
        dec.admit(req("long", 50, 20, max_new_tokens=1))
    assert err.value.needed == 70 and err.value.capacity == 64 and "'long'" in str(err.value)
    # The prefill fits, but not with room for every token it may generate; a smaller budget fits.
    with pytest.raises(CacheCapacityError):
        dec.admit(req("budget", 30, 10, early_stop_num=40))
    assert dec.free_slots == 2 and dec.active == ()
    dec.admit(req("ok", 30, 10, early_stop_num=20, top_k=1))  # 40 + 21 - 1 = 60 positions
    with pytest.raises(InvalidRequestError):
        dec.admit(req("ok", 5, 2))
    with pytest.raises(InvalidRequestError):
        dec.admit(T2SRequest("bad", torch.zeros(5, dtype=torch.long), torch.zeros(1024, 4)))
    done = drain(dec)
    assert len(done["ok"].semantic or ()) <= 21


def upstream_block(block: Any, dtype: Optional[torch.dtype] = None) -> SimpleNamespace:
    """A gpt-sovits-cpufast fused block's weights in GPT-SoVITS's own layout (`qkv_w`, `mlp.w1`: [out, in])."""
    def t(w: torch.Tensor) -> torch.Tensor:
        return w.to(dtype) if dtype is not None else w

    mlp = SimpleNamespace(w1=t(block.mlp.w1_t.t().contiguous()), b1=t(block.mlp.b1),
                          w2=t(block.mlp.w2_t.t().contiguous()), b2=t(block.mlp.b2))
    return SimpleNamespace(mlp=mlp, qkv_w=t(block.qkv_w_t.t().contiguous()), qkv_b=t(block.qkv_b),
                           out_w=t(block.out_w_t.t().contiguous()), out_b=t(block.out_b), norm_w1=t(block.norm_w1),
                           norm_b1=t(block.norm_b1), norm_eps1=block.norm_eps1, norm_w2=t(block.norm_w2),
                           norm_b2=t(block.norm_b2), norm_eps2=block.norm_eps2)


def test_gpt_sovits_own_block_layout_decodes_the_same_tokens(eos_model):
    """GPT-SoVITS itself keeps each fused block's weights as nn.Linear does (`qkv_w`, `mlp.w1`: [out, in]);
    gpt-sovits-cpufast, which the tests run, keeps them transposed (`qkv_w_t`, `mlp.w1_t`). The same weights in
    GPT-SoVITS's layout decode the same tokens."""
    model, reqs, refs = eos_model
    fused = model.t2s_transformer
    blocks = [upstream_block(b) for b in fused.blocks]
    assert not hasattr(blocks[0], "qkv_w_t") and not hasattr(blocks[0].mlp, "w1_t")
    model.t2s_transformer = SimpleNamespace(blocks=blocks)
    try:
        dec = BatchDecoder(model, max_batch=4, max_len=256)
        for r in reqs:
            dec.admit(r)
        done = drain(dec)
    finally:
        model.t2s_transformer = fused
    assert {rid: list(e.semantic or ()) for rid, e in done.items()} == refs


def test_half_precision_decodes_the_same_alone_and_together(upstream):
    """GPT-SoVITS runs T2S in fp16 on CUDA (`is_half`: the model `.half()`, BERT features in fp16). The decoder
    keeps its cache, masks and sampling in the model's dtype; in fp16 (on this CPU) each request decodes the same
    tokens alone and in a batch with staggered joins, greedy and seeded sampling alike."""
    model = upstream[0]().half()
    fused = model.t2s_transformer  # the fork's transposed copies are not module tensors: .half() leaves them
    model.t2s_transformer = SimpleNamespace(blocks=[upstream_block(b, torch.float16) for b in fused.blocks])
    assert model.ar_predict_layer.weight.dtype == torch.float16
    sampled = dict(top_k=15, top_p=0.9, temperature=0.8, repetition_penalty=1.35)
    reqs = [replace(r, bert_features=r.bert_features.half(), seed=300 + i, **(sampled if i % 2 else {"top_k": 1}))
            for i, r in enumerate(make_requests(seed=8, early_stop_num=40))]
    alone = {}
    for r in reqs:
        dec = BatchDecoder(model, max_batch=1, max_len=128)
        dec.admit(r)
        alone[r.request_id] = list(drain(dec)[r.request_id].semantic or ())
    dec = BatchDecoder(model, max_batch=4, max_len=128)
    dec.admit(reqs[2])
    for _ in range(3):
        dec.step()
    dec.admit(reqs[0])
    dec.admit(reqs[3])
    dec.step()
    dec.admit(reqs[1])
    assert dec._k[0].dtype == torch.float16  # the cache is the model's dtype
    together = {k: list(e.semantic or ()) for k, e in drain(dec).items()}
    assert together == alone
    assert all(len(tokens) >= 10 for tokens in alone.values())
    assert len({tuple(t) for t in alone.values()}) == len(reqs)
