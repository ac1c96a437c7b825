"""The langchain-tests *integration* suite run against the tiny random model (no network, instant).

Random weights answer with noise, so only the tests about mechanics (invoke/stream/batch shapes, usage metadata,
stop sequences, conversations, callbacks) are meaningful; tests that need a model which understands the prompt
(tool choice by meaning, structured output, answering about pictures) are skipped here and covered with a scripted
model in test_chat_models.py.
"""
from __future__ import annotations

import pytest
from langchain_tests.integration_tests import ChatModelIntegrationTests

from orchestrator import ChatLlamaAdapterV2


# the suite's async tests are bare `async def` (partner packages run pytest-asyncio in auto mode)
pytestmark = [pytest.mark.asyncio, pytest.mark.filterwarnings("ignore:The test <Function")]


class TestChatLlamaAdapterV2Integration(ChatModelIntegrationTests):
    @property
    def chat_model_class(self) -> type[ChatLlamaAdapterV2]:
        return ChatLlamaAdapterV2

    @property
    def chat_model_params(self) -> dict:
        return {"model": "random:tiny", "max_tokens": 16}

    @property
    def returns_usage_metadata(self) -> bool:
        return True

    @property
    def has_tool_calling(self) -> bool:
        return False  # random weights cannot choose tools by meaning; see test_chat_models.py (scripted model)

    @property
    def has_structured_output(self) -> bool:
        return False  # same: structured output is a forced tool call, tested with a scripted model

    @property
    def supports_model_override(self) -> bool:
        return False  # one wrapper, one loaded model: switch models by making another wrapper
