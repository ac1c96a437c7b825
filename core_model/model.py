"""A plain LLaMA decoder with the LLaMA-Adapter V2 parts, each in one named place.

* bias / scale tuning ........ :class:`AdapterV2Linear`
* trainable norms ............ :class:`RMSNorm` (``trainable`` flag)
* zero-init gated prompts .... :class:`GatedPromptAttention` (late adaption prompts and early visual prompts)
* LoRA ....................... :class:`AdapterV2Linear` (``lora_a`` / ``lora_b``)
* visual fusion .............. :meth:`Transformer.layer_prompts` (early vs late-additive)

Parameter names follow Meta's checkpoints (``layers.0.attention.wq.weight``) so Meta and the official adapter
files load with little remapping; with every adapter part freshly initialised the output equals the base model.
"""
from __future__ import annotations

import math
from dataclasses import dataclass, field

import torch
import torch.nn.functional as F
from torch import nn

from .config import AdapterConfig, ModelConfig
from .quant import PackedWeight, packed_weight


class RMSNorm(nn.Module):
    def __init__(self, dim: int, eps: float, trainable: bool = False):
        super().__init__()
        self.eps = eps
        self.trainable = trainable
        self.weight = nn.Parameter(torch.ones(dim))

    def adapter_params(self) -> dict[str, str]:
        return {"weight": "norm"} if self.trainable else {}

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if x.dtype == torch.float32 and self.weight.dtype == torch.float32:
            return F.rms_norm(x, (x.shape[-1],), self.weight, self.eps)  # one fused kernel on the hot path
        xf = x.float()  # half precision: normalise in fp32 like the reference, then cast back
        out = xf * torch.rsqrt(xf.pow(2).mean(-1, keepdim=True) + self.eps)
        return out.type_as(x) * self.weight


class AdapterV2Linear(nn.Linear):
    """A frozen linear with the Adapter-V2 bias/scale and optional LoRA.

    mode ``bias_scale`` (paper): ``s ⊙ (W x + b)``; ``bias``: ``W x + b``; ``input_scale`` (chat65b):
    ``W (s ⊙ x) + b``; LoRA adds ``B A x`` with ``B`` zero-initialised. Fresh parameters leave ``W x`` unchanged.
    The frozen ``W`` is either the dense ``weight`` or, for GGUF bases, a :class:`~core_model.quant.PackedWeight`
    (``packed_weight``, with ``weight`` None): the adapter parts apply on top of either.
    """

    packed_weight: PackedWeight | None = None

    def __init__(self, in_features: int, out_features: int, mode: str = "none", lora_rank: int = 0,
                 device=None, dtype=None):
        super().__init__(in_features, out_features, bias=mode != "none", device=device, dtype=dtype)
        self.mode = mode
        if self.bias is not None:
            nn.init.zeros_(self.bias)
        self.scale: nn.Parameter | None = None
        if mode == "bias_scale":
            self.scale = nn.Parameter(torch.ones(out_features, device=device, dtype=dtype))
        elif mode == "input_scale":
            self.scale = nn.Parameter(torch.ones(in_features, device=device, dtype=dtype))
        self.lora_a: nn.Parameter | None = None
        self.lora_b: nn.Parameter | None = None
        if lora_rank > 0:
            self.lora_a = nn.Parameter(torch.empty(lora_rank, in_features, device=device, dtype=dtype))
            self.lora_b = nn.Parameter(torch.zeros(out_features, lora_rank, device=device, dtype=dtype))
            nn.init.kaiming_uniform_(self.lora_a, a=math.sqrt(5))

    def reset_parameters(self) -> None:  # nn.Linear calls this; the base weight is loaded, biases start at 0
        super().reset_parameters()
        if self.bias is not None:
            nn.init.zeros_(self.bias)

    def adapter_params(self) -> dict[str, str]:
        return {"bias": "bias", "scale": "scale", "lora_a": "lora", "lora_b": "lora"}

    def base_linear(self, x: torch.Tensor, bias: torch.Tensor | None) -> torch.Tensor:
        """``W x + bias`` with the frozen base weight, dense or packed."""
        if self.packed_weight is not None:
            return self.packed_weight.linear(x, bias)
        return F.linear(x, self.weight, bias)

    def forward_no_lora(self, x: torch.Tensor) -> torch.Tensor:
        if self.mode == "input_scale":
            return self.base_linear(x * self.scale, self.bias)
        y = self.base_linear(x, self.bias)
        return y * self.scale if self.mode == "bias_scale" else y

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = self.forward_no_lora(x)
        if self.lora_a is not None:
            y = y + F.linear(F.linear(x, self.lora_a), self.lora_b)
        return y

    def extra_repr(self) -> str:
        r = 0 if self.lora_a is None else self.lora_a.shape[0]
        packed = "" if self.packed_weight is None else f", packed={self.packed_weight.kind}"
        return f"{self.in_features}, {self.out_features}, mode={self.mode}, lora_rank={r}{packed}"


def _linear(cfg: AdapterConfig, name: str, fan_in: int, fan_out: int) -> AdapterV2Linear:
    mode = cfg.linear if name in cfg.linear_targets else "none"
    rank = cfg.lora_rank if name in cfg.lora_targets else 0
    return AdapterV2Linear(fan_in, fan_out, mode=mode, lora_rank=rank)


# ----------------------------------------------------------------------------------------------- rotary
def rope_tables(cfg: ModelConfig, length: int, device: torch.device) -> torch.Tensor:
    """Complex rotation table cos + i·sin, (length, head_dim/2), with optional LLaMA-3.1 frequency scaling."""
    hd = cfg.head_dim
    inv = 1.0 / (cfg.rope_theta ** (torch.arange(0, hd, 2, device=device, dtype=torch.float64) / hd))
    rs = cfg.rope_scaling or {}
    kind = rs.get("rope_type", rs.get("type"))
    if kind == "llama3":
        factor, lo, hi = rs["factor"], rs.get("low_freq_factor", 1.0), rs.get("high_freq_factor", 4.0)
        old_ctx = rs["original_max_position_embeddings"]
        wavelen = 2 * math.pi / inv
        smooth = ((old_ctx / wavelen) - lo) / (hi - lo)
        scaled = torch.where(wavelen > old_ctx / lo, inv / factor, inv)
        mid = (wavelen <= old_ctx / lo) & (wavelen >= old_ctx / hi)
        inv = torch.where(mid, (1 - smooth) * inv / factor + smooth * inv, scaled)
    elif kind == "linear":
        inv = inv / rs["factor"]
    t = torch.arange(length, device=device, dtype=torch.float64)
    freqs = torch.outer(t, inv)
    return torch.polar(torch.ones_like(freqs), freqs).to(torch.complex64)


def apply_rope(x: torch.Tensor, freqs: torch.Tensor) -> torch.Tensor:
    """Meta's interleaved rotary embedding: rotates pairs (x[2i], x[2i+1]) as complex numbers.

    x: (B, T, H, D) contiguous; freqs: complex cos + i·sin, (T, D/2) shared by every row or (B, T, D/2) with each
    row's own positions (left-padded batches, or batched decode of requests of different lengths).
    Two kernels instead of eight.
    """
    xc = torch.view_as_complex(x.float().unflatten(-1, (-1, 2)))
    return torch.view_as_real(xc * freqs.unsqueeze(-2)).flatten(-2).type_as(x)


# ----------------------------------------------------------------------------------------------- KV cache
@dataclass
class LayerCache:
    """One layer's keys/values (B, Hkv, T_max, D) and the prompt keys/values it attends to.

    ``prompt_kv`` maps a prompt kind (``"prompt"``, ``"visual"``) to (k, v) of shape (B, H, P, D). It is filled
    at prefill from the prompt tokens; with ``prompts_fixed`` it is authoritative instead: exactly those
    entries are attended to and the prompt tokens are ignored (the batching engine keeps each request's prompt
    keys/values in its own slot, so rows with and without an image share one decode step).
    """

    k: torch.Tensor
    v: torch.Tensor
    prompt_kv: dict[str, tuple[torch.Tensor, torch.Tensor]] = field(default_factory=dict)
    prompts_fixed: bool = False

    def update(self, k: torch.Tensor, v: torch.Tensor, start: int | torch.Tensor,
               kv_len: int | None = None) -> tuple[torch.Tensor, torch.Tensor]:
        """Write this step's keys/values and return everything the step attends to.

        ``start`` int: every row writes columns ``start .. start+T`` (prefill, chunked prefill, the decode of a
        left-padded batch) and the step attends to columns ``:start+T``. ``start`` a (B,) tensor: row ``b`` writes
        its one new token at column ``start[b]`` and the step attends to columns ``:kv_len`` (the caller masks
        each row to its own length).
        """
        if isinstance(start, int):
            end = start + k.shape[2]
            self.k[:, :, start:end] = k
            self.v[:, :, start:end] = v
            return self.k[:, :, :end], self.v[:, :, :end]
        if k.shape[2] != 1 or kv_len is None:
            raise ValueError("per-row cache positions write one token per row and need kv_len")
        rows = torch.arange(k.shape[0], device=k.device)
        self.k[rows, :, start] = k[:, :, 0]
        self.v[rows, :, start] = v[:, :, 0]
        return self.k[:, :, :kv_len], self.v[:, :, :kv_len]


class KVCache:
    """Preallocated per-layer key/value buffers plus the (static) prompt keys/values computed at prefill."""

    def __init__(self, cfg: ModelConfig, batch: int, max_len: int, device, dtype):
        shape = (batch, int(cfg.n_kv_heads), max_len, cfg.head_dim)  # type: ignore[arg-type]
        self.layers = [LayerCache(torch.zeros(shape, device=device, dtype=dtype),
                                  torch.zeros(shape, device=device, dtype=dtype)) for _ in range(cfg.n_layers)]
        self.max_len = max_len
        self.batch = batch


# ----------------------------------------------------------------------------------------------- attention
class Attention(nn.Module):
    """Grouped-query self-attention with RoPE (the base model part)."""

    def __init__(self, cfg: ModelConfig, acfg: AdapterConfig):
        super().__init__()
        self.n_heads, self.n_kv_heads, self.head_dim = cfg.n_heads, int(cfg.n_kv_heads), cfg.head_dim  # type: ignore
        self.wq = _linear(acfg, "wq", cfg.dim, cfg.n_heads * cfg.head_dim)
        self.wk = _linear(acfg, "wk", cfg.dim, cfg.kv_dim)
        self.wv = _linear(acfg, "wv", cfg.dim, cfg.kv_dim)
        self.wo = _linear(acfg, "wo", cfg.n_heads * cfg.head_dim, cfg.dim)

    def forward(self, x: torch.Tensor, freqs: torch.Tensor, start: int | torch.Tensor,
                cache: LayerCache | None, mask: torch.Tensor | None,
                prompts: dict[str, torch.Tensor] | None = None, kv_len: int | None = None) -> torch.Tensor:
        B, T, _ = x.shape
        q = apply_rope(self.wq(x).view(B, T, self.n_heads, self.head_dim), freqs).transpose(1, 2)
        k = apply_rope(self.wk(x).view(B, T, self.n_kv_heads, self.head_dim), freqs).transpose(1, 2)
        v = self.wv(x).view(B, T, self.n_kv_heads, self.head_dim).transpose(1, 2)
        if cache is not None:
            k, v = cache.update(k, v, start, kv_len)
        gqa = self.n_kv_heads != self.n_heads
        chunk = isinstance(start, int) and start > 0
        if mask is None and T > 1 and chunk:  # chunked prefill: causal within the chunk, all of the past
            mask = torch.ones(T, start + T, dtype=torch.bool, device=x.device).tril(diagonal=start)
        if mask is None:
            out = F.scaled_dot_product_attention(q, k, v, is_causal=T > 1 and not chunk, enable_gqa=gqa)
        else:
            out = F.scaled_dot_product_attention(q, k, v, attn_mask=mask, enable_gqa=gqa)
        if prompts or (cache is not None and cache.prompts_fixed):
            out = out + self.prompt_attention(q, prompts, cache)
        return self.wo(out.transpose(1, 2).reshape(B, T, -1))

    def prompt_attention(self, q, prompts, cache) -> torch.Tensor | float:  # overridden by the adapter subclass
        return 0.0


class GatedPromptAttention(Attention):
    """Attention plus zero-init, tanh-gated attention to prompt tokens (LLaMA-Adapter, kept in V2).

    The prompt tokens (adaption prompts, or visual tokens in early fusion) go through this layer's own
    ``wk``/``wv`` (without LoRA, as in the release) and get no rotary embedding; the query attends to them with a
    separate softmax whose result is scaled per head by ``tanh(gate)`` (0 at init) and added to the output.
    """

    def __init__(self, cfg: ModelConfig, acfg: AdapterConfig, has_prompt: bool, has_visual: bool):
        super().__init__(cfg, acfg)
        self.prompt = nn.Parameter(torch.zeros(acfg.prompt_len, cfg.dim)) if has_prompt else None
        self.gate = nn.Parameter(torch.zeros(1, cfg.n_heads, 1, 1)) if has_prompt else None
        self.visual_gate = nn.Parameter(torch.zeros(1, cfg.n_heads, 1, 1)) if has_visual else None
        self.new_gate = nn.Parameter(torch.ones(1, 1, 1, 1)) if (has_prompt and acfg.new_gate) else None
        if self.prompt is not None:
            nn.init.normal_(self.prompt, std=0.02)

    def adapter_params(self) -> dict[str, str]:
        return {"prompt": "prompt", "gate": "prompt_gate", "visual_gate": "visual_gate", "new_gate": "new_gate"}

    def _gated(self, q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, gate: torch.Tensor) -> torch.Tensor:
        scores = torch.matmul(q, k.transpose(-2, -1)) / math.sqrt(self.head_dim)
        probs = F.softmax(scores.float(), dim=-1).type_as(q)
        return torch.matmul(gate.tanh().type_as(q) * probs, v)

    def _prompt_kv(self, tokens: torch.Tensor, batch: int) -> tuple[torch.Tensor, torch.Tensor]:
        if tokens.dim() == 2:
            tokens = tokens.unsqueeze(0)
        P = tokens.shape[1]
        k = self.wk.forward_no_lora(tokens).view(tokens.shape[0], P, self.n_kv_heads, self.head_dim)
        v = self.wv.forward_no_lora(tokens).view(tokens.shape[0], P, self.n_kv_heads, self.head_dim)
        rep = self.n_heads // self.n_kv_heads
        k = k.transpose(1, 2).repeat_interleave(rep, dim=1).expand(batch, -1, -1, -1)
        v = v.transpose(1, 2).repeat_interleave(rep, dim=1).expand(batch, -1, -1, -1)
        return k, v

    def prompt_kv(self, prompts: dict[str, torch.Tensor], batch: int,
                  dtype: torch.dtype) -> dict[str, tuple[torch.Tensor, torch.Tensor]]:
        """Keys/values of this layer's prompt tokens, (batch, H, P, D) per prompt kind."""
        return {key: self._prompt_kv(tokens.to(dtype), batch) for key, tokens in prompts.items()}

    def prompt_attention(self, q, prompts, cache) -> torch.Tensor | float:
        if cache is not None and cache.prompts_fixed:
            pairs = cache.prompt_kv
        else:
            pairs = {}
            for key, tokens in (prompts or {}).items():
                if cache is not None and key in cache.prompt_kv:
                    pairs[key] = cache.prompt_kv[key]
                else:
                    pairs[key] = self._prompt_kv(tokens.to(q.dtype), q.shape[0])
                    if cache is not None:
                        cache.prompt_kv[key] = pairs[key]
        out: torch.Tensor | float = 0.0
        for key, (k, v) in pairs.items():
            if key == "visual":
                out = out + self._gated(q, k, v, self.visual_gate)
            else:
                part = self._gated(q, k, v, self.gate)
                if self.new_gate is not None:  # release (LoRA checkpoints): new_gate * tanh(gate) * softmax
                    part = part * self.new_gate.type_as(part)
                out = out + part
        return out


class FeedForward(nn.Module):
    def __init__(self, cfg: ModelConfig, acfg: AdapterConfig):
        super().__init__()
        self.w1 = _linear(acfg, "w1", cfg.dim, cfg.ffn_dim)
        self.w2 = _linear(acfg, "w2", cfg.ffn_dim, cfg.dim)
        self.w3 = _linear(acfg, "w3", cfg.dim, cfg.ffn_dim)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.w2(F.silu(self.w1(x)) * self.w3(x))


class TransformerBlock(nn.Module):
    def __init__(self, cfg: ModelConfig, acfg: AdapterConfig, layer_id: int):
        super().__init__()
        late = layer_id >= cfg.n_layers - acfg.prompt_layers if acfg.prompt_layers else False
        early = acfg.fusion == "early" and layer_id < acfg.early_layers
        self.has_prompt, self.has_visual = late, early
        if late or early:
            self.attention: Attention = GatedPromptAttention(cfg, acfg, late, early)
        else:
            self.attention = Attention(cfg, acfg)
        self.feed_forward = FeedForward(cfg, acfg)
        self.attention_norm = RMSNorm(cfg.dim, cfg.norm_eps, trainable=acfg.train_norms)
        self.ffn_norm = RMSNorm(cfg.dim, cfg.norm_eps, trainable=acfg.train_norms)

    def forward(self, x, freqs, start, cache, mask, prompts=None, kv_len=None):
        h = x + self.attention(self.attention_norm(x), freqs, start, cache, mask, prompts, kv_len)
        return h + self.feed_forward(self.ffn_norm(h))


class Transformer(nn.Module):
    """The decoder. ``forward(tokens, visual=None, ...)`` returns logits (B, T, vocab)."""

    def __init__(self, cfg: ModelConfig, acfg: AdapterConfig | None = None):
        super().__init__()
        self.config = cfg
        self.adapter_config = acfg = acfg or AdapterConfig()
        acfg.validate_for(cfg)
        if torch.empty(0).is_meta:  # built to be loaded: skip the N(0, 1) init (on meta it costs 1 s of imports)
            self.tok_embeddings = nn.Embedding(cfg.vocab_size, cfg.dim, _weight=torch.empty(cfg.vocab_size, cfg.dim))
        else:
            self.tok_embeddings = nn.Embedding(cfg.vocab_size, cfg.dim)
        self.layers = nn.ModuleList(TransformerBlock(cfg, acfg, i) for i in range(cfg.n_layers))
        self.norm = RMSNorm(cfg.dim, cfg.norm_eps, trainable=acfg.train_norms)
        self.output = None if cfg.tie_embeddings else nn.Linear(cfg.dim, cfg.vocab_size, bias=False)
        self._rope: dict[tuple, torch.Tensor] = {}

    # -- helpers ----------------------------------------------------------------------------------------
    @property
    def device(self) -> torch.device:
        return self.norm.weight.device  # the final norm is always dense (embeddings may be packed)

    @property
    def dtype(self) -> torch.dtype:
        return self.norm.weight.dtype

    def num_params(self) -> int:
        """Every weight's element count, packed GGUF matrices included (a tied matrix once)."""
        packed = {id(w): w for m in self.modules() if (w := packed_weight(m)) is not None}
        return sum(p.numel() for p in self.parameters()) + sum(w.numel() for w in packed.values())

    def rope(self, end: int, device: torch.device) -> torch.Tensor:
        length = max(end, min(self.config.max_seq_len, 4096))
        key = (device.type, device.index)
        cached = self._rope.get(key)
        if cached is None or cached.shape[0] < end:
            cached = rope_tables(self.config, max(length, end), device)
            self._rope[key] = cached
        return cached

    def new_cache(self, batch: int, max_len: int) -> KVCache:
        return KVCache(self.config, batch, max_len, self.device, self.dtype)

    def layer_prompts(self, layer: TransformerBlock, index: int, visual: torch.Tensor | None
                      ) -> dict[str, torch.Tensor] | None:
        """The prompt tokens a layer attends to: this is where visual fusion happens."""
        acfg = self.adapter_config
        prompts: dict[str, torch.Tensor] = {}
        if layer.has_prompt:
            p = layer.attention.prompt  # type: ignore[union-attr]
            if visual is not None and acfg.fusion == "late-additive":
                prompts["prompt"] = p.unsqueeze(0) + visual.to(p.dtype)  # release: adapter_query[l] + visual
            else:
                prompts["prompt"] = p
        if layer.has_visual and visual is not None:
            prompts["visual"] = visual  # paper: early fusion in the first layers
        return prompts or None

    def use_column_major_head(self) -> None:
        """Store the LM-head weight column-major (a transposed view of a (dim, vocab) buffer), in place.

        Why: decode computes logits for one token, a matrix-vector product over the largest matrix of a small
        model (49152 x 576 for SmolLM2). On CPU BLAS that product reads the weight about 1.8x faster in this
        layout (measured 5.3 ms vs 9.5 ms per token on the 2-core dev machine); names, shapes, values and the
        embedding lookup of tied weights are unchanged. Costs one temporary copy at load time. fp32 only: the
        same layout makes bf16/fp16 CPU kernels about 9x *slower* (measured), so other dtypes are left alone.
        """
        head = self.tok_embeddings if self.output is None else self.output
        w = head.weight
        if w is None:  # packed GGUF blocks: already the compact layout
            return
        if w.device.type != "cpu" or w.dtype != torch.float32 or w.is_meta or w.stride() == (1, w.shape[0]):
            return
        head.weight = nn.Parameter(w.detach().t().contiguous().t(), requires_grad=w.requires_grad)

    def embed(self, tokens: torch.Tensor) -> torch.Tensor:
        packed = packed_weight(self.tok_embeddings)
        if packed is None:
            return self.tok_embeddings(tokens)
        return packed.embedding(tokens).to(self.dtype)

    def output_logits(self, h: torch.Tensor) -> torch.Tensor:
        head = self.tok_embeddings if self.output is None else self.output
        packed = packed_weight(head)
        return F.linear(h, head.weight) if packed is None else packed.linear(h)

    def prompt_kv(self, visual: torch.Tensor | None = None) -> list[dict[str, tuple[torch.Tensor, torch.Tensor]]]:
        """Per layer, the prompt keys/values one sequence attends to (batch 1; ``visual``: (1, N_v, dim) or None).

        What :meth:`forward` computes at prefill, for callers that keep them per request (the batching engine).
        Layers without prompts get an empty dict.
        """
        out: list[dict[str, tuple[torch.Tensor, torch.Tensor]]] = []
        for i, layer in enumerate(self.layers):
            prompts = self.layer_prompts(layer, i, visual) if (layer.has_prompt or layer.has_visual) else None
            out.append(layer.attention.prompt_kv(prompts, 1, self.dtype) if prompts else {})  # type: ignore
        return out

    def forward(self, tokens: torch.Tensor, visual: torch.Tensor | None = None, *, start: int | torch.Tensor = 0,
                positions: torch.Tensor | None = None, cache: KVCache | None = None,
                attn_mask: torch.Tensor | None = None, kv_len: int | None = None,
                last_only: bool = False, return_hidden: bool = False,
                select: torch.Tensor | None = None) -> torch.Tensor:
        """tokens (B, T). ``visual``: (B, N_v, dim) visual prompt tokens or None.

        Positions: by default every row's tokens sit at ``start .. start+T``. ``positions`` (B, T) gives each row
        its own (left-padded rows start at 0 after their padding): RoPE uses them, so a padded row computes what it
        computes alone — which matters because adaption/visual prompt keys carry no RoPE and the attention to them
        depends on the query's absolute position. ``start``: the cache columns this step writes (an int for all
        rows, or a (B,) tensor of one column per row with ``kv_len`` columns attended; see :meth:`LayerCache.update`).
        ``attn_mask``: boolean (B, 1, T, kv columns), True = may attend (needed for padded or ragged batches).
        ``last_only`` computes logits of the last position only (generation); ``select``, a boolean (B, T) mask,
        those positions' only, as (N, vocab) (training: the loss covers the response tokens).
        """
        B, T = tokens.shape
        h = self.embed(tokens)
        if positions is None and isinstance(start, int):
            freqs = self.rope(start + T, h.device)[start:start + T]
        else:
            if positions is None:
                positions = start.view(B, 1)  # type: ignore[union-attr]
            freqs = self.rope(self.config.max_seq_len, h.device)[positions]
        if visual is not None and visual.shape[0] not in (1, B):
            raise ValueError(f"visual batch {visual.shape[0]} does not match token batch {B}")
        for i, layer in enumerate(self.layers):
            prompts = self.layer_prompts(layer, i, visual) if (layer.has_prompt or layer.has_visual) else None
            h = layer(h, freqs, start, None if cache is None else cache.layers[i], attn_mask, prompts, kv_len)
        if last_only:
            h = h[:, -1:]
        elif select is not None:
            h = h[select]
        h = self.norm(h)
        if return_hidden:
            return h
        return self.output_logits(h)
