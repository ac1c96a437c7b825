"""The full multimodal model on tiny random configs: both fusion modes, identity at init, official checkpoints."""
from __future__ import annotations

import dataclasses
import json
import subprocess
import sys

import numpy as np
import pytest
import torch
from PIL import Image

from core_model import AdapterConfig, Transformer, load_model, random_model
from core_model.api import apply_adapter_state
from core_model.checkpoints import convert_official, load_adapter_file
from core_model.config import model_preset
from core_model.vision import CLIPVisionEncoder, VisionTower, VisualPrefixConfig, build_visual_prefix

from .test_loading import official_state
from .test_vision import TINY_CFG

TINY = dataclasses.replace(model_preset("tiny"), dim=32, n_heads=4, n_kv_heads=2, ffn_dim=64, n_layers=3)


def image(seed: int) -> Image.Image:
    rng = np.random.default_rng(seed)
    return Image.fromarray(rng.integers(0, 256, (40, 40, 3), dtype=np.uint8), "RGB")


def mm_model(fusion: str, seed: int = 0):
    """A random tiny base + tiny CLIP + prefix with fresh (zero) gates."""
    if fusion == "early":
        acfg = AdapterConfig(linear="bias_scale", train_norms=True, prompt_layers=2, prompt_len=3, fusion="early",
                             early_layers=1, visual_tokens=4)
        pcfg = VisualPrefixConfig.paper(16, TINY.dim, 4)
    else:
        acfg = AdapterConfig(linear="bias", linear_targets=("wq", "wo", "w1", "w2", "w3"), train_norms=True,
                             prompt_layers=2, prompt_len=4, fusion="late-additive")
        pcfg = dataclasses.replace(VisualPrefixConfig.tiny(16, TINY.dim), num_tokens=4)
    torch.manual_seed(seed)
    tower = VisionTower(CLIPVisionEncoder.from_config(TINY_CFG, seed=seed))
    return random_model(TINY, acfg, seed=seed, visual_prefix=build_visual_prefix(pcfg), vision=tower)


def set_gates(model, value: float) -> None:
    with torch.no_grad():
        for name, p in model.llm.named_parameters():
            if name.endswith("gate") and not name.endswith("new_gate"):
                p.fill_(value)


@pytest.mark.parametrize("fusion", ["early", "late-additive"])
def test_forward_backward_both_fusion_modes(fusion):
    m = mm_model(fusion)
    set_gates(m, 0.5)
    m.llm.requires_grad_(True)
    m.visual_prefix.requires_grad_(True)
    feats = m.vision.encode([image(0), image(1)])
    visual = m.visual_prefix(feats)
    tokens = torch.randint(0, 259, (2, 9))
    logits = m.llm(tokens, visual)
    loss = torch.nn.functional.cross_entropy(logits[:, :-1].reshape(-1, logits.shape[-1]), tokens[:, 1:].reshape(-1))
    loss.backward()
    assert any(p.grad is not None and p.grad.abs().sum() > 0 for p in m.visual_prefix.parameters())
    gate_name = "layers.0.attention.visual_gate" if fusion == "early" else "layers.2.attention.gate"
    assert dict(m.llm.named_parameters())[gate_name].grad.abs().sum() > 0


@pytest.mark.parametrize("fusion", ["early", "late-additive"])
def test_zero_gates_image_has_no_effect_then_it_does(fusion):
    m = mm_model(fusion)
    text_only = random_model(TINY, m.adapter_config, seed=0)
    tokens = torch.tensor([m.tokenizer.encode("what is in the picture?")])
    visual = m.encode_images([image(0)])
    with torch.no_grad():
        if fusion == "early":  # no static prompt effect either: gates are zero everywhere
            assert torch.equal(m.llm(tokens, visual), text_only.llm(tokens))
        else:  # late-additive: prompts and image share gates; zero gates -> same as no image at all
            assert torch.equal(m.llm(tokens, visual), m.llm(tokens))
    set_gates(m, 0.7)
    with torch.no_grad():
        a = m.llm(tokens, m.encode_images([image(0)]))
        b = m.llm(tokens, m.encode_images([image(5)]))
    assert (a - b).abs().max() > 1e-4


def test_batched_generation_with_two_images_equals_one_by_one():
    m = mm_model("early")
    set_gates(m, 1.0)
    prompts = ["describe this image please", "what?"]
    imgs = [image(1), image(2)]
    batched = m.generate(prompts, images=imgs, max_new_tokens=10)
    singles = [m.generate(p, images=[im], max_new_tokens=10) for p, im in zip(prompts, imgs)]
    assert [b.token_ids for b in batched] == [s.token_ids for s in singles]
    other = m.generate(prompts[0], images=[image(3)], max_new_tokens=10)
    assert other.token_ids != singles[0].token_ids  # the image really steers generation


def test_second_question_about_same_image_does_not_reencode():
    m = mm_model("early")
    calls = []
    m.vision.encoder.register_forward_hook(lambda *a: calls.append(1))
    img = image(7)
    m.generate("first question", images=[img], max_new_tokens=2)
    m.generate("second question", images=[img.copy()], max_new_tokens=2)
    assert len(calls) == 1
    assert m.vision.cache.stats()["hits"] >= 1


# --------------------------------------------------------------------------------- official checkpoints e2e
def official_multimodal(cfg, lora_rank=0, query_len=4, embed_dim=32, depth=2, clip_dim=16):
    st = official_state(cfg, query_len=query_len, lora_rank=lora_rank)
    prefix = build_visual_prefix(VisualPrefixConfig(kind="release", clip_dim=clip_dim, llm_dim=cfg.dim,
                                                    num_tokens=query_len, embed_dim=embed_dim, depth=depth,
                                                    num_heads=2))
    for k, v in prefix.state_dict().items():
        st["model"][k] = torch.randn_like(v) * 0.1 + (1.0 if k.endswith("norm.weight") else 0.0)
    st["config"]["v_num_heads"] = 2  # tiny stand-in for the release's 16 heads
    return st


@pytest.mark.parametrize("lora_rank", [0, 4], ids=["BIAS", "LORA-BIAS"])
def test_official_multimodal_checkpoint_loads_with_meta_base_and_clip(tmp_path, lora_rank):
    import sentencepiece as spm

    # a Meta-format base directory
    cfg = dataclasses.replace(TINY, vocab_size=60, ffn_dim=128, n_kv_heads=4)
    text = tmp_path / "c.txt"
    text.write_text("\n".join(["a photo of a cat on a mat", "the red bus drives by"] * 40))
    spm.SentencePieceTrainer.train(input=str(text), model_prefix=str(tmp_path / "tokenizer"), vocab_size=60,
                                   model_type="bpe", bos_id=1, eos_id=2, unk_id=0, pad_id=-1, minloglevel=2)
    torch.manual_seed(3)
    base = Transformer(cfg)
    d = tmp_path / "7B"
    d.mkdir()
    torch.save({k: v.clone() for k, v in base.state_dict().items()}, d / "consolidated.00.pth")
    (d / "params.json").write_text(json.dumps({"dim": cfg.dim, "n_layers": cfg.n_layers, "n_heads": cfg.n_heads,
                                               "multiple_of": 64, "norm_eps": cfg.norm_eps, "vocab_size": -1}))
    ckpt_path = tmp_path / "LORA-BIAS-7B.pth"
    torch.save(official_multimodal(cfg, lora_rank), ckpt_path)
    encoder = CLIPVisionEncoder.from_config(TINY_CFG, seed=0)
    m = load_model(d, adapter=ckpt_path, vision=encoder, device="cpu", dtype="float32")
    assert m.has_vision and m.prompt_style == "alpaca"
    assert m.adapter_config.fusion == "late-additive" and m.adapter_config.lora_rank == lora_rank
    raw = torch.load(ckpt_path, weights_only=True)["model"]
    assert torch.equal(m.visual_prefix.visual_query.weight, raw["visual_query.weight"])
    assert torch.equal(m.visual_prefix.visual_blocks[1].attn.qkv.weight, raw["visual_blocks.1.attn.qkv.weight"])
    out = m.generate("Describe the image.", images=[image(0)], max_new_tokens=5)
    assert out.completion_tokens >= 1

    # round trip through `lav2 convert`: same tensors, loads into the same model
    conv_dir = tmp_path / "converted"
    res = subprocess.run([sys.executable, "-m", "orchestrator.cli", "convert", str(ckpt_path), str(conv_dir),
                          "--base", str(d)], capture_output=True, text=True, timeout=120)
    assert res.returncode == 0, res.stderr
    assert "wrote" in res.stdout
    converted = load_adapter_file(conv_dir)
    direct = convert_official(ckpt_path, cfg)
    assert set(converted.state) == set(direct.state)
    assert all(torch.equal(converted.state[k], direct.state[k]) for k in direct.state)
    m2 = load_model(d, adapter=conv_dir, vision=encoder, device="cpu", dtype="float32")
    tokens = torch.tensor([m.tokenizer.encode("a cat")])
    vis = m.encode_images([image(0)])
    with torch.no_grad():
        assert torch.equal(m.llm(tokens, vis), m2.llm(tokens, m2.encode_images([image(0)])))


def test_official_checkpoint_without_vision_weights_says_prefix_is_off(tmp_path, caplog):
    from core_model import VisionUnavailableError

    cfg = dataclasses.replace(TINY, ffn_dim=128, n_kv_heads=4)
    ckpt = tmp_path / "BIAS-7B.pth"
    torch.save(official_multimodal(cfg), ckpt)
    conv = convert_official(ckpt, cfg)
    from core_model.vision_setup import setup_vision

    with caplog.at_level("WARNING"):
        tower, prefix = setup_vision(None, conv.vision_prefix, conv.adapter, cfg, torch.device("cpu"),
                                     torch.float32)
    assert tower is None and prefix is not None
    assert "visual prefix is off" in caplog.text
    m = random_model(cfg, conv.adapter, visual_prefix=prefix)
    apply_adapter_state(m.llm, m.visual_prefix, conv)
    assert not m.has_vision
    with pytest.raises(VisionUnavailableError):
        m.generate("x", images=[image(0)], max_new_tokens=1)
