"""Class 10: the LangChain contracts — unknown constructor arguments warn or map, token counts use the model's
own tokenizer, and an image given to a model without vision is still validated."""
from __future__ import annotations

import base64
import warnings

import pytest
from langchain_core.messages import HumanMessage, SystemMessage

from core_model import ImageError

from .conftest import png_bytes


@pytest.mark.parametrize("alias", ["num_predict", "max_completion_tokens", "max_output_tokens"])
def test_max_token_aliases_map(smol_model, alias):
    from orchestrator import ChatLlamaAdapterV2, LlamaAdapterV2LLM

    assert ChatLlamaAdapterV2(model=smol_model, **{alias: 7}).max_tokens == 7
    assert LlamaAdapterV2LLM(model=smol_model, **{alias: 7}).max_tokens == 7


def test_model_name_alias_and_unknown_arguments_warn():
    from orchestrator import ChatLlamaAdapterV2

    assert ChatLlamaAdapterV2(model_name="random:tiny").model == "random:tiny"
    with pytest.warns(UserWarning, match="repeat_penalty"):
        ChatLlamaAdapterV2(model="random:tiny", repeat_penalty=1.1)
    with pytest.raises(ValueError, match="num_predict"):
        ChatLlamaAdapterV2(model="random:tiny", num_predict=5, max_tokens=9)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        ChatLlamaAdapterV2(model="random:tiny", max_tokens=9, temperature=0.2, stop=["x"])  # known: no warning


def test_get_num_tokens_uses_the_models_tokenizer(smol_model, monkeypatch):
    import langchain_core.language_models.base as lc_base

    from orchestrator import ChatLlamaAdapterV2, LlamaAdapterV2LLM

    def no_gpt2(text):
        raise AssertionError("LangChain's GPT-2 tokenizer was used (it downloads from the hub)")

    monkeypatch.setattr(lc_base, "_get_token_ids_default_method", no_gpt2)
    text = "The total on this receipt is 18.55 <|im_start|>"
    expected = len(smol_model.tokenizer.encode(text, bos=False, parse_special=False))
    assert ChatLlamaAdapterV2(model=smol_model).get_num_tokens(text) == expected
    assert LlamaAdapterV2LLM(model=smol_model).get_num_tokens(text) == expected


def test_get_num_tokens_from_messages_is_what_generation_reads(smol_model):
    from orchestrator import ChatLlamaAdapterV2

    chat = ChatLlamaAdapterV2(model=smol_model, max_tokens=1)
    messages = [SystemMessage("Be brief."), HumanMessage("What is the capital of France?")]
    counted = chat.get_num_tokens_from_messages(messages)
    assert counted == chat.invoke(messages).usage_metadata["input_tokens"]


def test_an_invalid_image_is_an_error_even_without_vision(smol_model):
    from orchestrator import ChatLlamaAdapterV2, LlamaAdapterV2LLM

    garbage = base64.b64encode(b"this is not an image at all" * 4).decode()
    chat = ChatLlamaAdapterV2(model=smol_model, max_tokens=1)
    bad = HumanMessage(content=[{"type": "text", "text": "what is it?"},
                                {"type": "image", "base64": garbage, "mime_type": "image/png"}])
    with pytest.raises(ImageError):
        chat.invoke([bad])
    with pytest.raises(ImageError):
        LlamaAdapterV2LLM(model=smol_model, max_tokens=1).invoke("what is it?", image=b"not an image")
    good = HumanMessage(content=[{"type": "text", "text": "what is it?"},
                                 {"type": "image", "base64": base64.b64encode(png_bytes()).decode(),
                                  "mime_type": "image/png"}])
    assert chat.invoke([good]).response_metadata["visual_prefix"].startswith("off")
