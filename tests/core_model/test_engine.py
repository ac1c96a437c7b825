"""The continuous-batching engine: whatever arrives when, every request gets exactly its batch-1 output."""
from __future__ import annotations

import asyncio
import os
import random
import threading
import time

import pytest
import torch

from core_model import EngineConfig, QueueFullError, random_model
from core_model.engine import Engine
from core_model.generation import SamplingParams, generate_tokens

from .test_positions import perturb_adapters

PROMPTS = ["a longer prompt with several words in it", "hi", "medium prompt", "x", "the fifth prompt, longest of "
           "them all by a margin, so that it needs several prefill chunks when the chunk is small", "six", "7",
           "eight is here"]


def reference(model, text: str, max_new: int, visual=None) -> list[int]:
    """Batch-1 greedy tokens from the plain generation loop (no engine), cut at the first EOS."""
    ids = model._prompt_ids([text])[0]
    out = []
    for step in generate_tokens(model.llm, [ids], SamplingParams(max_new_tokens=max_new),
                                eos_ids=model.tokenizer.eos_ids, visual=visual):
        tok = int(step[0])
        if tok in model.tokenizer.eos_ids:
            break
        out.append(tok)
    return out


@pytest.fixture(scope="module")
def adapted():
    """A tiny model with every Adapter-V2 part trained-like (release layout: late-additive visual fusion)."""
    model = random_model("tiny", "release-lora-bias", seed=1)
    perturb_adapters(model.llm, seed=2)
    return model


def visual_for(model, seed: int) -> torch.Tensor:
    acfg = model.llm.adapter_config
    return torch.randn(1, acfg.visual_tokens, model.llm.config.dim, generator=torch.Generator().manual_seed(seed))


def run_staggered(engine: Engine, jobs: list[dict], seed: int = 0) -> list:
    """Submit ``jobs`` from several threads at random moments; return each job's Completion."""
    rng = random.Random(seed)
    delays = [rng.uniform(0, 0.15) for _ in jobs]
    results: list = [None] * len(jobs)

    def worker(i: int) -> None:
        time.sleep(delays[i])
        results[i] = engine.submit(**jobs[i]).result(timeout=120)

    threads = [threading.Thread(target=worker, args=(i,)) for i in range(len(jobs))]
    for t in threads:
        t.start()
    for t in threads:
        t.join(120)
    return results


@pytest.mark.parametrize("max_batch,chunk", [(4, 8), (8, 256)])
def test_staggered_arrivals_give_every_request_its_batch1_output(adapted, max_batch, chunk):
    engine = Engine(adapted, EngineConfig(max_batch_size=max_batch, prefill_chunk=chunk))
    jobs, expected = [], []
    for i, text in enumerate(PROMPTS):
        visual = visual_for(adapted, i) if i % 2 == 0 else None  # rows with and without an image together
        max_new = 6 + 5 * (i % 4)
        jobs.append({"prompt": text, "max_new_tokens": max_new, "visual": visual})
        expected.append(reference(adapted, text, max_new, visual))
    got = run_staggered(engine, jobs, seed=max_batch)
    for i, completion in enumerate(got):
        assert completion.token_ids == expected[i], f"request {i} ({PROMPTS[i]!r})"
        assert completion.prompt_tokens == len(adapted._prompt_ids([PROMPTS[i]])[0])
    stats = engine.stats()
    assert stats["active"] == 0 and stats["queue_depth"] == 0
    assert stats["rows_decoded"] > stats["steps"]  # rows really shared decode steps
    engine.close()


def test_batched_logits_equal_single_logits_in_every_decode_step(adapted):
    """Beyond greedy tokens: the logits a row sees in a shared step equal its batch-1 run's (fp32, 1e-4)."""
    engine = Engine(adapted, EngineConfig(max_batch_size=4))
    seen: dict[int, list[torch.Tensor]] = {}

    def spy_decode():
        rows = [r for r in engine._rows if r.prefilled]
        captured = {}
        llm_forward = engine.llm.forward

        def forward(*args, **kwargs):
            out = llm_forward(*args, **kwargs)
            captured["logits"] = out[:, -1].clone()
            return out

        engine.llm.forward = forward
        try:
            decode()
        finally:
            del engine.llm.forward
        for i, r in enumerate(rows):
            seen.setdefault(r.handle.id, []).append(captured["logits"][i])

    decode = engine._decode
    engine._decode = spy_decode
    handles = [engine.submit(t, max_new_tokens=8, visual=visual_for(adapted, i) if i != 1 else None)
               for i, t in enumerate(PROMPTS[:3])]
    for h in handles:
        h.result(timeout=60)
    for i, h in enumerate(handles):
        ids = adapted._prompt_ids([PROMPTS[i]])[0] + h.result().token_ids
        vis = visual_for(adapted, i) if i != 1 else None
        with torch.inference_mode():
            full = adapted.llm(torch.tensor([ids]), vis)[0]
        n_prompt = h.prompt_tokens
        for step, logits in enumerate(seen[h.id]):  # step k predicts token k+1 of the completion
            assert (logits - full[n_prompt + step]).abs().max().item() <= 1e-4
    engine.close()


def test_cancel_mid_stream_frees_the_slot_and_leaves_others_intact(adapted):
    engine = Engine(adapted, EngineConfig(max_batch_size=2))
    expected = {t: reference(adapted, t, 24) for t in PROMPTS[:3]}
    victim = engine.submit(PROMPTS[0], max_new_tokens=200)
    keep = [engine.submit(t, max_new_tokens=24) for t in PROMPTS[1:3]]  # the second waits for a slot
    pieces = iter(victim)
    next(pieces, None)
    victim.cancel()
    rest = list(pieces)  # iteration ends after the cancel
    done = victim.result(timeout=30)
    assert done.finish_reason == "cancelled" and done.completion_tokens < 200
    assert "".join(rest) in done.text or rest == []
    for t, h in zip(PROMPTS[1:3], keep):
        assert h.result(timeout=60).token_ids == expected[t]
    assert engine.stats()["finished_cancelled"] == 1
    engine.close()


def test_a_failing_request_does_not_disturb_the_others(adapted):
    engine = Engine(adapted, EngineConfig(max_batch_size=4))
    expected = [reference(adapted, t, 16) for t in PROMPTS[:3]]
    good = [engine.submit(t, max_new_tokens=16) for t in PROMPTS[:2]]
    bad = engine.submit(PROMPTS[2], max_new_tokens=16, visual=torch.randn(1, 3, 7))  # wrong visual shape
    late = engine.submit(PROMPTS[2], max_new_tokens=16)
    with pytest.raises(RuntimeError):
        bad.result(timeout=60)
    assert [h.result(timeout=60).token_ids for h in good] == expected[:2]
    assert late.result(timeout=60).token_ids == expected[2]
    assert engine.stats()["failed"] == 1
    engine.close()


def test_a_newcomer_joins_while_others_decode_and_prefill_is_interleaved(adapted):
    """Continuous batching: a request submitted mid-generation finishes long before the running one, and a long
    prompt's chunked prefill lets the running request keep producing tokens."""
    engine = Engine(adapted, EngineConfig(max_batch_size=4, prefill_chunk=4))
    long_run = engine.submit(PROMPTS[1], max_new_tokens=120)
    it = iter(long_run)
    for _ in range(5):
        next(it)
    tokens_before = engine.counters["tokens"]
    newcomer = engine.submit(PROMPTS[4], max_new_tokens=4)  # ~100 prompt tokens = many 4-token chunks
    first = next(iter(newcomer))
    during_prefill = engine.counters["tokens"] - tokens_before
    assert during_prefill > 3  # the running request decoded while the newcomer was being prefilled
    del first
    newcomer.result(timeout=60)
    assert not long_run.done  # the newcomer did not wait for the batch to finish
    assert long_run.result(timeout=120).token_ids == reference(adapted, PROMPTS[1], 120)
    engine.close()


def test_slots_are_reused_beyond_the_batch_size_and_memory_stays_bounded(adapted):
    engine = Engine(adapted, EngineConfig(max_batch_size=2))
    peak = []
    orig = engine._decode

    def watch():
        peak.append(sum(r.prefilled for r in engine._rows))
        orig()

    engine._decode = watch
    handles = [engine.submit(t, max_new_tokens=5) for t in PROMPTS]
    for t, h in zip(PROMPTS, handles):
        assert h.result(timeout=60).token_ids == reference(adapted, t, 5)
    assert max(peak) == 2
    assert engine._k[0].shape[0] == 2  # the cache was preallocated for 2 slots and never grew in rows
    engine.close()


def test_tokens_in_flight_budget_limits_admission(adapted):
    n_prompt = len(adapted._prompt_ids([PROMPTS[0]])[0])
    engine = Engine(adapted, EngineConfig(max_batch_size=8, max_tokens_in_flight=2 * (n_prompt + 10)))
    peak = []
    orig = engine._decode
    engine._decode = lambda: (peak.append(len(engine._rows)), orig())
    handles = [engine.submit(PROMPTS[0], max_new_tokens=10) for _ in range(5)]
    assert len({tuple(h.result(timeout=60).token_ids) for h in handles}) == 1
    assert max(peak) == 2
    engine.close()


def test_bounded_queue_refuses_with_a_typed_error(adapted):
    engine = Engine(adapted, EngineConfig(max_batch_size=1, max_queue=2))
    gate = threading.Event()
    engine.call(lambda: None)  # start the thread
    blocker = threading.Thread(target=lambda: engine.call(gate.wait))
    blocker.start()
    time.sleep(0.1)  # the engine thread is now inside gate.wait: nothing is admitted
    a = engine.submit("one", max_new_tokens=2)
    b = engine.submit("two", max_new_tokens=2)
    with pytest.raises(QueueFullError, match="queue is full"):
        engine.submit("three", max_new_tokens=2)
    gate.set()
    blocker.join(10)
    assert a.result(timeout=30).completion_tokens >= 1 and b.result(timeout=30).completion_tokens >= 1
    assert engine.stats()["rejected"] == 1
    engine.close()


def test_seeded_sampling_is_the_same_alone_and_batched(adapted):
    engine = Engine(adapted, EngineConfig(max_batch_size=4))
    kwargs = {"max_new_tokens": 12, "temperature": 0.9, "top_p": 0.9, "seed": 7}
    alone = engine.submit(PROMPTS[2], **kwargs).result(timeout=60)
    handles = [engine.submit(PROMPTS[i % 3], **{**kwargs, "seed": 7 if i == 2 else i}) for i in range(4)]
    together = [h.result(timeout=60) for h in handles]
    assert together[2].token_ids == alone.token_ids
    engine.close()


async def test_async_iteration_from_an_event_loop(adapted):
    engine = Engine(adapted, EngineConfig(max_batch_size=4))

    async def consume(text: str) -> str:
        handle = engine.submit(text, max_new_tokens=10)
        return "".join([piece async for piece in handle])

    texts = await asyncio.gather(*(consume(t) for t in PROMPTS[:4]))
    for t, text in zip(PROMPTS[:4], texts):
        assert text == engine.submit(t, max_new_tokens=10).result(timeout=60).text
    engine.close()


def test_model_generate_and_stream_from_threads_batch_together(adapted):
    """The public API: concurrent generate/stream calls share decode steps instead of queueing on a lock."""
    expected = {t: reference(adapted, t, 12) for t in PROMPTS[:4]}
    before = dict(adapted.engine.counters)
    out: dict = {}

    def gen(t):
        out[t] = adapted.generate(t, max_new_tokens=12).token_ids

    def stream(t):
        g = adapted.stream(t, max_new_tokens=12)
        try:
            while True:
                next(g)
        except StopIteration as stop:
            out[t] = stop.value.token_ids

    threads = [threading.Thread(target=gen if i % 2 else stream, args=(t,)) for i, t in enumerate(PROMPTS[:4])]
    for th in threads:
        th.start()
    for th in threads:
        th.join(60)
    assert out == expected
    after = adapted.engine.counters
    assert after["rows_decoded"] - before.get("rows_decoded", 0) > after["steps"] - before.get("steps", 0)


def test_closing_a_stream_early_cancels_the_generation(adapted):
    g = adapted.stream(PROMPTS[0], max_new_tokens=200)
    next(g, None)
    g.close()
    deadline = time.time() + 10
    while adapted.engine.stats()["active"] and time.time() < deadline:
        time.sleep(0.01)
    assert adapted.engine.stats()["active"] == 0


def test_bad_requests_fail_at_submit_with_clear_errors(adapted):
    from core_model import ConfigError, ContextLengthError

    with pytest.raises(ContextLengthError):
        adapted.engine.submit("x" * 300, max_new_tokens=10)
    with pytest.raises(ConfigError, match="max_new_tokens"):
        adapted.engine.submit("x", max_new_tokens=0)
    with pytest.raises(ConfigError):
        EngineConfig(max_batch_size=0)


def test_the_process_exits_cleanly_while_the_engine_is_generating():
    """Exiting with a generation in flight: the loop is stopped before finalization, never killed inside torch
    (which aborted with 'terminate called without an active exception', status 134)."""
    import subprocess
    import sys

    code = ("from core_model import random_model\n"
            "m = random_model('tiny', seed=0)\n"
            "h = m.engine.submit('hello', max_new_tokens=200, ignore_eos=True)\n"
            "next(iter(h))\n")  # the engine is mid-generation when the interpreter exits
    for _ in range(3):
        res = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
        assert res.returncode == 0, res.stderr[-1000:]
        assert "terminate called" not in res.stderr


def test_a_shared_prompt_prefix_is_prefilled_once_and_changes_nothing(adapted):
    engine = Engine(adapted, EngineConfig(max_batch_size=4))
    system = "You are a careful assistant. Answer in one short sentence, using the context given. "
    first, second = system + "What is two plus two?", system + "Name a colour."
    expected = [reference(adapted, t, 12) for t in (first, second)]
    assert engine.submit(first, max_new_tokens=12).result(timeout=60).token_ids == expected[0]
    assert engine.counters["prefix_hit_tokens"] == 0
    assert engine.submit(second, max_new_tokens=12).result(timeout=60).token_ids == expected[1]
    shared = len(os.path.commonprefix([adapted._prompt_ids([first])[0], adapted._prompt_ids([second])[0]]))
    assert engine.counters["prefix_hit_tokens"] == shared // 16 * 16 > 0
    # the whole prompt again: every whole block but the one holding the last token is reused
    assert engine.submit(first, max_new_tokens=12).result(timeout=60).token_ids == expected[0]
    # an adapter that changed (training, apply_adapter_state) never sees keys computed before the change
    hits = engine.counters["prefix_hit_tokens"]
    gate = next(p for n, p in adapted.llm.named_parameters() if n.endswith("attention.gate"))
    with torch.no_grad():
        gate.add_(0.5)
    try:
        changed = reference(adapted, first, 12)
        assert engine.submit(first, max_new_tokens=12).result(timeout=60).token_ids == changed
        assert engine.counters["prefix_hit_tokens"] == hits  # no hit
    finally:
        with torch.no_grad():
            gate.sub_(0.5)
    # requests with an image are never served from the cache (the image changes every layer's keys)
    hits = engine.counters["prefix_hit_tokens"]
    engine.submit(first, max_new_tokens=4, visual=visual_for(adapted, 0)).result(timeout=60)
    assert engine.counters["prefix_hit_tokens"] == hits
    engine.close()
    off = Engine(adapted, EngineConfig(prefix_cache_tokens=0))
    for _ in range(2):
        off.submit(first, max_new_tokens=4).result(timeout=60)
    assert off.counters["prefix_hit_tokens"] == 0
    off.close()
