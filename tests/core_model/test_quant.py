"""Packed GGUF weights: the block kernels against gguf-py's dequantisation, and packed models against dense ones."""
from __future__ import annotations

import logging
from pathlib import Path

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from core_model import ConfigError, KernelUnavailableError, WeightsFormatError, load_model
from core_model import quant
from core_model.quant import BLOCK_TYPES, PackedWeight, build_kernels, kernels

from .gguf_files import LAYOUT_K, TINY_K, random_blocks, write_tiny_gguf

gguf = pytest.importorskip("gguf")
from gguf import GGMLQuantizationType  # noqa: E402
from gguf.quants import dequantize, quantize  # noqa: E402

KINDS = sorted(BLOCK_TYPES)


def packed(kind: str, n: int, k: int, seed: int = 0, scale: float = 0.1) -> tuple[PackedWeight, torch.Tensor]:
    """A random matrix in ``kind`` blocks: (the packed matrix, its float32 values per gguf-py's dequantize)."""
    blocks = random_blocks(kind, n, k, np.random.default_rng(seed), scale)
    values = torch.from_numpy(dequantize(blocks, GGMLQuantizationType[kind]).reshape(n, k).copy())
    return PackedWeight(kind, torch.from_numpy(blocks.copy()), (n, k)), values


def width(kind: str, blocks: int) -> int:
    return blocks * BLOCK_TYPES[kind][1]


def assert_product_close(y: torch.Tensor, x: torch.Tensor, w: torch.Tensor) -> None:
    """Within float32 summation error of the exact product (bound: a few eps times sum |x_k w_k|)."""
    exact = x.double() @ w.double().t()
    bound = 8 * torch.finfo(torch.float32).eps * (x.double().abs() @ w.double().abs().t()) + 1e-30
    assert bool(((y.double() - exact).abs() <= bound).all()), float(((y.double() - exact).abs() / bound).max())


# ============================================================================================ kernels
@pytest.mark.parametrize("kind", KINDS)
def test_dequantize_equals_gguf_py_exactly(kind):
    w, values = packed(kind, 37, width(kind, 3))
    assert torch.equal(w.dequantize(), values)


@pytest.mark.parametrize("kind", KINDS)
@pytest.mark.parametrize("rows", [1, 2, 3, 4, 5, 8, 15, 16, 17, 33])
def test_products_equal_the_dequantised_matrix(kind, rows):
    # 70 output rows: threads split them unevenly (and across tiles of 32); 5 blocks (2 super-blocks for K-quants)
    # per row; 9+ activation rows take several passes over each tile.
    k = width(kind, 5 if BLOCK_TYPES[kind][1] == 32 else 2)
    w, values = packed(kind, 70, k, seed=rows)
    x = torch.randn(rows, k, generator=torch.Generator().manual_seed(rows))
    assert_product_close(w.linear(x), x, values)
    bias = torch.randn(70)
    torch.testing.assert_close(w.linear(x, bias), w.linear(x) + bias, rtol=0, atol=0)


def test_products_keep_leading_dims_and_dtype():
    w, values = packed("Q4_1", 64, 64)
    x = torch.randn(2, 3, 64)
    y = w.linear(x)
    assert y.shape == (2, 3, 64) and y.dtype == torch.float32
    assert_product_close(y.reshape(6, 64), x.reshape(6, 64), values)
    xb = x.to(torch.bfloat16)
    assert w.linear(xb).dtype == torch.bfloat16
    non_contiguous = torch.randn(64, 6).t()
    assert_product_close(w.linear(non_contiguous), non_contiguous, values)


def test_decode_rows_do_not_depend_on_the_batch():
    """Each row's sum is computed the same way whatever the batch: batched greedy decode gives each sequence
    exactly what it gets alone, and a prompt's rows get the same values in a prefill of any length (40 rows:
    five passes of 8 over each tile of weight rows)."""
    w, _ = packed("Q4_1", 96, 128)
    x = torch.randn(40, 128)
    together = w.linear(x)
    assert torch.equal(together[:11], w.linear(x[:11]))
    for i in range(40):
        assert torch.equal(together[i], w.linear(x[i:i + 1])[0])


def test_thread_count_does_not_change_results():
    w, _ = packed("Q4_1", 200, 128)  # >= 64 rows: the product runs on several threads
    x = torch.randn(20, 128)
    before = torch.get_num_threads()
    try:
        torch.set_num_threads(1)
        one = (w.linear(x[:3]), w.linear(x))
        torch.set_num_threads(2)
        two = (w.linear(x[:3]), w.linear(x))
    finally:
        torch.set_num_threads(before)
    assert torch.equal(one[0], two[0]) and torch.equal(one[1], two[1])


@pytest.mark.parametrize("kind", KINDS)
def test_embedding_rows_are_exact(kind):
    w, values = packed(kind, 50, width(kind, 2), scale=1.0)
    ids = torch.tensor([[0, 49, 7], [7, 7, 3]])
    assert torch.equal(w.embedding(ids), values[ids])
    with pytest.raises(IndexError, match="out of range"):
        w.embedding(torch.tensor([50]))
    with pytest.raises(IndexError, match="out of range"):
        w.embedding(torch.tensor([-1]))


def test_gradients_flow_to_inputs_and_bias():
    w, values = packed("Q4_1", 48, 96)
    x1 = torch.randn(5, 96, requires_grad=True)
    b1 = torch.zeros(48, requires_grad=True)
    x2, b2 = x1.detach().clone().requires_grad_(), b1.detach().clone().requires_grad_()
    target = torch.randn(5, 48)
    F.mse_loss(w.linear(x1, b1), target).backward()
    F.mse_loss(F.linear(x2, values, b2), target).backward()
    torch.testing.assert_close(x1.grad, x2.grad, rtol=1e-5, atol=1e-7)
    torch.testing.assert_close(b1.grad, b2.grad, rtol=1e-5, atol=1e-7)


def test_bad_inputs_raise_typed_errors():
    w, _ = packed("Q8_0", 8, 64)
    with pytest.raises(WeightsFormatError, match="input width 32"):
        w.linear(torch.randn(1, 32))
    with pytest.raises(WeightsFormatError, match="on the CPU"):
        w.linear(torch.randn(1, 64, device="meta"))
    with pytest.raises(WeightsFormatError, match="not supported"):
        PackedWeight("Q5_K", w.blocks, (8, 64))
    with pytest.raises(WeightsFormatError, match="multiple of 32"):
        PackedWeight("Q8_0", torch.zeros(8, 34, dtype=torch.uint8), (8, 48))
    with pytest.raises(WeightsFormatError, match="multiple of 256"):
        PackedWeight("Q4_K", torch.zeros(8, 144, dtype=torch.uint8), (8, 128))
    with pytest.raises(WeightsFormatError, match="must be uint8 of shape"):
        PackedWeight("Q4_1", w.blocks, (8, 64))  # Q8_0 bytes read as Q4_1


@pytest.mark.parametrize("flags", [(), ("-DLAV2_NO_FLOAT16",)], ids=["_Float16", "portable"])
def test_every_float16_scale_converts_exactly(tmp_path, flags):
    """Both half-precision paths of the C file (the compiler's _Float16 and the portable bit conversion) turn
    every finite fp16 scale, subnormals included, into the exact float32 value."""
    # the int8 dot products' vector code is not under test here and is most of the compile time: left out
    lib = build_kernels(tmp_path, extra_flags=flags + ("-DLAV2_SCALAR_INT8",)).lib
    bits = np.arange(65536, dtype=np.uint16)
    bits = bits[np.isfinite(bits.view(np.float16))]
    blocks = np.zeros((bits.size, 34), dtype=np.uint8)
    blocks[:, :2] = bits.view(np.uint8).reshape(-1, 2)
    blocks[:, 2:] = 1  # every weight = d * 1
    raw = torch.from_numpy(blocks)
    out = torch.empty(bits.size, 32)
    assert lib.lav2_dequant(8, raw.data_ptr(), bits.size, 32, out.data_ptr(), 1) == 0
    expected = torch.from_numpy(bits.view(np.float16).astype(np.float32))
    assert torch.equal(out[:, 0], expected) and torch.equal(out[:, 31], expected)


def test_decode_step_exp_and_silu_match_torch_over_the_float_range():
    """The decode step's vector exp (softmax) and SiLU (SwiGLU) against torch in float64, on every lane position
    and tail length: within 2 ulp of the exact e^x where it is a normal float, 0 < e^x tiny below it (clamped, no
    NaN or inf), and SiLU exact to float rounding at the extremes (x for large x, ~0 for very negative x)."""
    lib = kernels().lib
    x = torch.cat([torch.linspace(-87.3, 88.3, 100_003), torch.tensor([-1e4, -200.0, -100.0, -88.0, -0.0, 0.0,
                                                                       1e-30, 89.0, 100.0, 1e4])])
    e = torch.empty_like(x)
    assert lib.lav2_pointwise(0, x.data_ptr(), x.numel(), e.data_ptr()) == 0
    inside = (x >= -87.3) & (x <= 88.3)
    exact = torch.exp(x[inside].double())
    ulp = (torch.nextafter(exact.float(), torch.tensor(float("inf"))) - exact.float()).double()
    assert float(((e[inside].double() - exact).abs() / ulp).max()) <= 2.0
    assert bool(torch.isfinite(e).all()) and bool((e > 0).all())
    s = torch.empty_like(x)
    assert lib.lav2_pointwise(1, x.data_ptr(), x.numel(), s.data_ptr()) == 0
    ref = torch.nn.functional.silu(x.double())
    torch.testing.assert_close(s.double(), ref, rtol=4e-7, atol=1e-30)
    for n in range(1, 20):  # a tail of any length gives the values of the full vectors
        part = torch.empty(n)
        assert lib.lav2_pointwise(1, x[-n:].data_ptr(), n, part.data_ptr()) == 0
        assert torch.equal(part, s[-n:])
    assert lib.lav2_pointwise(7, x.data_ptr(), 1, s.data_ptr()) == -1


def test_missing_compiler_is_reported_and_auto_falls_back(tmp_path, monkeypatch, caplog):
    path = write_tiny_gguf(tmp_path / "tiny.gguf")
    monkeypatch.setenv("LAV2_CACHE_DIR", str(tmp_path / "cache"))
    monkeypatch.setenv("CC", str(tmp_path / "no-such-compiler"))
    monkeypatch.setattr(quant, "_kernels", None)
    monkeypatch.setattr(quant, "_failure", None)
    with caplog.at_level(logging.WARNING, logger="core_model.api"):
        model = load_model(path, device="cpu", dtype="float32")
    assert model.describe()["weights"] == "dense"
    assert "weights='dense'" in caplog.text and "no-such-compiler" in caplog.text
    with pytest.raises(KernelUnavailableError, match="Install a C compiler"):
        load_model(path, device="cpu", weights="packed")


# ============================================================================================ models
@pytest.fixture(scope="module")
def tiny_files(tmp_path_factory):
    d = tmp_path_factory.mktemp("gguf")
    return {"tied": write_tiny_gguf(d / "tied.gguf"), "untied": write_tiny_gguf(d / "untied.gguf", tied=False)}


@pytest.fixture
def cache(tmp_path, monkeypatch):
    monkeypatch.setenv("LAV2_CACHE_DIR", str(tmp_path / "cache"))
    return tmp_path / "cache"


@pytest.mark.parametrize("head", ["tied", "untied"])
def test_packed_model_matches_the_dense_model(tiny_files, cache, head):
    path: Path = tiny_files[head]
    p = load_model(path, device="cpu", weights="packed")
    d = load_model(path, device="cpu", dtype="float32", weights="dense")
    info = p.describe()["weights"]
    assert info.startswith("packed") and "Q4_0" in info and "Q4_1" in info and "Q8_0" in info
    assert d.describe()["weights"] == "dense"
    assert p.llm.num_params() == d.llm.num_params()  # packed matrices still count (lav2 chat's size rule)
    assert p.llm.layers[0].attention.wv.weight is not None  # the F16 matrix stays dense
    assert p.llm.layers[0].attention.wq.weight is None and p.llm.layers[0].attention.wq.packed_weight is not None
    tokens = torch.randint(0, 320, (2, 40), generator=torch.Generator().manual_seed(0))
    with torch.no_grad():  # 80 rows: the prefill path of the kernels
        torch.testing.assert_close(p.llm(tokens), d.llm(tokens), rtol=1e-5, atol=1e-4)
    prompts = ["hello", "a much longer prompt about hello", "xyz"]
    batched = p.generate(prompts, max_new_tokens=12)
    for prompt, one in zip(prompts, batched):
        assert one.token_ids == d.generate(prompt, max_new_tokens=12).token_ids
        assert one.token_ids == p.generate(prompt, max_new_tokens=12).token_ids


@pytest.mark.parametrize("tied", [True, False])
def test_k_quant_gguf_runs_packed_and_matches_dense(tmp_path, cache, tied):
    """A Q4_K_M-style file (Q4_K matrices, Q6_K for some and the head) keeps every matrix in its blocks."""
    path = write_tiny_gguf(tmp_path / "k.gguf", TINY_K, tied=tied, layout=LAYOUT_K)
    p = load_model(path, device="cpu", weights="packed")
    d = load_model(path, device="cpu", dtype="float32", weights="dense")
    assert p.describe()["weights"] == ("packed Q4_K x10, Q6_K x5" if tied else "packed Q4_K x10, Q6_K x6")
    tokens = torch.randint(0, 320, (2, 24), generator=torch.Generator().manual_seed(4))
    with torch.no_grad():
        torch.testing.assert_close(p.llm(tokens), d.llm(tokens), rtol=1e-5, atol=1e-4)
        torch.testing.assert_close(p.llm(tokens[:1, :3]), d.llm(tokens[:1, :3]), rtol=1e-5, atol=1e-4)
    assert p.generate("hello", max_new_tokens=8).token_ids == d.generate("hello", max_new_tokens=8).token_ids


def test_packed_form_is_cached_and_reused(tiny_files, cache, monkeypatch):
    first = load_model(tiny_files["tied"], device="cpu")
    assert first.describe()["base_kind"] == "gguf"
    assert list(cache.glob("gguf/*-packed/packed.safetensors"))

    def no_parse(*_a, **_k):
        raise AssertionError("the GGUF was parsed although its packed form is cached")

    monkeypatch.setattr("core_model.loading.open_gguf", no_parse)
    second = load_model(tiny_files["tied"], device="cpu")
    assert second.describe()["base_kind"] == "cache" and second.describe()["weights"] == first.describe()["weights"]
    tokens = torch.randint(0, 320, (1, 12))
    with torch.no_grad():
        assert torch.equal(first.llm(tokens), second.llm(tokens))
    assert second.tokenizer.encode("hello <|im_end|>") == first.tokenizer.encode("hello <|im_end|>")


def test_packed_weights_are_several_times_smaller(tiny_files, cache):
    p = load_model(tiny_files["tied"], device="cpu")
    packed_bytes = sum(m.packed_weight.nbytes for m in p.llm.modules() if getattr(m, "packed_weight", None))
    dense_bytes = sum(m.packed_weight.numel() * 4 for m in p.llm.modules() if getattr(m, "packed_weight", None))
    assert packed_bytes < 0.3 * dense_bytes


@pytest.mark.parametrize("preset", ["paper-text", "release-bias", "release-lora-bias", "chat65b"])
def test_fresh_adapter_on_packed_weights_is_exactly_the_base(tiny_files, cache, preset):
    base = load_model(tiny_files["untied"], device="cpu")
    adapted = load_model(tiny_files["untied"], adapter=preset, device="cpu")
    assert adapted.describe()["weights"] == base.describe()["weights"]
    tokens = torch.randint(0, 320, (2, 9), generator=torch.Generator().manual_seed(1))
    with torch.no_grad():
        assert torch.equal(adapted.llm(tokens), base.llm(tokens))


def test_adapter_gradients_through_packed_weights_match_dense(tiny_files, cache):
    from core_model import set_trainable

    grads = []
    for weights in ("packed", "dense"):
        torch.manual_seed(0)  # the fresh adaption prompts are random: the same in both models
        m = load_model(tiny_files["untied"], adapter="paper-text", device="cpu", dtype="float32", weights=weights)
        names = set_trainable(m.llm)
        tokens = torch.randint(0, 320, (2, 10), generator=torch.Generator().manual_seed(3))
        logits = m.llm(tokens[:, :-1])
        F.cross_entropy(logits.reshape(-1, logits.shape[-1]), tokens[:, 1:].reshape(-1)).backward()
        grads.append({n: p.grad for n, p in m.llm.named_parameters() if n in names})
    assert grads[0].keys() == grads[1].keys() and grads[0]
    for name in grads[0]:
        torch.testing.assert_close(grads[0][name], grads[1][name], rtol=1e-4, atol=1e-6, msg=name)


def test_weights_argument_is_validated(tiny_files, cache, tmp_path):
    path = tiny_files["tied"]
    auto = load_model(path, device="cpu")
    assert auto.describe()["weights"].startswith("packed") and auto.dtype == torch.float32
    bf16 = load_model(path, device="cpu", dtype="bfloat16")  # another dtype: dense in that dtype
    assert bf16.describe()["weights"] == "dense" and bf16.dtype == torch.bfloat16
    with pytest.raises(WeightsFormatError, match="compute in float32"):
        load_model(path, device="cpu", dtype="bfloat16", weights="packed")
    with pytest.raises(ConfigError, match="weights must be one of"):
        load_model(path, device="cpu", weights="int4")
    dense_dir = tmp_path / "dense"
    dense_model = load_model(path, device="cpu", dtype="float32", weights="dense")
    from core_model.loading import write_cache

    write_cache(dense_dir, dense_model.config, {k: v for k, v in dense_model.llm.state_dict().items()},
                dense_model.tokenizer)
    with pytest.raises(WeightsFormatError, match="needs a .gguf base"):
        load_model(dense_dir, device="cpu", weights="packed")
    assert load_model(dense_dir, device="cpu", dtype="float32").describe()["weights"] == "dense"


def test_kernels_share_torchs_openmp_runtime():
    """Loading the kernels adds no OpenMP runtime: their threads are torch's, not a second pool fighting it."""
    import subprocess
    import sys

    if not Path("/proc/self/maps").exists() or not kernels().parallel:
        pytest.skip("needs Linux and an OpenMP build to inspect")
    code = ("import torch\n"
            "def omp():\n"
            "    return sorted({l.split()[-1] for l in open('/proc/self/maps') if 'gomp' in l or 'iomp' in l})\n"
            "torch.ones(4096).sum()\n"
            "before = omp()\n"
            "from core_model.quant import kernels\n"
            "kernels()\n"
            "print(before == omp(), before, omp())\n")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120, check=True)
    assert out.stdout.startswith("True"), out.stdout
