"""Generation: batched prefill into a preallocated KV cache, then one token at a time.

Small functions in the gpt-fast manner: :func:`prefill`, :func:`decode_one_token`, :func:`sample`,
:func:`generate_tokens` (an iterator of token batches). Text-level concerns (stop strings, incremental
detokenisation) are in :class:`TextStreamer`.
"""
from __future__ import annotations

import functools
from dataclasses import dataclass, field
from typing import Iterator, Sequence

import torch

from . import fastpath
from .errors import ConfigError, ContextLengthError
from .model import KVCache, Transformer


@dataclass
class Completion:
    """One generated answer."""

    text: str
    prompt_tokens: int
    completion_tokens: int
    finish_reason: str  # "stop" (EOS or stop string) | "length" | "cancelled"
    token_ids: list[int] = field(default_factory=list)


@dataclass(frozen=True)
class SamplingParams:
    """Greedy when ``temperature == 0``; otherwise temperature, then top-k, then top-p (nucleus)."""

    max_new_tokens: int = 256
    temperature: float = 0.0
    top_p: float = 1.0
    top_k: int = 0
    seed: int | None = None

    def __post_init__(self) -> None:
        if self.max_new_tokens < 1:
            raise ConfigError(f"max_new_tokens must be >= 1, got {self.max_new_tokens}")
        if self.temperature < 0:
            raise ConfigError(f"temperature must be >= 0, got {self.temperature}")
        if not 0 < self.top_p <= 1:
            raise ConfigError(f"top_p must be in (0, 1], got {self.top_p}")
        if self.top_k < 0:
            raise ConfigError(f"top_k must be >= 0, got {self.top_k}")


def sample(logits: torch.Tensor, params: SamplingParams, generator: torch.Generator | None) -> torch.Tensor:
    """logits (B, V) -> next token ids (B,)."""
    if params.temperature == 0:
        return logits.argmax(dim=-1)
    logits = logits.float() / params.temperature
    if params.top_k > 0:
        kth = torch.topk(logits, min(params.top_k, logits.shape[-1]), dim=-1).values[:, -1:]
        logits = logits.masked_fill(logits < kth, float("-inf"))
    probs = torch.softmax(logits, dim=-1)
    if params.top_p < 1.0:
        sorted_p, idx = torch.sort(probs, dim=-1, descending=True)
        # keep the smallest prefix whose mass reaches top_p (the first token always stays)
        drop = (sorted_p.cumsum(dim=-1) - sorted_p) > params.top_p
        sorted_p = sorted_p.masked_fill(drop, 0.0)
        choice = torch.multinomial(sorted_p / sorted_p.sum(-1, keepdim=True), 1, generator=generator)
        return idx.gather(-1, choice).squeeze(-1)
    return torch.multinomial(probs, 1, generator=generator).squeeze(-1)


@dataclass
class Batch:
    tokens: torch.Tensor  # (B, T) left-padded
    valid: torch.Tensor  # (B, T) bool, False on padding
    lengths: list[int]

    @property
    def padded(self) -> bool:
        return not bool(self.valid.all())

    @property
    def positions(self) -> torch.Tensor:
        """(B, T) each token's position in its own sequence (padding: 0), for RoPE."""
        return (torch.cumsum(self.valid, dim=1) - 1).clamp(min=0)


def left_pad(prompts: Sequence[Sequence[int]], pad_id: int, device: torch.device) -> Batch:
    """Left padding keeps every prompt's last token in the same column, so one decode step serves all."""
    if not prompts or any(len(p) == 0 for p in prompts):
        raise ConfigError("every prompt must have at least one token")
    width = max(len(p) for p in prompts)
    tokens = torch.full((len(prompts), width), pad_id, dtype=torch.long)
    valid = torch.zeros((len(prompts), width), dtype=torch.bool)
    for i, p in enumerate(prompts):
        tokens[i, width - len(p):] = torch.tensor(list(p), dtype=torch.long)
        valid[i, width - len(p):] = True
    return Batch(tokens.to(device), valid.to(device), [len(p) for p in prompts])


def prefill_mask(valid: torch.Tensor) -> torch.Tensor:
    """(B, 1, T, T): causal, and never attend to padding. Padding rows attend to themselves (no NaN)."""
    T = valid.shape[1]
    causal = torch.ones(T, T, dtype=torch.bool, device=valid.device).tril()
    mask = causal.unsqueeze(0) & valid[:, None, :]
    mask = mask | torch.eye(T, dtype=torch.bool, device=valid.device).unsqueeze(0)
    return mask.unsqueeze(1)


def check_context(model: Transformer, prompt_len: int, max_new_tokens: int) -> None:
    limit = model.config.max_seq_len
    if prompt_len + max_new_tokens > limit:
        raise ContextLengthError(
            f"prompt ({prompt_len} tokens) + max_new_tokens ({max_new_tokens}) = {prompt_len + max_new_tokens} "
            f"exceeds the model's context of {limit} tokens: shorten the prompt or lower max_new_tokens")


@torch.inference_mode()
def generate_tokens(model: Transformer, prompts: Sequence[Sequence[int]], params: SamplingParams, *,
                    pad_id: int = 0, eos_ids: frozenset[int] = frozenset(),
                    visual: torch.Tensor | None = None) -> Iterator[torch.Tensor]:
    """Yield the next token of every sequence, (B,) per step, until all hit EOS or ``max_new_tokens``.

    Finished sequences keep yielding their EOS id so columns stay aligned; callers cut at the first EOS.
    """
    batch = left_pad(prompts, pad_id, model.device)
    B, T = batch.tokens.shape
    check_context(model, T, params.max_new_tokens)
    cache: KVCache = model.new_cache(B, T + params.max_new_tokens)
    generator = None
    if params.seed is not None:
        generator = torch.Generator(device=model.device).manual_seed(params.seed)
    # packed GGUF models prefill and decode in C when it covers them (core_model/fastpath.py); the torch path is
    # the reference
    fast = c_step_over(model, cache, visual, B)
    kstart = torch.tensor([T - n for n in batch.lengths]) if fast is not None else None
    if fast is not None:
        logits = c_prefill(fast, batch.tokens.cpu(), batch.lengths, T)
    else:
        mask = prefill_mask(batch.valid) if batch.padded else None
        positions = batch.positions if batch.padded else None  # each row rotated by its own positions
        logits = model(batch.tokens, visual, start=0, cache=cache, attn_mask=mask, positions=positions,
                       last_only=True)[:, -1]
    row_pos = torch.tensor(batch.lengths, device=model.device).unsqueeze(1)  # (B, 1) position of the next token
    key_valid = torch.cat([batch.valid, torch.ones(B, params.max_new_tokens, dtype=torch.bool,
                                                   device=model.device)], dim=1)
    done = torch.zeros(B, dtype=torch.bool, device=model.device)
    eos = torch.tensor(sorted(eos_ids), dtype=torch.long, device=model.device) if eos_ids else None
    fill = torch.tensor(min(eos_ids) if eos_ids else pad_id, device=model.device)
    pos = T
    for step in range(params.max_new_tokens):
        nxt = sample(logits, params, generator)
        nxt = torch.where(done, fill, nxt)
        yield nxt
        if eos is not None:
            done |= torch.isin(nxt, eos)
            if bool(done.all()):
                return
        if step == params.max_new_tokens - 1:
            return
        if fast is not None:
            logits = fast(nxt, row_pos.view(B), torch.full((B,), pos), kstart)
            pos += 1
            row_pos = row_pos + 1
            continue
        step_mask = key_valid[:, None, None, :pos + 1] if batch.padded else None
        logits = model(nxt[:, None], visual, start=pos, cache=cache, attn_mask=step_mask,
                       positions=row_pos if batch.padded else None, last_only=True)[:, -1]
        pos += 1
        row_pos = row_pos + 1


def c_step_over(model: Transformer, cache: KVCache, visual: torch.Tensor | None, B: int):
    """The C step over ``cache`` (None when it does not cover the model). Its prompt keys/values — adaption
    prompts, the visual prefix — are put into the cache first, as a torch prefill would (the C step reads them
    from there for every row)."""
    if model.device.type != "cpu" or not fastpath.enabled:
        return None
    for i, (layer, lc) in enumerate(zip(model.layers, cache.layers)):
        prompts = model.layer_prompts(layer, i, visual) if (layer.has_prompt or layer.has_visual) else None
        if prompts:
            lc.prompt_kv.update(layer.attention.prompt_kv(prompts, B, model.dtype))  # type: ignore[union-attr]
    return fastpath.decode_step(model, [c.k for c in cache.layers], [c.v for c in cache.layers],
                                [c.prompt_kv for c in cache.layers])


def c_prefill(step, tokens: torch.Tensor, lengths: Sequence[int], T: int,
              done: Sequence[int] | None = None) -> torch.Tensor:
    """Every prompt of a left-padded batch in one C call: row b's tokens as rows of cache row b at rotary
    positions 0..len-1 (cache columns T-len..T-1, attending from T-len on); the rows whose logits are wanted — each
    prompt's last token — come last. ``done[b]``: tokens of prompt b already in the cache (a reused prefix; fewer
    than its length), not computed again. Returns (B, vocab)."""
    tok, rpos, wpos, kst, rows = [], [], [], [], []
    for last in (False, True):
        for b, n in enumerate(lengths):
            idx = [n - 1] if last else range(done[b] if done else 0, n - 1)
            tok += [int(tokens[b, T - n + i]) for i in idx]
            rpos += list(idx)
            wpos += [T - n + i for i in idx]
            kst += [T - n] * len(idx)
            rows += [b] * len(idx)
    as_long = functools.partial(torch.tensor, dtype=torch.int64)
    return step(as_long(tok), as_long(rpos), as_long(wpos), as_long(kst), rows=as_long(rows),
                n_logits=len(lengths))


class TextStreamer:
    """Turns a growing list of token ids into text deltas, honouring stop strings.

    Decoding the whole completion each time (not token by token) keeps multi-byte characters and
    byte-level BPE merges right; an incomplete UTF-8 tail (U+FFFD) is held back until it completes.
    Text that could be the start of a stop string is held back too, so a stop string never leaks out.
    """

    def __init__(self, tokenizer, stop: Sequence[str] = ()):
        self.tokenizer = tokenizer
        self.stop = [s for s in stop if s]
        self.ids: list[int] = []
        self.emitted = 0
        self.text = ""
        self.stopped = False

    def _hold(self, text: str) -> int:
        """How many trailing characters might begin a stop string."""
        hold = 0
        for s in self.stop:
            for n in range(min(len(s) - 1, len(text)), 0, -1):
                if text.endswith(s[:n]):
                    hold = max(hold, n)
                    break
        return hold

    def push(self, token_id: int) -> str:
        if self.stopped:
            return ""
        self.ids.append(token_id)
        text = self.tokenizer.decode(self.ids)
        for s in self.stop:
            at = text.find(s)
            if at != -1:
                self.stopped = True
                text = text[:at]
        self.text = text
        if self.stopped:
            return self._emit(len(text))
        end = len(text.rstrip("\ufffd"))  # an incomplete UTF-8 tail may be several replacement characters
        return self._emit(end - self._hold(text[:end]))

    def flush(self) -> str:
        text = self.text.rstrip("\ufffd") if not self.stopped else self.text
        return self._emit(len(text))

    def _emit(self, upto: int) -> str:
        if upto <= self.emitted:
            return ""
        piece = self.text[self.emitted:upto]
        self.emitted = upto
        return piece
