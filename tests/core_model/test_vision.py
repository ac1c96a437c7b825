"""core_model.vision on tiny random open_clip ViTs: no weights, no network."""
from __future__ import annotations

import copy
import json
import math
import socket
import threading
import time
import warnings
from pathlib import Path

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from PIL import Image
from torch import nn

open_clip = pytest.importorskip("open_clip")
pytest.importorskip("timm")

from core_model import vision  # noqa: E402
from core_model.errors import ConfigError, ModelLoadError  # noqa: E402
from core_model.groups import adapter_kinds, param_groups  # noqa: E402
from core_model.vision import (  # noqa: E402
    CLIPVisionEncoder,
    ImageFeatureCache,
    LinearVisualPrefix,
    ReleaseVisualPrefix,
    VisionTower,
    VisualPrefixConfig,
    build_visual_prefix,
    release_prefix_state_dict,
)

#: image 32 px, patch 8 -> grid 4x4 -> 17 tokens; width 32, 2 layers, 2 heads (head_width 16); output 16-d
TINY_CFG = {
    "embed_dim": 16,
    "vision_cfg": {"image_size": 32, "patch_size": 8, "width": 32, "layers": 2, "head_width": 16},
    "text_cfg": {"context_length": 8, "vocab_size": 64, "width": 16, "heads": 2, "layers": 1},
}


@pytest.fixture()
def tiny_clip() -> nn.Module:
    torch.manual_seed(0)
    return open_clip.CLIP(**copy.deepcopy(TINY_CFG)).eval()


@pytest.fixture()
def encoder() -> CLIPVisionEncoder:
    return CLIPVisionEncoder.from_config(TINY_CFG, seed=0)


def _image(seed: int, size=(40, 30)) -> Image.Image:
    rng = np.random.default_rng(seed)
    return Image.fromarray(rng.integers(0, 256, (size[1], size[0], 3), dtype=np.uint8), "RGB")


# ================================================================================== encoder


def test_all_tokens_shape(encoder: CLIPVisionEncoder):
    out = encoder.encode_images([_image(0), _image(1)])
    assert out.shape == (2, 1 + 4 * 4, 16)
    assert (encoder.num_tokens, encoder.embed_dim, encoder.image_size) == (17, 16, (32, 32))
    assert not any(p.requires_grad for p in encoder.parameters())


def test_matches_open_clip_math(tiny_clip: nn.Module):
    """Our all-token path == open_clip's own outputs: CLS row == encode_image, every row == forward_intermediates
    (ln_post-normalised) @ proj, patch rows == output_tokens @ proj."""
    enc = CLIPVisionEncoder(tiny_clip.visual)
    x = torch.randn(3, 3, 32, 32)
    ours = enc(x)
    with torch.no_grad():
        pooled = tiny_clip.encode_image(x)
        inter = tiny_clip.visual.forward_intermediates(
            x, indices=1, output_fmt="NLC", output_extra_tokens=True, normalize_intermediates=True)
        all_tokens = torch.cat([inter["image_intermediates_prefix"][0], inter["image_intermediates"][0]], dim=1)
        tiny_clip.visual.output_tokens = True
        _, patch_tokens = tiny_clip.visual(x)
    proj = tiny_clip.visual.proj
    torch.testing.assert_close(ours[:, 0], pooled, rtol=1e-5, atol=1e-5)
    torch.testing.assert_close(ours, all_tokens @ proj, rtol=1e-5, atol=1e-5)
    torch.testing.assert_close(ours[:, 1:], patch_tokens @ proj, rtol=1e-5, atol=1e-5)


def test_preprocess_is_rgb_not_bgr(encoder: CLIPVisionEncoder):
    red = Image.new("RGB", (48, 48), (255, 0, 0))
    bgr = Image.fromarray(np.asarray(red)[:, :, ::-1].copy(), "RGB")  # what the release's cv2.imread produced
    rgb_t, bgr_t = encoder.preprocess([red]), encoder.preprocess([bgr])
    assert not torch.allclose(rgb_t, bgr_t)
    mean, std = encoder.preprocess_cfg["mean"], encoder.preprocess_cfg["std"]
    expected = torch.tensor([(1 - mean[0]) / std[0], (0 - mean[1]) / std[1], (0 - mean[2]) / std[2]])
    torch.testing.assert_close(rgb_t[0, :, 16, 16], expected, rtol=1e-4, atol=1e-4)  # channel 0 is red
    assert not torch.allclose(encoder(rgb_t), encoder(bgr_t))


def test_preprocess_composites_transparency_on_white(encoder: CLIPVisionEncoder):
    clear = Image.new("RGBA", (32, 32), (0, 0, 0, 0))
    white = Image.new("RGB", (32, 32), (255, 255, 255))
    torch.testing.assert_close(encoder.preprocess([clear]), encoder.preprocess([white]))


def test_frozen_and_stays_eval(encoder: CLIPVisionEncoder):
    parent = nn.ModuleDict({"enc": encoder})
    parent.train()
    assert not encoder.training and not encoder.visual.training


def test_dtype_agnostic(encoder: CLIPVisionEncoder):
    x = encoder.preprocess([_image(0)])
    ref = encoder(x)
    out = encoder.to(torch.bfloat16)(x)  # float32 pixels are cast to the encoder's dtype
    assert out.dtype == torch.bfloat16 and out.shape == ref.shape
    torch.testing.assert_close(out.float(), ref, rtol=0.1, atol=0.1)
    prefix = ReleaseVisualPrefix(VisualPrefixConfig.tiny())
    assert prefix(out).dtype == torch.float32  # the prefix computes in its own dtype, like the release's .float()


def test_wrong_pixel_shape_is_config_error(encoder: CLIPVisionEncoder):
    with pytest.raises(ConfigError, match="preprocess"):
        encoder(torch.zeros(1, 3, 64, 64))


@pytest.mark.parametrize("change, match", [
    ({"layers": [1, 1, 1, 1], "width": 64}, "ModifiedResNet"),
    ({"timm_model_name": "vit_tiny_patch16_224"}, "timm"),
    ({"attentional_pool": True, "attn_pooler_heads": 2, "attn_pooler_queries": 4}, "attentional-pooling"),
])
def test_unsupported_towers_raise_config_error(change, match):
    cfg = copy.deepcopy(TINY_CFG)
    cfg["vision_cfg"].update(change)
    with pytest.raises(ConfigError, match=match):
        CLIPVisionEncoder.from_config(cfg)


def test_modified_resnet_instance_rejected():
    from open_clip.modified_resnet import ModifiedResNet
    with pytest.raises(ConfigError, match="ModifiedResNet"):
        CLIPVisionEncoder(ModifiedResNet(layers=(1, 1, 1, 1), output_dim=16, heads=2, image_size=64, width=16))


# ================================================================================== loading


@pytest.mark.timeout(30)
def test_from_pretrained_offline_env_fails_fast(tmp_path: Path, monkeypatch):
    monkeypatch.setenv("LAV2_OFFLINE", "1")
    start = time.monotonic()
    with pytest.raises(ModelLoadError, match=r"not cached.*LAV2_OFFLINE.*No CLIP weights ship.*from_local") as err:
        CLIPVisionEncoder.from_pretrained("ViT-B-32", "openai", cache_dir=str(tmp_path))
    assert time.monotonic() - start < 10
    assert "model_name='ViT-B-32', quick_gelu=True" in str(err.value)  # OpenAI weights need QuickGELU


@pytest.mark.timeout(30)
def test_hf_hub_name_offline_fails_fast(tmp_path: Path, monkeypatch):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    start = time.monotonic()
    with pytest.raises(ModelLoadError, match=r"local-dir:/that/folder"):
        CLIPVisionEncoder.from_pretrained("hf-hub:timm/vit_base_patch32_clip_224.openai", cache_dir=str(tmp_path))
    assert time.monotonic() - start < 10


def _no_offline_env(monkeypatch):
    for var in vision._OFFLINE_ENV:
        monkeypatch.delenv(var, raising=False)


@pytest.mark.timeout(30)
def test_from_pretrained_no_network_fails_fast(tmp_path: Path, monkeypatch):
    """Simulates this machine (DNS fails): the probe answers at once, no hub retries."""
    _no_offline_env(monkeypatch)

    def no_dns(address, timeout=None):
        raise socket.gaierror(-2, "Name or service not known")

    monkeypatch.setattr(vision.socket, "create_connection", no_dns)
    start = time.monotonic()
    with pytest.raises(ModelLoadError, match=r"huggingface\.co is unreachable.*Name or service not known"):
        CLIPVisionEncoder.openai_vit_l14(cache_dir=str(tmp_path))
    assert time.monotonic() - start < 10


@pytest.mark.timeout(30)
def test_from_pretrained_hanging_dns_is_bounded(tmp_path: Path, monkeypatch):
    _no_offline_env(monkeypatch)
    monkeypatch.setattr(vision.socket, "create_connection", lambda address, timeout=None: time.sleep(20))
    start = time.monotonic()
    with pytest.raises(ModelLoadError, match="no answer within 0.5s"):
        CLIPVisionEncoder.from_pretrained("ViT-B-32", "openai", cache_dir=str(tmp_path), probe_timeout=0.5)
    assert time.monotonic() - start < 5


def test_from_pretrained_argument_errors():
    with pytest.raises(ConfigError, match="from_config"):
        CLIPVisionEncoder.from_pretrained("ViT-B-32")  # random weights must be asked for explicitly
    with pytest.raises(ConfigError, match="known tags"):
        CLIPVisionEncoder.from_pretrained("ViT-B-32", "no-such-tag")
    with pytest.raises(ConfigError, match="unknown open_clip model"):
        CLIPVisionEncoder.from_pretrained("ViT-Q-99", "openai")


def _write_local_dir(folder: Path, model: nn.Module, cfg: dict) -> None:
    folder.mkdir()
    (folder / "open_clip_config.json").write_text(json.dumps({"model_cfg": cfg, "preprocess_cfg": {}}))
    torch.save(model.state_dict(), folder / "open_clip_pytorch_model.bin")


def test_from_local_dir_loads_the_weights(tmp_path: Path, tiny_clip: nn.Module):
    _write_local_dir(tmp_path / "clip", tiny_clip, TINY_CFG)
    x = torch.randn(2, 3, 32, 32)
    expected = CLIPVisionEncoder(copy.deepcopy(tiny_clip.visual))(x)
    for spec in (f"local-dir:{tmp_path / 'clip'}", tmp_path / "clip"):
        loaded = CLIPVisionEncoder.from_local(spec)
        torch.testing.assert_close(loaded(x), expected)
    via_pretrained = CLIPVisionEncoder.from_pretrained(f"local-dir:{tmp_path / 'clip'}")
    torch.testing.assert_close(via_pretrained(x), expected)


def test_from_local_file_with_model_name(tmp_path: Path, tiny_clip: nn.Module):
    (tmp_path / "cfgs").mkdir()
    (tmp_path / "cfgs" / "lav2-test-tiny.json").write_text(json.dumps(TINY_CFG))
    open_clip.add_model_config(tmp_path / "cfgs")
    ckpt = tmp_path / "tiny.pt"
    torch.save(tiny_clip.state_dict(), ckpt)
    x = torch.randn(1, 3, 32, 32)
    loaded = CLIPVisionEncoder.from_local(ckpt, model_name="lav2-test-tiny")
    torch.testing.assert_close(loaded(x), CLIPVisionEncoder(copy.deepcopy(tiny_clip.visual))(x))
    with pytest.raises(ConfigError, match="model_name"):
        CLIPVisionEncoder.from_local(ckpt)


def test_from_local_errors(tmp_path: Path):
    with pytest.raises(ModelLoadError, match="does not exist"):
        CLIPVisionEncoder.from_local(tmp_path / "missing.pt")
    (tmp_path / "empty").mkdir()
    (tmp_path / "empty" / "open_clip_config.json").write_text(json.dumps({"model_cfg": TINY_CFG}))
    with pytest.raises(ModelLoadError, match="no weights"):
        CLIPVisionEncoder.from_local(tmp_path / "empty")


def _openai_style_jit(path: Path) -> nn.Module:
    """A tiny CLIP saved the way OpenAI ships ViT-L-14.pt: a TorchScript archive (QuickGELU, 64-wide heads)."""
    cfg = {"embed_dim": 16, "quick_gelu": True,
           "vision_cfg": {"image_size": 32, "patch_size": 8, "width": 64, "layers": 1},
           "text_cfg": {"context_length": 8, "vocab_size": 64, "width": 64, "heads": 1, "layers": 1}}
    torch.manual_seed(1)
    model = open_clip.CLIP(**cfg).eval()
    with torch.no_grad():  # OpenAI's archives hold fp16 weights (and the rebuild passes through fp16)
        for param in model.parameters():
            param.copy_(param.half().float())
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        torch.jit.script(model).save(str(path))
    return model


def test_openai_torchscript_archive_and_release_clip_cache(tmp_path: Path, monkeypatch):
    """The release's `clip` package leaves ~/.cache/clip/ViT-L-14.pt (TorchScript); we read it offline."""
    monkeypatch.setenv("LAV2_OFFLINE", "1")  # must not need the network when the file is cached
    model = _openai_style_jit(tmp_path / "ViT-L-14.pt")
    x = torch.randn(2, 3, 32, 32)
    direct = CLIPVisionEncoder.from_local(tmp_path / "ViT-L-14.pt")
    with torch.no_grad():
        torch.testing.assert_close(direct(x)[:, 0], model.encode_image(x), rtol=1e-5, atol=1e-5)
    cached = CLIPVisionEncoder.openai_vit_l14(cache_dir=str(tmp_path))  # found as the tag's URL cache file
    torch.testing.assert_close(cached(x), direct(x))


# ================================================================================== visual prefix


def _release_keys(depth: int) -> list[str]:
    block = ["norm1.weight", "norm1.bias", "attn.qkv.weight", "attn.qkv.bias", "attn.proj.weight", "attn.proj.bias",
             "norm2.weight", "norm2.bias", "mlp.fc1.weight", "mlp.fc1.bias", "mlp.fc2.weight", "mlp.fc2.bias"]
    return (["clip_proj.weight", "clip_proj.bias", "clip_proj_norm.weight", "clip_proj_norm.bias",
             "visual_query.weight"]
            + [f"visual_blocks.{i}.{k}" for i in range(depth) for k in block]
            + ["visual_proj.weight", "visual_proj.bias", "visual_proj_norm.weight", "visual_proj_norm.bias"])


def test_release_prefix_state_dict_keys_match_release():
    prefix = ReleaseVisualPrefix(VisualPrefixConfig.tiny())
    assert list(prefix.state_dict()) == _release_keys(depth=2)


def test_release_7b_shapes_and_size_on_meta():
    with torch.device("meta"):
        prefix = ReleaseVisualPrefix(VisualPrefixConfig.release_7b())
    sd = prefix.state_dict()
    assert list(sd) == _release_keys(depth=8)
    assert sd["clip_proj.weight"].shape == (768, 768)
    assert sd["visual_query.weight"].shape == (10, 768)
    assert sd["visual_blocks.7.attn.qkv.weight"].shape == (3 * 768, 768)
    assert sd["visual_blocks.7.mlp.fc1.weight"].shape == (4 * 768, 768)
    assert sd["visual_proj.weight"].shape == (4096, 768)
    d, f = 768, 3072
    per_block = 2 * 2 * d + (3 * d * d + 3 * d) + (d * d + d) + (f * d + f) + (d * f + d)
    expected = (d * d + d) + 2 * d + 10 * d + 8 * per_block + (4096 * d + 4096) + 2 * 4096
    assert sum(p.numel() for p in prefix.parameters()) == expected == 60_460_800


def test_official_checkpoint_entries_load_strictly():
    prefix = ReleaseVisualPrefix(VisualPrefixConfig.tiny())
    official = {k: torch.randn_like(v) for k, v in prefix.state_dict().items()}
    official.update({"adapter_query.weight": torch.zeros(1), "llama.layers.0.attention.wq.bias": torch.zeros(1)})
    prefix.load_state_dict(release_prefix_state_dict(official), strict=True)
    torch.testing.assert_close(prefix.visual_blocks[1].mlp.fc2.weight, official["visual_blocks.1.mlp.fc2.weight"])


def _reference_release_forward(p: ReleaseVisualPrefix, clip_feats: torch.Tensor) -> torch.Tensor:
    """The release's forward_visual written out with plain ops (timm 0.3.2 Block: nn.LayerNorm eps 1e-5,
    softmax(q kᵀ · d_head^-0.5), exact GELU)."""
    ln = lambda m, x: F.layer_norm(x, m.normalized_shape, m.weight, m.bias, 1e-5)  # noqa: E731
    x = ln(p.clip_proj_norm, F.linear(clip_feats.float(), p.clip_proj.weight, p.clip_proj.bias))
    x = torch.cat([p.visual_query.weight.unsqueeze(0).repeat(len(x), 1, 1), x], dim=1)
    heads = p.config.num_heads
    for blk in p.visual_blocks:
        b, n, c = x.shape
        qkv = F.linear(ln(blk.norm1, x), blk.attn.qkv.weight, blk.attn.qkv.bias)
        q, k, v = qkv.reshape(b, n, 3, heads, c // heads).permute(2, 0, 3, 1, 4)
        attn = (q @ k.transpose(-2, -1) * (c // heads) ** -0.5).softmax(dim=-1)
        x = x + F.linear((attn @ v).transpose(1, 2).reshape(b, n, c), blk.attn.proj.weight, blk.attn.proj.bias)
        h = F.gelu(F.linear(ln(blk.norm2, x), blk.mlp.fc1.weight, blk.mlp.fc1.bias))
        x = x + F.linear(h, blk.mlp.fc2.weight, blk.mlp.fc2.bias)
    x = F.linear(x[:, : p.query_len], p.visual_proj.weight, p.visual_proj.bias)
    return ln(p.visual_proj_norm, x)


def test_release_prefix_matches_release_math():
    torch.manual_seed(0)
    prefix = ReleaseVisualPrefix(VisualPrefixConfig.tiny()).eval()
    tokens = torch.randn(3, 17, 16)
    torch.testing.assert_close(prefix(tokens), _reference_release_forward(prefix, tokens), rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("kind", ["release", "linear"])
def test_prefix_forward_backward_from_clip_tokens(encoder: CLIPVisionEncoder, kind: str):
    prefix = build_visual_prefix(VisualPrefixConfig.tiny(kind=kind))
    tokens = encoder.encode_images([_image(0), _image(1)])
    out = prefix(tokens)
    assert out.shape == (2, 4, 32)
    out.square().mean().backward()
    assert all(p.grad is not None and torch.isfinite(p.grad).all() for p in prefix.parameters())
    assert all(p.grad is None for p in encoder.parameters())


def test_linear_prefix_shapes_any_token_count():
    prefix = LinearVisualPrefix(VisualPrefixConfig.paper(clip_dim=16, llm_dim=32))
    for n in (17, 50, 257):
        out = prefix(torch.randn(2, n, 16))
        assert out.shape == (2, 20, 32)
    assert not torch.allclose(out[:, 0], out[:, 1])  # queries differ from the first step
    assert {n for n, _ in prefix.named_parameters()} == {"norm.weight", "norm.bias", "proj.weight", "proj.bias",
                                                         "queries"}


@pytest.mark.parametrize("kind", ["release", "linear"])
def test_every_prefix_param_is_declared_visual(encoder: CLIPVisionEncoder, kind: str):
    model = nn.Module()
    model.vision = VisionTower(encoder)
    model.prefix = build_visual_prefix(VisualPrefixConfig.tiny(kind=kind))
    groups = {g: {n for n, _ in ps} for g, ps in param_groups(model).items()}
    prefix_names = {f"prefix.{n}" for n, _ in model.prefix.named_parameters()}
    clip_names = {f"vision.{n}" for n, _ in model.vision.named_parameters()}
    assert groups["visual"] == prefix_names
    assert groups["frozen"] == clip_names and clip_names
    assert groups["instruction"] == set()
    assert set(adapter_kinds(model).values()) == {"visual_proj"}


def test_undeclared_parameter_owner_is_refused():
    Block = pytest.importorskip("timm.models.vision_transformer").Block
    # LayerScale (init_values) owns a bare `gamma`: no declaring twin, so it must be refused, not left undeclared
    with_layer_scale = nn.ModuleList([Block(32, 2, init_values=1e-5, norm_layer=vision.VisualLayerNorm)])
    with pytest.raises(ConfigError, match="ls1"):
        vision._declare_visual_params(with_layer_scale)


def test_prefix_config_presets_and_validation():
    r = VisualPrefixConfig.release_7b()
    assert (r.kind, r.clip_dim, r.llm_dim, r.num_tokens, r.embed_dim, r.depth, r.num_heads) == \
        ("release", 768, 4096, 10, 768, 8, 16)
    p = VisualPrefixConfig.paper(clip_dim=1024, llm_dim=576)
    assert (p.kind, p.num_tokens) == ("linear", 20)
    assert VisualPrefixConfig.from_dict(r.to_dict()) == r
    with pytest.raises(ConfigError):
        VisualPrefixConfig(kind="mlp")  # type: ignore[arg-type]
    with pytest.raises(ConfigError, match="divisible"):
        VisualPrefixConfig(embed_dim=100, num_heads=16)
    with pytest.raises(ConfigError, match="unknown"):
        VisualPrefixConfig.from_dict({"kind": "release", "query_len": 10})


# ================================================================================== cache & tower


def test_cache_hits_misses_and_lru_eviction():
    cache = ImageFeatureCache(max_entries=2)
    assert cache.get("a") is None
    cache.put("a", torch.ones(2))
    cache.put("b", torch.ones(2) * 2)
    assert cache.get("a") is not None  # a is now most recent
    cache.put("c", torch.ones(2) * 3)  # evicts b, the least recently used
    assert "b" not in cache and "a" in cache and "c" in cache
    assert len(cache) == 2
    assert cache.stats() == {"hits": 1, "misses": 1, "size": 2, "max_entries": 2}


def test_cache_stores_detached_compact_copies():
    cache = ImageFeatureCache(max_entries=4)
    batch = torch.randn(8, 17, 16, requires_grad=True)
    cache.put("row", batch[3])
    stored = cache.get("row")
    assert not stored.requires_grad and stored.device.type == "cpu"
    assert stored.untyped_storage().nbytes() == 17 * 16 * 4  # not a view keeping the whole batch alive
    with torch.no_grad():
        batch.zero_()
    assert stored.abs().sum() > 0


def test_cache_disabled_with_zero_entries():
    cache = ImageFeatureCache(max_entries=0)
    cache.put("a", torch.ones(1))
    assert len(cache) == 0 and cache.get("a") is None
    with pytest.raises(ConfigError):
        ImageFeatureCache(max_entries=-1)


def test_cache_thread_safety_smoke():
    cache = ImageFeatureCache(max_entries=16)
    errors: list[BaseException] = []
    gets_per_thread = 400

    def worker(seed: int) -> None:
        rng = np.random.default_rng(seed)
        try:
            for _ in range(gets_per_thread):
                key = int(rng.integers(0, 40))
                if cache.get(key) is None:
                    cache.put(key, torch.full((4,), float(key)))
        except BaseException as e:  # pragma: no cover - only on failure
            errors.append(e)

    threads = [threading.Thread(target=worker, args=(i,)) for i in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert not errors
    stats = cache.stats()
    assert stats["size"] <= 16 and stats["hits"] + stats["misses"] == 8 * gets_per_thread
    for key in range(40):
        value = cache.get(key)
        assert value is None or torch.equal(value, torch.full((4,), float(key)))


def test_tower_encodes_each_image_once(encoder: CLIPVisionEncoder):
    tower = VisionTower(encoder)
    batches: list[int] = []
    encoder.register_forward_hook(lambda mod, inp, out: batches.append(inp[0].shape[0]))
    a, b, c = _image(1), _image(2), _image(3)

    first = tower.encode([a, b, a])
    assert batches == [2]  # one batch, duplicates encoded once
    assert first.shape == (3, 17, 16)
    torch.testing.assert_close(first[0], first[2])

    again = tower.encode([a.copy()])  # same content, different object: served from the cache
    assert batches == [2]
    torch.testing.assert_close(again[0], first[0])

    mixed = tower.encode([c, b])
    assert batches == [2, 1]  # only the miss (c) is encoded
    torch.testing.assert_close(mixed[1], first[1])
    torch.testing.assert_close(mixed, encoder.encode_images([c, b]), rtol=1e-5, atol=1e-5)
    assert tower.cache.stats()["hits"] == 2 and tower.cache.stats()["misses"] == 3


def test_tower_cache_separates_encoders_and_dtypes(encoder: CLIPVisionEncoder):
    shared = ImageFeatureCache()
    other = CLIPVisionEncoder.from_config(TINY_CFG, seed=1)
    img = _image(5)
    t1, t2 = VisionTower(encoder, shared), VisionTower(other, shared)
    assert not torch.allclose(t1.encode([img]), t2.encode([img]))
    assert len(shared) == 2
    encoder.to(torch.bfloat16)
    assert t1.encode([img]).dtype == torch.bfloat16
    assert len(shared) == 3


def test_tower_accepts_any_image_source(encoder: CLIPVisionEncoder, tmp_path: Path):
    img = _image(7)
    path = tmp_path / "x.png"
    img.save(path)
    tower = VisionTower(encoder)
    from_path = tower.encode([str(path), np.asarray(img)])
    torch.testing.assert_close(from_path[0], from_path[1])
    assert tower.cache.stats()["hits"] == 0 and len(tower.cache) == 1  # same digest within one call


def test_tiny_config_token_count_formula():
    for image, patch in ((32, 8), (48, 16), (224, 14)):
        cfg = copy.deepcopy(TINY_CFG)
        cfg["vision_cfg"].update(image_size=image, patch_size=patch, layers=1)
        enc = CLIPVisionEncoder.from_config(cfg)
        assert enc.num_tokens == 1 + (image // patch) ** 2 == enc(torch.zeros(1, 3, image, image)).shape[1]
    assert math.isclose(1 + 16 ** 2, 257)  # ViT-L/14 at 224 px, as the release feeds clip_proj
