"""Build the model a run trains: base + adapter layout (+ frozen CLIP + trainable visual prefix), choose the
parameters each batch type updates, and count them on the meta device for dry runs.

The trained module is :class:`TrainModule` (the decoder and the visual prefix under one root, so one wrapper or
one checkpoint covers both); the :class:`core_model.api.AdapterV2Model` around the same objects is kept for
tokenizer, generation and ``save_adapter``.
"""
from __future__ import annotations

import dataclasses
import logging
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from torch import nn

from core_model.api import AdapterV2Model, apply_adapter_state, load_model, random_model
from core_model.checkpoints import load_adapter_file
from core_model.config import MODEL_PRESETS, AdapterConfig, ModelConfig, adapter_preset, model_preset
from core_model.errors import ConfigError
from core_model.groups import GROUPS, KIND_GROUP, adapter_kinds, count_params

from .config import STREAMS, TrainConfig

log = logging.getLogger(__name__)

#: A seconds-fast random open_clip ViT for tests and demos (``model.vision: random:tiny``): 32 px images,
#: patch 8 -> 17 tokens of width 16.
TINY_CLIP = {
    "embed_dim": 16,
    "vision_cfg": {"image_size": 32, "patch_size": 8, "width": 32, "layers": 2, "head_width": 16},
    "text_cfg": {"context_length": 8, "vocab_size": 64, "width": 16, "heads": 2, "layers": 1},
}

_DTYPES = {"float32": torch.float32, "bfloat16": torch.bfloat16, "float16": torch.float16}
_SHAPE_KEYS = ("vocab_size", "dim", "n_layers", "n_heads", "n_kv_heads", "ffn_dim")


class TrainModule(nn.Module):
    """The trained graph: CLIP tokens -> visual prefix -> visual prompt tokens -> decoder -> logits.

    CLIP itself is not a submodule (frozen, run under ``no_grad`` before this module), so wrappers and
    checkpoints only see the decoder and the prefix.
    """

    def __init__(self, llm: nn.Module, visual_prefix: nn.Module | None = None):
        super().__init__()
        self.llm = llm
        self.visual_prefix = visual_prefix

    def forward(self, tokens: torch.Tensor, clip_tokens: torch.Tensor | None = None,
                select: torch.Tensor | None = None) -> torch.Tensor:
        """Logits (B, T, vocab); with ``select`` (a boolean (B, T) mask) only those positions' logits, (N, vocab):
        training's loss covers the response tokens only, and the LM head over every position of a long prompt is
        a large share of a small model's step (49152 x 576 per token for SmolLM2)."""
        visual = None
        if clip_tokens is not None:
            if self.visual_prefix is None:
                raise ConfigError("a batch has images but the model has no visual prefix: use an adapter with visual "
                                  "fusion (paper, release-bias) and set model.vision")
            visual = self.visual_prefix(clip_tokens)
        return self.llm(tokens, visual, select=select)


@dataclass
class BuiltModel:
    model: AdapterV2Model
    module: TrainModule
    #: stream -> [(name in module, kind)] of the parameters that stream's batches update
    trains: dict[str, list[tuple[str, str]]]


# ============================================================================================ pieces
def vision_clip_dim(spec: str | None, overrides: dict[str, Any]) -> int:
    """CLIP token width for a vision spec without loading weights (dry runs)."""
    if "clip_dim" in overrides:
        return int(overrides["clip_dim"])
    if spec is None:
        return 768
    if spec == "random:tiny":
        return int(TINY_CLIP["embed_dim"])
    if spec in ("openai-vit-l14", "release", "ViT-L/14"):
        return 768
    try:
        import open_clip

        name = spec.removeprefix("random:").partition(":")[0].replace("/", "-")
        mc = open_clip.get_model_config(name)
        if mc is not None:
            return int(mc["embed_dim"])
    except ImportError:
        pass
    log.warning("cannot tell the CLIP width of %r without loading it; assuming 768 (set model.visual_prefix."
                "clip_dim to be exact)", spec)
    return 768


def build_tower(spec: str | None, seed: int = 0):
    """The frozen CLIP tower (a :class:`core_model.vision.VisionTower`) for ``model.vision``, or None."""
    if spec is None:
        return None
    from core_model.vision import CLIPVisionEncoder, VisionTower
    from core_model.vision_setup import resolve_vision

    if spec.startswith("random:"):
        name = spec.removeprefix("random:")
        enc = CLIPVisionEncoder.from_config(TINY_CLIP if name == "tiny" else name, seed=seed)
        return VisionTower(enc, cache_size=0)
    return resolve_vision(spec)


def prefix_config(acfg: AdapterConfig, cfg: ModelConfig, clip_dim: int, overrides: dict[str, Any]):
    from core_model.vision import VisualPrefixConfig
    from core_model.vision_setup import prefix_config_for

    pcfg = prefix_config_for(acfg, cfg, clip_dim)
    if overrides:
        known = {f.name for f in dataclasses.fields(VisualPrefixConfig)}
        bad = sorted(set(overrides) - known)
        if bad:
            raise ConfigError(f"model.visual_prefix: unknown keys {bad}; valid: {sorted(known)}")
        pcfg = dataclasses.replace(pcfg, **overrides)
    return pcfg


def resolve_adapter(spec: str, cfg: ModelConfig) -> AdapterConfig:
    p = Path(spec).expanduser()
    if p.exists():
        return load_adapter_file(p, cfg).adapter
    return adapter_preset(spec, cfg)


def check_shape(cfg: ModelConfig, shape: str | None, base: str) -> None:
    if shape is None:
        return
    want = model_preset(shape)
    diff = [f"{k}={getattr(cfg, k)} (expected {getattr(want, k)})" for k in _SHAPE_KEYS
            if getattr(cfg, k) != getattr(want, k)]
    if diff:
        raise ConfigError(f"base {base!r} does not have the shape of {shape!r}: {', '.join(diff)}; fix model.base "
                          "or model.shape")


def select_params(module: nn.Module, items: list[str]) -> list[tuple[str, str]]:
    """(name, kind) of the declared adapter parameters whose group or kind is in ``items``."""
    kinds = adapter_kinds(module)
    return [(n, k) for n, k in kinds.items() if k in items or KIND_GROUP[k] in items]


def stream_params(cfg: TrainConfig, module: nn.Module) -> dict[str, list[tuple[str, str]]]:
    """What each active stream updates; refuses empty or overlapping sets (the paper's disjointness)."""
    out = {s: select_params(module, cfg.trains(s)) for s in cfg.active_streams()}
    for s, sel in out.items():
        if not sel:
            raise ConfigError(f"{s} batches would train nothing: the adapter {cfg.model.adapter!r} has no parameters "
                              f"of {cfg.trains(s)} (adapter kinds present: "
                              f"{sorted(set(adapter_kinds(module).values()))}); choose another adapter or stage, "
                              f"or set data.{s}_weight=0")
    if len(out) == 2:
        both = sorted({n for n, _ in out["caption"]} & {n for n, _ in out["instruction"]})
        if both:
            raise ConfigError(f"caption and instruction batches would both update {len(both)} parameter(s) "
                              f"(first: {both[0]}); the groups must be disjoint — fix train.caption_trains / "
                              "train.instruction_trains")
    return out


def enable_gradient_checkpointing(llm: nn.Module) -> None:
    """Recompute each transformer block in backward (activation memory O(layers) -> O(1) blocks).

    The block's ``forward`` is replaced on the instance, so parameter names and state-dict keys stay unchanged.
    """
    from torch.utils.checkpoint import checkpoint

    for block in llm.layers:
        inner = block.forward

        def forward(*args, _inner=inner, **kwargs):
            if not torch.is_grad_enabled():
                return _inner(*args, **kwargs)
            return checkpoint(_inner, *args, use_reentrant=False, **kwargs)

        block.forward = forward


# ============================================================================================ building
def build(cfg: TrainConfig, device: torch.device, *, meta: bool = False, llm_on_meta: bool = False) -> BuiltModel:
    """Load base + adapter (+ vision) as the config says, on ``device``.

    ``meta``: structure only (dry runs: no weights, no CLIP, a placeholder tokenizer).
    ``llm_on_meta``: the decoder on the meta device but tokenizer, CLIP and visual prefix real (FSDP: the decoder is
    sharded first, then filled from rank 0's copy).
    """
    m = cfg.model
    dtype = _DTYPES[m.dtype]
    torch.manual_seed(m.seed)  # adapter inits (prompts, prefix) draw from the global RNG: identical on every rank
    tower = None if meta else build_tower(m.vision, m.seed)
    if tower is not None:
        tower = tower.to(device)  # frozen CLIP beside the model (kept in its own float32)
    if m.base.startswith("random:") or meta or llm_on_meta:
        mcfg, tokenizer, default_style = _base_source(m.base, m.shape, placeholder=meta)
        if m.max_seq_len:
            mcfg.max_seq_len = m.max_seq_len
        acfg = resolve_adapter(m.adapter, mcfg)
        style = cfg.data.prompt_style or default_style
        prefix = None
        if acfg.fusion != "none" and m.vision is not None:
            from core_model.vision import build_visual_prefix

            clip_dim = tower.clip_dim if tower is not None else vision_clip_dim(m.vision, m.visual_prefix)
            pcfg = prefix_config(acfg, mcfg, clip_dim, m.visual_prefix)
            with torch.device("meta") if meta else torch.device("cpu"):
                prefix = build_visual_prefix(pcfg)
            if not meta:
                prefix = prefix.to(device=device, dtype=dtype).eval()
        if meta or llm_on_meta:
            from core_model.model import Transformer

            with torch.device("meta"):
                llm = Transformer(mcfg, acfg)
            llm.requires_grad_(False).eval()
            model = AdapterV2Model(llm, tokenizer, prompt_style=style, vision=tower, visual_prefix=prefix,
                                   info={"base": m.base})
        else:
            model = random_model(mcfg, acfg, seed=m.seed, device=device, dtype=dtype, visual_prefix=prefix,
                                 vision=tower, prompt_style=style)
        adapter_path = Path(m.adapter).expanduser()
        if adapter_path.exists() and not (meta or llm_on_meta):
            apply_adapter_state(model.llm, model.visual_prefix, load_adapter_file(adapter_path, mcfg))
    else:
        # dense weights: the base must be plain tensors for the optimiser wrappers, FSDP and every dtype
        model = load_model(m.base, adapter=m.adapter, vision=tower, device=device, dtype=dtype,
                           prompt_style=cfg.data.prompt_style, max_seq_len=m.max_seq_len, weights="dense")
        check_shape(model.config, m.shape, m.base)
        if m.visual_prefix and model.visual_prefix is not None:
            from core_model.vision import build_visual_prefix

            clip_dim = model.vision.clip_dim if model.vision is not None else vision_clip_dim(m.vision, m.visual_prefix)
            model.visual_prefix = build_visual_prefix(
                prefix_config(model.adapter_config, model.config, clip_dim, m.visual_prefix)).to(device, dtype)
    if m.init_from and not (meta or llm_on_meta):
        init_from_adapter(model, m.init_from)
    module = TrainModule(model.llm, model.visual_prefix)
    trains = stream_params(cfg, module)
    if "caption" in trains and not meta and (model.vision is None or model.visual_prefix is None):
        raise ConfigError("caption batches need images encoded by CLIP and a visual prefix: set model.vision (e.g. "
                          "ViT-L-14:openai, openai-vit-l14, or random:tiny for tests) and an adapter with visual "
                          "fusion (paper, release-bias)")
    prepare_trainable(module, trains)
    if m.gradient_checkpointing:
        enable_gradient_checkpointing(model.llm)
    return BuiltModel(model, module, trains)


def _base_source(base: str, shape: str | None, placeholder: bool) -> tuple[ModelConfig, Any, str]:
    """(config, tokenizer, default prompt style) without loading any weight tensor."""
    from core_model.tokenizer import ByteTokenizer

    if base.startswith("random:"):
        tok = ByteTokenizer()
        return model_preset(base.removeprefix("random:")), tok, tok.default_prompt_style
    if placeholder:
        tok = ByteTokenizer()
        return _base_config(base, shape), tok, "alpaca"
    from core_model.loading import resolve_base

    src = resolve_base(base)
    check_shape(src.config, shape, base)
    return src.config, src.tokenizer, src.prompt_style or src.tokenizer.default_prompt_style


def _base_config(base: str, shape: str | None) -> ModelConfig:
    if base.startswith("random:"):
        return model_preset(base.removeprefix("random:"))
    if shape is not None:
        return model_preset(shape)
    if base in MODEL_PRESETS:
        return model_preset(base)
    from core_model.loading import resolve_base

    return resolve_base(base).config


def init_from_adapter(model: AdapterV2Model, path: str) -> None:
    ckpt = load_adapter_file(path, model.config)
    if ckpt.adapter != model.adapter_config:
        raise ConfigError(f"model.init_from {path}: its adapter layout {ckpt.adapter} differs from model.adapter "
                          f"({model.adapter_config}); use the same adapter preset as the stage that wrote it")
    apply_adapter_state(model.llm, model.visual_prefix, ckpt)
    log.info("initialised adapter tensors from %s", path)


def prepare_trainable(module: nn.Module, trains: dict[str, list[tuple[str, str]]]) -> None:
    """Freeze everything; trainable parameters (of any stream) become float32 master weights.

    ``requires_grad`` is switched per step to the active stream's parameters by the trainer.
    """
    module.requires_grad_(False)
    names = {n for sel in trains.values() for n, _ in sel}
    for name, p in module.named_parameters():
        if name in names and p.dtype != torch.float32:
            p.data = p.data.float()


def param_table(module: nn.Module, trains: dict[str, list[tuple[str, str]]]) -> dict[str, Any]:
    """Counts for logs and dry runs: per group, and what each stream updates (by kind)."""
    params = dict(module.named_parameters())
    streams = {}
    for s, sel in trains.items():
        by_kind: dict[str, int] = {}
        for n, k in sel:
            by_kind[k] = by_kind.get(k, 0) + params[n].numel()
        streams[s] = {"params": sum(by_kind.values()), "tensors": len(sel), "by_kind": by_kind}
    groups = count_params(module)
    return {"groups": groups, "streams": streams, "total": sum(groups.values()),
            "trainable": sum(v["params"] for v in streams.values())}


def dry_run(cfg: TrainConfig) -> dict[str, Any]:
    """Build on the meta device (no weights, no memory) and count what each batch type trains."""
    built = build(cfg, torch.device("meta"), meta=True)
    table = param_table(built.module, built.trains)
    mcfg = built.model.config
    return {"base": cfg.model.base, "shape": mcfg.name, "adapter": cfg.model.adapter, "stage": cfg.train.stage,
            "vision": cfg.model.vision, "visual_prefix": built.model.visual_prefix is not None,
            "streams_weights": {s: cfg.weight(s) for s in STREAMS}, **table,
            "groups_order": list(GROUPS)}
