"""The engine's thread count (EngineConfig.threads): fixed or following a callable per step, greedy output the same
whatever the count — at 1 and 2 threads, switching mid-generation, batched or alone — on the C decode step and on
the torch path."""
from __future__ import annotations

import itertools
import logging

import pytest
import torch

from core_model import ConfigError, EngineConfig, load_model, random_model
from core_model.fastpath import decode_step
from core_model.quant import kernels_available

from .gguf_files import write_tiny_gguf
from .test_fastpath import randomise_adapter
from .test_positions import perturb_adapters

PROMPTS = ["a longer prompt with several words in it", "hi", "medium prompt", "the fourth one"]
needs_kernels = pytest.mark.skipif(not kernels_available(), reason="no C compiler for the block kernels")


class Alternating:
    """A ``threads`` callable: 1, 2, 2, 1, 2, 2, ... one value per call (the engine asks before every forward and
    every iteration, so a cycle of three puts decode steps at both counts)."""

    def __init__(self, values=(1, 2, 2)):
        self._values = itertools.cycle(values)
        self.calls = 0

    def __call__(self) -> int:
        self.calls += 1
        return next(self._values)


@pytest.fixture(scope="module")
def packed(tmp_path_factory):
    """A tiny GGUF model with packed block matrices (the C decode step covers it) and trained-like adapters."""
    d = tmp_path_factory.mktemp("gguf")
    mp = pytest.MonkeyPatch()
    mp.setenv("LAV2_CACHE_DIR", str(d / "cache"))
    m = load_model(write_tiny_gguf(d / "mixed.gguf"), adapter="release-bias", device="cpu", weights="packed")
    randomise_adapter(m.llm, 7)
    yield m
    mp.undo()


@pytest.fixture(scope="module")
def dense():
    """A tiny float32 model (the torch decode path) with every adapter part trained-like."""
    m = random_model("tiny", "release-lora-bias", seed=3)
    perturb_adapters(m.llm, seed=4)
    return m


def tokens(model, prompts, threads, max_batch_size=4, n=12):
    engine = model.configure_engine(max_batch_size=max_batch_size, threads=threads)
    out = [c.token_ids for c in model.generate(prompts, max_new_tokens=n)]
    return out, engine


@pytest.mark.parametrize("which", [pytest.param("packed", marks=needs_kernels), "dense"])
def test_greedy_tokens_are_the_same_at_1_and_2_threads_switching_and_alone(which, request):
    model = request.getfixturevalue(which)
    one, e1 = tokens(model, PROMPTS, 1)
    two, e2 = tokens(model, PROMPTS, 2)
    switching = Alternating()
    mixed, e3 = tokens(model, PROMPTS, switching)
    alone = [tokens(model, [p], Alternating((2, 1)), max_batch_size=1)[0][0] for p in PROMPTS]
    assert one == two == mixed == alone
    assert all(len(t) == 12 for t in one)  # the comparison covers every step
    assert e1.counters["steps_at_1_threads"] > 0 and "steps_at_2_threads" not in e1.counters
    assert e2.counters["steps_at_2_threads"] > 0 and "steps_at_1_threads" not in e2.counters
    # mid-generation switches: the batch decoded some steps at 1 and some at 2 threads
    assert e3.counters["steps_at_1_threads"] > 0 and e3.counters["steps_at_2_threads"] > 0
    assert switching.calls >= e3.counters["steps"]
    if which == "packed":
        assert e3.counters["c_steps"] == e3.counters["steps"]  # the C step ran, with the count passed in
    else:
        assert e3.counters["c_steps"] == 0


@needs_kernels
def test_the_c_step_gives_bitwise_equal_logits_at_any_thread_count(packed):
    llm = packed.llm
    ids = [5, 9, 33, 7, 2, 8, 1]
    with torch.inference_mode():
        cache = llm.new_cache(3, 16)
        llm(torch.tensor([ids] * 3), cache=cache, last_only=True)
        step = decode_step(llm, [c.k for c in cache.layers], [c.v for c in cache.layers],
                           [c.prompt_kv for c in cache.layers])
        assert step is not None
        tok, pos = torch.tensor([3, 4, 5]), torch.full((3,), len(ids))
        got = {t: step(tok, pos, threads=t) for t in (1, 2, 3)}
    assert torch.equal(got[1], got[2]) and torch.equal(got[1], got[3])
    assert float(got[1].abs().max()) > 0


def test_the_count_is_set_on_the_engine_thread(dense):
    for n in (1, 2):
        engine = dense.configure_engine(threads=n)
        assert engine.call(torch.get_num_threads) == n
        assert engine.threads == n
    follow = {"n": 2}
    engine = dense.configure_engine(threads=lambda: follow["n"])
    assert engine.call(torch.get_num_threads) == 2
    follow["n"] = 1
    assert engine.call(torch.get_num_threads) == 1  # re-evaluated before every iteration
    engine = dense.configure_engine(threads=None)
    assert engine.call(torch.get_num_threads) == engine.base_threads == torch.get_num_threads()


def test_a_failing_threads_callable_falls_back_and_warns_once(dense, caplog):
    calls = {"n": 0}

    def broken() -> int:
        calls["n"] += 1
        raise RuntimeError("probe failed")

    fixed, _ = tokens(dense, PROMPTS[:2], None)
    with caplog.at_level(logging.WARNING, logger="core_model.engine"):
        got, engine = tokens(dense, PROMPTS[:2], broken)
    assert got == fixed
    assert calls["n"] > 1
    assert engine.threads == engine.base_threads
    assert sum("threads callable failed" in r.message for r in caplog.records) == 1
    got, engine = tokens(dense, PROMPTS[:2], lambda: "two")  # not an int: also the fallback
    assert got == fixed and engine.threads == engine.base_threads
    got, engine = tokens(dense, PROMPTS[:2], lambda: 0)  # below 1: clamped to one thread
    assert got == fixed and engine.threads == 1


@pytest.mark.parametrize("bad", [0, -2, True, 1.5, "2"])
def test_bad_thread_counts_are_config_errors(bad):
    with pytest.raises(ConfigError, match="threads must be"):
        EngineConfig(threads=bad)
    assert EngineConfig(threads=3).threads == 3


def test_smollm2_greedy_tokens_do_not_depend_on_threads_or_batching(smollm2):
    """The real packed model: the C step's split over 1 or 2 threads, switched every step, batched or alone."""
    chat = [f"<|im_start|>user\n{q}<|im_end|>\n<|im_start|>assistant\n"
            for q in ("What is the capital of France?", "Name a colour.", "Count from one to five.")]
    try:
        one, _ = tokens(smollm2, chat, 1, n=16)
        mixed, engine = tokens(smollm2, chat, Alternating(), n=16)
        alone = [tokens(smollm2, [p], 2, max_batch_size=1, n=16)[0][0] for p in chat]
    finally:
        smollm2.configure_engine(EngineConfig())  # the session's model back to the defaults
    assert one == mixed == alone
    assert engine.counters["c_steps"] == engine.counters["steps"] > 0
    assert engine.counters["steps_at_1_threads"] > 0 and engine.counters["steps_at_2_threads"] > 0
