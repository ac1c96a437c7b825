"""The real offline default (SmolLM2-135M-Instruct GGUF) against transformers on the same file."""
from __future__ import annotations

import pytest
import torch

from core_model.loading import default_gguf_path

transformers = pytest.importorskip("transformers")
pytestmark = pytest.mark.slow

PROMPTS = [
    "What is the capital of France?",
    "List three colours.",
    "Write one sentence about a red bus.",
]


def chat(q: str) -> str:
    return ("<|im_start|>system\nYou are a helpful AI assistant named SmolLM, trained by Hugging Face<|im_end|>\n"
            f"<|im_start|>user\n{q}<|im_end|>\n<|im_start|>assistant\n")


@pytest.fixture(scope="module")
def hf():
    path = default_gguf_path()
    model = transformers.AutoModelForCausalLM.from_pretrained(str(path.parent), gguf_file=path.name,
                                                              dtype=torch.float32).eval()
    tok = transformers.AutoTokenizer.from_pretrained(str(path.parent), gguf_file=path.name)
    return model, tok


def test_tokenizer_matches_transformers(smollm2, hf):
    _, tok = hf
    for text in [chat("What is 12345 + 678?"), "Hello, world! ünïcödé  spaces\n\nnew para", "a1b22c333 ..."]:
        assert smollm2.tokenizer.encode(text) == tok(text, add_special_tokens=False)["input_ids"], text
        ids = smollm2.tokenizer.encode(text)
        assert smollm2.tokenizer.decode(ids, skip_special=False) == tok.decode(ids)


def test_greedy_output_equals_transformers(smollm2, hf):
    model, _ = hf
    for q in PROMPTS:
        ids = smollm2.tokenizer.encode(chat(q))
        ours = smollm2.generate(chat(q), max_new_tokens=24)
        with torch.no_grad():
            out = model.generate(torch.tensor([ids]), max_new_tokens=24, do_sample=False,
                                 eos_token_id=sorted(smollm2.tokenizer.eos_ids), pad_token_id=2)
        theirs = out[0, len(ids):].tolist()
        while theirs and theirs[-1] in smollm2.tokenizer.eos_ids:
            theirs.pop()
        assert ours.token_ids[: len(theirs)] == theirs, q


def test_logits_close_to_transformers(smollm2, hf):
    model, _ = hf
    ids = torch.tensor([smollm2.tokenizer.encode(chat(PROMPTS[0]))])
    with torch.no_grad():
        assert (smollm2.llm(ids) - model(ids).logits).abs().max() < 1e-3


def test_default_model_knows_paris(smollm2):
    out = smollm2.generate(chat("What is the capital of France?"), max_new_tokens=20)
    assert "Paris" in out.text
    assert out.finish_reason == "stop"
