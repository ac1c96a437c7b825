"""LlamaAdapterV2LLM. langchain-tests has no suite for completion LLMs (only chat models, embeddings, tools ...),
so these are the equivalent standard checks: init with the standard params, ls params, invoke / batch / stream /
async, stop sequences, callbacks, identifying params — plus images and templating."""
from __future__ import annotations

import asyncio
import base64

import pytest
from langchain_core.callbacks import BaseCallbackHandler
from langchain_core.language_models import BaseLLM
from langchain_core.prompts import PromptTemplate

from orchestrator import LlamaAdapterV2LLM

from .conftest import make_image, png_bytes

STANDARD = {"temperature": 0, "max_tokens": 100, "timeout": 60, "stop": [], "max_retries": 2}


def strip_ffd(text: str) -> str:
    return text.rstrip("\ufffd")  # random bytes: see test_chat_models


def test_init_with_standard_params_and_streaming_flag():
    assert isinstance(LlamaAdapterV2LLM(**STANDARD, model="random:tiny"), BaseLLM)
    assert LlamaAdapterV2LLM(model="random:tiny", streaming=True).streaming


def test_ls_params_and_identifying_params(tiny_model):
    llm = LlamaAdapterV2LLM(model=tiny_model, temperature=0.2, max_tokens=7, stop=["x"])
    ls = llm._get_ls_params()
    assert ls == {"ls_provider": "llama_adapter_v2", "ls_model_type": "llm", "ls_model_name": "random:tiny",
                  "ls_temperature": 0.2, "ls_max_tokens": 7, "ls_stop": ["x"]}
    assert llm._get_ls_params(model="other")["ls_model_name"] == "other"
    assert llm._identifying_params["model"] == "random:tiny" and llm._llm_type == "llama-adapter-v2"


def test_invoke_batch_stream_agree(tiny_model):
    llm = LlamaAdapterV2LLM(model=tiny_model, max_tokens=6)
    one = llm.invoke("abc")
    assert isinstance(one, str)
    assert strip_ffd("".join(llm.stream("abc"))) == strip_ffd(one)
    batched = llm.batch(["abc", "xyz"])
    assert batched[0] == one and len(batched) == 2


def test_batched_generate_reports_usage(tiny_model):
    result = LlamaAdapterV2LLM(model=tiny_model, max_tokens=4).generate(["a", "bb", "ccc"])
    usage = result.llm_output["token_usage"]
    assert usage["completion_tokens"] <= 12
    assert usage["total_tokens"] == usage["prompt_tokens"] + usage["completion_tokens"]
    info = result.generations[0][0].generation_info
    assert info["finish_reason"] in ("stop", "length") and info["visual_prefix"] == "not used (no image)"


def test_async(tiny_model):
    llm = LlamaAdapterV2LLM(model=tiny_model, max_tokens=5)

    async def run():
        return await llm.ainvoke("q"), "".join([c async for c in llm.astream("q")]), await llm.abatch(["q", "r"])

    one, streamed, batched = asyncio.run(run())
    assert strip_ffd(streamed) == strip_ffd(one) and batched[0] == one


def test_stop_sequences(tiny_model):
    llm = LlamaAdapterV2LLM(model=tiny_model, max_tokens=20)
    full = llm.invoke("abc")
    stop = full[3:5]
    assert stop and stop not in llm.invoke("abc", stop=[stop]) and full.startswith(llm.invoke("abc", stop=[stop]))
    assert llm.bind(stop=[stop]).invoke("abc") == llm.invoke("abc", stop=[stop])


def test_token_callbacks_fire_when_streaming(tiny_model):
    class Collect(BaseCallbackHandler):
        def __init__(self):
            self.tokens = []

        def on_llm_new_token(self, token, **kwargs):
            self.tokens.append(token)

    handler = Collect()
    llm = LlamaAdapterV2LLM(model=tiny_model, max_tokens=6, streaming=True)
    text = llm.invoke("hello", config={"callbacks": [handler]})
    assert "".join(handler.tokens) == text and len(handler.tokens) > 1


def test_template_raw_and_lcel(tiny_model):
    from prompts import get_style

    smol = LlamaAdapterV2LLM(model=tiny_model, prompt_style="chatml", max_tokens=4)
    raw = LlamaAdapterV2LLM(model=tiny_model, raw=True, max_tokens=4)
    templated = get_style("chatml").format("Hi")
    assert smol.invoke("Hi") == raw.invoke(templated)  # the wrapper applies exactly the style's template
    chain = PromptTemplate.from_template("Say {word}") | raw
    assert chain.invoke({"word": "x"}) == raw.invoke("Say x")


def test_image_via_bind_and_keyword_reaches_the_visual_prefix(tiny_vision_model, monkeypatch):
    seen = []
    real_generate = tiny_vision_model.generate

    def spy(prompts, images=None, **kwargs):
        seen.append(images)
        return real_generate(prompts, images=images, **kwargs)

    monkeypatch.setattr(tiny_vision_model, "generate", spy)
    llm = LlamaAdapterV2LLM(model=tiny_vision_model, max_tokens=8)
    a = png_bytes(make_image(1))
    with_a = llm.bind(image=a).invoke("What is this?")
    assert with_a == llm.invoke("What is this?", image=a)
    data_url = "data:image/png;base64," + base64.b64encode(a).decode()
    assert llm.invoke("What is this?", image=data_url) == with_a
    assert seen[0] == [a] and seen[2] == [data_url]
    assert llm.generate(["x"], image=a).generations[0][0].generation_info["visual_prefix"] == "on"
    other = png_bytes(make_image(2))  # and the prefix is real: another picture, other next-token scores
    scores = tiny_vision_model.next_token_logprobs(["What is this?"] * 2, images=[a, other])
    assert not scores[0].allclose(scores[1])


def test_image_without_vision_weights(tiny_model):
    from core_model.errors import VisionUnavailableError

    llm = LlamaAdapterV2LLM(model=tiny_model, max_tokens=3)
    info = llm.generate(["x"], image=png_bytes(make_image(0))).generations[0][0].generation_info
    assert info["visual_prefix"] == "off (no vision weights configured)"
    with pytest.raises(VisionUnavailableError):
        LlamaAdapterV2LLM(model=tiny_model, on_missing_vision="error").invoke("x", image=png_bytes(make_image(0)))
