"""Real clients against a live server: the official ``openai`` client and LangChain's ``ChatOpenAI``.

The tiny random model's answers are noise, so every answer is compared with what the same model gives when called
directly (greedy, so they must be equal): that proves the request reached the model as sent, in the prompt format
``ChatLlamaAdapterV2`` renders.
"""
from __future__ import annotations

import json

import pytest

from ..conftest import make_image
from .conftest import data_url, start

openai = pytest.importorskip("openai")

MESSAGES = [{"role": "system", "content": "You are terse."}, {"role": "user", "content": "Name a colour."}]


def direct_chat(model, messages, **kwargs):
    """What ChatLlamaAdapterV2 answers for the same conversation (the server must say the same)."""
    from orchestrator import ChatLlamaAdapterV2

    chat = ChatLlamaAdapterV2(model=model, **kwargs)
    return chat.invoke([(m["role"], m["content"]) for m in messages])


def test_plain_chat_completion_equals_the_chat_model(openai_client, tiny_model):
    r = openai_client.chat.completions.create(model="random:tiny", messages=MESSAGES, max_tokens=12)
    expected = direct_chat(tiny_model, MESSAGES, max_tokens=12)
    assert r.object == "chat.completion" and r.model == "random:tiny" and r.id.startswith("chatcmpl-")
    choice = r.choices[0]
    assert choice.message.role == "assistant" and choice.message.content == expected.content
    assert choice.finish_reason == expected.response_metadata["finish_reason"]
    assert r.usage.prompt_tokens == expected.usage_metadata["input_tokens"]
    assert r.usage.completion_tokens == expected.usage_metadata["output_tokens"] == 12
    assert r.usage.total_tokens == r.usage.prompt_tokens + r.usage.completion_tokens


def test_streaming_deltas_add_up_to_the_plain_answer_and_usage_comes_last(openai_client):
    plain = openai_client.chat.completions.create(model="default", messages=MESSAGES, max_tokens=10)
    chunks = list(openai_client.chat.completions.create(model="default", messages=MESSAGES, max_tokens=10,
                                                        stream=True, stream_options={"include_usage": True}))
    assert chunks[0].choices[0].delta.role == "assistant"
    text = "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)
    assert text == plain.choices[0].message.content
    assert [c.choices[0].finish_reason for c in chunks if c.choices][-1] == "length"
    assert chunks[-1].choices == [] and chunks[-1].usage.completion_tokens == 10
    assert all(c.usage is None for c in chunks[:-1])
    assert len({c.id for c in chunks}) == 1


def test_stream_ends_with_done_and_no_usage_unless_asked(tiny_server):
    import httpx

    with httpx.stream("POST", tiny_server.url + "/v1/chat/completions", timeout=60,
                      json={"model": "default", "messages": MESSAGES, "max_tokens": 3, "stream": True}) as r:
        assert r.headers["content-type"].startswith("text/event-stream")
        events = [line for line in r.iter_lines() if line]
    assert events[-1] == "data: [DONE]"
    assert all("usage" not in json.loads(e[len("data: "):]) for e in events[:-1])


def test_sampling_parameters_reach_the_model(openai_client):
    ask = dict(model="default", messages=MESSAGES, max_completion_tokens=16, temperature=1.0, top_p=0.9)
    a = openai_client.chat.completions.create(seed=7, **ask).choices[0].message.content
    b = openai_client.chat.completions.create(seed=7, **ask).choices[0].message.content
    c = openai_client.chat.completions.create(seed=8, **ask).choices[0].message.content
    assert a == b and a != c  # seeded sampling is reproducible, and the seed matters
    r = openai_client.chat.completions.create(model="default", messages=MESSAGES, max_completion_tokens=5)
    assert r.usage.completion_tokens == 5 and r.choices[0].finish_reason == "length"


def test_stop_strings_cut_the_answer(openai_client):
    full = openai_client.chat.completions.create(model="default", messages=MESSAGES, max_tokens=24)
    text = full.choices[0].message.content
    stop = text[5:8]
    assert len(stop) == 3 and text.find(stop) >= 3
    cut = openai_client.chat.completions.create(model="default", messages=MESSAGES, max_tokens=24, stop=[stop])
    assert cut.choices[0].message.content == text[:text.find(stop)]
    assert cut.choices[0].finish_reason == "stop"


@pytest.fixture(scope="module")
def vision_server(tiny_vision_model):
    server = start(model=tiny_vision_model)
    yield server
    server.stop()


def test_image_part_reaches_the_visual_prefix(vision_server, tiny_vision_model):
    """An image_url part (data URL) becomes the model's visual prefix: the answer equals generating directly with
    that image, and another image gives another answer."""
    from orchestrator import ChatLlamaAdapterV2

    client = openai.OpenAI(base_url=vision_server.url + "/v1", api_key="x", max_retries=0)

    def ask(img):
        return client.chat.completions.create(model="default", max_tokens=12, messages=[{"role": "user", "content": [
            {"type": "text", "text": "What is in the image?"},
            {"type": "image_url", "image_url": {"url": data_url(img), "detail": "auto"}}]}]).choices[0]

    chat = ChatLlamaAdapterV2(model=tiny_vision_model, max_tokens=12)
    from langchain_core.messages import HumanMessage

    direct = chat.invoke([HumanMessage(content=[{"type": "text", "text": "What is in the image?"},
                                                {"type": "image", "url": data_url(make_image(1))}])]).content
    first, second = ask(make_image(1)), ask(make_image(2))
    assert first.message.content == direct
    assert first.message.content != second.message.content


def test_image_part_without_vision_weights_is_accepted(openai_client):
    r = openai_client.chat.completions.create(model="default", max_tokens=4, messages=[{"role": "user", "content": [
        {"type": "text", "text": "hi"}, {"type": "image_url", "image_url": {"url": data_url(make_image(0))}}]}])
    assert r.choices[0].message.content is not None


class ScriptedModel:
    """Stands in for a model that follows the tool-call format (the tiny random model writes noise and SmolLM2-135M
    cannot fill arguments): canned replies, every prompt recorded. Tokenizer and context are the tiny model's."""

    prompt_style = "chatml"
    has_vision = False
    info = {"base": "scripted"}

    def __init__(self, tiny, replies):
        self.tokenizer, self.config, self.replies, self.prompts = tiny.tokenizer, tiny.config, list(replies), []

    def describe(self):
        return {"base": "scripted", "vision": False}

    def stream(self, prompt, image=None, **kwargs):
        from core_model import Completion

        self.prompts.append(prompt)
        text = self.replies.pop(0)
        yield text
        return Completion(text, len(self.tokenizer.encode(prompt)), len(self.tokenizer.encode(text, bos=False)),
                          "stop", [])

    def generate(self, prompt, images=None, **kwargs):
        return list(self.stream(prompt))[0]


ADD = {"type": "function", "function": {"name": "add", "description": "Add two integers.", "parameters": {
    "type": "object", "properties": {"a": {"type": "integer"}, "b": {"type": "integer"}}, "required": ["a", "b"]}}}


@pytest.fixture()
def scripted(tiny_model):
    model = ScriptedModel(tiny_model, [])
    server = start(model=model)
    yield model, openai.OpenAI(base_url=server.url + "/v1", api_key="x", max_retries=0), server
    server.stop()


def test_tool_calls_through_the_chat_models_prompted_format(scripted):
    model, client, _ = scripted
    model.replies = ['{"a": 2, "b": 3}}', '<tool_call>\n{"name": "add", "arguments": {"a": 1, "b": 1}}', "It is 5."]
    forced = client.chat.completions.create(model="default", messages=[{"role": "user", "content": "2+3?"}],
                                            tools=[ADD], tool_choice={"type": "function", "function": {"name": "add"}})
    assert model.prompts[0].endswith('<tool_call>\n{"name": "add", "arguments": ')  # pre-filled by the chat model
    assert "<tools>" in model.prompts[0] and '"name": "add"' in model.prompts[0]
    call = forced.choices[0].message.tool_calls[0]
    assert call.type == "function" and call.function.name == "add" and call.id.startswith("call_")
    assert json.loads(call.function.arguments) == {"a": 2, "b": 3}
    assert forced.choices[0].finish_reason == "tool_calls" and forced.choices[0].message.content is None
    auto = client.chat.completions.create(model="default", messages=[{"role": "user", "content": "1+1?"}],
                                          tools=[ADD])
    assert json.loads(auto.choices[0].message.tool_calls[0].function.arguments) == {"a": 1, "b": 1}
    history = [{"role": "user", "content": "2+3?"},
               {"role": "assistant", "content": None, "tool_calls": [
                   {"id": call.id, "type": "function", "function": {"name": "add", "arguments": call.function.arguments}}]},
               {"role": "tool", "tool_call_id": call.id, "content": "5"}]
    final = client.chat.completions.create(model="default", messages=history, tools=[ADD])
    assert final.choices[0].message.content == "It is 5." and final.choices[0].finish_reason == "stop"
    assert json.dumps({"name": "add", "content": "5"}) in model.prompts[2]  # the result went back as a tool turn


def test_tool_calls_stream_as_one_chunk_and_reach_langchain(scripted):
    model, client, server = scripted
    model.replies = ['<tool_call>{"name": "add", "arguments": {"a": 4, "b": 5}}</tool_call>'] * 2
    chunks = list(client.chat.completions.create(model="default", messages=[{"role": "user", "content": "4+5?"}],
                                                 tools=[ADD], stream=True))
    calls = [tc for c in chunks if c.choices for tc in (c.choices[0].delta.tool_calls or [])]
    assert len(calls) == 1 and calls[0].index == 0 and json.loads(calls[0].function.arguments) == {"a": 4, "b": 5}
    assert [c.choices[0].finish_reason for c in chunks if c.choices][-1] == "tool_calls"
    langchain_openai = pytest.importorskip("langchain_openai")

    def add(a: int, b: int) -> int:
        """Add two integers."""
        return a + b

    llm = langchain_openai.ChatOpenAI(base_url=server.url + "/v1", api_key="x", model="default", max_retries=0)
    msg = llm.bind_tools([add]).invoke("4+5?")
    assert msg.tool_calls[0]["name"] == "add" and msg.tool_calls[0]["args"] == {"a": 4, "b": 5}


def test_completions_endpoint(openai_client, tiny_model):
    r = openai_client.completions.create(model="default", prompt="Once upon a time", max_tokens=8)
    direct = tiny_model.generate("Once upon a time", max_new_tokens=8)
    assert r.object == "text_completion" and r.choices[0].text == direct.text
    assert r.usage.prompt_tokens == direct.prompt_tokens and r.usage.completion_tokens == 8
    two = openai_client.completions.create(model="default", prompt=["Once upon a time", "abc"], max_tokens=8)
    assert [c.index for c in two.choices] == [0, 1] and two.choices[0].text == direct.text
    echoed = openai_client.completions.create(model="default", prompt="abc", max_tokens=3, echo=True)
    assert echoed.choices[0].text.startswith("abc")
    stream = list(openai_client.completions.create(model="default", prompt="Once upon a time", max_tokens=8,
                                                   stream=True, stream_options={"include_usage": True}))
    assert "".join(c.choices[0].text for c in stream if c.choices) == direct.text
    assert stream[-1].usage.completion_tokens == 8


def test_models_lists_what_is_loaded(openai_client):
    models = openai_client.models.list().data
    assert [m.id for m in models] == ["random:tiny"]
    card = openai_client.models.retrieve("random:tiny").model_dump()
    assert card["lav2"]["base"] == "random:tiny" and card["lav2"]["vision"] is False
    assert card["lav2"]["context_length"] > 0


def test_langchain_chat_openai_invoke_stream_and_image(tiny_server, tiny_model):
    langchain_openai = pytest.importorskip("langchain_openai")
    from langchain_core.messages import HumanMessage

    llm = langchain_openai.ChatOpenAI(base_url=tiny_server.url + "/v1", api_key="unused", model="random:tiny",
                                      max_tokens=10, temperature=0, max_retries=0)
    msg = llm.invoke([("system", "You are terse."), ("human", "Name a colour.")])
    assert msg.content == direct_chat(tiny_model, MESSAGES, max_tokens=10).content
    assert msg.usage_metadata["output_tokens"] == 10
    streamed = "".join(chunk.content for chunk in llm.stream([("system", "You are terse."),
                                                              ("human", "Name a colour.")]))
    assert streamed == msg.content
    with_image = llm.invoke([HumanMessage(content=[{"type": "text", "text": "What is it?"},
                                                   {"type": "image_url",
                                                    "image_url": {"url": data_url(make_image(0))}}])])
    assert isinstance(with_image.content, str)
