"""Wire the vision side into ``load_model``: resolve the CLIP spec, build the visual prefix, check they fit.

Kept apart from ``api`` so text-only loads never import open_clip or timm.
"""
from __future__ import annotations

import logging
import os
from pathlib import Path
from typing import Any

import torch
from torch import nn

from .config import AdapterConfig, ModelConfig
from .errors import CheckpointMismatchError, ConfigError

log = logging.getLogger(__name__)

#: spellings of the release's CLIP (OpenAI ViT-L/14 at 224 px)
RELEASE_CLIP_ALIASES = ("openai-vit-l14", "release", "ViT-L/14")


def resolve_vision(vision: Any):
    """A ``VisionTower`` from: a VisionTower, a CLIPVisionEncoder, ``"MODEL:PRETRAINED"`` (open_clip name and
    tag, downloads when online), a local checkpoint file / folder, or ``"openai-vit-l14"`` (the release's CLIP)."""
    from .vision import CLIPVisionEncoder, VisionTower

    if isinstance(vision, VisionTower):
        return vision
    if isinstance(vision, CLIPVisionEncoder):
        return VisionTower(vision)
    if not isinstance(vision, (str, os.PathLike)):
        raise ConfigError(f"vision must be a VisionTower, CLIPVisionEncoder, or a string spec; got {type(vision)}")
    spec = os.fspath(vision)
    if spec in RELEASE_CLIP_ALIASES:
        return VisionTower(CLIPVisionEncoder.openai_vit_l14())
    if spec.startswith(("local-dir:", "hf-hub:")):
        return VisionTower(CLIPVisionEncoder.from_pretrained(spec))
    path = Path(spec).expanduser()
    if path.exists():
        return VisionTower(CLIPVisionEncoder.from_local(path))
    name, sep, tag = spec.partition(":")
    if not sep:
        raise ConfigError(f"vision spec {spec!r}: use MODEL:PRETRAINED (e.g. ViT-L-14:openai), a local checkpoint "
                          "path, or 'openai-vit-l14'")
    return VisionTower(CLIPVisionEncoder.from_pretrained(name, tag))


def prefix_config_for(acfg: AdapterConfig, cfg: ModelConfig, clip_dim: int):
    from .vision import VisualPrefixConfig

    if acfg.fusion == "early":
        return VisualPrefixConfig.paper(clip_dim, cfg.dim, acfg.visual_tokens)
    return VisualPrefixConfig(kind="release", clip_dim=clip_dim, llm_dim=cfg.dim, num_tokens=acfg.prompt_len)


def setup_vision(vision: Any, prefix_cfg: dict[str, Any] | None, acfg: AdapterConfig, cfg: ModelConfig,
                 device: torch.device, dtype: torch.dtype) -> tuple[Any, nn.Module | None]:
    """Return (vision tower or None, visual prefix or None) on ``device``.

    Without vision weights the prefix is still built when the adapter file has one (so its tensors load), but
    the model reports ``has_vision = False`` and images raise a clear ``VisionUnavailableError``: the visual
    prefix is never silently fed from random CLIP weights.
    """
    from .vision import VisualPrefixConfig, build_visual_prefix

    if acfg.fusion == "none":
        if vision is not None:
            raise ConfigError("vision was given but the adapter has no visual fusion: use an adapter with a visual "
                              "prefix (an official multimodal checkpoint, or the 'paper' / 'release-bias' presets)")
        return None, None
    tower = resolve_vision(vision) if vision is not None else None
    if tower is None:
        log.warning("the visual prefix is off: no vision weights configured (pass vision=<open_clip "
                    "MODEL:PRETRAINED | local CLIP checkpoint | openai-vit-l14>); images will be refused")
    if prefix_cfg is not None:
        pcfg = VisualPrefixConfig.from_dict(prefix_cfg)
    elif tower is not None:
        pcfg = prefix_config_for(acfg, cfg, tower.clip_dim)
    else:
        return None, None  # a fresh preset without CLIP: nothing to build the prefix for
    if tower is not None and tower.clip_dim != pcfg.clip_dim:
        raise CheckpointMismatchError(f"the visual prefix expects CLIP tokens of width {pcfg.clip_dim} but the "
                                      f"vision encoder gives {tower.clip_dim}: use the CLIP it was trained with "
                                      "(the release used OpenAI ViT-L/14)")
    if pcfg.llm_dim != cfg.dim:
        raise CheckpointMismatchError(f"visual prefix outputs width {pcfg.llm_dim}, the base model has {cfg.dim}")
    expected_tokens = acfg.visual_tokens if acfg.fusion == "early" else acfg.prompt_len
    if pcfg.num_tokens != expected_tokens:
        raise CheckpointMismatchError(f"visual prefix gives {pcfg.num_tokens} tokens, the adapter expects "
                                      f"{expected_tokens}")
    prefix = build_visual_prefix(pcfg).to(device=device, dtype=dtype).eval().requires_grad_(False)
    if tower is not None:
        tower = tower.to(device)
    return tower, prefix
