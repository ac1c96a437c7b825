"""Looking styles up by name, and registering new ones."""
from __future__ import annotations

import dataclasses

import pytest

from prompts import (
    DuplicatePromptStyleError,
    PromptStyle,
    TurnStyle,
    UnknownPromptStyleError,
    get_style,
    list_styles,
    register_style,
)
from prompts import registry


@pytest.fixture
def scratch_registry(monkeypatch):
    """Registrations made by a test vanish afterwards."""
    monkeypatch.setattr(registry, "_REGISTRY", dict(registry._REGISTRY))


def test_builtin_styles_are_listed():
    assert {"alpaca", "chatml", "smollm2", "llama2", "llama3", "plain"} <= set(list_styles())
    assert list_styles() == sorted(list_styles())


def test_unknown_style_is_a_typed_key_error_listing_known_names():
    with pytest.raises(UnknownPromptStyleError) as info:
        get_style("vicuna")
    assert isinstance(info.value, KeyError)
    message = str(info.value)
    assert "'vicuna'" in message and "register_style" in message
    for name in list_styles():
        assert name in message
    assert info.value.known == tuple(list_styles())


def test_lookup_is_case_insensitive_and_passes_styles_through():
    assert get_style(" SmolLM2 ") is get_style("smollm2")
    style = get_style("chatml")
    assert get_style(style) is style


def test_register_a_custom_turn_style(scratch_registry):
    zephyr = register_style(TurnStyle(name="zephyr", header="<|{role}|>\n", end="</s>", separator="\n",
                                      stop=("</s>",)))
    assert get_style("zephyr") is zephyr
    assert zephyr.format("Hi", system="Be brief.") == (
        "<|system|>\nBe brief.</s>\n<|user|>\nHi</s>\n<|assistant|>\n")


def test_register_a_variant_of_a_preset(scratch_registry):
    qwen = register_style(dataclasses.replace(get_style("chatml"), name="qwen2",
                                              default_system="You are a helpful assistant."))
    assert qwen.format("Hi").startswith("<|im_start|>system\nYou are a helpful assistant.<|im_end|>\n")


def test_register_a_subclass(scratch_registry):
    class Shout(PromptStyle):
        def render_segments(self, messages, add_generation_prompt):
            segments = [(m.content.upper() + "\n", m.role == "assistant") for m in messages]
            return segments + ([("> ", False)] if add_generation_prompt else [])

    register_style(Shout(name="shout"))
    assert get_style("shout").format("hi") == "HI\n> "
    assert get_style("shout").split_for_training([{"role": "user", "content": "a"},
                                                  {"role": "assistant", "content": "b"}]) == [("A\n", False),
                                                                                               ("B\n", True)]


def test_duplicate_names_need_replace(scratch_registry):
    with pytest.raises(DuplicatePromptStyleError):
        register_style(TurnStyle(name="ChatML"))
    mine = register_style(TurnStyle(name="chatml", header="{role}: "), replace=True)
    assert get_style("chatml") is mine


def test_register_rejects_non_styles_and_empty_names(scratch_registry):
    with pytest.raises(ValueError):
        register_style("chatml")  # type: ignore[arg-type]
    with pytest.raises(ValueError):
        register_style(TurnStyle(name="  "))
