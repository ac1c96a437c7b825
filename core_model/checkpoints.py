"""Adapter checkpoints: this project's format (safetensors + JSON) and the official release's ``.pth`` files.

Our format is a directory with ``adapter.safetensors`` (only adapter parameters: megabytes, not gigabytes) and
``adapter_config.json`` (the adapter layout, the base shape it was trained on, the visual prefix config).
The official LLaMA-Adapter V2 files (``{'model': {...}, 'config': {'w_bias', 'w_lora', 'lora_rank'}}``) are
converted by key remapping: :func:`convert_official`.
"""
from __future__ import annotations

import json
import logging
import os
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from torch import nn

from .config import RELEASE_BIAS_TARGETS, AdapterConfig, ModelConfig
from .errors import CheckpointMismatchError, ModelLoadError
from .groups import adapter_kinds

log = logging.getLogger(__name__)

FORMAT = "lav2-adapter"
VERSION = 1
WEIGHTS = "adapter.safetensors"
CONFIG = "adapter_config.json"


@dataclass
class AdapterCheckpoint:
    adapter: AdapterConfig
    state: dict[str, torch.Tensor]  # names relative to the multimodal model: "layers.*" and "visual_prefix.*"
    base: dict[str, Any] | None = None  # ModelConfig dict of the base it was made for (shape check)
    vision_prefix: dict[str, Any] | None = None  # VisualPrefixConfig dict, when there is a visual prefix
    prompt_style: str | None = None
    source: str = ""


def adapter_state(model: nn.Module) -> dict[str, torch.Tensor]:
    """Only the declared adapter parameters (the filter that keeps adapter files small)."""
    params = dict(model.named_parameters())
    return {name: params[name].detach() for name in adapter_kinds(model)}


def save_adapter(path: str | os.PathLike, ckpt: AdapterCheckpoint) -> Path:
    from safetensors.torch import save_file

    out = Path(path)
    if out.suffix == ".safetensors":
        out = out.parent
    out.mkdir(parents=True, exist_ok=True)
    meta = {"format": FORMAT, "version": VERSION, "adapter": ckpt.adapter.to_dict(), "base": ckpt.base,
            "vision_prefix": ckpt.vision_prefix, "prompt_style": ckpt.prompt_style}
    tensors = {k: v.detach().to("cpu").contiguous() for k, v in ckpt.state.items()}
    tmp_w, tmp_c = out / (WEIGHTS + ".tmp"), out / (CONFIG + ".tmp")
    save_file(tensors, str(tmp_w), metadata={"format": FORMAT})
    tmp_c.write_text(json.dumps(meta, indent=1))
    os.replace(tmp_w, out / WEIGHTS)  # atomic: a crash never leaves a half-written adapter behind
    os.replace(tmp_c, out / CONFIG)
    return out


def load_adapter_file(path: str | os.PathLike, base_config: ModelConfig | None = None) -> AdapterCheckpoint:
    """Read our format (directory or .safetensors with its JSON beside it) or an official ``.pth`` file."""
    p = Path(path).expanduser()
    if not p.exists():
        raise ModelLoadError(f"adapter {p} does not exist")
    if p.is_file() and p.suffix in (".pth", ".pt", ".bin"):
        if base_config is None:
            raise ModelLoadError("official checkpoints need the base model config to be converted")
        return convert_official(p, base_config)
    directory = p if p.is_dir() else p.parent
    cfg_path, w_path = directory / CONFIG, (p if p.is_file() else directory / WEIGHTS)
    if not cfg_path.is_file() or not w_path.is_file():
        raise ModelLoadError(f"{p}: expected {WEIGHTS} and {CONFIG} (this project's adapter format) or an "
                             "official .pth checkpoint")
    meta = json.loads(cfg_path.read_text())
    if meta.get("format") != FORMAT:
        raise ModelLoadError(f"{cfg_path}: not a {FORMAT} config (format={meta.get('format')!r})")
    if meta.get("version", 0) > VERSION:
        raise ModelLoadError(f"{cfg_path}: adapter format version {meta['version']} is newer than this library "
                             f"supports ({VERSION}); upgrade llama-adapter-v2")
    from safetensors.torch import load_file

    return AdapterCheckpoint(AdapterConfig.from_dict(meta["adapter"]), load_file(str(w_path)), meta.get("base"),
                             meta.get("vision_prefix"), meta.get("prompt_style"), str(directory))


def check_base_compatible(ckpt: AdapterCheckpoint, cfg: ModelConfig) -> None:
    if not ckpt.base:
        return
    for key in ("dim", "n_layers", "n_heads", "n_kv_heads", "ffn_dim"):
        if key in ckpt.base and ckpt.base[key] != getattr(cfg, key):
            raise CheckpointMismatchError(
                f"adapter {ckpt.source} was made for a base with {key}={ckpt.base[key]}, but the loaded base has "
                f"{key}={getattr(cfg, key)}: load the base model it was trained on")


# ----------------------------------------------------------------------------------------- official release
_OFFICIAL_VISUAL = ("clip_proj.", "clip_proj_norm.", "visual_query.", "visual_blocks.", "visual_proj.",
                    "visual_proj_norm.")


def _read_official(path: Path) -> tuple[dict[str, torch.Tensor], dict[str, Any]]:
    try:
        obj = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as e:  # noqa: BLE001 - pickle/zip errors vary
        raise ModelLoadError(f"{path}: cannot read as a torch checkpoint with weights_only=True ({e})") from e
    if isinstance(obj, dict) and isinstance(obj.get("model"), dict):
        return obj["model"], dict(obj.get("config") or {})
    if isinstance(obj, dict) and all(isinstance(v, torch.Tensor) for v in obj.values()):
        return obj, {}
    raise ModelLoadError(f"{path}: not an LLaMA-Adapter checkpoint (expected {{'model': ..., 'config': ...}})")


def convert_official(path: str | os.PathLike, base: ModelConfig) -> AdapterCheckpoint:
    """Map an official LLaMA-Adapter V2 file (multimodal 7B or chat65b layout) onto this project's names."""
    p = Path(path)
    sd, cfg = _read_official(p)
    sd = {k.removeprefix("module."): v for k, v in sd.items()}
    if any(k.startswith("llama.") or k.startswith("adapter_query") for k in sd):
        return _convert_multimodal(sd, cfg, base, str(p))
    return _convert_chat65b(sd, base, str(p))


def _convert_multimodal(sd: dict[str, torch.Tensor], cfg: dict[str, Any], base: ModelConfig,
                        source: str) -> AdapterCheckpoint:
    n = base.n_layers
    out: dict[str, torch.Tensor] = {}
    if "adapter_query.weight" not in sd:
        raise CheckpointMismatchError(f"{source}: no adapter_query.weight; not a multimodal LLaMA-Adapter V2 file")
    aq = sd["adapter_query.weight"]
    if "visual_query.weight" in sd:
        query_len = sd["visual_query.weight"].shape[0]
    elif "query_len" in cfg:
        query_len = int(cfg["query_len"])
    else:  # the release's default: prompts in every layer but the first (query_layer = n_layers - 1)
        query_len = aq.shape[0] // max(n - 1, 1)
    if aq.shape[0] % query_len or aq.shape[1] != base.dim:
        raise CheckpointMismatchError(f"{source}: adapter_query {tuple(aq.shape)} does not fit query_len "
                                      f"{query_len} and base dim {base.dim}")
    n_prompt = aq.shape[0] // query_len
    first_late = n - n_prompt
    for j, rows in enumerate(aq.reshape(n_prompt, query_len, base.dim)):
        out[f"layers.{first_late + j}.attention.prompt"] = rows
    lora_rank, has_norm, unexpected, dead = 0, False, [], 0
    for key, t in sd.items():
        if key == "adapter_query.weight":
            continue
        if key.startswith(_OFFICIAL_VISUAL):
            out["visual_prefix." + key] = t
            continue
        if not key.startswith("llama."):
            unexpected.append(key)
            continue
        name = key.removeprefix("llama.")
        if m := re.fullmatch(r"layers\.(\d+)\.attention\.(gate|new_gate)", name):
            if int(m.group(1)) < first_late:
                dead += 1  # the release creates gates in every layer but only uses the last query_layer ones
                continue
            out[name] = t
        elif m := re.fullmatch(r"(layers\.\d+\.(?:attention|feed_forward))\.lora_(w\w+?)_l([12])\.weight", name):
            lora_rank = t.shape[1] if m.group(3) == "2" else t.shape[0]
            out[f"{m.group(1)}.{m.group(2)}.lora_{'a' if m.group(3) == '1' else 'b'}"] = t
        elif re.fullmatch(r"layers\.\d+\.(attention\.w[qkvo]|feed_forward\.w[123])\.bias", name):
            out[name] = t
        elif re.fullmatch(r"(layers\.\d+\.(attention_norm|ffn_norm)|norm)\.weight", name):
            has_norm = True
            out[name] = t
        else:
            unexpected.append(key)
    if unexpected:
        raise CheckpointMismatchError(f"{source}: unexpected keys {unexpected[:8]}{'...' if len(unexpected) > 8 else ''}")
    if dead:
        log.debug("%s: dropped %d unused gates of the first %d layers", source, dead, first_late)
    w_bias = bool(cfg.get("w_bias", any(k.endswith(".bias") and k.startswith("layers.") for k in out)))
    w_lora = bool(cfg.get("w_lora", lora_rank > 0))
    if w_lora and lora_rank == 0:
        lora_rank = int(cfg.get("lora_rank", 16))
    new_gate = any(k.endswith("new_gate") for k in out)
    acfg = AdapterConfig(linear="bias" if w_bias else "none", linear_targets=RELEASE_BIAS_TARGETS,
                         train_norms=has_norm, prompt_layers=n_prompt, prompt_len=query_len,
                         lora_rank=lora_rank if w_lora else 0, new_gate=new_gate, fusion="late-additive")
    vision = None
    if "visual_proj.weight" in sd:
        emb = sd["clip_proj.weight"]
        depth = len({k.split(".")[1] for k in sd if k.startswith("visual_blocks.")})
        vision = {"kind": "release", "clip_dim": int(emb.shape[1]), "llm_dim": base.dim,
                  "num_tokens": query_len, "embed_dim": int(emb.shape[0]), "depth": depth,
                  "num_heads": int(cfg.get("v_num_heads", 16)), "mlp_ratio": 4.0}
    return AdapterCheckpoint(acfg, out, base.to_dict(), vision, "alpaca", source)


def _convert_chat65b(sd: dict[str, torch.Tensor], base: ModelConfig, source: str) -> AdapterCheckpoint:
    out: dict[str, torch.Tensor] = {}
    has_bias = has_scale = has_norm = False
    unexpected = []
    for key, t in sd.items():
        if m := re.fullmatch(r"(layers\.\d+\.(?:attention|feed_forward))\.(w\w+?)_(bias|scale)", key):
            out[f"{m.group(1)}.{m.group(2)}.{m.group(3)}"] = t
            has_bias |= m.group(3) == "bias"
            has_scale |= m.group(3) == "scale"
        elif re.fullmatch(r"(layers\.\d+\.(attention_norm|ffn_norm)|norm)\.weight", key):
            out[key] = t
            has_norm = True
        elif re.fullmatch(r"layers\.\d+\.attention\.gate", key):
            continue  # chat65b creates gates but trains without prompts
        else:
            unexpected.append(key)
    if unexpected:
        raise CheckpointMismatchError(f"{source}: unexpected keys {unexpected[:8]}")
    if not (has_bias or has_scale or has_norm):
        raise CheckpointMismatchError(f"{source}: no adapter parameters recognised")
    if has_scale and not has_bias:
        raise CheckpointMismatchError(f"{source}: scale without bias is not a known release layout")
    acfg = AdapterConfig(linear="input_scale" if has_scale else ("bias" if has_bias else "none"),
                         train_norms=has_norm)
    return AdapterCheckpoint(acfg, out, base.to_dict(), None, "alpaca", source)
