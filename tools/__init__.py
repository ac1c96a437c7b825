"""Expert tools (paper §4.4): OCR, detection, captioning and search as LangChain tools, plus custom experts.

Every expert is a ``langchain_core`` ``BaseTool`` with ``status()``, ``run_expert(image=None, query=None)`` and a
``needs_image`` class attribute; see :mod:`tools.base`. Importing this package is instant: names load on first
access (PEP 562), and torch, ultralytics, pytesseract, ddgs and transformers only when an expert first runs.
"""
from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from .base import (
        ExpertError,
        ExpertInputError,
        ExpertResult,
        ExpertStatus,
        ExpertTimeout,
        ExpertTool,
        ExpertUnavailable,
        sanitize_expert_text,
    )
    from .caption import CaptionTool
    from .detection import DetectionTool
    from .ocr import OCRTool
    from .registry import (
        ENTRY_POINT_GROUP,
        all_experts,
        as_expert,
        default_experts,
        discover_experts,
        expert,
        get_expert,
        register_expert,
        unregister_expert,
    )
    from .search import LocalSearchTool, WebSearchTool, build_index

_EXPORTS = {
    "ExpertError": "base",
    "ExpertInputError": "base",
    "ExpertResult": "base",
    "ExpertStatus": "base",
    "ExpertTimeout": "base",
    "ExpertTool": "base",
    "ExpertUnavailable": "base",
    "sanitize_expert_text": "base",
    "CaptionTool": "caption",
    "DetectionTool": "detection",
    "OCRTool": "ocr",
    "ENTRY_POINT_GROUP": "registry",
    "all_experts": "registry",
    "as_expert": "registry",
    "default_experts": "registry",
    "discover_experts": "registry",
    "expert": "registry",
    "get_expert": "registry",
    "register_expert": "registry",
    "unregister_expert": "registry",
    "LocalSearchTool": "search",
    "WebSearchTool": "search",
    "build_index": "search",
}

__all__ = [
    "ENTRY_POINT_GROUP",
    "CaptionTool",
    "DetectionTool",
    "ExpertError",
    "ExpertInputError",
    "ExpertResult",
    "ExpertStatus",
    "ExpertTimeout",
    "ExpertTool",
    "ExpertUnavailable",
    "LocalSearchTool",
    "OCRTool",
    "WebSearchTool",
    "all_experts",
    "as_expert",
    "build_index",
    "default_experts",
    "discover_experts",
    "expert",
    "get_expert",
    "register_expert",
    "sanitize_expert_text",
    "unregister_expert",
]


def __getattr__(name: str) -> Any:
    module = _EXPORTS.get(name)
    if module is None:
        raise AttributeError(f"module 'tools' has no attribute {name!r}")
    value = getattr(importlib.import_module(f".{module}", __name__), name)
    globals()[name] = value  # later lookups skip this function
    return value


def __dir__() -> list[str]:
    return sorted([*globals(), *_EXPORTS])
