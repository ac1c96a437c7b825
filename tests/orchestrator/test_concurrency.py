"""LangChain batch/abatch and concurrent (a)invoke go through the model's engine: they share decode steps and
give exactly the answers of one call at a time."""
from __future__ import annotations

import asyncio

import pytest

from orchestrator import ChatLlamaAdapterV2, LlamaAdapterV2LLM, VisualQAPipeline

QUESTIONS = ["what is two plus two", "name a colour", "say hello", "count to three", "a longer question about "
             "the weather in the mountains in spring"]


def shared_steps(model, run):
    """(rows decoded, decode steps) during ``run()``: rows > steps means requests shared steps."""
    before = dict(model.engine.counters)
    out = run()
    after = model.engine.counters
    return out, after["rows_decoded"] - before.get("rows_decoded", 0), after["steps"] - before.get("steps", 0)


@pytest.fixture()
def fresh_engine(tiny_model):
    tiny_model.configure_engine(max_batch_size=8)
    return tiny_model


def test_chat_model_batch_and_abatch_run_together_and_match_sequential(fresh_engine):
    chat = ChatLlamaAdapterV2(model=fresh_engine, max_tokens=16)
    alone = [chat.invoke(q).content for q in QUESTIONS]
    together, rows, steps = shared_steps(fresh_engine, lambda: [m.content for m in chat.batch(QUESTIONS)])
    assert together == alone
    assert rows > steps
    async_out, rows, steps = shared_steps(fresh_engine, lambda: [m.content for m in asyncio.run(
        chat.abatch(QUESTIONS))])
    assert async_out == alone and rows > steps


def test_concurrent_ainvoke_of_the_llm_shares_steps(fresh_engine):
    llm = LlamaAdapterV2LLM(model=fresh_engine, max_tokens=16)
    alone = [llm.invoke(q) for q in QUESTIONS]

    async def many():
        return await asyncio.gather(*(llm.ainvoke(q) for q in QUESTIONS))

    together, rows, steps = shared_steps(fresh_engine, lambda: asyncio.run(many()))
    assert list(together) == alone and rows > steps
    batched, rows, steps = shared_steps(fresh_engine, lambda: llm.batch(QUESTIONS))
    assert batched == alone and rows > steps


def test_pipeline_batch_shares_steps(fresh_engine):
    pipe = VisualQAPipeline(fresh_engine, router="none", max_new_tokens=16)
    alone = [pipe.invoke(q).answer for q in QUESTIONS]
    together, rows, steps = shared_steps(fresh_engine, lambda: [r.answer for r in pipe.batch(QUESTIONS)])
    assert together == alone and rows > steps
