"""Loaders: HF directories (safetensors / bin), Meta directories (sharded), adapters, official checkpoints."""
from __future__ import annotations

import dataclasses
import json

import pytest
import torch

from core_model import CheckpointMismatchError, ModelLoadError, load_model
from core_model.checkpoints import convert_official, load_adapter_file
from core_model.api import apply_adapter_state
from core_model.loading import permute_hf_to_meta

from .test_model import CONFIGS, hf_model

transformers = pytest.importorskip("transformers")


@pytest.fixture(scope="module")
def sp_model(tmp_path_factory):
    """A real (tiny) sentencepiece tokenizer.model trained here."""
    import sentencepiece as spm

    d = tmp_path_factory.mktemp("sp")
    text = d / "corpus.txt"
    text.write_text("\n".join(["the quick brown fox jumps over the lazy dog"] * 50 +
                              ["a picture of a red bus on the street", "hello world how are you"] * 30))
    spm.SentencePieceTrainer.train(input=str(text), model_prefix=str(d / "tokenizer"), vocab_size=60,
                                   model_type="bpe", bos_id=1, eos_id=2, unk_id=0, pad_id=-1,
                                   minloglevel=2)
    return d / "tokenizer.model"


def _hf_dir(tmp_path, cfg, safe=True):
    hf = hf_model(cfg)
    hf.save_pretrained(tmp_path)
    if not safe:  # transformers 5 only writes safetensors; older checkpoints ship pytorch_model.bin
        for f in tmp_path.glob("*.safetensors"):
            f.unlink()
        torch.save({k: v.clone() for k, v in hf.state_dict().items()}, tmp_path / "pytorch_model.bin")
    return hf


@pytest.mark.parametrize("safe", [True, False])
def test_hf_directory_loads_and_matches(tmp_path, sp_model, safe):
    cfg = dataclasses.replace(CONFIGS["gqa-untied"], vocab_size=64)
    hf = _hf_dir(tmp_path, cfg, safe)
    assert bool(list(tmp_path.glob("*.bin"))) != safe
    (tmp_path / "tokenizer.model").write_bytes(sp_model.read_bytes())
    m = load_model(tmp_path, device="cpu", dtype="float32")
    assert m.config.n_kv_heads == 2 and m.config.rope_theta == 100000.0
    tokens = torch.randint(0, 64, (1, 10))
    with torch.no_grad():
        assert (m.llm(tokens) - hf(tokens).logits).abs().max() < 1e-4
    assert m.tokenizer.decode(m.tokenizer.encode("the quick brown fox")) == "the quick brown fox"


def test_meta_directory_with_two_shards(tmp_path, sp_model):
    cfg = dataclasses.replace(CONFIGS["mha-untied"], vocab_size=60, ffn_dim=192)  # vocab from tokenizer.model  # Meta's FFN rule for dim 64
    hf = hf_model(cfg)
    sd = hf.state_dict()
    meta = {"tok_embeddings.weight": sd["model.embed_tokens.weight"], "norm.weight": sd["model.norm.weight"],
            "output.weight": sd["lm_head.weight"]}
    names = {"q_proj": "attention.wq", "k_proj": "attention.wk", "v_proj": "attention.wv", "o_proj": "attention.wo",
             "gate_proj": "feed_forward.w1", "down_proj": "feed_forward.w2", "up_proj": "feed_forward.w3"}
    for i in range(cfg.n_layers):
        p = f"model.layers.{i}."
        for hfn, mn in names.items():
            part = "self_attn" if hfn.endswith(("q_proj", "k_proj", "v_proj", "o_proj")) else "mlp"
            w = sd[f"{p}{part}.{hfn}.weight"]
            if hfn in ("q_proj", "k_proj"):
                w = permute_hf_to_meta(w, cfg.n_heads)
            meta[f"layers.{i}.{mn}.weight"] = w
        meta[f"layers.{i}.attention_norm.weight"] = sd[f"{p}input_layernorm.weight"]
        meta[f"layers.{i}.ffn_norm.weight"] = sd[f"{p}post_attention_layernorm.weight"]
    # split like Meta's model-parallel shards
    split = {"wq": 0, "wk": 0, "wv": 0, "w1": 0, "w3": 0, "wo": 1, "w2": 1, "output": 0, "tok_embeddings": 1}
    shards = [{}, {}]
    for k, v in meta.items():
        leaf = k.split(".")[-2]
        if leaf in split:
            a, b = v.chunk(2, dim=split[leaf])
            shards[0][k], shards[1][k] = a.clone(), b.clone()
        else:
            shards[0][k] = shards[1][k] = v.clone()
    d = tmp_path / "7B"
    d.mkdir()
    for i, s in enumerate(shards):
        torch.save(s, d / f"consolidated.0{i}.pth")
    (d / "params.json").write_text(json.dumps({"dim": 64, "n_layers": cfg.n_layers, "n_heads": cfg.n_heads,
                                               "multiple_of": 64, "norm_eps": cfg.norm_eps, "vocab_size": -1}))
    (tmp_path / "tokenizer.model").write_bytes(sp_model.read_bytes())  # Meta keeps it beside the size dirs
    m = load_model(d, device="cpu", dtype="float32")
    assert m.config.ffn_dim == 192 and m.config.vocab_size == 60 and m.prompt_style == "alpaca"
    tokens = torch.randint(0, 60, (2, 7))
    with torch.no_grad():
        assert (m.llm(tokens) - hf(tokens).logits).abs().max() < 1e-4


def test_bad_base_errors_are_actionable(tmp_path):
    with pytest.raises(ModelLoadError, match="neither a known alias"):
        load_model(tmp_path / "nope")
    with pytest.raises(ModelLoadError, match="not a model directory"):
        load_model(tmp_path)
    bad = tmp_path / "x.gguf"
    bad.write_bytes(b"not gguf at all")
    with pytest.raises(ModelLoadError, match="not a readable GGUF"):
        load_model(bad, use_cache=False)


# ------------------------------------------------------------------------------------- official checkpoints
def official_state(cfg, query_len=3, query_layer=None, lora_rank=0, with_vision=False):
    """A tiny checkpoint written with the release's key names and shapes (llama_adapter_v2_multimodal7b)."""
    n, d, f = cfg.n_layers, cfg.dim, cfg.ffn_dim
    query_layer = query_layer or n - 1
    g = torch.Generator().manual_seed(0)
    r = lambda *s: torch.randn(*s, generator=g) * 0.1  # noqa: E731
    sd = {"adapter_query.weight": r(query_len * query_layer, d), "llama.norm.weight": 1 + r(d)}
    for i in range(n):
        p = f"llama.layers.{i}."
        sd[p + "attention.gate"] = r(1, cfg.n_heads, 1, 1)
        for name, out in (("attention.wq", d), ("attention.wo", d), ("feed_forward.w1", f),
                          ("feed_forward.w2", d), ("feed_forward.w3", f)):
            sd[p + name + ".bias"] = r(out)
        sd[p + "attention_norm.weight"] = 1 + r(d)
        sd[p + "ffn_norm.weight"] = 1 + r(d)
        if lora_rank:
            sd[p + "attention.new_gate"] = torch.ones(1, 1, 1, 1)
            for w, fan_in, fan_out in (("wq", d, d), ("wk", d, cfg.kv_dim), ("wv", d, cfg.kv_dim), ("wo", d, d)):
                sd[p + f"attention.lora_{w}_l1.weight"] = r(lora_rank, fan_in)
                sd[p + f"attention.lora_{w}_l2.weight"] = r(fan_out, lora_rank)
            for w, fan_in, fan_out in (("w1", d, f), ("w2", f, d), ("w3", d, f)):
                sd[p + f"feed_forward.lora_{w}_l1.weight"] = r(lora_rank, fan_in)
                sd[p + f"feed_forward.lora_{w}_l2.weight"] = r(fan_out, lora_rank)
    return {"model": sd, "config": {"w_bias": True, "w_lora": bool(lora_rank), "lora_rank": lora_rank or 16}}


@pytest.mark.parametrize("lora_rank", [0, 4], ids=["BIAS", "LORA-BIAS"])
def test_official_text_side_keys_load_without_missing_or_unexpected(tmp_path, lora_rank):
    from core_model.api import _materialise_adapter_params
    from core_model import Transformer

    cfg = CONFIGS["mha-untied"]
    path = tmp_path / "BIAS-7B.pth"
    torch.save(official_state(cfg, lora_rank=lora_rank), path)
    ckpt = convert_official(path, cfg)
    assert ckpt.adapter.linear == "bias" and ckpt.adapter.fusion == "late-additive"
    assert ckpt.adapter.prompt_layers == cfg.n_layers - 1 and ckpt.adapter.prompt_len == 3
    assert ckpt.adapter.lora_rank == lora_rank and ckpt.adapter.new_gate == bool(lora_rank)
    base = hf_model(cfg)
    from core_model.api import build_model
    from core_model.loading import hf_to_meta_state

    model = build_model(cfg, ckpt.adapter, hf_to_meta_state(dict(base.state_dict()), cfg), torch.device("cpu"),
                        torch.float32)
    apply_adapter_state(model, None, ckpt)  # raises on any missing / unexpected key
    # the release's late-additive prompt of layer 1 is adapter_query rows 0..2
    raw = torch.load(path, weights_only=True)["model"]
    assert torch.equal(model.layers[1].attention.prompt, raw["adapter_query.weight"][:3])
    if lora_rank:
        assert torch.equal(model.layers[0].attention.wk.lora_a, raw["llama.layers.0.attention.lora_wk_l1.weight"])


def test_chat65b_layout_converts(tmp_path):
    cfg = CONFIGS["mha-untied"]
    sd = {}
    for i in range(cfg.n_layers):
        for w, fan_in, fan_out in (("wq", 64, 64), ("wk", 64, 64), ("wv", 64, 64), ("wo", 64, 64)):
            sd[f"layers.{i}.attention.{w}_bias"] = torch.randn(fan_out)
            sd[f"layers.{i}.attention.{w}_scale"] = torch.randn(fan_in)
        for w, fan_in, fan_out in (("w1", 64, 96), ("w2", 96, 64), ("w3", 64, 96)):
            sd[f"layers.{i}.feed_forward.{w}_bias"] = torch.randn(fan_out)
            sd[f"layers.{i}.feed_forward.{w}_scale"] = torch.randn(fan_in)
        sd[f"layers.{i}.attention_norm.weight"] = torch.randn(64)
        sd[f"layers.{i}.ffn_norm.weight"] = torch.randn(64)
        sd[f"layers.{i}.attention.gate"] = torch.zeros(1, 4, 1, 1)
    sd["norm.weight"] = torch.randn(64)
    path = tmp_path / "chat65b.pth"
    torch.save({"model": sd}, path)
    ckpt = convert_official(path, cfg)
    assert ckpt.adapter.linear == "input_scale" and ckpt.adapter.train_norms
    from core_model.api import build_model
    from core_model.loading import hf_to_meta_state

    model = build_model(cfg, ckpt.adapter, hf_to_meta_state(dict(hf_model(cfg).state_dict()), cfg),
                        torch.device("cpu"), torch.float32)
    apply_adapter_state(model, None, ckpt)
    assert torch.equal(model.layers[1].feed_forward.w2.scale, sd["layers.1.feed_forward.w2_scale"])


def test_unexpected_official_key_is_reported(tmp_path):
    cfg = CONFIGS["mha-untied"]
    st = official_state(cfg)
    st["model"]["llama.layers.0.attention.something_new"] = torch.zeros(3)
    path = tmp_path / "x.pth"
    torch.save(st, path)
    with pytest.raises(CheckpointMismatchError, match="something_new"):
        convert_official(path, cfg)


def test_adapter_roundtrip_small_and_identical(tmp_path):
    from core_model import random_model

    m = random_model("tiny", adapter="paper-text", seed=1)
    with torch.no_grad():
        for n, p in m.llm.named_parameters():
            if "gate" in n or "bias" in n:
                p.add_(0.2)
    before = m.generate("hello adapter", max_new_tokens=8).token_ids
    out = m.save_adapter(tmp_path / "ad")
    size = sum(f.stat().st_size for f in out.iterdir())
    assert size < 200_000  # only adapter params (the tiny base is ~1 MB)
    fresh = random_model("tiny", adapter="paper-text", seed=1)
    assert fresh.generate("hello adapter", max_new_tokens=8).token_ids != before
    ckpt = load_adapter_file(out)
    apply_adapter_state(fresh.llm, None, ckpt)
    assert fresh.generate("hello adapter", max_new_tokens=8).token_ids == before
