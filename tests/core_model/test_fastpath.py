"""The decode step in C (core_model/fastpath.py) against the torch path, which stays the reference."""
from __future__ import annotations

import pytest
import torch

from core_model import AdapterConfig, load_model
from core_model.fastpath import decode_step
from core_model.generation import left_pad, prefill_mask
from core_model.quant import kernels_available

from .gguf_files import LAYOUT_K, TINY_K, write_tiny_gguf

pytestmark = pytest.mark.skipif(not kernels_available(), reason="no C compiler for the block kernels")
ATOL = 1e-4


@pytest.fixture
def cache_dir(tmp_path, monkeypatch):
    monkeypatch.setenv("LAV2_CACHE_DIR", str(tmp_path / "cache"))


@pytest.fixture(scope="module")
def files(tmp_path_factory):
    d = tmp_path_factory.mktemp("gguf")
    return {"mixed": write_tiny_gguf(d / "mixed.gguf"),  # Q4_0/Q4_1/Q8_0 + one F16 (dense) matrix per layer
            "k": write_tiny_gguf(d / "k.gguf", TINY_K, tied=False, layout=LAYOUT_K)}


def randomise_adapter(llm, seed: int) -> None:
    """Adapter parts away from their identity init, so a wrong bias/scale/gate/norm in C shows in the logits."""
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for name, p in llm.named_parameters():
            leaf = name.rsplit(".", 1)[-1]
            if leaf in ("bias", "scale") or name.endswith("norm.weight"):
                p.copy_(1.0 * (leaf != "bias") + 0.2 * torch.randn(p.shape, generator=g))
            elif leaf in ("gate", "visual_gate"):
                p.copy_(torch.randn(p.shape, generator=g))
            elif leaf == "new_gate":
                p.fill_(0.7)


def steps_agree(llm, prompts, visual=None, n_steps=6, threads=(1, 2)):
    """Prefill a left-padded batch with the torch path, then decode ``n_steps`` greedy tokens with both paths on
    copies of the cache; logits must agree every step."""
    batch = left_pad(prompts, 0, llm.device)
    B, T = batch.tokens.shape
    mask = prefill_mask(batch.valid) if batch.padded else None
    positions = batch.positions if batch.padded else None
    row_pos = torch.tensor(batch.lengths)
    with torch.inference_mode():
        ref_cache = llm.new_cache(B, T + n_steps + 1)
        logits = llm(batch.tokens, visual, cache=ref_cache, attn_mask=mask, positions=positions,
                     last_only=True)[:, -1]
        c_cache = llm.new_cache(B, T + n_steps + 1)
        for a, b in zip(ref_cache.layers, c_cache.layers):
            b.k.copy_(a.k)
            b.v.copy_(a.v)
            b.prompt_kv = {k: (pk.clone(), pv.clone()) for k, (pk, pv) in a.prompt_kv.items()}
        step = decode_step(llm, [c.k for c in c_cache.layers], [c.v for c in c_cache.layers],
                           [c.prompt_kv for c in c_cache.layers])
        assert step is not None
        kstart = torch.tensor([T - n for n in batch.lengths])
        key_valid = torch.cat([batch.valid, torch.ones(B, n_steps + 1, dtype=torch.bool)], dim=1)
        nxt = logits.argmax(-1)
        for i in range(n_steps):
            pos = T + i
            step_mask = key_valid[:, None, None, :pos + 1] if batch.padded else None
            ref = llm(nxt[:, None], visual, start=pos, cache=ref_cache, attn_mask=step_mask,
                      positions=row_pos[:, None] + i if batch.padded else None, last_only=True)[:, -1]
            torch.set_num_threads(threads[i % len(threads)])
            got = step(nxt, row_pos + i, torch.full((B,), pos), kstart=kstart)
            torch.testing.assert_close(got, ref, rtol=0, atol=ATOL * max(1.0, float(ref.abs().max())))
            assert torch.equal(got.argmax(-1), ref.argmax(-1))
            nxt = ref.argmax(-1)
        for a, b in zip(ref_cache.layers, c_cache.layers):  # the C step wrote the same keys/values
            torch.testing.assert_close(b.k, a.k, rtol=0, atol=ATOL * max(1.0, float(a.k.abs().max())))
            torch.testing.assert_close(b.v, a.v, rtol=0, atol=ATOL * max(1.0, float(a.v.abs().max())))


@pytest.mark.parametrize("preset", ["none", "paper-text", "release-bias", "chat65b"])
@pytest.mark.parametrize("file", ["mixed", "k"])
def test_c_step_matches_torch_with_adapters(files, cache_dir, preset, file):
    m = load_model(files[file], adapter=preset, device="cpu", weights="packed")
    randomise_adapter(m.llm, 1)
    threads = torch.get_num_threads()
    try:
        steps_agree(m.llm, [[5, 9, 33, 7, 2, 8, 1], [4, 4, 17], [30, 31, 32, 33, 34]])
        steps_agree(m.llm, [[5, 9, 33, 7]])
    finally:
        torch.set_num_threads(threads)


@pytest.mark.parametrize("fusion", ["early", "late-additive"])
def test_c_step_with_per_row_visual_prompts(files, cache_dir, fusion):
    cfg = dict(linear="bias_scale", prompt_layers=1, prompt_len=3, fusion=fusion, early_layers=1,
               visual_tokens=3, train_norms=True)
    m = load_model(files["mixed"], adapter=AdapterConfig(**cfg), device="cpu", weights="packed")
    randomise_adapter(m.llm, 2)
    visual = torch.randn(2, 3, m.llm.config.dim, generator=torch.Generator().manual_seed(3))
    steps_agree(m.llm, [[5, 9, 33, 7], [4, 17]], visual=visual)
    steps_agree(m.llm, [[5, 9, 33, 7], [4, 17]], visual=visual[:1])  # one image shared by both rows


def prefill_agrees(llm, ids: list[int], visual=None, chunks=(3, 4), slot: int = 1) -> None:
    """Prefill ``ids`` in C as rows of one cache row (``slot`` of three), in ``chunks``, against the torch path's
    prefill: the last logits and every key/value written must agree, and only the slot's row is touched."""
    T = len(ids)
    with torch.inference_mode():
        ref_cache = llm.new_cache(1, T + 2)
        ref = llm(torch.tensor([ids]), visual, cache=ref_cache, last_only=True)[:, -1]
        k = [torch.zeros(3, *c.k.shape[1:]) for c in ref_cache.layers]
        v = [torch.zeros(3, *c.v.shape[1:]) for c in ref_cache.layers]
        prompts = []
        for layer in llm.prompt_kv(visual):  # per-row prompt sets, this request's in the slot's row
            prompts.append({key: (torch.zeros(3, *pk.shape[1:]).index_copy_(0, torch.tensor([slot]), pk),
                                  torch.zeros(3, *pv.shape[1:]).index_copy_(0, torch.tensor([slot]), pv))
                            for key, (pk, pv) in layer.items()})
        step = decode_step(llm, k, v, prompts)
        assert step is not None
        start = 0
        for n in chunks:
            got = step(torch.tensor(ids[start:start + n]), torch.arange(start, start + n),
                       rows=torch.full((n,), slot), last_only=True)
            start += n
        assert start == T and got.shape == ref.shape
        torch.testing.assert_close(got, ref, rtol=0, atol=ATOL * max(1.0, float(ref.abs().max())))
        for a, kc, vc in zip(ref_cache.layers, k, v):
            tol = ATOL * max(1.0, float(a.k.abs().max()), float(a.v.abs().max()))
            torch.testing.assert_close(kc[slot, :, :T], a.k[0, :, :T], rtol=0, atol=tol)
            torch.testing.assert_close(vc[slot, :, :T], a.v[0, :, :T], rtol=0, atol=tol)
            others = [r for r in range(3) if r != slot]
            assert not kc[others].any() and not vc[others].any() and not kc[slot, :, T:].any()


@pytest.mark.parametrize("preset", ["none", "release-bias", "chat65b"])
@pytest.mark.parametrize("file", ["mixed", "k"])
def test_prefill_as_rows_of_one_cache_row_matches_torch(files, cache_dir, preset, file):
    """A prompt prefilled in C — its tokens as rows sharing one cache row, each seeing the keys the rows before
    it stored in the same call, whichever thread wrote them — equals the torch path's prefill."""
    m = load_model(files[file], adapter=preset, device="cpu", weights="packed")
    randomise_adapter(m.llm, 6)
    threads = torch.get_num_threads()
    try:
        for nt in (1, 2):
            torch.set_num_threads(nt)
            prefill_agrees(m.llm, [5, 9, 33, 7, 2, 8, 1], chunks=(3, 4))
            prefill_agrees(m.llm, [5, 9, 33, 7, 2, 8, 1, 4, 4, 17, 30, 31], chunks=(12,), slot=2)
    finally:
        torch.set_num_threads(threads)


def test_prefill_as_rows_with_an_image_matches_torch(files, cache_dir):
    cfg = dict(linear="bias_scale", prompt_layers=1, prompt_len=3, fusion="late-additive", visual_tokens=3,
               train_norms=True)
    m = load_model(files["mixed"], adapter=AdapterConfig(**cfg), device="cpu", weights="packed")
    randomise_adapter(m.llm, 7)
    visual = torch.randn(1, 3, m.llm.config.dim, generator=torch.Generator().manual_seed(8))
    prefill_agrees(m.llm, [5, 9, 33, 7, 2], visual=visual, chunks=(2, 3))


def test_c_step_on_smollm2_matches_torch_and_keeps_greedy_tokens(smollm2):
    ids = smollm2.tokenizer.encode("<|im_start|>user\nWhat is the capital of France?<|im_end|>\n"
                                   "<|im_start|>assistant\n")
    steps_agree(smollm2.llm, [ids], n_steps=12)


@pytest.mark.parametrize("preset", ["paper-text", "release-bias"])
def test_generate_with_and_without_the_c_step_gives_the_same_tokens(files, cache_dir, monkeypatch, preset):
    from core_model import fastpath

    m = load_model(files["mixed"], adapter=preset, device="cpu", weights="packed")
    randomise_adapter(m.llm, 4)
    prompts = ["hello there", "a much longer prompt about hello", "xyz"]
    with_c = [c.token_ids for c in m.generate(prompts, max_new_tokens=10)]
    monkeypatch.setattr(fastpath, "enabled", False)
    without = [c.token_ids for c in m.generate(prompts, max_new_tokens=10)]
    alone = [m.generate(p, max_new_tokens=10).token_ids for p in prompts]
    assert with_c == without == alone


def test_engine_decodes_staggered_requests_in_c_with_their_batch1_tokens(files, cache_dir, monkeypatch):
    """The engine's batched decode (rows of different lengths, with and without an image) through the C step
    gives every request the tokens the torch path gives it alone."""
    from core_model import EngineConfig, fastpath
    from core_model.engine import Engine

    from .test_engine import reference, run_staggered, visual_for

    m = load_model(files["mixed"], adapter="release-bias", device="cpu", weights="packed")
    randomise_adapter(m.llm, 5)
    texts = ["a longer prompt with several words", "hi", "medium prompt", "x", "six"]
    monkeypatch.setattr(fastpath, "enabled", False)
    jobs, expected = [], []
    for i, text in enumerate(texts):
        visual = visual_for(m, i) if i % 2 == 0 else None
        jobs.append({"prompt": text, "max_new_tokens": 5 + 3 * (i % 3), "visual": visual})
        expected.append(reference(m, text, jobs[-1]["max_new_tokens"], visual))
    monkeypatch.setattr(fastpath, "enabled", True)
    engine = Engine(m, EngineConfig(max_batch_size=4, prefill_chunk=8))
    try:
        got = run_staggered(engine, jobs, seed=3)
    finally:
        engine.close()
    assert [c.token_ids for c in got] == expected
    assert engine.counters["c_steps"] > 0


def test_uncovered_models_fall_back(files, cache_dir):
    lora = load_model(files["mixed"], adapter="release-lora-bias", device="cpu", weights="packed")
    dense = load_model(files["mixed"], device="cpu", dtype="float32", weights="dense")
    for m in (lora, dense):
        cache = m.llm.new_cache(1, 8)
        assert decode_step(m.llm, [c.k for c in cache.layers], [c.v for c in cache.layers]) is None


def test_positions_outside_the_cache_raise(files, cache_dir):
    from core_model import WeightsFormatError

    m = load_model(files["mixed"], device="cpu", weights="packed")
    cache = m.llm.new_cache(1, 8)
    step = decode_step(m.llm, [c.k for c in cache.layers], [c.v for c in cache.layers])
    with pytest.raises(WeightsFormatError):
        step(torch.tensor([3]), torch.tensor([8]))
    with pytest.raises(WeightsFormatError):
        step(torch.tensor([3]), torch.tensor([2]), kstart=torch.tensor([3]))


@pytest.mark.parametrize("fusion", ["early", "late-additive"])
@pytest.mark.parametrize("image", ["none", "per-row", "shared"])
def test_generate_tokens_prefills_a_padded_batch_in_c_like_torch(files, cache_dir, monkeypatch, fusion, image):
    """generate_tokens prefills every prompt of a left-padded batch in one C call (each row at its own positions,
    attending from its first real token): its first logits and the cache it leaves equal the torch prefill's."""
    from core_model import fastpath, generation

    cfg = dict(linear="bias_scale", prompt_layers=1, prompt_len=3, fusion=fusion, early_layers=1,
               visual_tokens=3, train_norms=True)
    m = load_model(files["mixed"], adapter=AdapterConfig(**cfg), device="cpu", weights="packed")
    randomise_adapter(m.llm, 5)
    prompts = [[5, 9, 33, 7, 2, 11], [4, 17], [8, 1, 30]]
    visual = {"none": None, "shared": torch.randn(1, 3, m.llm.config.dim, generator=torch.Generator().manual_seed(6)),
              "per-row": torch.randn(3, 3, m.llm.config.dim, generator=torch.Generator().manual_seed(7))}[image]
    seen = {}
    real_new_cache = type(m.llm).new_cache

    def spy_cache(self, *a, **k):  # keep each run's cache and first logits for the comparison
        seen.setdefault("caches", []).append(real_new_cache(self, *a, **k))
        return seen["caches"][-1]

    real_sample = generation.sample

    def spy_sample(logits, *a, **k):
        seen.setdefault("logits", []).append(logits.clone())
        return real_sample(logits, *a, **k)

    monkeypatch.setattr(type(m.llm), "new_cache", spy_cache)
    monkeypatch.setattr(generation, "sample", spy_sample)
    params = generation.SamplingParams(max_new_tokens=1)
    calls = []
    real_call = fastpath.DecodeStep.__call__
    monkeypatch.setattr(fastpath.DecodeStep, "__call__",
                        lambda self, *a, **k: calls.append(k.get("n_logits")) or real_call(self, *a, **k))
    list(generation.generate_tokens(m.llm, prompts, params, visual=visual))
    assert calls == [3]  # one C call prefilled all three prompts
    monkeypatch.setattr(fastpath, "enabled", False)
    list(generation.generate_tokens(m.llm, prompts, params, visual=visual))
    got, ref = seen["logits"]
    torch.testing.assert_close(got, ref, rtol=0, atol=ATOL * max(1.0, float(ref.abs().max())))
    T = max(len(p) for p in prompts)
    for a, b in zip(*(c.layers for c in seen["caches"])):
        for row, p in enumerate(prompts):  # the real tokens' keys/values; padding columns are never attended
            cols = slice(T - len(p), T)
            torch.testing.assert_close(a.k[row, :, cols], b.k[row, :, cols], rtol=0, atol=ATOL)
            torch.testing.assert_close(a.v[row, :, cols], b.v[row, :, cols], rtol=0, atol=ATOL)


@pytest.mark.parametrize("fusion", ["early", "late-additive"])
def test_continuation_logprobs_prefill_the_prompt_in_c_like_torch(files, cache_dir, monkeypatch, fusion):
    """continuation_logprobs prefills its prompt through the C step (the continuations then run in torch on the
    cache it leaves): the same log-probabilities as the torch prefill, with and without an image."""
    from core_model import fastpath

    cfg = dict(linear="bias_scale", prompt_layers=1, prompt_len=3, fusion=fusion, early_layers=1,
               visual_tokens=3, train_norms=True)
    m = load_model(files["mixed"], adapter=AdapterConfig(**cfg), device="cpu", weights="packed")
    randomise_adapter(m.llm, 8)
    visual = torch.randn(1, 3, m.llm.config.dim, generator=torch.Generator().manual_seed(9))
    monkeypatch.setattr(type(m), "_visual", lambda self, images, n: visual)
    conts = ["a b", "hello there", "x", "a much longer continuation here"]
    calls = []
    real_call = fastpath.DecodeStep.__call__
    monkeypatch.setattr(fastpath.DecodeStep, "__call__",
                        lambda self, *a, **k: calls.append(k.get("n_logits")) or real_call(self, *a, **k))
    for image in (None, "unused"):
        calls.clear()
        got = m.continuation_logprobs("some prompt words", conts, image=image)
        assert calls == [1]  # the prompt went through the C step, in one call
        with monkeypatch.context() as torch_only:
            torch_only.setattr(fastpath, "enabled", False)
            ref = m.continuation_logprobs("some prompt words", conts, image=image)
        for g, r in zip(got, ref):
            assert len(g) == len(r) > 0
            torch.testing.assert_close(torch.tensor(g), torch.tensor(r), rtol=0, atol=1e-4)


def test_scoring_reuses_a_prefix_in_c_with_the_same_bits(files, cache_dir):
    """On the C path a reused prefix changes no bit: its keys are the ones the C prefill wrote before."""
    from core_model import EngineConfig

    doc = "shared document text " * 8 + "question: "
    models = []
    for cache_tokens in (1024, 0):
        torch.manual_seed(0)  # the adaption prompts' random init: the same in both models
        m = load_model(files["mixed"], adapter="release-bias", device="cpu", weights="packed")
        randomise_adapter(m.llm, 3)
        m.configure_engine(EngineConfig(prefix_cache_tokens=cache_tokens))
        models.append(m)
    for q in ("what is it?", "who wrote it?", "what is it?"):
        got, want = (m.continuation_logprobs(doc + q, ["a b", "hello there"]) for m in models)
        assert got == want
    assert models[0].engine.counters["score_prefix_hit_tokens"] > 0
    assert models[1].engine.counters["score_prefix_hit_tokens"] == 0
