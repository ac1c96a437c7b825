"""core_model: LLaMA + LLaMA-Adapter V2 in plain PyTorch (no LangChain here).

Main entry: :func:`load_model`. Building blocks: :class:`Transformer`, :class:`ModelConfig`,
:class:`AdapterConfig`, the presets, and the parameter-group helpers.
"""
from .api import AdapterV2Model, Completion, load_model, random_model, resolve_device, resolve_dtype
from .config import (ADAPTER_PRESETS, MODEL_PRESETS, AdapterConfig, ModelConfig, adapter_preset,
                     model_preset)
from .errors import (CheckpointMismatchError, ConfigError, ContextLengthError, ImageError, KernelUnavailableError,
                     LAV2Error, ModelLoadError, VisionUnavailableError, WeightsFormatError)
from .engine import Engine, EngineConfig, QueueFullError, RequestHandle
from .generation import SamplingParams
from .groups import count_params, param_groups, set_trainable
from .images import image_digest, load_images, open_image
from .tokenizer import ByteTokenizer, Tokenizer
from .vision import (CLIPVisionEncoder, VisionTower, VisualPrefixConfig, build_visual_prefix,
                     release_prefix_state_dict)
from .model import AdapterV2Linear, GatedPromptAttention, RMSNorm, Transformer
from .quant import BLOCK_TYPES, PackedWeight

__all__ = [
    "CLIPVisionEncoder", "VisionTower", "VisualPrefixConfig", "build_visual_prefix", "image_digest", "load_images",
    "open_image", "release_prefix_state_dict",
    "ADAPTER_PRESETS", "MODEL_PRESETS", "ByteTokenizer", "Tokenizer", "AdapterConfig", "AdapterV2Linear", "AdapterV2Model", "CheckpointMismatchError",
    "Completion", "ConfigError", "Engine", "EngineConfig", "QueueFullError", "RequestHandle", "ContextLengthError", "GatedPromptAttention", "ImageError", "LAV2Error",
    "BLOCK_TYPES", "KernelUnavailableError", "PackedWeight", "WeightsFormatError",
    "ModelConfig", "ModelLoadError", "RMSNorm", "SamplingParams", "Transformer", "VisionUnavailableError",
    "adapter_preset", "count_params", "load_model", "random_model", "model_preset", "param_groups", "resolve_device",
    "resolve_dtype", "set_trainable",
]
