"""Generation on tiny random models: batching, sampling, stop strings, streaming, context errors."""
from __future__ import annotations

import pytest
import torch

from core_model import ContextLengthError, random_model
from core_model.generation import SamplingParams, TextStreamer, sample
from core_model.errors import ConfigError


@pytest.fixture(scope="module")
def tiny():
    return random_model("tiny", seed=0)


def test_batched_prompts_of_different_lengths_equal_one_by_one(tiny):
    prompts = ["a longer prompt with several words", "hi", "medium prompt"]
    batched = tiny.generate(prompts, max_new_tokens=12)
    for p, b in zip(prompts, batched):
        single = tiny.generate(p, max_new_tokens=12)
        assert single.token_ids == b.token_ids
        assert single.text == b.text


def test_context_length_error_is_clear(tiny):
    with pytest.raises(ContextLengthError, match="exceeds the model's context of 256"):
        tiny.generate("x" * 250, max_new_tokens=20)


def test_greedy_is_deterministic_and_top_k_1_equals_greedy(tiny):
    g1 = tiny.generate("hello", max_new_tokens=10)
    g2 = tiny.generate("hello", max_new_tokens=10, temperature=0.7, top_k=1, seed=3)
    assert g1.token_ids == g2.token_ids


def test_sampling_reproducible_with_seed_and_varies_without(tiny):
    a = tiny.generate("hello", max_new_tokens=16, temperature=1.5, seed=7)
    b = tiny.generate("hello", max_new_tokens=16, temperature=1.5, seed=7)
    c = tiny.generate("hello", max_new_tokens=16, temperature=1.5, seed=8)
    assert a.token_ids == b.token_ids
    assert a.token_ids != c.token_ids


def test_top_p_keeps_only_the_nucleus():
    logits = torch.log(torch.tensor([[0.5, 0.3, 0.15, 0.05]]))
    params = SamplingParams(temperature=1.0, top_p=0.6)
    gen = torch.Generator().manual_seed(0)
    seen = {int(sample(logits, params, gen)) for _ in range(300)}
    assert seen == {0, 1}  # 0.5 alone < 0.6, so token 1 joins; 2 and 3 never appear
    params = SamplingParams(temperature=1.0, top_k=3)
    seen = {int(sample(logits, params, gen)) for _ in range(300)}
    assert seen == {0, 1, 2}


def test_invalid_sampling_params_raise():
    with pytest.raises(ConfigError):
        SamplingParams(top_p=0)
    with pytest.raises(ConfigError):
        SamplingParams(max_new_tokens=0)


def test_stream_pieces_concatenate_to_generate_text(tiny):
    full = tiny.generate("stream me", max_new_tokens=20)
    pieces = list(tiny.stream("stream me", max_new_tokens=20))
    assert "".join(pieces) == full.text
    assert len(pieces) > 1


class _Chars:
    """A tokenizer whose tokens are characters, to test stop handling precisely."""

    def __init__(self, vocab):
        self.vocab = vocab

    def decode(self, ids):
        return "".join(self.vocab[i] for i in ids)


def test_text_streamer_cuts_at_stop_string_and_never_leaks_it():
    vocab = list("abc#END")
    tok = _Chars(vocab)
    s = TextStreamer(tok, stop=["#END"])
    out = "".join(s.push(vocab.index(ch)) for ch in "ab#ENDc")
    out += s.flush()
    assert out == "ab"
    assert s.stopped


def test_text_streamer_releases_held_prefix_that_was_not_a_stop():
    vocab = list("ab#x")
    tok = _Chars(vocab)
    s = TextStreamer(tok, stop=["#END"])
    out = "".join(s.push(vocab.index(ch)) for ch in "a#x")
    assert out == "a#x"


def test_generate_with_stop_strings(tiny):
    free = tiny.generate("abc", max_new_tokens=30)
    assert len(free.text) > 3
    stop = free.text[2:4]
    cut = tiny.generate("abc", max_new_tokens=30, stop=[stop])
    assert cut.finish_reason == "stop"
    assert cut.text == free.text[: free.text.find(stop)]


def test_image_without_vision_says_how_to_fix(tiny):
    from core_model import VisionUnavailableError

    with pytest.raises(VisionUnavailableError, match="no vision weights"):
        tiny.generate("describe", images=[b"not even read"])


def test_stream_returns_the_final_completion(tiny):
    gen = tiny.stream("count me", max_new_tokens=7)
    pieces = []
    while True:
        try:
            pieces.append(next(gen))
        except StopIteration as stop:
            done = stop.value
            break
    assert done.completion_tokens == 7 and done.finish_reason == "length"
    assert done.text == "".join(pieces) == tiny.generate("count me", max_new_tokens=7).text
