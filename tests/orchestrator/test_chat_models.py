"""ChatLlamaAdapterV2: the langchain-tests unit suite, plus images, streaming, usage, prompted tool calls."""
from __future__ import annotations

import asyncio
import base64
import json

import pytest
from langchain_core.messages import AIMessage, AIMessageChunk, HumanMessage, SystemMessage, ToolMessage
from langchain_core.output_parsers import StrOutputParser
from langchain_core.prompts import ChatPromptTemplate
from langchain_tests.unit_tests import ChatModelUnitTests

from orchestrator import ChatLlamaAdapterV2, LlamaAdapterV2LLM
from orchestrator.chat_models import _convert_messages, parse_tool_calls

from .conftest import make_image, png_bytes


class TestChatLlamaAdapterV2Unit(ChatModelUnitTests):
    """The ecosystem's own conformance checks (init, standard params, bind_tools, structured output, ...)."""

    @property
    def chat_model_class(self) -> type[ChatLlamaAdapterV2]:
        return ChatLlamaAdapterV2

    @property
    def chat_model_params(self) -> dict:
        return {"model": "random:tiny"}

    @property
    def supports_image_inputs(self) -> bool:
        return True

    @property
    def supports_image_urls(self) -> bool:
        return True

    @property
    def returns_usage_metadata(self) -> bool:
        return True

    @property
    def has_tool_choice(self) -> bool:
        return True


# ------------------------------------------------------------------------------------------------ basics
def test_invoke_returns_ai_message_with_usage_and_metadata(tiny_model):
    chat = ChatLlamaAdapterV2(model=tiny_model, max_tokens=6)
    msg = chat.invoke("hello")
    assert isinstance(msg, AIMessage) and isinstance(msg.content, str)
    assert msg.usage_metadata["output_tokens"] <= 6
    usage = msg.usage_metadata
    assert usage["total_tokens"] == usage["input_tokens"] + usage["output_tokens"]
    assert msg.response_metadata["finish_reason"] in ("stop", "length")
    assert msg.response_metadata["model_name"] == "random:tiny"
    assert msg.response_metadata["visual_prefix"] == "not used (no image)"


def test_stream_chunks_concatenate_to_invoke_and_carry_usage_once(tiny_model):
    chat = ChatLlamaAdapterV2(model=tiny_model, max_tokens=8)
    chunks = list(chat.stream("hello there"))
    assert all(isinstance(c, AIMessageChunk) for c in chunks)
    assert len(chunks) > 1
    merged = chunks[0]
    for c in chunks[1:]:
        merged += c
    # (core_model's streamer holds back only one trailing U+FFFD where generate strips them all; random bytes)
    assert merged.content.rstrip("\ufffd") == chat.invoke("hello there").content.rstrip("\ufffd")
    assert sum(c.usage_metadata is not None for c in chunks) == 1
    assert merged.usage_metadata["input_tokens"] > 0
    assert merged.response_metadata["finish_reason"] in ("stop", "length")


def test_async_invoke_and_stream(tiny_model):
    chat = ChatLlamaAdapterV2(model=tiny_model, max_tokens=4)

    async def run():
        return await chat.ainvoke("hi"), "".join([c.content async for c in chat.astream("hi")])

    msg, text = asyncio.run(run())
    assert msg.content.rstrip("\ufffd") == text.rstrip("\ufffd")


def test_streaming_flag_invoke_equals_plain_invoke(tiny_model):
    plain = ChatLlamaAdapterV2(model=tiny_model, max_tokens=5).invoke("x")
    streamed = ChatLlamaAdapterV2(model=tiny_model, max_tokens=5, streaming=True).invoke("x")
    assert streamed.content.rstrip("\ufffd") == plain.content.rstrip("\ufffd")
    assert isinstance(streamed, AIMessage)


def test_stop_sequences_cut_the_reply(tiny_model):
    chat = ChatLlamaAdapterV2(model=tiny_model, max_tokens=20)
    full = chat.invoke("abc").content
    assert len(full) > 3
    stop = full[2:4]
    cut = chat.invoke("abc", stop=[stop]).content
    assert stop not in cut and full.startswith(cut)


def test_max_tokens_alias_and_per_call_override(tiny_model):
    chat = ChatLlamaAdapterV2(model=tiny_model, max_new_tokens=3)
    assert chat.max_tokens == 3
    assert chat.invoke("x").usage_metadata["output_tokens"] <= 3
    assert chat.invoke("x", max_tokens=7).usage_metadata["output_tokens"] <= 7


def test_wrappers_share_one_loaded_model():
    from orchestrator import get_model

    a = ChatLlamaAdapterV2(model="random:tiny")
    b = LlamaAdapterV2LLM(model="random:tiny")
    assert a.llama_model is b.llama_model is get_model("random:tiny")
    loaded = a.llama_model
    c = ChatLlamaAdapterV2(model=loaded)  # a loaded model object works too
    assert c.client is loaded and c.model == "random:tiny"


def test_identifying_and_ls_params(tiny_model):
    chat = ChatLlamaAdapterV2(model=tiny_model, temperature=0.3, max_tokens=9, stop=["END"])
    ls = chat._get_ls_params()
    assert ls["ls_provider"] == "llama_adapter_v2" and ls["ls_model_name"] == "random:tiny"
    assert (ls["ls_temperature"], ls["ls_max_tokens"], ls["ls_stop"]) == (0.3, 9, ["END"])
    assert chat._identifying_params["temperature"] == 0.3
    assert chat._llm_type == "chat-llama-adapter-v2"


# ------------------------------------------------------------------------------------------------ images
def _image_message(block: dict) -> HumanMessage:
    return HumanMessage(content=[{"type": "text", "text": "What is in the image?"}, block])


def test_lcel_chain_with_an_image_content_block(tiny_vision_model, monkeypatch):
    """prompt | chat_model | StrOutputParser() with an image block; the image reaches the visual prefix."""
    b64 = base64.b64encode(png_bytes(make_image(1))).decode()
    prompt = ChatPromptTemplate.from_messages([
        ("system", "You answer questions about images."),
        ("human", [{"type": "text", "text": "{question}"},
                   {"type": "image", "base64": "{image}", "mime_type": "image/png"}]),
    ])
    seen = []
    real_generate = tiny_vision_model.generate

    def spy(prompt, images=None, **kwargs):
        seen.append(images)
        return real_generate(prompt, images=images, **kwargs)

    monkeypatch.setattr(tiny_vision_model, "generate", spy)
    chat = ChatLlamaAdapterV2(model=tiny_vision_model, max_tokens=12)
    chain = prompt | chat | StrOutputParser()
    answer = chain.invoke({"question": "What is shown?", "image": b64})
    assert isinstance(answer, str) and answer
    assert seen[0].tobytes() == make_image(1).tobytes()  # the decoded picture went to the visual prefix
    msg = (prompt | chat).invoke({"question": "What is shown?", "image": b64})
    assert msg.response_metadata["visual_prefix"] == "on"


@pytest.mark.parametrize("form", ["base64", "data_url", "path", "file_url", "openai_image_url"])
def test_image_block_forms_all_reach_the_model(tiny_vision_model, tmp_path, form):
    img = make_image(3)
    path = tmp_path / "x.png"
    img.save(path)
    b64 = base64.b64encode(png_bytes(img)).decode()
    block = {
        "base64": {"type": "image", "base64": b64, "mime_type": "image/png"},
        "data_url": {"type": "image", "url": f"data:image/png;base64,{b64}"},
        "path": {"type": "image", "url": str(path)},
        "file_url": {"type": "image", "url": path.as_uri()},
        "openai_image_url": {"type": "image_url", "image_url": {"url": f"data:image/png;base64,{b64}"}},
    }[form]
    chat = ChatLlamaAdapterV2(model=tiny_vision_model, max_tokens=6)
    reference = chat.invoke([_image_message({"type": "image", "base64": b64, "mime_type": "image/png"})]).content
    assert chat.invoke([_image_message(block)]).content == reference


def test_image_without_vision_weights_answers_and_says_prefix_off(tiny_model, caplog):
    chat = ChatLlamaAdapterV2(model=tiny_model, max_tokens=4)
    b64 = base64.b64encode(png_bytes(make_image(0))).decode()
    msg = chat.invoke([_image_message({"type": "image", "base64": b64, "mime_type": "image/png"})])
    assert msg.response_metadata["visual_prefix"] == "off (no vision weights configured)"
    from core_model.errors import VisionUnavailableError

    strict = ChatLlamaAdapterV2(model=tiny_model, on_missing_vision="error")
    with pytest.raises(VisionUnavailableError):
        strict.invoke([_image_message({"type": "image", "base64": b64, "mime_type": "image/png"})])


def test_unsupported_blocks_raise_clearly(tiny_model):
    chat = ChatLlamaAdapterV2(model=tiny_model)
    with pytest.raises(ValueError, match="audio"):
        chat.invoke([HumanMessage(content=[{"type": "audio", "base64": "AAAA", "mime_type": "audio/wav"}])])
    with pytest.raises(ValueError, match="file_id"):
        chat.invoke([HumanMessage(content=[{"type": "image", "file_id": "abc"}])])


# ------------------------------------------------------------------------------------------------ messages
def test_conversation_rendering_merges_users_and_keeps_last_image():
    msgs = [
        SystemMessage("be brief"),
        HumanMessage(content=[{"type": "text", "text": "first"}, {"type": "image", "url": "a.png"}]),
        AIMessage("ok", tool_calls=[{"name": "add", "args": {"a": 1}, "id": "c1"}]),
        ToolMessage("2", tool_call_id="c1"),
        HumanMessage(content=[{"type": "text", "text": "second"}, {"type": "image", "url": "b.png"}]),
    ]
    turns, image = _convert_messages(msgs)
    assert [t["role"] for t in turns] == ["system", "user", "assistant", "user"]
    assert image == "b.png"
    assert '<tool_call>\n{"name": "add", "arguments": {"a": 1}}\n</tool_call>' in turns[2]["content"]
    assert '"name": "add"' in turns[3]["content"] and "<tool_response>" in turns[3]["content"]
    assert turns[3]["content"].endswith("second")


# ------------------------------------------------------------------------------------------------ tools
def add(a: int, b: int) -> int:
    """Add two integers."""
    return a + b


def test_parse_tool_calls_formats():
    content, calls, invalid = parse_tool_calls(
        'Sure.<tool_call>\n{"name": "add", "arguments": {"a": 1, "b": 2}}\n</tool_call>', ["add"])
    assert content == "Sure." and calls[0]["name"] == "add" and calls[0]["args"] == {"a": 1, "b": 2}
    assert calls[0]["id"].startswith("call_") and not invalid
    _, calls, _ = parse_tool_calls('<tool_call>{"name": "add", "arguments": "{\\"a\\": 1}"', ["add"])  # no close
    assert calls[0]["args"] == {"a": 1}
    _, calls, _ = parse_tool_calls('{"name": "add", "arguments": {"a": 5}}', ["add"])  # tags dropped
    assert calls[0]["args"] == {"a": 5}
    _, calls, invalid = parse_tool_calls('<tool_call>{"name": "mul", "arguments": {}}</tool_call>', ["add"])
    assert not calls and "unknown tool" in invalid[0]["error"]
    _, calls, invalid = parse_tool_calls("<tool_call>{not json</tool_call>", ["add"])
    assert not calls and invalid[0]["args"] == "{not json"
    assert parse_tool_calls("just text", ["add"]) == ("just text", [], [])


class _ScriptedModel:
    """Stands in for a model that follows the tool format: returns canned completions, records prompts."""

    prompt_style = "chatml"
    has_vision = False
    info = {"base": "scripted"}

    def __init__(self, tokenizer, replies):
        self.tokenizer, self.replies, self.prompts = tokenizer, list(replies), []

    def generate(self, prompt, images=None, **kwargs):
        from core_model import Completion

        self.prompts.append(prompt)
        text = self.replies.pop(0)
        return Completion(text, 10, 5, "stop", [])


def test_bind_tools_prompts_the_format_and_parses_calls(tiny_model):
    scripted = _ScriptedModel(tiny_model.tokenizer, ['<tool_call>\n{"name": "add", "arguments": {"a": 2, "b": 3}}'])
    chat = ChatLlamaAdapterV2(model=scripted)
    msg = chat.bind_tools([add]).invoke("What is 2 + 3?")
    assert msg.tool_calls[0]["name"] == "add" and msg.tool_calls[0]["args"] == {"a": 2, "b": 3}
    assert "<tools>" in scripted.prompts[0] and '"name": "add"' in scripted.prompts[0]


def test_forced_tool_choice_prefills_the_call(tiny_model):
    scripted = _ScriptedModel(tiny_model.tokenizer, ['{"a": 4, "b": 5}}'])
    chat = ChatLlamaAdapterV2(model=scripted)
    msg = chat.bind_tools([add], tool_choice="add").invoke("4 + 5?")
    assert scripted.prompts[0].endswith('<tool_call>\n{"name": "add", "arguments": ')
    assert msg.tool_calls[0]["args"] == {"a": 4, "b": 5}
    with pytest.raises(ValueError, match="not one of the bound tools"):
        chat.bind_tools([add], tool_choice="mul")


def test_with_structured_output_through_forced_tool(tiny_model):
    from pydantic import BaseModel

    class Person(BaseModel):
        """A person."""

        name: str
        age: int

    scripted = _ScriptedModel(tiny_model.tokenizer, ['{"name": "Ada", "age": 36}}'])
    person = ChatLlamaAdapterV2(model=scripted).with_structured_output(Person).invoke("Ada is 36.")
    assert person == Person(name="Ada", age=36)


def test_tool_calls_stream_as_one_chunk(tiny_model):
    scripted = _ScriptedModel(tiny_model.tokenizer, ['<tool_call>{"name": "add", "arguments": {"a": 1, "b": 1}}'])
    chunks = list(ChatLlamaAdapterV2(model=scripted).bind_tools([add]).stream("1+1"))
    assert len(chunks) == 1 and chunks[0].tool_calls[0]["args"] == {"a": 1, "b": 1}


def test_agent_loop_runs_with_a_model_that_follows_the_format(tiny_model):
    """langchain.agents.create_agent drives the model: tool call → ToolMessage → final answer."""
    agents = pytest.importorskip("langchain.agents")
    scripted = _ScriptedModel(tiny_model.tokenizer, [
        '<tool_call>\n{"name": "add", "arguments": {"a": 2, "b": 3}}\n</tool_call>', "The sum is 5."])
    agent = agents.create_agent(ChatLlamaAdapterV2(model=scripted), tools=[add])
    result = agent.invoke({"messages": [("user", "What is 2 + 3?")]})
    assert result["messages"][-1].content == "The sum is 5."
    tool_msgs = [m for m in result["messages"] if isinstance(m, ToolMessage)]
    assert tool_msgs and tool_msgs[0].content == "5"
    assert "<tool_response>" in scripted.prompts[1]
    assert json.dumps({"name": "add", "content": "5"}) in scripted.prompts[1]
