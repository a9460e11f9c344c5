"""Fast batched sampling from any Hugging Face causal LM: the hot path of language-model RL.

:func:`sample` takes ragged prompts (token ids), left-pads them, prefills each *distinct* prompt
once with the model's own forward pass, copies the keys/values into a preallocated cache (one
``[rows, kv_heads, prompt_len + max_new_tokens, head_dim]`` buffer per layer, written in place:
no per-step ``torch.cat`` of a growing cache, which is where ``model.generate`` spends most of its
time on CPU) and decodes one token per step for the whole batch:

- ``backend="fused"`` (Llama / Qwen2 / Mistral-style models, plain or with peft LoRA adapters): a lean
  decode step written against the model's weights (fused QKV and gate/up projections, grouped-query
  attention without repeating keys, one precomputed rotary table, LoRA deltas merged in, or left out
  under ``disable_adapter()``); ``"hf"``: the model's own forward with the preallocated cache (any
  architecture using the ``transformers`` cache API: GPT-2, Llama, Qwen2, ...); ``"auto"`` picks
  ``fused`` when the model supports it;
- rows that finished (EOS or stop string) are dropped from the batch once the live fraction falls
  under ``compact_fraction``, so finished sequences stop costing work;
- stop strings are matched on token ids with an Aho-Corasick automaton over the vocabulary
  (:class:`StopStrings`), one table lookup per step, no decoding.

Log-probabilities (documented choice): ``Samples.logprobs`` is the log-probability of each sampled
token under the *processed* distribution that was actually sampled from (temperature, then top-k,
then top-p, then renormalised; 0 for greedy decoding), i.e. the behaviour policy.
``Samples.raw_logprobs`` is the model's own log-softmax at temperature 1 with no truncation: what
:func:`policyopt.lm.logprobs.completion_logprobs` recomputes in the training forward pass.

Randomness comes only from the explicit ``torch.Generator`` (Gumbel-max over the processed
log-probs): the same seed, prompts and config give the same samples.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Annotated, Literal

import pydantic
import torch
import torch.nn.functional as F
from transformers import DynamicCache
from transformers.cache_utils import DynamicLayer

from policyopt.core.config import configclass
from policyopt.lm.logprobs import eval_mode, left_pad, position_ids, unwrap_model

FINISH_LENGTH, FINISH_EOS, FINISH_STOP = 0, 1, 2


@configclass
class SamplingConfig:
    """How to sample completions."""

    max_new_tokens: Annotated[int, pydantic.Field(ge=1)] = 128
    """Maximum number of generated tokens per completion."""
    temperature: Annotated[float, pydantic.Field(ge=0)] = 1.0
    """Softmax temperature; 0 means greedy decoding."""
    top_k: Annotated[int, pydantic.Field(ge=0)] = 0
    """Keep only the k most likely tokens (ties with the k-th kept); 0 disables."""
    top_p: Annotated[float, pydantic.Field(gt=0, le=1)] = 1.0
    """Nucleus sampling: keep the smallest set of tokens whose probability reaches top_p; 1 disables."""
    stop_strings: tuple[str, ...] = ()
    """A completion ends after the token that completes any of these strings (the token is kept)."""
    stop_at_eos: bool = True
    """End a completion at an EOS token (kept in the completion); False forces max_new_tokens."""
    samples_per_prompt: Annotated[int, pydantic.Field(ge=1)] = 1
    """Completions per prompt (a GRPO group); each prompt is prefilled once and its cache shared."""
    compact_fraction: Annotated[float, pydantic.Field(ge=0, le=1)] = 0.5
    """Drop finished rows from the batch when the live fraction falls to this value (0 never)."""
    backend: Literal["auto", "fused", "hf"] = "auto"
    """Decode step: fused Llama-family kernel, the model's own forward, or auto-select."""


@dataclass(frozen=True)
class Samples:
    """A batch of sampled completions; row ``i`` continues prompt ``prompt_index[i]``.

    ``prompt_ids``/``prompt_mask`` ``[B, P]`` left-padded (repeated ``samples_per_prompt`` times,
    grouped by prompt); ``completion_ids``/``completion_mask`` ``[B, N]`` right-padded with the pad id;
    ``logprobs``/``raw_logprobs`` ``[B, N]`` float32, 0 at padding (see the module docstring);
    ``finish_reason [B]``: 0 = length, 1 = EOS, 2 = stop string; ``prompt_index [B]``.
    """

    prompt_ids: torch.Tensor
    prompt_mask: torch.Tensor
    completion_ids: torch.Tensor
    completion_mask: torch.Tensor
    logprobs: torch.Tensor
    raw_logprobs: torch.Tensor
    finish_reason: torch.Tensor
    prompt_index: torch.Tensor

    @property
    def input_ids(self) -> torch.Tensor:
        """Prompt and completion side by side ``[B, P + N]`` (the training forward's input)."""
        return torch.cat([self.prompt_ids, self.completion_ids], 1)

    @property
    def attention_mask(self) -> torch.Tensor:
        """``[B, P + N]`` bool: real tokens of ``input_ids``."""
        return torch.cat([self.prompt_mask, self.completion_mask], 1)

    @property
    def completion_lengths(self) -> torch.Tensor:
        """Generated tokens per row ``[B]``."""
        return self.completion_mask.sum(-1)

    @property
    def num_tokens(self) -> int:
        """Total number of generated tokens."""
        return int(self.completion_mask.sum())

    def completion_lists(self) -> list[list[int]]:
        """Completion token ids per row, without padding (token-in/token-out users)."""
        return [row[m].tolist() for row, m in zip(self.completion_ids, self.completion_mask)]


class StopStrings:
    """Stop strings matched on token ids: an Aho-Corasick automaton lifted to whole tokens.

    For every automaton state ``s`` and token ``v`` the tables hold the next state after reading the
    token's text and whether a stop string ended inside it, so one step is one gather per row
    (``advance``). Exact whenever the text of a sequence is the concatenation of its tokens' texts
    (true for character, byte-level BPE and SentencePiece tokenizers, except for a multi-byte
    character split across tokens).
    """

    def __init__(self, token_texts: Sequence[str], stop_strings: Sequence[str]):
        if not stop_strings or any(not s for s in stop_strings):
            raise ValueError(f"stop_strings must be non-empty strings, got {list(stop_strings)!r}")
        goto, fail, out = _aho_corasick(stop_strings)
        alphabet = set("".join(stop_strings))
        n_states, vocab = len(goto), len(token_texts)
        trans = torch.zeros((n_states, vocab), dtype=torch.long)
        hit = torch.zeros((n_states, vocab), dtype=torch.bool)
        def run(state: int, text: str) -> tuple[int, bool]:
            matched = False
            for ch in text:
                while state and ch not in goto[state]:
                    state = fail[state]
                state = goto[state].get(ch, 0)
                matched = matched or out[state]
            return state, matched

        for v, text in enumerate(token_texts):
            if not text:  # an empty token leaves the automaton where it is
                trans[:, v] = torch.arange(n_states)
            if not alphabet.intersection(text):
                continue  # otherwise every state falls back to the root, no match
            # past the first character outside the stop strings' alphabet the automaton is at the root
            # whatever the start state: run that tail once, and only the head from every state
            cut = next((i for i, ch in enumerate(text) if ch not in alphabet), len(text))
            tail = run(0, text[cut + 1:]) if cut < len(text) else None
            for s in range(n_states):
                state, matched = run(s, text[:cut])
                if tail is not None:
                    state, matched = tail[0], matched or tail[1]
                trans[s, v], hit[s, v] = state, matched
        self.stop_strings = tuple(stop_strings)
        self.vocab_size = vocab
        self._trans, self._hit = trans.view(-1), hit.view(-1)

    @classmethod
    def from_tokenizer(cls, tokenizer, stop_strings: Sequence[str], vocab_size: int | None = None) -> StopStrings:
        """Build the tables from a Hugging Face tokenizer (``vocab_size``: the model's output size)."""
        return cls(token_texts(tokenizer, vocab_size), stop_strings)

    def advance(self, state: torch.Tensor, tokens: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """``state [b]``, ``tokens [b]`` -> ``(next_state [b], stop_hit [b] bool)``."""
        flat = state * self.vocab_size + tokens
        return self._trans[flat], self._hit[flat]


def _aho_corasick(patterns: Sequence[str]) -> tuple[list[dict[str, int]], list[int], list[bool]]:
    goto: list[dict[str, int]] = [{}]
    out = [False]
    for pattern in patterns:
        state = 0
        for ch in pattern:
            if ch not in goto[state]:
                goto.append({})
                out.append(False)
                goto[state][ch] = len(goto) - 1
            state = goto[state][ch]
        out[state] = True
    fail = [0] * len(goto)
    queue = list(goto[0].values())
    while queue:
        state = queue.pop(0)
        for ch, nxt in goto[state].items():
            f = fail[state]
            while f and ch not in goto[f]:
                f = fail[f]
            fail[nxt] = goto[f].get(ch, 0) if goto[f].get(ch, 0) != nxt else 0
            out[nxt] = out[nxt] or out[fail[nxt]]
            queue.append(nxt)
    return goto, fail, out


def token_texts(tokenizer, vocab_size: int | None = None) -> list[str]:
    """The text each token id contributes when it follows other text (``""`` past the tokenizer)."""
    n = len(tokenizer)
    single = tokenizer.batch_decode([[i] for i in range(n)], clean_up_tokenization_spaces=False)
    # SentencePiece decoders drop the leading space of the *first* token: decode after an anchor
    anchor = next((i for i, t in enumerate(single) if len(t) == 1 and t.isalnum()), None)
    if anchor is not None:
        paired = tokenizer.batch_decode([[anchor, i] for i in range(n)], clean_up_tokenization_spaces=False)
        head = single[anchor]
        single = [p[len(head):] if p.startswith(head) else s for p, s in zip(paired, single)]
    size = max(n, vocab_size or 0)
    return single + [""] * (size - n)


def process_logits(logits: torch.Tensor, temperature: float, top_k: int, top_p: float) -> torch.Tensor:
    """Temperature, then top-k, then top-p on ``[b, V]`` float logits; removed tokens become -inf.

    top-k keeps every token whose logit is >= the k-th largest; top-p keeps, in descending order, each
    token whose preceding cumulative probability is < ``top_p`` (so at least one token survives).
    """
    if temperature != 1.0:
        logits = logits / temperature
    vocab = logits.shape[-1]
    if 0 < top_k < vocab:
        kth = logits.topk(top_k, dim=-1).values[:, -1:]
        logits = logits.masked_fill(logits < kth, float("-inf"))
    if top_p < 1.0:
        sorted_logits, order = logits.sort(dim=-1, descending=True)
        probs = sorted_logits.softmax(-1)
        remove_sorted = (probs.cumsum(-1) - probs) >= top_p
        remove = torch.zeros_like(remove_sorted).scatter_(-1, order, remove_sorted)
        logits = logits.masked_fill(remove, float("-inf"))
    return logits


def _choose(logits: torch.Tensor, cfg: SamplingConfig, generator: torch.Generator | None):
    """One sampling step on ``[b, V]`` logits -> ``(tokens [b], logprobs [b], raw_logprobs [b])``."""
    logits = logits.float()
    raw = logits.log_softmax(-1)
    if cfg.temperature == 0:
        tokens = logits.argmax(-1)
        chosen_lp = torch.zeros(tokens.shape, dtype=raw.dtype)
    else:
        plain = cfg.temperature == 1.0 and cfg.top_k == 0 and cfg.top_p == 1.0
        logp = raw if plain else process_logits(logits, cfg.temperature, cfg.top_k, cfg.top_p).log_softmax(-1)
        # Gumbel-max: argmax(log p - log E), E ~ Exp(1). (E = -log U with uniform_ would be ~5x cheaper to
        # draw but changes every seeded stream; kept as is so seeded results stay stable.)
        noise = torch.empty_like(logp).exponential_(generator=generator).log_()
        tokens = (logp - noise).argmax(-1)
        chosen_lp = logp.gather(-1, tokens[:, None]).squeeze(-1)
        if plain:
            return tokens, chosen_lp, chosen_lp
    return tokens, chosen_lp, raw.gather(-1, tokens[:, None]).squeeze(-1)


# ----------------------------------------------------------------------------------------- decoders
class _BufferLayer(DynamicLayer):
    """A ``transformers`` cache layer writing into a preallocated buffer (views, no concatenation)."""

    def __init__(self, keys: torch.Tensor, values: torch.Tensor, length: int):
        super().__init__()
        self.kbuf, self.vbuf, self.length = keys, values, length
        self.is_initialized = True
        self.device, self.dtype = keys.device, keys.dtype
        self._refresh()

    def _refresh(self) -> None:
        self.keys = self.kbuf[:, :, : self.length]
        self.values = self.vbuf[:, :, : self.length]

    def update(self, key_states, value_states, *args, **kwargs):
        new = key_states.shape[-2]
        self.kbuf[:, :, self.length: self.length + new] = key_states
        self.vbuf[:, :, self.length: self.length + new] = value_states
        self.length += new
        self._refresh()
        return self.keys, self.values

    def select(self, rows: torch.Tensor) -> None:
        self.kbuf, self.vbuf = self.kbuf.index_select(0, rows), self.vbuf.index_select(0, rows)
        self._refresh()


class _HFDecoder:
    """Decode step through the model's own forward pass and a preallocated cache (any HF model)."""

    def __init__(self, model, keys, values, prompt_mask: torch.Tensor, capacity: int):
        self.model = model
        self.cache = DynamicCache()
        self.cache.layers = [_BufferLayer(k, v, prompt_mask.shape[1]) for k, v in zip(keys, values)]
        self.cache.layer_class_to_replicate = None
        self.attn = torch.ones((prompt_mask.shape[0], capacity), dtype=torch.long)
        self.attn[:, : prompt_mask.shape[1]] = prompt_mask.long()

    def step(self, tokens: torch.Tensor, positions: torch.Tensor, column: int) -> torch.Tensor:
        out = self.model(input_ids=tokens[:, None], attention_mask=self.attn[:, : column + 1],
                         position_ids=positions[:, None], cache=self.cache, use_cache=True, logits_to_keep=1)
        return out.logits[:, -1]

    def select(self, rows: torch.Tensor) -> None:
        for layer in self.cache.layers:
            layer.select(rows)
        self.attn = self.attn.index_select(0, rows)


_FUSED_TYPES = ("llama", "qwen2", "mistral")
_STATIC_ROPE = ("default", "linear", "llama3")


def fused_supported(model: torch.nn.Module) -> str | None:
    """None if the fused decode step supports ``model``, else the reason it does not."""
    hf = unwrap_model(model)
    cfg = hf.config
    if cfg.model_type not in _FUSED_TYPES:
        return f"model_type {cfg.model_type!r} is not one of {_FUSED_TYPES}"
    if getattr(cfg, "hidden_act", "silu") != "silu":
        return f"hidden_act {cfg.hidden_act!r} is not silu"
    if any(t != "full_attention" for t in (getattr(cfg, "layer_types", None) or [])):
        return "sliding-window layers"
    if cfg.model_type == "mistral" and getattr(cfg, "sliding_window", None):
        return "sliding-window attention"
    rope = (getattr(cfg, "rope_parameters", None) or {}).get("rope_type", "default")
    if rope not in _STATIC_ROPE:
        return f"rope_type {rope!r} is not one of {_STATIC_ROPE}"
    for i, layer in enumerate(hf.model.layers):
        for name in _PROJECTIONS:
            if linear_params(layer.get_submodule(name), merge=False) is None:
                return f"layers.{i}.{name} is a {type(layer.get_submodule(name)).__name__}, not a plain/LoRA Linear"
    if type(hf.model.embed_tokens) is not torch.nn.Embedding:
        return f"embed_tokens is a {type(hf.model.embed_tokens).__name__}, not a plain Embedding"
    if linear_params(hf.lm_head, merge=False) is None:
        return f"lm_head is a {type(hf.lm_head).__name__}, not a plain/LoRA Linear"
    return None


_PROJECTIONS = ("self_attn.q_proj", "self_attn.k_proj", "self_attn.v_proj", "self_attn.o_proj",
                "mlp.gate_proj", "mlp.up_proj", "mlp.down_proj")


def linear_params(module: torch.nn.Module, merge: bool = True) -> tuple[torch.Tensor, torch.Tensor | None] | None:
    """Effective ``(weight [out, in], bias)`` of a ``nn.Linear`` or a peft LoRA ``Linear``, else None.

    LoRA: ``W + sum_a scaling_a * B_a @ A_a`` over the active adapters, or the base weight when the
    adapters are disabled (``policy.reference()``) or merged. DoRA / variants / adapter biases: None.
    ``merge=False`` only checks support (returns the base weight).
    """
    if type(module) is torch.nn.Linear:
        return module.weight, module.bias
    base = getattr(module, "base_layer", None)
    if type(base) is not torch.nn.Linear or not hasattr(module, "lora_A"):
        return None
    if module.disable_adapters or module.merged:
        return base.weight, base.bias
    weight = base.weight
    for name in module.active_adapters:
        if name not in module.lora_A:
            continue
        if module.use_dora.get(name) or getattr(module, "lora_variant", {}).get(name) is not None \
                or module.lora_B[name].bias is not None:
            return None
        if merge:
            weight = weight + module.scaling[name] * (module.lora_B[name].weight @ module.lora_A[name].weight)
    return weight, base.bias


def _lora_state(model: torch.nn.Module) -> tuple:
    return tuple((id(m), m.disable_adapters, tuple(m.active_adapters)) for m in model.modules() if hasattr(m, "lora_A"))


class _FusedDecoder:
    """Decode step for Llama-family models written against their weights (same math as HF).

    Weights are re-laid out once per call: Q/K/V and gate/up fused, stored ``[in, out]`` (a plain
    ``x @ W`` GEMM is faster than ``x @ W.T`` for few rows), RMSNorm gains folded into the next
    projection, the attention scale folded into the query weights (RoPE is linear, so it commutes).
    Keys and values are cached as ``[rows, kv_heads, capacity, head_dim]``.
    """

    def __init__(self, model, keys, values, prompt_mask: torch.Tensor, capacity: int, max_position: int):
        hf = unwrap_model(model)
        base, cfg = hf.model, hf.config
        attn0 = base.layers[0].self_attn
        self.head_dim = attn0.head_dim
        self.n_heads, self.n_kv = cfg.num_attention_heads, cfg.num_key_value_heads
        self.eps = base.norm.variance_epsilon
        # the re-laid-out weights are cached on the model until any parameter changes in place
        version = (tuple((id(p), p._version) for p in hf.parameters()), _lora_state(hf))
        cached = hf.__dict__.get("_policyopt_fused_weights")
        if cached is None or cached[0] != version:
            head_w, head_b = linear_params(hf.lm_head)
            head = (head_w * base.norm.weight).T.contiguous(), head_b
            q_rows = self.n_heads * self.head_dim
            layers = [self._layer_weights(layer, q_rows, attn0.scaling) for layer in base.layers]
            cached = (version, head, layers)
            hf.__dict__["_policyopt_fused_weights"] = cached
        self.head, self.layers = cached[1], cached[2]
        self.embed = base.embed_tokens.weight
        self.keys, self.values = keys, values
        self.bias = torch.zeros((prompt_mask.shape[0], capacity), dtype=keys[0].dtype)
        self.bias[:, : prompt_mask.shape[1]].masked_fill_(~prompt_mask, float("-inf"))
        cos, sin = base.rotary_emb(self.embed[:1], torch.arange(max_position)[None])
        half = self.head_dim // 2
        # rotate_half(x) * sin == flip_halves(x) * [-sin_1, sin_2]: one flip and one addcmul per layer
        self.cos, self.sin = cos[0], torch.cat([-sin[0, :, :half], sin[0, :, half:]], -1)  # [max_pos, d]
        self.eps = torch.tensor(self.eps, dtype=keys[0].dtype)

    @staticmethod
    def _layer_weights(layer, q_rows: int, scaling: float) -> tuple:
        a, m = layer.self_attn, layer.mlp

        def fused(gain, *linears, scale_rows: int = 0):  # [in, out] weight (norm gain folded in), bias
            params = [linear_params(x) for x in linears]
            weight = torch.cat([w for w, _ in params])
            bias = torch.cat([b for _, b in params]) if params[0][1] is not None else None
            if scale_rows:
                weight, bias = weight.clone(), bias.clone() if bias is not None else None
                weight[:scale_rows] *= scaling
                if bias is not None:
                    bias[:scale_rows] *= scaling
            weight = weight * gain if gain is not None else weight
            return weight.T.contiguous(), bias

        return (*fused(layer.input_layernorm.weight, a.q_proj, a.k_proj, a.v_proj, scale_rows=q_rows),
                *fused(None, a.o_proj), *fused(layer.post_attention_layernorm.weight, m.gate_proj, m.up_proj),
                *fused(None, m.down_proj))

    def _norm(self, x: torch.Tensor) -> torch.Tensor:
        """RMSNorm without its gain (folded into the next weight): ``x / sqrt(mean(x^2) + eps)``."""
        mean_sq = torch.add(self.eps, torch.linalg.vecdot(x, x), alpha=1.0 / x.shape[-1])
        return x * mean_sq.unsqueeze_(-1).rsqrt_()

    def step(self, tokens: torch.Tensor, positions: torch.Tensor, column: int) -> torch.Tensor:
        """``tokens [b]`` at ``positions [b]``, written to cache column ``column`` -> logits ``[b, V]``."""
        b, d, h, n_kv = tokens.shape[0], self.head_dim, self.n_heads, self.n_kv
        g, half, t, heads = h // n_kv, self.head_dim // 2, column + 1, h + n_kv
        x = F.embedding(tokens, self.embed)
        cos, sin = self.cos[positions][:, None], self.sin[positions][:, None]  # [b, 1, d]
        bias = self.bias[:, None, None, :t]  # -inf at left padding, broadcast over [b, kv_heads, group, t]
        for i, (wqkv, bqkv, wo, bo, wgu, bgu, wd, bd) in enumerate(self.layers):
            qkv = _linear(self._norm(x), wqkv, bqkv)
            qk = qkv[:, : heads * d].view(b, heads, d)
            qk = torch.addcmul(qk * cos, qk.view(b, heads, 2, half).flip(2).view(b, heads, d), sin)  # RoPE
            kc, vc = self.keys[i], self.values[i]
            kc[:, :, column] = qk[:, h:]
            vc[:, :, column] = qkv[:, heads * d:].view(b, n_kv, d)
            # grouped-query attention for one query: [b*kv, g, d] x [b*kv, d, t], keys never repeated
            keys = kc[:, :, :t].reshape(b * n_kv, t, d).transpose(1, 2)
            scores = torch.bmm(qk[:, :h].reshape(b * n_kv, g, d), keys)  # bmm + add_ beats baddbmm here
            probs = scores.view(b, n_kv, g, t).add_(bias).view(b * n_kv, g, t).softmax(-1)
            attn = torch.bmm(probs, vc[:, :, :t].reshape(b * n_kv, t, d))
            x = _linear(attn.view(b, h * d), wo, bo, residual=x)
            gate, up = _linear(self._norm(x), wgu, bgu).chunk(2, -1)
            x = _linear(F.silu(gate).mul_(up), wd, bd, residual=x)
        return _linear(self._norm(x), *self.head)

    def select(self, rows: torch.Tensor) -> None:
        self.keys = [k.index_select(0, rows) for k in self.keys]
        self.values = [v.index_select(0, rows) for v in self.values]
        self.bias = self.bias.index_select(0, rows)


def _linear(x: torch.Tensor, weight_t: torch.Tensor, bias: torch.Tensor | None,
            residual: torch.Tensor | None = None) -> torch.Tensor:
    """``residual + x @ weight_t + bias`` with as few kernel calls as possible."""
    if residual is None:
        return torch.mm(x, weight_t) if bias is None else torch.addmm(bias, x, weight_t)
    out = torch.addmm(residual, x, weight_t)
    return out if bias is None else out.add_(bias)


# --------------------------------------------------------------------------------------- sampling
def _prefill(model, ids: torch.Tensor, mask: torch.Tensor):
    """Run the distinct prompts once -> (last-position logits ``[Bp, V]``, per-layer (keys, values))."""
    out = model(input_ids=ids, attention_mask=mask.long(), position_ids=position_ids(mask),
                cache=DynamicCache(), use_cache=True, logits_to_keep=1)
    cache = getattr(out, "cache", None) or out.past_key_values
    return out.logits[:, -1], [(layer.keys, layer.values) for layer in cache.layers]


def _buffer(prefix: torch.Tensor, repeats: int, capacity: int) -> torch.Tensor:
    """Preallocate ``[rows * repeats, heads, capacity, dim]`` with the prompt's keys (or values) in front."""
    rows, heads, length, dim = prefix.shape
    buf = prefix.new_empty((rows * repeats, heads, capacity, dim))
    buf[:, :, :length] = prefix.repeat_interleave(repeats, 0) if repeats > 1 else prefix
    return buf


def sample(
    model: torch.nn.Module,
    prompts: Sequence[Sequence[int]],
    config: SamplingConfig,
    *,
    generator: torch.Generator | None,
    pad_token_id: int,
    eos_token_ids: Sequence[int] = (),
    stop: StopStrings | None = None,
) -> Samples:
    """Sample ``config.samples_per_prompt`` completions for each prompt (ragged token-id lists).

    ``generator`` seeds every random choice (pass ``None`` only for greedy decoding). ``stop`` is
    required when ``config.stop_strings`` is set (build it once with :meth:`StopStrings.from_tokenizer`;
    :class:`~policyopt.lm.policy.LMPolicy` caches it). Runs under ``torch.inference_mode`` with the
    model temporarily in eval mode. Returns :class:`Samples` with ``B = len(prompts) * samples_per_prompt``.
    """
    if config.temperature > 0 and generator is None:
        raise ValueError("sample: pass an explicit torch.Generator (seeded) unless temperature == 0")
    if config.stop_strings and (stop is None or stop.stop_strings != tuple(config.stop_strings)):
        raise ValueError("sample: config.stop_strings needs a matching StopStrings(tokenizer, stop_strings)")
    ids, mask = left_pad(prompts, pad_token_id)
    repeats = config.samples_per_prompt
    prompt_len, n_new = ids.shape[1], config.max_new_tokens
    capacity = prompt_len + n_new
    limit = getattr(unwrap_model(model).config, "n_positions", None)  # learned absolute positions (GPT-2)
    if limit is not None and int(mask.sum(1).max()) + n_new > limit:
        raise ValueError(f"sample: longest prompt ({int(mask.sum(1).max())} tokens) + max_new_tokens ({n_new}) "
                         f"exceeds the model's n_positions ({limit})")
    with torch.inference_mode(), eval_mode(model):
        logits, prefix_kv = _prefill(model, ids, mask)
        logits = logits.repeat_interleave(repeats, 0) if repeats > 1 else logits
        row_mask = mask.repeat_interleave(repeats, 0)
        decoder = _make_decoder(model, config.backend, prefix_kv, repeats, row_mask, capacity,
                                int(mask.sum(1).max()) + n_new)
        eos = torch.as_tensor(list(eos_token_ids) if config.stop_at_eos else [], dtype=torch.long)
        loop = _decode(decoder, logits, row_mask.sum(1), config, generator, eos, stop, pad_token_id, prompt_len)
    prompt_index = torch.arange(ids.shape[0]).repeat_interleave(repeats)
    # clone out of inference mode: these tensors index and mask autograd computations in training
    tokens, logprobs, raw, done, finish = (t.clone() for t in loop)
    return Samples(ids[prompt_index], row_mask.clone(), tokens, done, logprobs, raw, finish, prompt_index)


def _make_decoder(model, backend: str, prefix_kv, repeats: int, row_mask, capacity: int, max_position: int):
    fused = backend != "hf" and fused_supported(model) is None
    if backend == "fused" and not fused:
        raise ValueError(f"backend='fused' does not support this model: {fused_supported(model)}")
    keys = [_buffer(k, repeats, capacity) for k, _ in prefix_kv]
    values = [_buffer(v, repeats, capacity) for _, v in prefix_kv]
    if fused:
        return _FusedDecoder(model, keys, values, row_mask, capacity, max_position)
    return _HFDecoder(model, keys, values, row_mask, capacity)


def _decode(decoder, logits, next_pos, cfg: SamplingConfig, generator, eos, stop, pad_id: int, prompt_len: int):
    """The decode loop; outputs are written time-major into preallocated buffers."""
    n_rows, n_new = logits.shape[0], cfg.max_new_tokens
    out_tok = torch.full((n_new, n_rows), pad_id, dtype=torch.long)
    out_lp = torch.zeros((n_new, n_rows))
    out_raw = torch.zeros((n_new, n_rows))
    out_mask = torch.zeros((n_new, n_rows), dtype=torch.bool)
    finish = torch.zeros(n_rows, dtype=torch.long)
    rows = torch.arange(n_rows)
    alive = torch.ones(n_rows, dtype=torch.bool)
    stop_state = torch.zeros(n_rows, dtype=torch.long)
    pos = next_pos.clone()
    if stop is not None and stop.vocab_size < logits.shape[-1]:
        raise ValueError(f"StopStrings covers {stop.vocab_size} token ids but the model has {logits.shape[-1]}; "
                         "build it with vocab_size=model output size")
    all_alive, identity = True, True  # fast path while no row has ended / been dropped
    for step in range(n_new):
        tok, lp, raw = _choose(logits, cfg, generator)
        if not all_alive:
            dead = ~alive
            tok.masked_fill_(dead, pad_id)
            lp.masked_fill_(dead, 0.0)
            raw.masked_fill_(dead, 0.0)
        if identity:
            out_tok[step], out_lp[step], out_raw[step], out_mask[step] = tok, lp, raw, alive
        else:
            for buf, value in ((out_tok, tok), (out_lp, lp), (out_raw, raw), (out_mask, alive)):
                buf[step].index_copy_(0, rows, value)
        ended = torch.isin(tok, eos) & alive if eos.numel() else None
        if stop is not None:
            stop_state, hit = stop.advance(stop_state, tok)
            hit = hit & alive if ended is None else hit & alive & ~ended
            reason = hit.long() * FINISH_STOP + (0 if ended is None else ended.long() * FINISH_EOS)
            ended = hit if ended is None else ended | hit
        elif ended is not None:
            reason = ended.long() * FINISH_EOS
        if ended is not None and bool(ended.any()):
            finish.index_copy_(0, rows, torch.where(ended, reason, finish.index_select(0, rows)))
            alive, all_alive = alive & ~ended, False
            n_alive = int(alive.sum())
            if n_alive == 0:
                break
            if n_alive <= cfg.compact_fraction * alive.shape[0]:
                keep = alive.nonzero().squeeze(1)
                decoder.select(keep)
                rows, alive, tok, pos, stop_state = rows[keep], alive[keep], tok[keep], pos[keep], stop_state[keep]
                identity = False
        if step == n_new - 1:
            break
        logits = decoder.step(tok, pos, prompt_len + step)
        pos = pos + 1
    return out_tok.T.contiguous(), out_lp.T.contiguous(), out_raw.T.contiguous(), out_mask.T.contiguous(), finish


__all__ = ["FINISH_EOS", "FINISH_LENGTH", "FINISH_STOP", "Samples", "SamplingConfig", "StopStrings", "eval_mode",
           "fused_supported", "process_logits", "sample", "token_texts"]
