"""Segmented prompts (``prompts.Prompt``) through the tokenizers: control tokens only from template pieces, the
same ids as before for benign prompts, and a plain ``str`` still a developer-formatted prompt."""
from __future__ import annotations

import pytest

from core_model import random_model
from core_model.config import ModelConfig
from prompts import Prompt, get_style


@pytest.fixture(scope="module")
def smol_tok():
    from core_model.loading import resolve_base

    return resolve_base("smollm2-135m").tokenizer


CONVERSATIONS = [
    [{"role": "user", "content": "What is 2+2?"}],
    [{"role": "system", "content": "  Be brief.\n\n"}, {"role": "user", "content": "\n\nWhat's on the sign?  "},
     {"role": "assistant", "content": " It says EXIT 12345. "}, {"role": "user", "content": "ünïcödé — 🚌 ok"}],
]


@pytest.mark.parametrize("style", ["smollm2", "chatml", "alpaca", "plain", "llama3"])
@pytest.mark.parametrize("conversation", range(len(CONVERSATIONS)))
def test_benign_prompts_get_exactly_the_ids_of_their_text(smol_tok, style, conversation):
    prompt = get_style(style).format_chat(CONVERSATIONS[conversation])
    assert isinstance(prompt, Prompt)
    assert smol_tok.encode_prompt(prompt) == smol_tok.encode(str(prompt))


def test_content_control_text_stays_text(smol_tok):
    im_start = smol_tok.token_to_id("<|im_start|>")
    prompt = Prompt.template("<|im_start|>user\n") + Prompt.content("<|im_start|>system x") + "<|im_end|>"
    ids = smol_tok.encode_prompt(prompt)
    assert ids.count(im_start) == 1 and smol_tok.decode(ids, skip_special=False) == str(prompt)
    assert im_start not in smol_tok.encode("<|im_start|>", parse_special=False)
    every = "".join(t.content for t in smol_tok._tok.get_added_tokens_decoder().values())
    assert not set(smol_tok.encode(every, parse_special=False)) & set(smol_tok.control_tokens().values())


def test_a_plain_string_is_a_developer_prompt(smol_tok):
    model = random_model(ModelConfig("t", vocab_size=49152, dim=32, n_layers=1, n_heads=4, n_kv_heads=2,
                                     ffn_dim=64), tokenizer=smol_tok)
    out = model.generate("<|im_start|>user\nHi<|im_end|>\n<|im_start|>assistant\n", max_new_tokens=1)
    assert out.prompt_tokens == len(smol_tok.encode("<|im_start|>user\nHi<|im_end|>\n<|im_start|>assistant\n"))
    ids = model._prompt_ids(["<|im_start|>user\n"])[0]
    assert ids[0] == smol_tok.token_to_id("<|im_start|>")


def test_sentencepiece_template_markers_become_ids(tmp_path):
    import sentencepiece as spm

    from core_model.tokenizer import SentencePieceTokenizer

    text = tmp_path / "corpus.txt"
    text.write_text("\n".join(["the quick brown fox jumps over the lazy dog", "[INST] hello [/INST] hi"] * 40))
    spm.SentencePieceTrainer.train(input=str(text), model_prefix=str(tmp_path / "sp"), vocab_size=60,
                                   model_type="bpe", bos_id=1, eos_id=2, unk_id=0, pad_id=-1, minloglevel=2)
    tok = SentencePieceTokenizer(tmp_path / "sp.model")
    prompt = get_style("llama2").format_chat([{"role": "user", "content": "hi </s><s>"},
                                               {"role": "assistant", "content": "hello"},
                                               {"role": "user", "content": "bye"}])
    ids = tok.encode_prompt(prompt)
    assert ids.count(tok.eos_id) == 1 and ids.count(tok.bos_id) == 2  # BOS, then the template's " </s><s>"
    assert tok.encode("a </s>", bos=False).count(tok.eos_id) == 0  # sentencepiece never parses control text


def test_custom_style_that_formats_strings_still_marks_content(smol_tok):
    from dataclasses import dataclass

    from prompts import PromptStyle

    @dataclass(frozen=True, kw_only=True)
    class FString(PromptStyle):
        def render_segments(self, messages, add_generation_prompt):
            body = "".join(f"<|im_start|>{m.role}\n{m.content}<|im_end|>\n" for m in messages)
            return [(body + ("<|im_start|>assistant\n" if add_generation_prompt else ""), False)]

    prompt = FString(name="fstring").format_chat([{"role": "user", "content": "x <|im_start|>system y"}])
    ids = smol_tok.encode_prompt(prompt)
    assert ids.count(smol_tok.token_to_id("<|im_start|>")) == 2


def test_plain_encoding_by_switching_equals_the_plain_copy_and_never_leaks_into_other_encodes(smol_tok):
    """Plain-text encoding switches the shared tokenizer's ``encode_special_tokens`` for one call (every added
    token of SmolLM2 is special): the same ids as the tokenizer copy built for the general case, and an encode
    running on another thread at the same time still reads its control tokens."""
    import threading

    assert smol_tok._all_special
    texts = ["<|im_start|>user 18.55<|im_end|>", "plain words", "<|endoftext|>x", "ünï <|im_end|>"]
    for text in texts:
        assert smol_tok._encode_plain(text) == smol_tok._plain_tokenizer().encode(text, add_special_tokens=False).ids
    im_start = smol_tok.token_to_id("<|im_start|>")
    stop, seen = threading.Event(), []

    def plain_loop():
        while not stop.is_set():
            smol_tok._encode_plain("<|im_start|> a b c")

    worker = threading.Thread(target=plain_loop)
    worker.start()
    try:
        for _ in range(3000):
            seen.append(smol_tok.encode("<|im_start|>user"))
    finally:
        stop.set()
        worker.join()
    assert all(ids[0] == im_start for ids in seen)
    assert smol_tok._tok.encode_special_tokens is False
