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
from .errors import CheckpointMismatchError, ConfigError, ModelLoadError, VisionUnavailableError
from .groups import adapter_kinds
from .safe_load import json_object, load_safetensors, torch_load

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
    """Read our format (directory or .safetensors with its JSON beside it) or an official ``.pth`` file.

    With ``base_config`` the adapter is validated against that base (:func:`validate_adapter`) before it is
    returned: wrong dtypes, NaN/Inf and shapes that do not fit are refused, never loaded. Every failure is a
    one-line :class:`ModelLoadError` (or its subclass :class:`CheckpointMismatchError`).
    """
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
    meta = json_object(cfg_path, "adapter config")
    if meta.get("format") != FORMAT:
        raise ModelLoadError(f"{cfg_path}: not a {FORMAT} config (format={meta.get('format')!r})")
    version = meta.get("version", 0)
    if not isinstance(version, int):
        raise ModelLoadError(f"{cfg_path}: 'version' must be an integer, got {version!r}")
    if version > VERSION:
        raise ModelLoadError(f"{cfg_path}: adapter format version {version} is newer than this library "
                             f"supports ({VERSION}); upgrade llama-adapter-v2")
    if not isinstance(meta.get("adapter"), dict):
        raise ModelLoadError(f"{cfg_path}: the key 'adapter' (the adapter layout) is missing or not an object")
    for key in ("base", "vision_prefix"):
        if meta.get(key) is not None and not isinstance(meta[key], dict):
            raise ModelLoadError(f"{cfg_path}: '{key}' must be an object or null, got {type(meta[key]).__name__}")
    try:
        acfg = AdapterConfig.from_dict(meta["adapter"])
    except ConfigError as e:
        raise ModelLoadError(f"{cfg_path}: invalid adapter layout: {e}") from e
    except (TypeError, ValueError) as e:
        raise ModelLoadError(f"{cfg_path}: invalid adapter layout ({e})") from e
    style = meta.get("prompt_style")
    ckpt = AdapterCheckpoint(acfg, load_safetensors(w_path, "adapter weights"), meta.get("base"),
                             meta.get("vision_prefix"), style if isinstance(style, str) else None, str(directory))
    if base_config is not None:
        validate_adapter(ckpt, base_config)
    return ckpt


def check_base_compatible(ckpt: AdapterCheckpoint, cfg: ModelConfig) -> None:
    if not ckpt.base:
        return
    for key in ("dim", "n_layers", "n_heads", "n_kv_heads", "ffn_dim"):
        if key in ckpt.base and ckpt.base[key] != getattr(cfg, key):
            raise CheckpointMismatchError(
                f"adapter {ckpt.source} was made for a base with {key}={ckpt.base[key]}, but the loaded base has "
                f"{key}={getattr(cfg, key)}: load the base model it was trained on")


_FLOAT_DTYPES = (torch.float16, torch.bfloat16, torch.float32, torch.float64)


def validate_adapter(ckpt: AdapterCheckpoint, base: ModelConfig) -> None:
    """Refuse an adapter that cannot be right for ``base`` — before anything is loaded into a model or written.

    Checks the base shape it was made for, the layout against the base, then every tensor: a floating dtype
    (an int or bool tensor is not a trained parameter), only finite values (NaN/Inf make every answer garbage),
    and exactly the names and shapes the adapter layout has on this base (the visual prefix too, when the vision
    libraries are installed). Raises :class:`CheckpointMismatchError` naming the first offending tensors.
    """
    src = ckpt.source or "adapter"
    check_base_compatible(ckpt, base)
    try:
        ckpt.adapter.validate_for(base)
    except ConfigError as e:
        raise CheckpointMismatchError(f"{src}: the adapter layout does not fit the base: {e}") from e
    wrong_type = [f"{k} ({v.dtype})" if isinstance(v, torch.Tensor) else f"{k} ({type(v).__name__})"
                  for k, v in ckpt.state.items() if not isinstance(v, torch.Tensor) or v.dtype not in _FLOAT_DTYPES]
    if wrong_type:
        raise CheckpointMismatchError(f"{src}: adapter tensors must be floating point; got {wrong_type[:4]}: the "
                                      "file is damaged or not an adapter")
    not_finite = [f"{k} ({int((~torch.isfinite(v)).sum())} of {v.numel()})" for k, v in ckpt.state.items()
                  if not bool(torch.isfinite(v).all())]
    if not_finite:
        raise CheckpointMismatchError(f"{src}: adapter tensors hold NaN/Inf values: {not_finite[:4]}; the training "
                                      "run that wrote them diverged — use an earlier checkpoint")
    expected = _expected_shapes(ckpt, base)
    names = set(ckpt.state)
    checkable = {n for n in names if not n.startswith("visual_prefix.")} if "visual_prefix" not in expected \
        else names
    want = {n for n in expected if n != "visual_prefix"}
    # norms are overridden only when the adapter trained them; a missing norm keeps the base's value
    missing = sorted(n for n in want - names if not n.endswith("norm.weight")
                     and (not n.startswith("visual_prefix.") or ckpt.vision_prefix is not None))
    unexpected = sorted(checkable - want)
    if missing or unexpected:
        raise CheckpointMismatchError(f"{src}: the tensors do not match the adapter layout on this base: missing "
                                      f"{missing[:6]}, unexpected {unexpected[:6]}")
    wrong = [f"{n}: {tuple(ckpt.state[n].shape)} vs {expected[n]}" for n in sorted(checkable & want)
             if tuple(ckpt.state[n].shape) != expected[n]]
    if wrong:
        raise CheckpointMismatchError(f"{src}: tensor shapes do not fit the base (file vs expected): {wrong[:4]}; "
                                      "use the base model the adapter was made for")


def _expected_shapes(ckpt: AdapterCheckpoint, base: ModelConfig) -> dict[str, Any]:
    """Name -> shape of every adapter parameter the layout has on ``base``, built on the meta device (no memory).
    The key ``"visual_prefix"`` is present when the visual prefix's shapes could be computed too."""
    from .model import Transformer

    with torch.device("meta"):
        llm = Transformer(base, ckpt.adapter)
    kinds = adapter_kinds(llm)
    shapes: dict[str, Any] = {n: tuple(p.shape) for n, p in llm.named_parameters() if n in kinds}
    if ckpt.vision_prefix is None:
        shapes["visual_prefix"] = True  # nothing visual expected: any visual_prefix.* key is unexpected
        return shapes
    try:
        from .vision import VisualPrefixConfig, build_visual_prefix

        pcfg = VisualPrefixConfig.from_dict(ckpt.vision_prefix)
        with torch.device("meta"):
            prefix = build_visual_prefix(pcfg)
    except VisionUnavailableError:
        log.debug("%s: vision libraries missing; the visual prefix's shapes are checked when it is built",
                  ckpt.source)
        return shapes
    except (ConfigError, TypeError, ValueError, KeyError) as e:
        raise CheckpointMismatchError(f"{ckpt.source}: invalid visual prefix config ({e})") from e
    if pcfg.llm_dim != base.dim:
        raise CheckpointMismatchError(f"{ckpt.source}: the visual prefix outputs width {pcfg.llm_dim}, the base has "
                                      f"{base.dim}: use the base model the adapter was made for")
    shapes.update({f"visual_prefix.{n}": tuple(p.shape) for n, p in prefix.named_parameters()})
    shapes["visual_prefix"] = True
    return shapes


# ----------------------------------------------------------------------------------------- official release
_OFFICIAL_VISUAL = ("clip_proj.", "clip_proj_norm.", "visual_query.", "visual_blocks.", "visual_proj.",
                    "visual_proj_norm.")


def _read_official(path: Path) -> tuple[dict[str, torch.Tensor], dict[str, Any]]:
    obj = torch_load(path, "LLaMA-Adapter checkpoint")
    if isinstance(obj, dict) and isinstance(obj.get("model"), dict):
        return obj["model"], dict(obj.get("config") or {})
    if isinstance(obj, dict) and all(isinstance(v, torch.Tensor) for v in obj.values()):
        return obj, {}
    raise ModelLoadError(f"{path}: not an LLaMA-Adapter checkpoint (expected {{'model': ..., 'config': ...}})")


def convert_official(path: str | os.PathLike, base: ModelConfig) -> AdapterCheckpoint:
    """Map an official LLaMA-Adapter V2 file (multimodal 7B or chat65b layout) onto this project's names, and
    validate the result against ``base`` (:func:`validate_adapter`): nothing that does not fit is returned."""
    p = Path(path)
    sd, cfg = _read_official(p)
    bad = [k for k, v in sd.items() if not isinstance(v, torch.Tensor)]
    if bad:
        raise CheckpointMismatchError(f"{p}: 'model' must map names to tensors; {bad[:4]} are not tensors")
    sd = {k.removeprefix("module."): v for k, v in sd.items()}
    try:
        if any(k.startswith("llama.") or k.startswith("adapter_query") for k in sd):
            ckpt = _convert_multimodal(sd, cfg, base, str(p))
        else:
            ckpt = _convert_chat65b(sd, base, str(p))
    except (ConfigError, ValueError, TypeError, IndexError, ZeroDivisionError) as e:
        raise CheckpointMismatchError(f"{p}: cannot convert this checkpoint for a base with dim={base.dim}, "
                                      f"n_layers={base.n_layers} ({e})") from e
    validate_adapter(ckpt, base)
    return ckpt


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
