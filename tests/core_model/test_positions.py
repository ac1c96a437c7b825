"""Every row of a batch has its own positions.

Adaption and visual prompt keys carry no rotary embedding, so the score of a query against them depends on the
query's *absolute* rotation. A left-padded row whose queries were rotated by their column index (padding included)
instead of their own position attends differently to the prompts than the same prompt run alone. Fresh adapters
(zero gates) hide this, so every test here perturbs all adapter parameters first (gates 1.5, as trained ones are).
"""
from __future__ import annotations

import pytest
import torch

from core_model import random_model
from core_model.config import ADAPTER_PRESETS
from core_model.generation import SamplingParams, generate_tokens, left_pad, prefill_mask
from core_model.groups import iter_adapter_params

PROMPTS = [[5, 17, 3, 99, 42, 8, 61, 7, 200, 13, 77], [9, 4, 150], [33, 12, 18, 250, 6, 1]]


def perturb_adapters(llm: torch.nn.Module, seed: int = 0, gate: float = 1.5) -> None:
    """Give every adapter part trained-like, non-identity values (in place)."""
    gen = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for name, kind, p in iter_adapter_params(llm):
            noise = torch.randn(p.shape, generator=gen)
            if kind in ("prompt_gate", "visual_gate"):
                p.copy_(gate + 0.1 * noise)
            elif kind in ("scale", "norm", "new_gate"):
                p.copy_(1.0 + 0.1 * noise)
            elif kind == "prompt":
                p.copy_(30.0 * noise)  # trained prompts are large enough to make the keys matter
            else:  # bias, lora_a, lora_b
                p.copy_(0.05 * noise)


def perturbed(preset: str):
    model = random_model("tiny", preset, seed=1)
    perturb_adapters(model.llm, seed=2)
    return model.llm


def visual_tokens(llm, batch: int, seed: int = 3) -> torch.Tensor | None:
    acfg = llm.adapter_config
    if acfg.fusion == "none":
        return None
    return torch.randn(batch, acfg.visual_tokens, llm.config.dim, generator=torch.Generator().manual_seed(seed))


CASES = [(p, v) for p in ADAPTER_PRESETS for v in (False, True)
         if not (v and p in ("none", "paper-text", "chat65b"))]


@pytest.mark.parametrize("preset", ADAPTER_PRESETS)
def test_batched_next_token_logprobs_equal_single_prompt(preset):
    model = random_model("tiny", preset, seed=1)
    perturb_adapters(model.llm, seed=2)
    texts = ["a longer prompt with several words", "hi", "medium prompt"]
    both = model.next_token_logprobs(texts)
    for i, text in enumerate(texts):
        assert (both[i] - model.next_token_logprobs([text])[0]).abs().max().item() <= 1e-4, f"row {i}"


@pytest.mark.parametrize("preset,with_visual", CASES)
def test_left_padded_logits_equal_single_prompt_logits(preset, with_visual):
    llm = perturbed(preset)
    visual = visual_tokens(llm, len(PROMPTS)) if with_visual else None
    batch = left_pad(PROMPTS, pad_id=0, device=torch.device("cpu"))
    with torch.inference_mode():
        both = llm(batch.tokens, visual, attn_mask=prefill_mask(batch.valid), positions=batch.positions)
        for i, p in enumerate(PROMPTS):
            alone = llm(torch.tensor([p]), None if visual is None else visual[i:i + 1])
            got = both[i, -len(p):]
            assert (got - alone[0]).abs().max().item() <= 1e-4, f"row {i} differs from its single run"


@pytest.mark.parametrize("preset,with_visual", CASES)
def test_batched_greedy_equals_single_for_32_steps(preset, with_visual):
    llm = perturbed(preset)
    visual = visual_tokens(llm, len(PROMPTS)) if with_visual else None
    params = SamplingParams(max_new_tokens=32)
    batched = torch.stack(list(generate_tokens(llm, PROMPTS, params, visual=visual)), dim=1)
    for i, p in enumerate(PROMPTS):
        v = None if visual is None else visual[i:i + 1]
        single = torch.stack(list(generate_tokens(llm, [p], params, visual=v)), dim=1)[0]
        assert batched[i].tolist() == single.tolist(), f"row {i}"


def test_batched_decode_logits_equal_single_decode_logits():
    """Not only the argmax: each decode step's logits of a padded row equal its single run's (fp32, 1e-4)."""
    llm = perturbed("release-lora-bias")
    visual = visual_tokens(llm, len(PROMPTS))
    batch = left_pad(PROMPTS, pad_id=0, device=torch.device("cpu"))
    B, T = batch.tokens.shape
    steps = [[7], [250], [3]]
    with torch.inference_mode():
        cache = llm.new_cache(B, T + 4)
        pos = (batch.valid.sum(1) - 1).unsqueeze(1)  # each row's own position of its last prompt token
        llm(batch.tokens, visual, cache=cache, attn_mask=prefill_mask(batch.valid), positions=batch.positions)
        valid = torch.cat([batch.valid, torch.ones(B, 1, dtype=torch.bool)], 1)
        nxt = torch.tensor(steps)
        got = llm(nxt, visual, start=T, cache=cache, attn_mask=valid[:, None, None, :], positions=pos + 1)[:, -1]
        for i, p in enumerate(PROMPTS):
            alone = llm(torch.tensor([p + steps[i]]), visual[i:i + 1])[0, -1]
            assert (got[i] - alone).abs().max().item() <= 1e-4
