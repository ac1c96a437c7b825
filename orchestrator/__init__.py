"""LangChain components for LLaMA-Adapter V2: the LLM and chat model wrappers, the expert router, the visual-QA
pipeline, and the ``lav2`` command line.

Importing this package is instant: names load on first access (PEP 562); torch only when a model is loaded.
"""
from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from ._model_cache import clear_model_cache, get_model
    from .chat_models import ChatLlamaAdapterV2
    from .errors import BatchInputError, OrchestratorError, UnknownExpertError
    from .experts import default_pipeline_experts
    from .llms import LlamaAdapterV2LLM
    from .pipeline import VisualQAPipeline, VQAResult
    from .router import ExpertRouter, RouteDecision

_EXPORTS = {
    "ChatLlamaAdapterV2": "chat_models",
    "LlamaAdapterV2LLM": "llms",
    "VisualQAPipeline": "pipeline",
    "VQAResult": "pipeline",
    "ExpertRouter": "router",
    "RouteDecision": "router",
    "default_pipeline_experts": "experts",
    "get_model": "_model_cache",
    "clear_model_cache": "_model_cache",
    "OrchestratorError": "errors",
    "UnknownExpertError": "errors",
    "BatchInputError": "errors",
}

__all__ = sorted(_EXPORTS)


def __getattr__(name: str) -> Any:
    module = _EXPORTS.get(name)
    if module is None:
        raise AttributeError(f"module 'orchestrator' has no attribute {name!r}")
    value = getattr(importlib.import_module(f".{module}", __name__), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted([*globals(), *_EXPORTS])
