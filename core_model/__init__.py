"""core_model: LLaMA + LLaMA-Adapter V2 in plain PyTorch (no LangChain here).

Main entry: :func:`load_model`. Building blocks: :class:`Transformer`, :class:`ModelConfig`,
:class:`AdapterConfig`, the presets, and the parameter-group helpers.

Importing the package is cheap: the names below load on first access (PEP 562), so code that only needs the
errors or the configs (the ``lav2`` command line before it runs a command) does not pay for importing torch.
"""
from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from .api import AdapterV2Model, Completion, load_model, random_model, resolve_device, resolve_dtype
    from .config import (ADAPTER_PRESETS, MODEL_PRESETS, AdapterConfig, ModelConfig, adapter_preset,
                         model_preset)
    from .errors import (CheckpointMismatchError, ConfigError, ContextLengthError, ImageError,
                         KernelUnavailableError, LAV2Error, ModelLoadError, VisionUnavailableError,
                         WeightsFormatError)
    from .engine import Engine, EngineConfig, QueueFullError, RequestHandle
    from .generation import SamplingParams
    from .groups import count_params, param_groups, set_trainable
    from .images import image_digest, load_images, open_image
    from .model import AdapterV2Linear, GatedPromptAttention, RMSNorm, Transformer
    from .quant import BLOCK_TYPES, PackedWeight
    from .tokenizer import ByteTokenizer, Tokenizer
    from .vision import (CLIPVisionEncoder, VisionTower, VisualPrefixConfig, build_visual_prefix,
                         release_prefix_state_dict)

_EXPORTS: dict[str, str] = {
    **dict.fromkeys(("AdapterV2Model", "Completion", "load_model", "random_model", "resolve_device",
                     "resolve_dtype"), "api"),
    **dict.fromkeys(("ADAPTER_PRESETS", "MODEL_PRESETS", "AdapterConfig", "ModelConfig", "adapter_preset",
                     "model_preset"), "config"),
    **dict.fromkeys(("CheckpointMismatchError", "ConfigError", "ContextLengthError", "ImageError",
                     "KernelUnavailableError", "LAV2Error", "ModelLoadError", "VisionUnavailableError",
                     "WeightsFormatError"), "errors"),
    **dict.fromkeys(("Engine", "EngineConfig", "QueueFullError", "RequestHandle"), "engine"),
    "SamplingParams": "generation",
    **dict.fromkeys(("count_params", "param_groups", "set_trainable"), "groups"),
    **dict.fromkeys(("image_digest", "load_images", "open_image"), "images"),
    **dict.fromkeys(("AdapterV2Linear", "GatedPromptAttention", "RMSNorm", "Transformer"), "model"),
    **dict.fromkeys(("BLOCK_TYPES", "PackedWeight"), "quant"),
    **dict.fromkeys(("ByteTokenizer", "Tokenizer"), "tokenizer"),
    **dict.fromkeys(("CLIPVisionEncoder", "VisionTower", "VisualPrefixConfig", "build_visual_prefix",
                     "release_prefix_state_dict"), "vision"),
}

__all__ = sorted(_EXPORTS)


def __getattr__(name: str) -> Any:
    module = _EXPORTS.get(name)
    if module is None:
        raise AttributeError(f"module 'core_model' has no attribute {name!r}")
    value = getattr(importlib.import_module(f".{module}", __name__), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted([*globals(), *_EXPORTS])
