"""The decoder against transformers' LlamaForCausalLM, identity-at-init of every adapter part, KV cache."""
from __future__ import annotations

import dataclasses

import pytest
import torch

from core_model import AdapterConfig, ModelConfig, Transformer, adapter_preset, model_preset
from core_model.api import build_model
from core_model.config import ADAPTER_PRESETS
from core_model.generation import left_pad, prefill_mask
from core_model.groups import GROUPS, KIND_GROUP, adapter_kinds, param_groups
from core_model.loading import hf_to_meta_state, permute_hf_to_meta, permute_meta_to_hf

transformers = pytest.importorskip("transformers")

CONFIGS = {
    "mha-untied": ModelConfig("t", vocab_size=128, dim=64, n_layers=2, n_heads=4, n_kv_heads=4, ffn_dim=96,
                              norm_eps=1e-5, rope_theta=10000.0, max_seq_len=64),
    "gqa-untied": ModelConfig("t", vocab_size=128, dim=64, n_layers=3, n_heads=4, n_kv_heads=2, ffn_dim=96,
                              norm_eps=1e-6, rope_theta=100000.0, max_seq_len=64),
    "gqa-tied": ModelConfig("t", vocab_size=128, dim=48, n_layers=2, n_heads=6, n_kv_heads=2, ffn_dim=80,
                            norm_eps=1e-5, rope_theta=100000.0, max_seq_len=64, tie_embeddings=True),
    "mha-tied": ModelConfig("t", vocab_size=96, dim=32, n_layers=2, n_heads=2, n_kv_heads=2, ffn_dim=64,
                            max_seq_len=64, tie_embeddings=True),
}


def hf_model(cfg: ModelConfig, seed: int = 0):
    torch.manual_seed(seed)
    hc = transformers.LlamaConfig(
        vocab_size=cfg.vocab_size, hidden_size=cfg.dim, intermediate_size=cfg.ffn_dim,
        num_hidden_layers=cfg.n_layers, num_attention_heads=cfg.n_heads, num_key_value_heads=cfg.n_kv_heads,
        rms_norm_eps=cfg.norm_eps, max_position_embeddings=cfg.max_seq_len, tie_word_embeddings=cfg.tie_embeddings,
        rope_parameters={"rope_type": "default", "rope_theta": cfg.rope_theta})
    model = transformers.LlamaForCausalLM(hc).eval()
    with torch.no_grad():  # HF initialises norms to 1: randomise them so the norm weights are really checked
        for name, p in model.named_parameters():
            if "norm" in name:
                p.add_(torch.randn_like(p) * 0.1)
    return model


def ours_from_hf(hf, cfg: ModelConfig, acfg: AdapterConfig | None = None) -> Transformer:
    sd = {k: v.clone() for k, v in hf.state_dict().items()}
    return build_model(dataclasses.replace(cfg), acfg or AdapterConfig(), hf_to_meta_state(sd, cfg),
                       torch.device("cpu"), torch.float32)


@pytest.mark.parametrize("name", sorted(CONFIGS))
def test_logits_match_transformers(name):
    cfg = CONFIGS[name]
    hf = hf_model(cfg)
    ours = ours_from_hf(hf, cfg)
    tokens = torch.randint(0, cfg.vocab_size, (2, 23), generator=torch.Generator().manual_seed(1))
    with torch.no_grad():
        expected = hf(tokens).logits
        got = ours(tokens)
    assert got.shape == expected.shape
    assert (got - expected).abs().max().item() <= 1e-4


def test_hf_permutation_roundtrip():
    w = torch.randn(64, 16)
    assert torch.equal(permute_meta_to_hf(permute_hf_to_meta(w, 4), 4), w)
    assert not torch.equal(permute_hf_to_meta(w, 4), w)


def _fresh_adapter_model(base: Transformer, acfg: AdapterConfig) -> Transformer:
    """The same base weights, with every adapter part switched on by ``acfg`` at its init."""
    from core_model.api import _materialise_adapter_params

    with torch.device("meta"):
        model = Transformer(dataclasses.replace(base.config), acfg)
    model.load_state_dict({k: v.clone() for k, v in base.state_dict().items()}, strict=False, assign=True)
    torch.manual_seed(123)
    _materialise_adapter_params(model, torch.device("cpu"), torch.float32)
    return model.eval()


@pytest.mark.parametrize("preset", [p for p in ADAPTER_PRESETS if p != "none"])
def test_fresh_adapter_is_exactly_the_base(preset):
    cfg = CONFIGS["gqa-untied"]
    base = ours_from_hf(hf_model(cfg), cfg)
    acfg = adapter_preset(preset, cfg)
    if acfg.fusion == "early":
        acfg = dataclasses.replace(acfg, visual_tokens=5)
    adapted = _fresh_adapter_model(base, acfg)
    assert adapter_kinds(adapted), "the preset switched nothing on"
    tokens = torch.randint(0, cfg.vocab_size, (2, 11), generator=torch.Generator().manual_seed(2))
    n_vis = acfg.visual_tokens or acfg.prompt_len
    visual = torch.randn(2, n_vis, cfg.dim) if acfg.fusion != "none" else None
    with torch.no_grad():
        assert torch.equal(adapted(tokens, visual), base(tokens))


def _perturb_adapters(model: Transformer, seed: int = 0) -> None:
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for name, p in model.named_parameters():
            if name in adapter_kinds(model):
                p.add_(torch.randn(p.shape, generator=g) * 0.3)


@pytest.mark.parametrize("preset", ["paper", "release-lora-bias", "chat65b"])
def test_trained_adapter_changes_logits(preset):
    cfg = CONFIGS["gqa-untied"]
    base = ours_from_hf(hf_model(cfg), cfg)
    acfg = dataclasses.replace(adapter_preset(preset, cfg), visual_tokens=5) if preset == "paper" else \
        adapter_preset(preset, cfg)
    adapted = _fresh_adapter_model(base, acfg)
    _perturb_adapters(adapted)
    tokens = torch.randint(0, cfg.vocab_size, (1, 9))
    with torch.no_grad():
        assert (adapted(tokens) - base(tokens)).abs().max() > 1e-3


@pytest.mark.parametrize("preset", ["none", "paper", "release-lora-bias"])
def test_incremental_decode_equals_full_recompute(preset):
    cfg = CONFIGS["gqa-untied"]
    acfg = adapter_preset(preset, cfg)
    if acfg.fusion == "early":
        acfg = dataclasses.replace(acfg, visual_tokens=4)
    model = _fresh_adapter_model(ours_from_hf(hf_model(cfg), cfg), acfg)
    _perturb_adapters(model, 3)  # non-zero gates so the cached prompt keys/values matter
    visual = torch.randn(2, acfg.visual_tokens or max(acfg.prompt_len, 1), cfg.dim) if acfg.fusion != "none" else None
    tokens = torch.randint(0, cfg.vocab_size, (2, 14), generator=torch.Generator().manual_seed(4))
    with torch.no_grad():
        full = model(tokens, visual)
        cache = model.new_cache(2, 14)
        steps = [model(tokens[:, :6], visual, start=0, cache=cache)]
        for t in range(6, 14):
            steps.append(model(tokens[:, t:t + 1], visual, start=t, cache=cache))
        inc = torch.cat(steps, dim=1)
    assert (inc - full).abs().max().item() < 1e-4


def test_left_padded_batch_equals_single_sequences():
    cfg = CONFIGS["gqa-untied"]
    model = ours_from_hf(hf_model(cfg), cfg)
    a, b = [5, 6, 7, 8, 9, 10, 11], [3, 4, 2]
    batch = left_pad([a, b], pad_id=0, device=torch.device("cpu"))
    with torch.no_grad():
        both = model(batch.tokens, attn_mask=prefill_mask(batch.valid))
        la = model(torch.tensor([a]))
        lb = model(torch.tensor([b]))
    assert (both[0] - la[0]).abs().max() < 1e-4
    assert (both[1, -3:] - lb[0]).abs().max() < 1e-4


@pytest.mark.parametrize("preset", ADAPTER_PRESETS)
def test_param_groups_are_disjoint_and_complete(preset):
    cfg = model_preset("llama-7b")
    with torch.device("meta"):
        model = Transformer(cfg, adapter_preset(preset, cfg))
    groups = param_groups(model)
    assert tuple(groups) == GROUPS
    ids = [id(p) for ps in groups.values() for _, p in ps]
    assert len(ids) == len(set(ids)) == len(list(model.parameters()))
    kinds = adapter_kinds(model)
    for name, _ in groups["visual"]:
        assert KIND_GROUP[kinds[name]] == "visual"
    for name, _ in groups["frozen"]:
        assert name not in kinds
    assert all(n.endswith(".weight") for n, _ in groups["frozen"])


def test_paper_65b_bias_scale_norm_count_is_the_papers_14m():
    """Paper: bias + scale + norm on LLaMA-65B is about 14M (13.8M with the chat65b input-scale layout)."""
    from core_model.groups import count_params

    cfg = model_preset("llama-65b")
    with torch.device("meta"):
        model = Transformer(cfg, adapter_preset("chat65b", cfg))
    n = count_params(model)["instruction"]
    assert 13.7e6 < n < 13.9e6


def test_column_major_head_changes_layout_not_values():
    cfg = CONFIGS["gqa-tied"]
    model = ours_from_hf(hf_model(cfg), cfg)  # build_model applies the layout on CPU fp32
    w = model.tok_embeddings.weight
    assert w.stride() == (1, w.shape[0])
    tokens = torch.randint(0, cfg.vocab_size, (1, 5))
    with torch.no_grad():
        fast = model(tokens)
        model.tok_embeddings.weight = torch.nn.Parameter(w.detach().contiguous(), requires_grad=False)
        assert (model(tokens) - fast).abs().max() < 1e-5
        half = model.to(torch.bfloat16)
        half.use_column_major_head()  # bf16 CPU kernels are slow in that layout: left contiguous
        assert half.tok_embeddings.weight.is_contiguous()
