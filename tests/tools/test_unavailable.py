"""A missing backend library is a clear "unavailable: why, how to fix" — in status() and in run_expert()."""
from __future__ import annotations

import importlib.util
import sys
from collections.abc import Callable
from pathlib import Path

import pytest
from PIL import Image

from tools import CaptionTool, DetectionTool, ExpertTool, OCRTool, WebSearchTool

from .helpers import fall_detection_weights

CASES: list[tuple[str, Callable[[Path], ExpertTool], str]] = [
    ("pytesseract", lambda model_dir: OCRTool(), "pip install pytesseract"),
    ("ultralytics", lambda model_dir: DetectionTool(weights=str(fall_detection_weights())), "pip install ultralytics"),
    ("ddgs", lambda model_dir: WebSearchTool(), "pip install ddgs"),
    ("transformers", lambda model_dir: CaptionTool(hf_model=str(model_dir)), "pip install transformers"),
]


@pytest.mark.parametrize(("module", "make", "fix"), CASES, ids=[c[0] for c in CASES])
def test_missing_library(module: str, make: Callable[[Path], ExpertTool], fix: str, monkeypatch: pytest.MonkeyPatch,
                         tmp_path: Path) -> None:
    (tmp_path / "config.json").write_text("{}")  # a model directory that would otherwise look loadable
    real_find_spec = importlib.util.find_spec
    monkeypatch.setattr(importlib.util, "find_spec",
                        lambda name, *a: None if name.split(".")[0] == module else real_find_spec(name, *a))
    monkeypatch.setitem(sys.modules, module, None)  # `import module` now raises ImportError
    monkeypatch.delenv("LAV2_OFFLINE")
    tool = make(tmp_path)
    status = tool.status()
    assert not status.ready
    assert f"the {module} package is not installed" in status.reason and fix in status.reason
    result = tool.run_expert(image=Image.new("RGB", (32, 32), "white"), query="test")
    assert result.error is not None and result.error.startswith(f"unavailable: the {module} package is not installed")
    assert fix in result.error
