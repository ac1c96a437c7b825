"""Opt-in int8 activations (``activations="int8"``): the kernels against a NumPy reference of the same arithmetic,
the VNNI / AVX2 / plain-C builds against each other (bit for bit), rows independent of their batch, the accuracy
against the fp32 path (tiny packed model and SmolLM2), batched == single greedy, and the switch itself."""
from __future__ import annotations

import numpy as np
import pytest
import torch

from core_model import ConfigError, load_model
from core_model.quant import INT8_TYPES, PackedWeight, build_kernels, kernels, kernels_available, set_activations

from .gguf_files import LAYOUT_K, TINY_K, random_blocks, write_tiny_gguf
from .test_positions import perturb_adapters

pytestmark = pytest.mark.skipif(not kernels_available(), reason="no C compiler for the block kernels")


@pytest.fixture
def cache_dir(tmp_path, monkeypatch):
    monkeypatch.setenv("LAV2_CACHE_DIR", str(tmp_path / "cache"))


@pytest.fixture(scope="module")
def files(tmp_path_factory):
    d = tmp_path_factory.mktemp("gguf")
    return {"mixed": write_tiny_gguf(d / "mixed.gguf"),  # Q4_0/Q4_1/Q8_0 + one F16 matrix per layer
            "k": write_tiny_gguf(d / "k.gguf", TINY_K, tied=False, layout=LAYOUT_K)}


def _weight(kind: str, n: int, k: int, seed: int) -> PackedWeight:
    blocks = random_blocks(kind, n, k, np.random.default_rng(seed), 0.1)
    return PackedWeight(kind, torch.from_numpy(np.ascontiguousarray(blocks)), (n, k))


def _mm(lib, w: PackedWeight, x: torch.Tensor, act: int, threads: int = 1) -> torch.Tensor:
    x = x.contiguous()
    y = torch.empty(x.shape[0], w.shape[0])
    rc = lib.lav2_mm(w._type, w.blocks.data_ptr(), w.shape[0], w.shape[1], x.data_ptr(), x.shape[0], y.data_ptr(),
                     threads, act)
    assert rc == 0
    return y


def reference(w: PackedWeight, x: np.ndarray) -> np.ndarray:
    """The int8 arithmetic in float64: per 32-block d = max|x| / 127, q = round-half-even(x / d) (the kernel
    rounds x * (1/d) in float32), exact integer dots, + Q4_1's offset m * (float sum of the block)."""
    n, k = w.shape
    G = k // 32
    raw = w.blocks.numpy().reshape(n, G, -1)
    d_w = raw[:, :, :2].copy().view(np.float16)[..., 0].astype(np.float64)
    if w.kind == "Q8_0":
        qw = raw[:, :, 2:].view(np.int8).astype(np.int64)
    else:
        nib = raw[:, :, 4:] if w.kind == "Q4_1" else raw[:, :, 2:]
        qw = np.concatenate([nib & 15, nib >> 4], axis=2).astype(np.int64) - (8 if w.kind == "Q4_0" else 0)
    xb = x.astype(np.float32).reshape(x.shape[0], G, 32)
    d_x = (np.abs(xb).max(axis=2) / np.float32(127)).astype(np.float32)
    inv = np.where(d_x > 0, np.float32(1) / np.where(d_x > 0, d_x, 1), 0).astype(np.float32)
    qx = np.clip(np.rint(xb.astype(np.float64) * inv[..., None].astype(np.float64)), -127, 127).astype(np.int64)
    dots = np.einsum("ngj,mgj->mng", qw, qx).astype(np.float64)
    y = (dots * d_w[None] * d_x[:, None, :].astype(np.float64)).sum(axis=2)
    if w.kind == "Q4_1":
        m_w = raw[:, :, 2:4].copy().view(np.float16)[..., 0].astype(np.float64)
        y += (m_w[None] * xb.astype(np.float64).sum(axis=2)[:, None, :]).sum(axis=2)
    return y


@pytest.mark.parametrize("kind", INT8_TYPES)
def test_int8_products_match_a_reference_of_the_same_arithmetic(kind):
    w = _weight(kind, 70, 96, seed=1)
    x = torch.randn(11, 96, generator=torch.Generator().manual_seed(2))
    got = _mm(kernels().lib, w, x, act=1).double().numpy()
    ref = reference(w, x.numpy())
    # the reference rounds x/d in float64 and sums in float64: equal up to float32 accumulation (a rounding tie of
    # x/d landing differently would show as a much larger difference)
    np.testing.assert_allclose(got, ref, rtol=0, atol=2e-5 * np.abs(ref).max())


@pytest.mark.parametrize("kind", INT8_TYPES)
def test_int8_is_close_to_fp32_and_fp32_is_unchanged(kind):
    w = _weight(kind, 64, 576, seed=3)
    x = torch.randn(5, 576, generator=torch.Generator().manual_seed(4))
    exact = x.double() @ w.dequantize().double().T
    fp32 = w.linear(x)
    w.set_activations("int8")
    int8 = w.linear(x)
    w.set_activations("fp32")
    assert torch.equal(w.linear(x), fp32)  # switching back restores the fp32 kernels exactly
    err8 = (int8.double() - exact).abs().max().item() / exact.abs().max().item()
    err32 = (fp32.double() - exact).abs().max().item() / exact.abs().max().item()
    assert err32 < 1e-5
    assert 1e-5 < err8 < 2e-2, err8  # int8 is an approximation: not exact, but within ~1% of the largest output


def test_vnni_avx2_and_c_builds_give_the_same_bits(tmp_path):
    """Every implementation of the int8 dot products does the same float operations in the same order."""
    builds = {"default": kernels(),
              "no_vnni": build_kernels(tmp_path / "novnni", extra_flags=("-DLAV2_NO_VNNI",)),
              "scalar": build_kernels(tmp_path / "scalar", extra_flags=("-DLAV2_SCALAR_INT8",))}
    impls = {name: k.int8_impl for name, k in builds.items()}
    assert impls["scalar"] == "c" and impls["no_vnni"] in ("avx2", "c")
    for kind in INT8_TYPES:
        for M in (1, 3, 8, 13, 20):
            w = _weight(kind, 67, 160, seed=M)
            x = torch.randn(M, 160, generator=torch.Generator().manual_seed(M)) * 3
            x[0, :32] = 0  # an all-zero block (scale 0)
            outs = {name: _mm(k.lib, w, x, act=1) for name, k in builds.items()}
            for name, y in outs.items():
                assert torch.equal(y, outs["default"]), f"{kind} M={M}: {name} ({impls[name]}) differs"


@pytest.mark.parametrize("kind", INT8_TYPES)
def test_each_row_gives_the_same_bits_alone_in_any_batch_and_thread_count(kind):
    lib = kernels().lib
    w = _weight(kind, 130, 192, seed=5)
    x = torch.randn(21, 192, generator=torch.Generator().manual_seed(6))
    full = _mm(lib, w, x, act=1, threads=2)
    assert torch.equal(full, _mm(lib, w, x, act=1, threads=1))
    for i in (0, 7, 8, 20):
        assert torch.equal(_mm(lib, w, x[i:i + 1], act=1)[0], full[i])
        assert torch.equal(_mm(lib, w, x[i:i + 3], act=1)[0], full[i])


def test_unknown_or_impossible_settings_raise_clear_errors(files, cache_dir, monkeypatch):
    with pytest.raises(ConfigError, match="activations must be one of"):
        load_model(files["mixed"], device="cpu", weights="packed", activations="int4")
    with pytest.raises(ConfigError, match="needs packed GGUF weights"):
        load_model(files["mixed"], device="cpu", dtype="float32", weights="dense", activations="int8")
    with pytest.raises(ConfigError, match="needs packed GGUF matrices of type"):  # K-quants only: no int8 kernel
        m = load_model(files["k"], device="cpu", weights="packed")
        set_activations(m.llm, "int8")
    monkeypatch.setenv("LAV2_ACTIVATIONS", "bf8")
    with pytest.raises(ConfigError, match="LAV2_ACTIVATIONS must be one of"):
        load_model(files["mixed"], device="cpu", weights="packed")
    monkeypatch.setenv("LAV2_ACTIVATIONS", "int8")
    m = load_model(files["mixed"], device="cpu", weights="packed")
    assert m.info["activations"] == "int8"
    monkeypatch.delenv("LAV2_ACTIVATIONS")
    m = load_model(files["mixed"], device="cpu", weights="packed")
    assert m.info["activations"] == "fp32"
    assert {w.activations for w in _packed(m)} == {"fp32"}  # the default stays fp32


def _packed(m):
    from core_model.quant import packed_weight

    return [w for w in (packed_weight(mod) for mod in m.llm.modules()) if w is not None]


def test_int8_on_the_tiny_model_is_close_to_fp32_and_the_c_step_agrees(files, cache_dir):
    from .test_fastpath import randomise_adapter, steps_agree

    fp = load_model(files["mixed"], adapter="release-bias", device="cpu", weights="packed")
    q8 = load_model(files["mixed"], adapter="release-bias", device="cpu", weights="packed", activations="int8")
    assert {w.kind for w in _packed(q8) if w.activations == "int8"} == set(INT8_TYPES)
    for m in (fp, q8):
        randomise_adapter(m.llm, 1)
    ids = torch.tensor([[5, 9, 33, 7, 2, 8, 1, 40, 41, 42, 17, 3, 99, 120, 6, 11, 250, 13]])
    with torch.inference_mode():
        a, b = fp.llm(ids)[0], q8.llm(ids)[0]
    rel = ((a - b).abs().max() / a.abs().max()).item()
    assert rel < 0.05, rel
    assert (a.argmax(-1) == b.argmax(-1)).float().mean().item() >= 0.8
    # the C decode step with int8 matrices against the torch path with the same int8 matrices: the same kernels
    # on nearly the same inputs (norms and attention sum in another order), so a last-bit difference can move an
    # activation across a step of its int8 grid: 5e-3 of the largest logit instead of the fp32 comparison's 1e-4
    from . import test_fastpath

    old = test_fastpath.ATOL
    test_fastpath.ATOL = 5e-3
    try:
        steps_agree(q8.llm, [[5, 9, 33, 7, 2, 8, 1], [4, 4, 17], [30, 31, 32, 33, 34]])
    finally:
        test_fastpath.ATOL = old


@pytest.mark.parametrize("preset", ["release-bias", "paper-text", "release-lora-bias"])
def test_batched_greedy_equals_single_for_32_steps_under_int8(files, cache_dir, preset):
    """Per-row quantisation and one kernel for every batch size: a row's tokens do not depend on its batch (the
    C decode step, and the torch path for LoRA, which the C step does not cover)."""
    from core_model.generation import SamplingParams, generate_tokens

    prompts = [[5, 17, 3, 99, 42, 8, 61, 7, 200, 13, 77, 5, 9, 33, 7, 2, 8, 1, 4], [9, 4, 150], [33, 12, 18, 250]]
    m = load_model(files["mixed"], adapter=preset, device="cpu", weights="packed", activations="int8")
    perturb_adapters(m.llm, seed=2)
    params = SamplingParams(max_new_tokens=32)
    batched = torch.stack(list(generate_tokens(m.llm, prompts, params)), dim=1)
    assert batched.shape == (3, 32)
    for i, p in enumerate(prompts):
        single = torch.stack(list(generate_tokens(m.llm, [p], params)), dim=1)[0]
        assert batched[i].tolist() == single.tolist(), f"row {i}"
    # the engine (continuous batching, the C step) gives every request its batch-1 tokens too
    engine = m.engine
    handles = [engine.submit(p, max_new_tokens=32, ignore_eos=True) for p in prompts]
    got = [h.result().token_ids for h in handles]
    assert got == [batched[i].tolist() for i in range(3)]


TEXT = ("The lighthouse keeper climbed the narrow stairs every evening at dusk. From the lamp room he could see the "
        "whole bay: the fishing boats coming home, the ferry to the island, and the long grey line of the breakwater. "
        "In winter the storms came from the north and the waves broke over the rocks below the tower. He kept a log "
        "of every ship that passed, the weather, and the hours the lamp burned. When the harbour installed an "
        "automatic light, the keeper moved to a small house in the village, but he still walked to the end of the "
        "pier each night to watch the beam turn across the water. Children from the school visited him to hear "
        "stories about shipwrecks, rescues and the night a whale swam into the harbour.")


def test_int8_on_smollm2_stays_close_to_fp32(smollm2):
    """The accuracy stated in docs/batching.md, on a fixed text: logits, top-1 agreement, perplexity."""
    q8 = load_model("smollm2-135m", device="cpu", dtype="float32", activations="int8")
    ids = torch.tensor([smollm2.tokenizer.encode(TEXT)])
    with torch.inference_mode():
        a, b = smollm2.llm(ids)[0].double(), q8.llm(ids)[0].double()
    nll = [torch.nn.functional.cross_entropy(lg[:-1], ids[0, 1:]).item() for lg in (a, b)]
    ppl_delta = np.exp(nll[1] - nll[0]) - 1
    top1 = (a.argmax(-1) == b.argmax(-1)).double().mean().item()
    max_diff = (a - b).abs().max().item()
    assert abs(ppl_delta) < 0.02, ppl_delta
    assert top1 >= 0.9, top1  # measured 0.926 (perplexity 33.01 -> 33.12)
    assert 0 < max_diff < 4.0, max_diff  # measured 2.84 (largest |logit| ~40)
    # and the C decode step under int8 gives the same greedy tokens as the fp32 step on a short chat turn
    prompt = ("<|im_start|>user\nWhat is the capital of France?<|im_end|>\n<|im_start|>assistant\n")
    assert q8.generate(prompt, max_new_tokens=8).text == smollm2.generate(prompt, max_new_tokens=8).text
