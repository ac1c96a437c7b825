"""``continuation_logprobs``: one prefill of the prompt, all continuations batched on the shared prefix.

Checked against the plain reference — the whole ``prompt + continuation`` run alone through the model without a
cache — for every adapter preset with trained-like (perturbed) adapters, with and without visual tokens.
"""
from __future__ import annotations

import pytest
import torch

from core_model import random_model
from core_model.config import ADAPTER_PRESETS

from .test_positions import CASES, perturb_adapters, visual_tokens

PROMPT = "a prompt of a few words"
CONTINUATIONS = ["18.55", "a much longer continuation of several words", "x", "", "Seat 14C"]


def reference(model, prompt: str, cont: str, visual) -> list[float]:
    p = model._prompt_ids([prompt])[0]
    c = model.tokenizer.encode(cont, bos=False, parse_special=False)
    with torch.inference_mode():
        logits = model.llm(torch.tensor([p + c]), visual).float()
    logp = torch.log_softmax(logits[0], dim=-1)
    return [float(logp[len(p) - 1 + j, t]) for j, t in enumerate(c)]


@pytest.mark.parametrize("preset,with_visual", CASES)
def test_continuation_logprobs_equal_scoring_each_alone(preset, with_visual, monkeypatch):
    model = random_model("tiny", preset, seed=1)
    perturb_adapters(model.llm, seed=2)
    visual = visual_tokens(model.llm, 1) if with_visual else None
    if visual is not None:  # the tiny model has no vision tower: hand the visual tokens in directly
        monkeypatch.setattr(model, "_visual", lambda images, n: visual)
    got = model.continuation_logprobs(PROMPT, CONTINUATIONS, image="unused" if visual is not None else None)
    assert len(got) == len(CONTINUATIONS)
    for cont, scores in zip(CONTINUATIONS, got):
        want = reference(model, PROMPT, cont, visual)
        assert len(scores) == len(want)
        assert max((abs(a - b) for a, b in zip(scores, want)), default=0.0) <= 1e-4, cont


def test_continuation_logprobs_in_chunks_equal_one_batch():
    model = random_model("tiny", "release-bias", seed=1)
    perturb_adapters(model.llm, seed=2)
    conts = [f"candidate {i} " * (1 + i % 3) for i in range(7)]
    one = model.continuation_logprobs(PROMPT, conts)
    chunked = model.continuation_logprobs(PROMPT, conts, max_tokens=5)
    for a, b in zip(one, chunked):
        assert max(abs(x - y) for x, y in zip(a, b)) <= 1e-5


def test_continuation_logprobs_context_limit():
    from core_model.errors import ContextLengthError

    model = random_model("tiny", "none", seed=1)
    with pytest.raises(ContextLengthError):
        model.continuation_logprobs(PROMPT, ["word " * (model.config.max_seq_len + 5)])


def test_no_adapter_presets_left_out():
    assert {p for p, _ in CASES} == set(ADAPTER_PRESETS)


DOCUMENT = "Context: MAPLE CORNER MARKET, 12 Harbour Street, coffee beans 12.50, oat milk 3.25, croissant 2.80, " \
           "total 18.55, thank you for shopping with us today. Question: "


@pytest.mark.parametrize("preset", ["none", "release-bias"])
def test_a_prompt_prefix_scored_before_is_reused_and_changes_nothing(preset):
    """Several questions about one document: the scoring prefill reuses the prefix the previous prompt left in
    the engine's prefix cache (and a later generation reuses the scored prompt's blocks), with the scores of a
    model that recomputes everything; an adapter that changed is never served old keys."""
    from core_model import EngineConfig

    model = random_model("tiny", preset, seed=1)
    perturb_adapters(model.llm, seed=2)
    fresh = random_model("tiny", preset, seed=1)
    perturb_adapters(fresh.llm, seed=2)
    fresh.configure_engine(EngineConfig(prefix_cache_tokens=0))
    engine = model.engine
    questions = [DOCUMENT + "What is the total?", DOCUMENT + "Where is the shop?", DOCUMENT + "What is the total?"]
    for i, prompt in enumerate(questions):
        hits = engine.counters["score_prefix_hit_tokens"]
        got = model.continuation_logprobs(prompt, CONTINUATIONS)
        want = fresh.continuation_logprobs(prompt, CONTINUATIONS)
        for a, b in zip(got, want):
            assert len(a) == len(b) and max((abs(x - y) for x, y in zip(a, b)), default=0.0) <= 1e-5
        if i:
            assert engine.counters["score_prefix_hit_tokens"] - hits >= 16 * (len(model._prompt_ids([DOCUMENT])[0])
                                                                            // 16) > 0
    assert fresh.engine.counters["score_prefix_hit_tokens"] == 0
    # a generation of a scored prompt starts from its blocks
    before = engine.counters["prefix_hit_tokens"]
    model.generate(questions[0], max_new_tokens=3)
    assert engine.counters["prefix_hit_tokens"] > before
    # an adapter (or any parameter) that changed invalidates every block
    hits = engine.counters["score_prefix_hit_tokens"]
    param = next(p for p in model.llm.parameters())
    with torch.no_grad():
        param.add_(0.01)
    model.continuation_logprobs(questions[1], CONTINUATIONS)
    assert engine.counters["score_prefix_hit_tokens"] == hits
