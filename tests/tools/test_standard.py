"""LangChain's own conformance suite (langchain-tests ToolsUnitTests), one subclass per expert tool."""
from __future__ import annotations

from typing import Any

from langchain_core.tools import BaseTool, tool
from langchain_tests.unit_tests import ToolsUnitTests

from tools import CaptionTool, DetectionTool, LocalSearchTool, OCRTool, WebSearchTool, as_expert, expert

IMAGE = {"image": "/path/to/photo.jpg"}
QUERY = {"query": "what is LLaMA-Adapter V2?"}


class TestOCRToolStandard(ToolsUnitTests):
    @property
    def tool_constructor(self) -> type[BaseTool]:
        return OCRTool

    @property
    def tool_constructor_params(self) -> dict[str, Any]:
        return {"lang": "eng", "timeout": 10, "with_boxes": True}

    @property
    def tool_invoke_params_example(self) -> dict[str, Any]:
        return IMAGE


class TestDetectionToolStandard(ToolsUnitTests):
    @property
    def tool_constructor(self) -> type[BaseTool]:
        return DetectionTool

    @property
    def tool_constructor_params(self) -> dict[str, Any]:
        return {"weights": "yolo11n.pt", "conf": 0.3, "iou": 0.6, "max_boxes": 5}

    @property
    def tool_invoke_params_example(self) -> dict[str, Any]:
        return IMAGE


class TestCaptionToolStandard(ToolsUnitTests):
    @property
    def tool_constructor(self) -> type[BaseTool]:
        return CaptionTool

    @property
    def tool_constructor_params(self) -> dict[str, Any]:
        return {"model": lambda image: "a photo"}

    @property
    def tool_invoke_params_example(self) -> dict[str, Any]:
        return IMAGE


class TestWebSearchToolStandard(ToolsUnitTests):
    @property
    def tool_constructor(self) -> type[BaseTool]:
        return WebSearchTool

    @property
    def tool_constructor_params(self) -> dict[str, Any]:
        return {"region": "us-en", "max_results": 3, "timeout": 5}

    @property
    def tool_invoke_params_example(self) -> dict[str, Any]:
        return QUERY


class TestLocalSearchToolStandard(ToolsUnitTests):
    @property
    def tool_constructor(self) -> type[BaseTool]:
        return LocalSearchTool

    @property
    def tool_constructor_params(self) -> dict[str, Any]:
        return {"index_path": "/tmp/lav2-index.sqlite", "top_k": 2}

    @property
    def tool_invoke_params_example(self) -> dict[str, Any]:
        return QUERY


@expert(register=False)
def _colour(image) -> str:
    """Tells the dominant colour of the image."""
    return "red"


class TestFunctionExpertStandard(ToolsUnitTests):
    @property
    def tool_constructor(self) -> BaseTool:
        return _colour

    @property
    def tool_invoke_params_example(self) -> dict[str, Any]:
        return IMAGE


@tool
def _shout(text: str) -> str:
    """Repeats the question in capitals."""
    return text.upper()


class TestWrappedToolExpertStandard(ToolsUnitTests):
    @property
    def tool_constructor(self) -> BaseTool:
        return as_expert(_shout, register=False)

    @property
    def tool_invoke_params_example(self) -> dict[str, Any]:
        return {"text": "hello"}


def test_every_builtin_expert_converts_to_a_tool_calling_schema() -> None:
    """What a chat model with bind_tools sees: the name, the one-sentence description and the typed arguments."""
    from langchain_core.utils.function_calling import convert_to_openai_tool

    cases = [
        (OCRTool(), ["image"]),
        (DetectionTool(), ["image"]),
        (CaptionTool(model=lambda image: "x"), ["image"]),
        (WebSearchTool(), ["query"]),
        (LocalSearchTool(), ["query"]),
    ]
    for expert_tool, required in cases:
        schema = convert_to_openai_tool(expert_tool)["function"]
        assert schema["name"] == expert_tool.name
        assert schema["description"] == expert_tool.description and schema["description"].endswith(".")
        assert schema["parameters"]["required"] == required
        assert schema["parameters"]["properties"][required[0]]["type"] == "string"
