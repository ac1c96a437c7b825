"""The public names of orchestrator, and that importing it stays light."""
from __future__ import annotations

import subprocess
import sys

import orchestrator

EXPECTED_ALL = [
    "BatchInputError",
    "ChatLlamaAdapterV2",
    "ExpertRouter",
    "LlamaAdapterV2LLM",
    "OrchestratorError",
    "RouteDecision",
    "UnknownExpertError",
    "VQAResult",
    "VisualQAPipeline",
    "clear_model_cache",
    "default_pipeline_experts",
    "get_model",
]


def test_all_imports():
    assert sorted(orchestrator.__all__) == sorted(EXPECTED_ALL)
    for name in EXPECTED_ALL:
        assert getattr(orchestrator, name) is not None


def test_import_is_light():
    code = ("import sys, orchestrator, orchestrator.cli; "
            "print(sorted(m for m in ('torch', 'langchain_core', 'ultralytics', 'pytesseract') if m in sys.modules))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.strip() == "[]"


def test_errors_are_lav2_errors():
    from core_model.errors import LAV2Error

    assert issubclass(orchestrator.UnknownExpertError, LAV2Error)
    assert issubclass(orchestrator.BatchInputError, ValueError)
