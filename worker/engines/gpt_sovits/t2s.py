"""Continuous batching for GPT-SoVITS's text-to-semantic (T2S) decoder, on upstream's own weights and modules.

Upstream's `infer_panel_*` decode one fixed batch from start to finish. Here requests join (`admit`) and leave
(EOS, a token cap, `cancel`) between steps. Each request owns one row ("slot") of a KV cache allocated once, so a
step writes one position per row instead of concatenating, and a freed row is reused as is. Rows hold contexts of
different lengths; one step is a single batched forward pass in which a mask limits each row to its own positions.

What stays upstream's: the prefill (one request at a time, the same operations as the fused blocks'
`process_prompt`, so its KV is exactly the single-request one), the embeddings, the weights of every block, and
the decoding rules of `infer_panel_naive`: EOS is not allowed for the first 11 tokens, the repetition penalty
counts the prompt's tokens, top-p comes before the temperature and top-k after it, a step stops on EOS when either the sampled or the
(penalised) arg-max token is EOS, and `early_stop_num` N keeps N + 1 tokens. Sampling noise comes from each
request's own `torch.Generator`, so a seeded request gets the same tokens whoever shares its batch; each step draws
exactly what upstream's step draws (one exponential per logit it samples from: the EOS logit is cut off, not masked,
while EOS is not allowed), so a generator seeded as `TTS.run` seeds the global one stays in step with it.

The model must be upstream's `Text2SemanticDecoder` (`TTS.t2s_model.model`) in eval mode, with its fused blocks
(`t2s_transformer`) as either GPT-SoVITS itself or gpt-sovits-cpufast builds them (see `_Layer`); nothing here
imports GPT-SoVITS, so the caller decides how it got onto the import path.
"""

from __future__ import annotations

from collections.abc import Collection
from dataclasses import dataclass, field
from typing import Any, Literal, Optional

import torch
import torch.nn.functional as F

FinishReason = Literal["eos", "early_stop", "max_tokens"]

UPSTREAM_MAX_DECODE_STEPS = 1500  # t2s_model.MAX_AR_DECODE_STEPS: upstream's hard cap on new tokens
MIN_TOKENS_BEFORE_EOS = 11  # infer_panel_naive drops the EOS logit while idx < 11


class T2SBatchError(Exception):
    """A request was refused by the batch decoder."""


class InvalidRequestError(T2SBatchError, ValueError):
    """The request's tensors or parameters cannot be decoded (wrong shape, top_k < 1, a duplicate id...)."""


class BatchFullError(T2SBatchError):
    """Every row of the cache is taken; admit again after a request finishes or is cancelled."""


class CacheCapacityError(T2SBatchError):
    """Text + prompt + the most new tokens the request may produce do not fit in one cache row."""

    def __init__(self, request_id: str, prefill: int, new_tokens: int, capacity: int) -> None:
        self.request_id = request_id
        self.needed = prefill + new_tokens - 1  # the last new token is never fed back, so it needs no KV position
        self.capacity = capacity
        super().__init__(
            f"request {request_id!r} needs {self.needed} KV positions ({prefill} for phonemes and prompt, "
            f"{new_tokens - 1} for new tokens), more than the {capacity} of a cache row: "
            "send a shorter text or prompt, or a smaller max_new_tokens / early_stop_num"
        )


@dataclass(frozen=True)
class T2SRequest:
    """One sentence to decode. Shapes follow what TTS.run hands to `infer_panel` (one item, no batch axis)."""

    request_id: str
    phoneme_ids: torch.Tensor  # [n_phones] long: the prompt text's phonemes followed by the target text's
    bert_features: torch.Tensor  # [1024, n_phones], same order as phoneme_ids
    prompt_semantic: Optional[torch.Tensor] = None  # [n_prompt] long: the reference audio's tokens; None = ref-free
    top_k: int = 15
    top_p: float = 1.0
    temperature: float = 1.0
    repetition_penalty: float = 1.35
    seed: Optional[int] = None  # None: a fresh nondeterministic seed
    early_stop_num: int = -1  # upstream's meaning: stop once more than N tokens exist; -1 = off
    max_new_tokens: int = UPSTREAM_MAX_DECODE_STEPS
    #: the noise source, used as is (`seed` ignored): a caller that draws from it between a request's decodes (a
    #: multi-sentence request, the vocoder's noise) keeps one random stream per request, as TTS.run keeps one per run
    generator: Optional[torch.Generator] = field(default=None, compare=False)

    def token_budget(self) -> int:
        """The most tokens this request can produce before EOS."""
        budget = self.max_new_tokens
        if self.early_stop_num != -1:
            budget = min(budget, self.early_stop_num + 1)
        return max(budget, 1)


@dataclass(frozen=True)
class StepEvent:
    """What one step did to one request."""

    request_id: str
    token: Optional[int]  # the new semantic token; None when this step ended the request on EOS (never output)
    finish: Optional[FinishReason] = None
    semantic: Optional[tuple[int, ...]] = None  # every generated token (prompt excluded), set when finished


@dataclass(frozen=True)
class _Layer:
    """One fused block's weights, each matrix as `x @ w` wants it ([in, out]). GPT-SoVITS's `T2SBlock` keeps them
    as `nn.Linear` does (`qkv_w`, `mlp.w1`: [out, in], used through `F.linear`); gpt-sovits-cpufast's keeps
    transposed copies (`qkv_w_t`, `mlp.w1_t`, used through `addmm`). `addmm` over the view `w.t()` is what
    `F.linear` runs, so either way a row gets the arithmetic of its model's own decode."""

    qkv_w: torch.Tensor
    qkv_b: torch.Tensor
    out_w: torch.Tensor
    out_b: torch.Tensor
    w1: torch.Tensor
    b1: torch.Tensor
    w2: torch.Tensor
    b2: torch.Tensor
    norm_w1: torch.Tensor
    norm_b1: torch.Tensor
    norm_eps1: float
    norm_w2: torch.Tensor
    norm_b2: torch.Tensor
    norm_eps2: float

    @classmethod
    def of(cls, block: Any) -> "_Layer":
        def weight(owner: Any, name: str) -> torch.Tensor:
            transposed: Optional[torch.Tensor] = getattr(owner, f"{name}_t", None)
            return transposed if transposed is not None else getattr(owner, name).t()

        mlp = block.mlp
        return cls(weight(block, "qkv_w"), block.qkv_b, weight(block, "out_w"), block.out_b, weight(mlp, "w1"),
                   mlp.b1, weight(mlp, "w2"), mlp.b2, block.norm_w1, block.norm_b1, float(block.norm_eps1),
                   block.norm_w2, block.norm_b2, float(block.norm_eps2))

    def attend_and_mix(self, x: torch.Tensor, attn: torch.Tensor) -> torch.Tensor:
        """The block after attention: output projection, residual, norm, MLP, residual, norm ([rows, hidden])."""
        dim = [x.shape[-1]]
        x = x + torch.addmm(self.out_b, attn, self.out_w)
        x = F.layer_norm(x, dim, self.norm_w1, self.norm_b1, self.norm_eps1)
        x = x + torch.addmm(self.b2, F.relu(torch.addmm(self.b1, x, self.w1)), self.w2)
        return F.layer_norm(x, dim, self.norm_w2, self.norm_b2, self.norm_eps2)


@dataclass
class _Slot:
    request: T2SRequest
    index: int
    generator: torch.Generator
    prompt_len: int
    length: int  # KV positions written in this row
    budget: int
    tokens: list[int] = field(default_factory=list)
    fresh: bool = True  # its prefill logits wait in `_pending`; the first token is sampled at the next step


class BatchDecoder:
    """Decodes up to `max_batch` requests at once over one preallocated KV cache of `max_len` positions a row.

    Not thread-safe: call it from the one thread that owns the device.
    """

    def __init__(self, model: Any, max_batch: int, max_len: int) -> None:
        if model.training:
            raise ValueError("the T2S model must be in eval mode (its positional embeddings apply dropout)")
        if max_batch < 1 or max_len < 2:
            raise ValueError("max_batch must be >= 1 and max_len >= 2")
        self._model = model
        self._layers = [_Layer.of(block) for block in model.t2s_transformer.blocks]
        weight: torch.Tensor = model.ar_predict_layer.weight
        self._device = weight.device
        self._dtype = weight.dtype
        self._eos: int = int(model.EOS)
        self._vocab: int = int(weight.shape[0])
        self._heads: int = int(model.num_head)
        self._dim: int = int(model.model_dim)
        self._bert_dim: int = int(model.bert_proj.in_features)
        if self._eos != self._vocab - 1:  # upstream disallows EOS by cutting off the last logit
            raise ValueError(f"EOS must be the last token of the vocabulary ({self._vocab - 1}), not {self._eos}")
        audio_pe: torch.Tensor = model.ar_audio_position.pe
        if max_len > audio_pe.shape[1]:
            raise ValueError(f"max_len {max_len} is longer than the model's positional table ({audio_pe.shape[1]})")
        # Same values upstream takes with `pe[:, pos].to(dtype)` each step, converted once.
        self._audio_pe = audio_pe[0].to(device=self._device, dtype=self._dtype)
        self.max_batch = max_batch
        self.max_len = max_len

        def rows(width: int, dtype: torch.dtype) -> torch.Tensor:
            return torch.zeros((max_batch, width), dtype=dtype, device=self._device)

        # Per layer [max_batch, max_len, hidden]: upstream's own cache layout (heads split at attention time).
        self._k = [torch.zeros((max_batch, max_len, self._dim), dtype=self._dtype, device=self._device)
                   for _ in self._layers]
        self._v = [torch.zeros_like(k) for k in self._k]
        self._pending = rows(self._vocab, self._dtype)  # logits of each fresh row's prefill
        self._seen = rows(self._vocab, torch.bool)  # tokens the repetition penalty applies to
        self._top_k = torch.ones(max_batch, dtype=torch.long, device=self._device)
        self._top_p = torch.ones(max_batch, dtype=self._dtype, device=self._device)
        self._temperature = torch.ones(max_batch, dtype=self._dtype, device=self._device)
        self._penalty = torch.ones(max_batch, dtype=self._dtype, device=self._device)
        self._slots: list[Optional[_Slot]] = [None] * max_batch
        self._by_id: dict[str, _Slot] = {}

    # ------------------------------------------------------------------ state --
    @property
    def active(self) -> tuple[str, ...]:
        return tuple(self._by_id)

    @property
    def free_slots(self) -> int:
        return self.max_batch - len(self._by_id)

    def slot_of(self, request_id: str) -> Optional[int]:
        slot = self._by_id.get(request_id)
        return None if slot is None else slot.index

    def generated(self, request_id: str) -> tuple[int, ...]:
        return tuple(self._by_id[request_id].tokens)

    # -------------------------------------------------------------- admission --
    def admit(self, request: T2SRequest) -> int:
        """Prefill `request` alone and write its KV into a free row; returns the row. Raises a T2SBatchError."""
        prompt = self._validate(request)
        prefill = int(request.phoneme_ids.shape[0]) + (0 if prompt is None else int(prompt.shape[0]))
        if prefill + request.token_budget() - 1 > self.max_len:
            raise CacheCapacityError(request.request_id, prefill, request.token_budget(), self.max_len)
        index = next((i for i, s in enumerate(self._slots) if s is None), None)
        if index is None:
            raise BatchFullError(f"all {self.max_batch} rows are decoding; admit {request.request_id!r} later")

        with torch.no_grad():
            logits = self._prefill(request, prompt, index)
            self._pending[index] = logits
            self._seen[index] = False
            if prompt is not None:
                self._seen[index, prompt] = True
            self._top_k[index] = request.top_k
            self._top_p[index] = request.top_p
            self._temperature[index] = request.temperature
            self._penalty[index] = request.repetition_penalty

        generator = request.generator
        if generator is None:
            generator = torch.Generator(device=self._device)
            if request.seed is None:
                generator.seed()
            else:
                generator.manual_seed(request.seed)
        slot = _Slot(request, index, generator, 0 if prompt is None else int(prompt.shape[0]), prefill,
                     request.token_budget())
        self._slots[index] = slot
        self._by_id[request.request_id] = slot
        return index

    def _validate(self, request: T2SRequest) -> Optional[torch.Tensor]:
        rid = request.request_id
        if rid in self._by_id:
            raise InvalidRequestError(f"request {rid!r} is already decoding")
        phones, bert = request.phoneme_ids, request.bert_features
        if phones.ndim != 1 or phones.shape[0] < 1 or phones.dtype != torch.long:
            raise InvalidRequestError(f"request {rid!r}: phoneme_ids must be a non-empty 1-D long tensor")
        if bert.ndim != 2 or tuple(bert.shape) != (self._bert_dim, phones.shape[0]):
            raise InvalidRequestError(
                f"request {rid!r}: bert_features must be [{self._bert_dim}, {phones.shape[0]}], "
                f"not {list(bert.shape)}"
            )
        if request.top_k < 1 or request.max_new_tokens < 1:
            raise InvalidRequestError(f"request {rid!r}: top_k and max_new_tokens must be >= 1")
        if request.temperature < 0 or request.repetition_penalty <= 0:
            raise InvalidRequestError(f"request {rid!r}: temperature must be >= 0, repetition_penalty > 0")
        prompt = request.prompt_semantic
        if prompt is None or prompt.numel() == 0:
            return None  # upstream's ref-free mode
        if prompt.ndim != 1 or prompt.dtype != torch.long:
            raise InvalidRequestError(f"request {rid!r}: prompt_semantic must be a 1-D long tensor")
        if int(prompt.min()) < 0 or int(prompt.max()) >= self._eos:
            raise InvalidRequestError(f"request {rid!r}: prompt_semantic tokens must be in [0, {self._eos})")
        return prompt.to(self._device)

    def _prefill(self, request: T2SRequest, prompt: Optional[torch.Tensor], index: int) -> torch.Tensor:
        """Run the request's text and prompt through every block, writing their KV into row `index`; returns the
        logits of the first new token."""
        m = self._model
        phones = request.phoneme_ids.to(self._device).unsqueeze(0)
        bert = request.bert_features.to(device=self._device, dtype=self._dtype).transpose(0, 1).unsqueeze(0)
        xy: torch.Tensor = m.ar_text_position(m.ar_text_embedding(phones) + m.bert_proj(bert))
        n_text = xy.shape[1]
        if prompt is not None:
            xy = torch.cat([xy, m.ar_audio_position(m.ar_audio_embedding(prompt.unsqueeze(0)))], dim=1)
        total = xy.shape[1]
        # True = hidden (upstream's convention; process_prompt inverts it for SDPA). Text sees all the text and no
        # prompt; the prompt sees all the text and itself causally.
        hidden = torch.zeros((total, total), dtype=torch.bool, device=self._device)
        hidden[:n_text, n_text:] = True
        hidden[n_text:, n_text:] = torch.ones_like(hidden[n_text:, n_text:]).triu(1)
        visible = ~hidden.expand(1, self._heads, total, total)
        x = xy[0]
        heads = self._heads
        for layer, k_cache, v_cache in zip(self._layers, self._k, self._v, strict=True):
            q, k, v = torch.addmm(layer.qkv_b, x, layer.qkv_w).chunk(3, dim=-1)
            k_cache[index, :total] = k
            v_cache[index, :total] = v
            q, k, v = (t.view(1, total, heads, -1).transpose(1, 2) for t in (q, k, v))
            attn = F.scaled_dot_product_attention(q, k, v, attn_mask=visible)
            x = layer.attend_and_mix(x, attn.transpose(1, 2).reshape(total, -1))
        logits: torch.Tensor = m.ar_predict_layer(x[-1:])  # [1, hidden], as upstream's own prefill
        return logits[0]

    def cancel(self, request_id: str) -> bool:
        """Free the request's row now; False if it is not decoding. Its stale KV is simply masked out later."""
        slot = self._by_id.pop(request_id, None)
        if slot is None:
            return False
        self._slots[slot.index] = None
        return True

    # ------------------------------------------------------------------- step --
    def step(self, hold: Collection[str] = ()) -> list[StepEvent]:
        """Give every decoding request one more token (one batched forward pass); finished rows are freed.
        Requests in `hold` sit this step out, their rows untouched (a caller whose request must not draw from its
        generator yet, while another thread vocodes with it)."""
        slots = [s for s in self._slots if s is not None and s.request.request_id not in hold]
        if not slots:
            return []
        fed = [s for s in slots if not s.fresh]
        fresh = [s for s in slots if s.fresh]
        order = fed + fresh
        with torch.no_grad():
            parts: list[torch.Tensor] = []
            if fed:
                parts.append(self._forward(fed))
            if fresh:
                parts.append(self._pending[torch.tensor([s.index for s in fresh], device=self._device)])
            tokens, greedy = self._sample(order, torch.cat(parts) if len(parts) > 1 else parts[0])
        for s in fed:
            s.length += 1
        events: list[StepEvent] = []
        for s, token, top in zip(order, tokens, greedy, strict=True):
            s.fresh = False
            finish: Optional[FinishReason] = None
            if token == self._eos or top == self._eos:
                finish, new = "eos", None
            else:
                new = token
                s.tokens.append(token)
                if s.request.early_stop_num != -1 and len(s.tokens) > s.request.early_stop_num:
                    finish = "early_stop"
                elif len(s.tokens) >= s.budget:
                    finish = "max_tokens"
            if finish is not None:
                self.cancel(s.request.request_id)
                events.append(StepEvent(s.request.request_id, new, finish, tuple(s.tokens)))
            else:
                events.append(StepEvent(s.request.request_id, new))
        return events

    def _forward(self, fed: list[_Slot]) -> torch.Tensor:
        """Feed each row's last token at its own position; returns next-token logits [len(fed), vocab]."""
        meta = torch.tensor(
            [[s.index, s.length, s.prompt_len + len(s.tokens) - 1, s.tokens[-1]] for s in fed], device=self._device
        )
        rows, write, audio_pos, last = meta.unbind(1)
        pos = self._model.ar_audio_position
        emb: torch.Tensor = self._model.ar_audio_embedding(last)
        x = emb * pos.x_scale + pos.alpha * self._audio_pe[audio_pos]  # [n, hidden]

        # Attention runs over the contiguous rows [0, span) so the cache is only sliced (a view), never gathered;
        # rows in that span that are free or fresh attend to position 0 only and their outputs are dropped.
        span = max(s.index for s in fed) + 1
        width = max(s.length for s in fed) + 1
        last_pos = torch.zeros(span, dtype=torch.long, device=self._device)
        last_pos[rows] = write
        visible = torch.arange(width, device=self._device).unsqueeze(0) <= last_pos.unsqueeze(1)
        visible = visible.view(span, 1, 1, width)
        heads, dim = self._heads, self._dim
        for layer, k_cache, v_cache in zip(self._layers, self._k, self._v, strict=True):
            q, k, v = torch.addmm(layer.qkv_b, x, layer.qkv_w).chunk(3, dim=-1)
            k_cache[rows, write] = k
            v_cache[rows, write] = v
            q_span = x.new_zeros((span, dim)).index_copy_(0, rows, q)
            attn = F.scaled_dot_product_attention(
                q_span.view(span, 1, heads, -1).transpose(1, 2),
                k_cache[:span, :width].view(span, width, heads, -1).transpose(1, 2),
                v_cache[:span, :width].view(span, width, heads, -1).transpose(1, 2),
                attn_mask=visible,
            )
            x = layer.attend_and_mix(x, attn.transpose(1, 2).reshape(span, dim)[rows])
        logits: torch.Tensor = self._model.ar_predict_layer(x)
        return logits

    def _sample(self, order: list[_Slot], logits: torch.Tensor) -> tuple[list[int], list[int]]:
        """Upstream's logits_to_probs + multinomial_sample_one_no_sync, with per-row parameters and noise."""
        rows = torch.tensor([s.index for s in order], device=self._device)
        no_eos = torch.tensor([len(s.tokens) < MIN_TOKENS_BEFORE_EOS for s in order], device=self._device)
        neg_inf = float("-inf")
        logits = logits.clone()
        logits[:, self._eos] = logits[:, self._eos].masked_fill(no_eos, neg_inf)
        penalty = self._penalty[rows].unsqueeze(1)
        penalised = torch.where(logits < 0, logits * penalty, logits / penalty)
        logits = torch.where(self._seen[rows], penalised, logits)
        greedy = logits.argmax(dim=-1)  # upstream also stops when the penalised arg-max is EOS

        if any(s.request.top_p < 1.0 for s in order):
            top_p = self._top_p[rows].unsqueeze(1)
            ranked, ranking = logits.sort(dim=-1, descending=True)
            cut = (ranked.softmax(dim=-1).cumsum(dim=-1) > top_p) & (top_p < 1.0)
            cut[:, 0] = False  # always keep the most likely token
            logits = logits.masked_fill(cut.scatter(1, ranking, cut), neg_inf)
        logits = logits / self._temperature[rows].clamp(min=1e-5).unsqueeze(1)
        kth = (self._top_k[rows].clamp(max=self._vocab) - 1).unsqueeze(1)
        pivot = logits.sort(dim=-1, descending=True).values.gather(1, kth)
        probs = logits.masked_fill(logits < pivot, neg_inf).softmax(dim=-1)

        # Exponential noise then arg-max is upstream's multinomial draw; one draw per row from its own generator.
        noise = torch.stack([self._noise(s, probs.dtype) for s in order])
        tokens = (probs / noise).argmax(dim=-1)
        self._seen[rows, tokens] = True
        both: list[list[int]] = torch.stack([tokens, greedy]).tolist()
        return both[0], both[1]

    def _noise(self, slot: _Slot, dtype: torch.dtype) -> torch.Tensor:
        """One row's exponential noise, as many values as upstream draws: while EOS is not allowed, upstream samples
        from the logits without the last one (EOS), so it draws one fewer; that column's probability is 0 here, and
        its noise 1 leaves it at 0."""
        width = self._vocab - 1 if len(slot.tokens) < MIN_TOKENS_BEFORE_EOS else self._vocab
        noise = torch.empty(width, dtype=dtype, device=self._device).exponential_(1, generator=slot.generator)
        if width < self._vocab:
            noise = torch.cat([noise, noise.new_ones(self._vocab - width)])
        return noise
